//! Connection loss against the real server, through a TCP proxy these
//! tests run and kill (the shared server is never touched): outcomes and
//! inserts made while it is down are committed once it is back, the
//! storage is degraded meanwhile, the insert buffer is bounded, and a
//! process found dead during an outage registers again. Own schema per
//! test; skipped with a message when no server answers. The waits are
//! bounded loops, never assertions on time.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::test_env::{self, stalling_proxy, HOST, PORT, T0};
use super::*;
use crate::queue::{JobOptions, NewJob as QueueJob, Queue, QueueConfig};
use crate::storage::{wait_flushed, JobFilter, Names, StorageState};

/// A TCP proxy to the server on a fixed port: `down` closes the port and
/// every connection through it, `up` listens again on the same port.
struct Proxy {
  port: u16,
  tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
  async fn start() -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let p = Proxy {
      port,
      tasks: Arc::default(),
    };
    p.serve(l);
    p
  }

  fn serve(&self, l: TcpListener) {
    let tasks = self.tasks.clone();
    let t = tokio::spawn(async move {
      while let Ok((mut client, _)) = l.accept().await {
        let t = tokio::spawn(async move {
          if let Ok(mut server) = TcpStream::connect((HOST, PORT)).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
          }
        });
        tasks.lock().push(t);
      }
    });
    self.tasks.lock().push(t);
  }

  /// The outage: every task (the listener's and each connection's) is
  /// aborted, which closes their sockets.
  fn down(&self) {
    for t in self.tasks.lock().drain(..) {
      t.abort();
    }
  }

  async fn up(&self) {
    for _ in 0..100 {
      if let Ok(l) = TcpListener::bind(("127.0.0.1", self.port)).await {
        self.serve(l);
        return;
      }
      tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {} did not come free", self.port);
  }
}

/// The common fixture, and the proxy its queues go through (its `pg`
/// goes straight to the server, to check the database).
struct Env {
  env: test_env::Env,
  proxy: Proxy,
}

impl Deref for Env {
  type Target = test_env::Env;

  fn deref(&self) -> &test_env::Env {
    &self.env
  }
}

fn env(tag: &str) -> Option<Env> {
  let env = test_env::env(tag)?;
  let proxy = env.rt().block_on(Proxy::start());
  Some(Env { env, proxy })
}

impl Env {
  /// A started queue whose backend goes through the proxy.
  fn queue(&self, max_buffered: usize) -> (Queue, u32) {
    let c = PgConfig {
      port: self.proxy.port,
      connect_timeout: Duration::from_secs(2),
      ..self.cfg()
    };
    let opts = BackendOptions {
      max_buffered,
      ..BackendOptions::default()
    };
    let qc = QueueConfig {
      max_workers: 8,
      max_queue_size: 100_000,
      ..QueueConfig::default()
    };
    self.started_queue("work", qc, c, opts)
  }

  /// (unfinished: pending or running, completed) in the database (the
  /// claimer prefetches, so pending jobs may be running already).
  fn counts(&self) -> (usize, usize) {
    let c = self.env.counts();
    (
      c[Status::Pending as usize] + c[Status::Running as usize],
      c[Status::Completed as usize],
    )
  }
}

fn add(q: &mut Queue, calc: u32, n: usize) -> crate::error::Result<Vec<JobId>> {
  let options =
    JobOptions::parse(&Value::Null, "options", q.config().default_backoff).expect("options");
  let batch: Vec<QueueJob<'_>> = (0..n)
    .map(|_| QueueJob {
      calc,
      data: "{}",
      context: "{}",
      options: options.clone(),
    })
    .collect();
  q.add(&batch, T0)
}

/// Takes until `n` jobs came, bounded; returns their `slot,seq` pairs.
fn take_until(q: &mut Queue, n: usize) -> Vec<(u64, u64)> {
  let mut got = Vec::new();
  for _ in 0..4_000 {
    let mut out = String::new();
    q.take(n - got.len(), T0, &mut out);
    let v: Vec<Value> =
      serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
    got.extend(
      v.chunks(7)
        .map(|c| (c[0].as_u64().unwrap_or(0), c[1].as_u64().unwrap_or(0))),
    );
    if got.len() >= n {
      return got;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  panic!("only {} of {n} jobs arrived", got.len());
}

/// Each taken job completed, as `settle` reads them.
fn outcomes_of(taken: &[(u64, u64)]) -> String {
  let v: Vec<String> = taken
    .iter()
    .map(|(s, q)| format!("{s},{q},1,\"done\""))
    .collect();
  format!("[{}]", v.join(","))
}

/// Polls `f` every 20 ms, at most a minute (a busy machine).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
  for _ in 0..3_000 {
    if f() {
      return;
    }
    std::thread::sleep(Duration::from_millis(20));
  }
  panic!("timed out waiting for {what}");
}

#[test]
fn outcomes_and_adds_made_during_an_outage_are_committed_once_it_ends() {
  let Some(env) = env("conn_loss") else { return };
  let (mut q, calc) = env.queue(8);
  add(&mut q, calc, 20).expect("add");
  wait_flushed(q.store_mut()).expect("flushed");
  let taken = take_until(&mut q, 8);
  assert_eq!(env.counts(), (20, 0));
  assert_eq!(q.store().health().state, StorageState::Healthy);

  env.proxy.down();
  // The handlers finish during the outage: their outcomes wait.
  let outcomes: String = outcomes_of(&taken);
  assert_eq!(q.settle(&outcomes, T0).expect("settle"), 8);
  // Adds are buffered (5 of at most 8)...
  let buffered = add(&mut q, calc, 5).expect("buffered while down");
  eventually("the storage to be degraded", || {
    q.store().health().state == StorageState::Degraded
  });
  let h = q.store().health();
  assert!(
    h.message.as_deref().unwrap_or("").contains("PostgreSQL"),
    "{h:?}"
  );
  // ...and past the bound refused, nothing added.
  let e = add(&mut q, calc, 4).expect_err("the buffer is full");
  assert_eq!(e.code(), "ERR_STORAGE");
  assert!(e.to_string().contains("at most 8"), "{e}");
  assert_eq!(q.store_failure(), None, "an outage is not a failure");
  // Nothing committed meanwhile.
  assert_eq!(env.counts(), (20, 0));

  env.rt().block_on(env.proxy.up());
  wait_flushed(q.store_mut()).expect("committed after the outage");
  assert_eq!(env.counts(), (17, 8), "8 completed, 12 + 5 not yet");
  for id in buffered {
    let j = env.rt().block_on(env.pg.get(id)).expect("read");
    assert!(matches!(
      j.map(|j| j.job.status),
      Some(Status::Pending | Status::Running)
    ));
  }
  eventually("the storage to be healthy", || {
    q.store().health().state == StorageState::Healthy
  });
  assert_eq!(q.store().late_fenced(), 0);
  // Jobs keep flowing: the rest run and complete.
  let rest = take_until(&mut q, 8);
  let outcomes: String = outcomes_of(&rest);
  assert_eq!(q.settle(&outcomes, T0).expect("settle"), 8);
  wait_flushed(q.store_mut()).expect("flushed");
  assert_eq!(env.counts(), (9, 16));
}

#[test]
fn a_process_found_dead_during_an_outage_registers_again_under_its_id() {
  let Some(env) = env("conn_rereg") else { return };
  let pg = env.pg.clone();
  let s = quote_ident(&env.schema);
  env.rt().block_on(async move {
    let id = pg.register("h", 1, T0).await.expect("register");
    assert!(pg
      .heartbeat_or_register(id, "h", 1, T0 + 1)
      .await
      .expect("beat"));
    // Another process found it silent and removed it (its jobs rescued).
    let c = pg.client().await.expect("client");
    c.execute(&format!("DELETE FROM {s}.process WHERE id = $1"), &[&id])
      .await
      .expect("delete");
    assert!(!pg.heartbeat(id, T0 + 2).await.expect("beat"));
    assert!(
      !pg
        .heartbeat_or_register(id, "h", 1, T0 + 3)
        .await
        .expect("registered again"),
      "it had to register again"
    );
    assert!(pg.heartbeat(id, T0 + 4).await.expect("beat"), "the same id");
    // A new process still gets a new id.
    let other = pg.register("h", 2, T0).await.expect("register");
    assert_ne!(other, id);
  });
}

/// A claim whose answer was lost (the connection broke as it committed):
/// its jobs are released by their claim time, pending again with the
/// attempt uncounted; jobs of the owner's other claims stay running.
#[test]
fn jobs_of_a_claim_whose_answer_was_lost_are_released() {
  let Some(env) = env("conn_lost") else { return };
  let pg = env.pg.clone();
  env.rt().block_on(async move {
    let jobs: Vec<NewJob> = (0..6)
      .map(|i| NewJob::new(JobId(0x0100 + i), "work", "{}", T0))
      .collect();
    pg.insert(&jobs, T0).await.expect("insert");
    let owner = pg.register("h", 1, T0).await.expect("register");
    let kept = pg
      .claim(&ClaimOptions::new(owner, 2), T0 + 1)
      .await
      .expect("a claim this process saw");
    // The lost one: committed, its answer dropped.
    let lost = pg
      .claim(&ClaimOptions::new(owner, 3), T0 + 2)
      .await
      .expect("a claim whose answer is lost");
    assert_eq!((kept.len(), lost.len()), (2, 3));
    let n = pg
      .release_lost(owner, &[T0 + 2, T0 + 3], T0 + 10)
      .await
      .expect("released");
    assert_eq!(n, 3);
    for j in &lost {
      let now = pg.get(j.job.id).await.expect("read").expect("there");
      assert_eq!((now.job.status, now.job.attempts), (Status::Pending, 0));
    }
    for j in &kept {
      let now = pg.get(j.job.id).await.expect("read").expect("there");
      assert_eq!((now.job.status, now.owner), (Status::Running, Some(owner)));
    }
    assert_eq!(pg.release_lost(owner, &[], T0).await.expect("nothing"), 0);
  });
}

/// A group commit whose answer was lost is applied again: what the first
/// try committed is recognised and reported applied (its events fire), not
/// fenced; an outcome that was never current is still fenced.
#[test]
fn a_commit_applied_again_recognises_what_the_first_try_committed() {
  use crate::job::{JobError, JobErrorCode};
  use crate::storage::FailKind;
  let Some(env) = env("conn_again") else { return };
  let pg = env.pg.clone();
  env.rt().block_on(async move {
    let jobs: Vec<NewJob> = (0..4)
      .map(|i| NewJob {
        max_retries: if i == 1 { 3 } else { 0 },
        ..NewJob::new(JobId(0x0200 + i), "work", "{}", T0)
      })
      .collect();
    pg.insert(&jobs, T0).await.expect("insert");
    let owner = pg.register("h", 1, T0).await.expect("register");
    let got = pg
      .claim(&ClaimOptions::new(owner, 4), T0 + 1)
      .await
      .expect("claim");
    let by = |i: u128| {
      got
        .iter()
        .find(|j| j.job.id == JobId(0x0200 + i))
        .expect("claimed")
    };
    let err = |m: &str| JobError::system("Error", JobErrorCode::Interrupted, m.into(), 1);
    let fail = FailKind::Error {
      unrecoverable: false,
    };
    let outs = vec![
      Outcome::completed(by(0).lease().expect("lease"), "1"),
      Outcome::failed(by(1), err("again"), fail, T0 + 5, 0.0),
      Outcome::failed(by(2), err("boom"), fail, T0 + 5, 0.0),
    ];
    let first = pg.apply(&outs, T0 + 10).await.expect("the lost try");
    assert_eq!(
      (
        first.completed.len(),
        first.retried.len(),
        first.failed.len()
      ),
      (1, 1, 1)
    );
    // The same outcomes again, and one that was never current (a stale
    // attempt of job 3).
    let mut stale = by(3).lease().expect("lease");
    stale.attempt += 5;
    let mut again = outs.clone();
    again.push(Outcome::completed(stale, "1"));
    let a = pg.apply_again(&again, T0 + 20).await.expect("again");
    assert_eq!(a.completed, vec![JobId(0x0200)]);
    assert_eq!(a.retried, vec![JobId(0x0201)]);
    assert_eq!(a.failed, vec![JobId(0x0202)]);
    assert_eq!(a.fenced, vec![JobId(0x0203)]);
    // Applied once: job 1 has one error recorded, job 3 still runs.
    let j1 = pg.get(JobId(0x0201)).await.expect("read").expect("there");
    assert_eq!(j1.job.extra.as_ref().map_or(0, |e| e.errors.len()), 1);
    let j3 = pg.get(JobId(0x0203)).await.expect("read").expect("there");
    assert_eq!(j3.job.status, Status::Running);
  });
}

#[test]
fn a_job_added_claimed_starts_before_its_insert_commits_and_its_outcome_waits_for_it() {
  let Some(env) = env("conn_prestart") else {
    return;
  };
  let (mut q, calc) = env.queue(100);
  // A first job: the take tells the claimer what runs here, and its claim
  // comes back short (no backlog).
  add(&mut q, calc, 1).expect("add");
  let first = take_until(&mut q, 1);
  q.settle(&outcomes_of(&first), T0).expect("settle");
  wait_flushed(q.store_mut()).expect("flushed");
  assert_eq!(env.counts(), (0, 1));

  // The server is unreachable: an add still starts at once (claimed here,
  // in the ready buffer before anything is written).
  env.proxy.down();
  let ids = add(&mut q, calc, 1).expect("add while down");
  let taken = take_until(&mut q, 1);
  assert_eq!(q.get(ids[0]).map(|j| j.status), Some(Status::Running));
  // Its outcome is decided now and written after the insert.
  assert_eq!(q.settle(&outcomes_of(&taken), T0).expect("settle"), 1);
  assert_eq!(env.counts(), (0, 1), "nothing written during the outage");

  env.rt().block_on(env.proxy.up());
  wait_flushed(q.store_mut()).expect("committed after the outage");
  assert_eq!(env.counts(), (0, 2), "inserted, then completed");
  assert_eq!(q.late_outcomes(), 0, "the outcome was not fenced");
  let j = env
    .rt()
    .block_on(env.pg.get(ids[0]))
    .expect("read")
    .expect("there");
  assert_eq!((j.job.status, j.job.attempts), (Status::Completed, 1));
}

/// Takes until `n` jobs came, bounded; returns `(slot, seq, id)`.
fn take_with_ids(q: &mut Queue, n: usize) -> Vec<(u32, u32, JobId)> {
  let mut got = Vec::new();
  for _ in 0..4_000 {
    let mut out = String::new();
    q.take(n - got.len(), T0, &mut out);
    let v: Vec<Value> =
      serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
    got.extend(v.chunks(7).map(|c| {
      (
        c[0].as_u64().unwrap_or(0) as u32,
        c[1].as_u64().unwrap_or(0) as u32,
        c[2].as_str().and_then(JobId::parse).expect("an id"),
      )
    }));
    if got.len() >= n {
      return got;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  panic!("only {} of {n} jobs arrived", got.len());
}

/// Progress reported while the server is unreachable waits the outage out
/// (it used to be dropped): the latest value of a running job is in the
/// database once the server is back, and a job that finished during the
/// outage keeps its last value in its finished row.
#[test]
fn progress_reported_during_an_outage_is_written_once_it_ends() {
  let Some(env) = env("conn_progress") else {
    return;
  };
  let (mut q, calc) = env.queue(8);
  add(&mut q, calc, 2).expect("add");
  wait_flushed(q.store_mut()).expect("flushed");
  let t = take_with_ids(&mut q, 2);
  let (run, fin) = (t[0], t[1]);
  assert!(q.progress(run.0, run.1, "0"));
  q.end_batch();
  wait_flushed(q.store_mut()).expect("flushed");
  let progress = |id: JobId| {
    let j = env.rt().block_on(env.pg.get(id)).expect("read");
    j.and_then(|j| j.job.extra)
      .and_then(|e| e.progress)
      .map(|p| p.to_string())
  };
  assert_eq!(progress(run.2).as_deref(), Some("0"));

  env.proxy.down();
  for i in 1..=50 {
    assert!(q.progress(run.0, run.1, &i.to_string()));
  }
  assert!(q.progress(fin.0, fin.1, "\"last\""));
  q.end_batch();
  eventually("the progress write to wait out the outage", || {
    let h = q.store().health();
    h.state == StorageState::Degraded && h.message.as_deref().unwrap_or("").contains("progress")
  });
  // Reported after the first try failed: merged into the waiting write.
  for i in 51..=100 {
    assert!(q.progress(run.0, run.1, &i.to_string()));
  }
  q.end_batch();
  // The other job finishes during the outage: its outcome takes its value.
  let outcome = format!("[{},{},1,\"done\"]", fin.0, fin.1);
  assert_eq!(q.settle(&outcome, T0).expect("settle"), 1);
  assert_eq!(progress(run.2).as_deref(), Some("0"), "nothing written yet");

  env.rt().block_on(env.proxy.up());
  wait_flushed(q.store_mut()).expect("written after the outage");
  assert_eq!(progress(run.2).as_deref(), Some("100"));
  let f = env
    .rt()
    .block_on(env.pg.get(fin.2))
    .expect("read")
    .expect("there");
  assert_eq!(f.job.status, Status::Completed);
  assert_eq!(
    f.job
      .extra
      .and_then(|e| e.progress)
      .map(|p| p.to_string())
      .as_deref(),
    Some("\"last\"")
  );
  eventually("the storage to be healthy", || {
    q.store().health().state == StorageState::Healthy
  });
  assert_eq!(q.store_failure(), None, "an outage is not a failure");
}

/// A server that keeps the connection open but stops answering: a
/// statement is cut off after `statementTimeoutMs` with ERR_STORAGE saying
/// so, and a retried write waits the hang out like an outage (degraded
/// meanwhile) and commits once the server answers again.
#[test]
fn a_hung_server_cannot_hold_a_write_forever() {
  let Some(env) = env("conn_hung") else { return };
  let p = stalling_proxy(env.rt());
  let c = PgConfig {
    port: p.port,
    connect_timeout: Duration::from_millis(500),
    statement_timeout: Duration::from_millis(300),
    ..env.cfg()
  };
  let pg = env.rt().block_on(PgStore::connect(&c)).expect("connect");
  let owner = env
    .rt()
    .block_on(pg.register("h", 1, T0))
    .expect("register");
  p.stalled.store(true, Ordering::Release);
  // Without the bound these would never return (the test's own fail-safe
  // is a minute, never reached on time alone).
  let e = env
    .rt()
    .block_on(async {
      tokio::time::timeout(
        Duration::from_secs(60),
        pg.bounded("heartbeat", pg.heartbeat(owner, T0 + 1)),
      )
      .await
    })
    .expect("cut off by the statement timeout")
    .expect_err("no answer");
  assert_eq!(e.code(), "ERR_STORAGE");
  let m = e.to_string();
  assert!(
    m.contains("did not answer (heartbeat) within 300 ms (storage.statementTimeoutMs)"),
    "{m}"
  );
  // A retried write waits the hang out.
  let write = {
    let pg = pg.clone();
    env.rt().spawn(async move {
      pg.retrying("heartbeat", || pg.heartbeat(owner, T0 + 2))
        .await
    })
  };
  eventually("the hang to show as degraded", || {
    let h = pg.conn().health();
    h.state == StorageState::Degraded && h.message.as_deref().unwrap_or("").contains("heartbeat")
  });
  assert!(!write.is_finished(), "it waits while the server hangs");
  p.stalled.store(false, Ordering::Release);
  let beat = env
    .rt()
    .block_on(async { tokio::time::timeout(Duration::from_secs(60), write).await })
    .expect("the write finished once the server answered")
    .expect("task");
  assert_eq!(beat, Ok(true));
  assert_eq!(pg.conn().health(), crate::storage::StorageHealth::healthy());
  let last = env
    .rt()
    .block_on(async {
      let c = env.pg.client().await?;
      let r = c
        .query_one(
          &format!(
            "SELECT last_seen FROM {}.process WHERE id = $1",
            quote_ident(&env.schema)
          ),
          &[&owner],
        )
        .await
        .map_err(pg_err("read"))?;
      Ok::<i64, crate::error::Error>(r.get(0))
    })
    .expect("read");
  assert_eq!(last, (T0 + 2) as i64);
}

/// A TCP proxy to the server that blackholes: while `hung`, or on a
/// connection once its client sent the bytes in `cut_at` (a statement's
/// text), every byte either way is read and dropped. The sockets stay
/// open and nothing is answered, as from a hung server or a network that
/// drops packets without a reset.
struct Blackhole {
  port: u16,
  hung: Arc<AtomicBool>,
  cut_at: Arc<Mutex<Option<Vec<u8>>>>,
  /// Connections cut by `cut_at`.
  cuts: Arc<AtomicUsize>,
}

impl Blackhole {
  fn start(rt: &tokio::runtime::Runtime) -> Blackhole {
    let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let b = Blackhole {
      port,
      hung: Arc::default(),
      cut_at: Arc::default(),
      cuts: Arc::default(),
    };
    let (hung, cut_at, cuts) = (b.hung.clone(), b.cut_at.clone(), b.cuts.clone());
    rt.spawn(async move {
      while let Ok((client, _)) = l.accept().await {
        let Ok(server) = TcpStream::connect(("127.0.0.1", 5432)).await else {
          continue;
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let cut = Arc::new(AtomicBool::new(false));
        let watch = Some((cut_at.clone(), cuts.clone()));
        tokio::spawn(forward(cr, sw, hung.clone(), cut.clone(), watch));
        tokio::spawn(forward(sr, cw, hung.clone(), cut, None));
      }
    });
    b
  }

  fn hang(&self, on: bool) {
    self.hung.store(on, Ordering::Release);
  }

  /// Connections whose client sends `text` from now on are cut there.
  fn cut_at(&self, text: Option<&str>) {
    *self.cut_at.lock() = text.map(|t| t.as_bytes().to_vec());
  }
}

/// What a connection's client side watches for: the bytes to cut at, and
/// the count of connections cut.
type Watch = (Arc<Mutex<Option<Vec<u8>>>>, Arc<AtomicUsize>);

/// Copies `from` to `to` until either closes, dropping what it reads while
/// the proxy is hung or this connection is cut; `watch` (the client's
/// side) cuts the connection once the bytes to cut at went by.
async fn forward(
  mut from: tokio::net::tcp::OwnedReadHalf,
  mut to: tokio::net::tcp::OwnedWriteHalf,
  hung: Arc<AtomicBool>,
  cut: Arc<AtomicBool>,
  watch: Option<Watch>,
) {
  use tokio::io::{AsyncReadExt, AsyncWriteExt};
  let mut buf = vec![0u8; 16 * 1024];
  // The last bytes seen, so that text split across two reads is found.
  let mut seen: Vec<u8> = Vec::new();
  loop {
    let n = match from.read(&mut buf).await {
      Ok(0) | Err(_) => return,
      Ok(n) => n,
    };
    if let Some((at, cuts)) = &watch {
      let at = at.lock().clone();
      if let Some(at) = at.filter(|a| !a.is_empty()) {
        seen.extend_from_slice(&buf[..n]);
        if !cut.load(Ordering::Acquire) && seen.windows(at.len()).any(|w| w == at.as_slice()) {
          cut.store(true, Ordering::Release);
          cuts.fetch_add(1, Ordering::AcqRel);
        }
        let keep = seen.len().saturating_sub(at.len());
        seen.drain(..keep);
      }
    }
    if hung.load(Ordering::Acquire) || cut.load(Ordering::Acquire) {
      continue;
    }
    if to.write_all(&buf[..n]).await.is_err() {
      return;
    }
  }
}

/// Runs `fut` on the env's runtime with a fail-safe of a minute (never
/// reached on time alone: without the bound under test it would hang).
fn at_most_a_minute<T>(env: &Env, fut: impl std::future::Future<Output = T>) -> T {
  env
    .rt()
    .block_on(async { tokio::time::timeout(Duration::from_secs(60), fut).await })
    .expect("cut off by storage.statementTimeoutMs, not the test's fail-safe")
}

/// The error says what timed out, and by which setting.
fn assert_timed_out<T>(r: crate::error::Result<T>, what: &str, key: &str) {
  let Err(e) = r else {
    panic!("{what} succeeded while the server did not answer");
  };
  assert_eq!(e.code(), "ERR_STORAGE", "{e}");
  let m = e.to_string();
  assert!(
    m.contains(&format!("did not answer ({what}) within ")),
    "{m}"
  );
  assert!(m.ends_with(&format!("ms (storage.{key})")), "{m}");
}

/// A server that accepts connections but stops answering: every read
/// (what `getJobStatus`, `getJobs`, the counts' refresh, the schedules'
/// read and `cancelJob`'s alias lookup go through), and `cancelJob`'s and
/// `retryJob`'s own transaction, fails with ERR_STORAGE naming it after
/// `statementTimeoutMs`, without a retry, instead of hanging; once the
/// server answers again, reads work (the connections that hung were not
/// kept).
#[test]
fn a_hung_server_fails_a_read_instead_of_holding_it() {
  let Some(env) = env("conn_hung_read") else {
    return;
  };
  let p = Blackhole::start(env.rt());
  let c = PgConfig {
    port: p.port,
    connect_timeout: Duration::from_millis(500),
    statement_timeout: Duration::from_millis(300),
    ..test_env::cfg(&env.schema)
  };
  let pg = env.rt().block_on(PgStore::connect(&c)).expect("connect");
  let id = JobId(0x0300);
  env
    .rt()
    .block_on(env.pg.insert(&[NewJob::new(id, "work", "{}", T0)], T0))
    .expect("insert");
  let mut names = Names::default();
  names.intern("work");
  let page = JobFilter::default();
  // Through the proxy, while it forwards.
  let got = at_most_a_minute(&env, pg.get(id)).expect("read");
  assert_eq!(got.map(|j| j.job.id), Some(id));
  assert_eq!(
    at_most_a_minute(&env, pg.list(&page, &names))
      .expect("list")
      .len(),
    1
  );

  p.hang(true);
  let ids = [id];
  assert_timed_out(
    at_most_a_minute(&env, pg.get(id)),
    "read a job",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.list(&page, &names)),
    "list jobs",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.counts()),
    "count jobs",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.still_queued(&ids)),
    "check which jobs are still queued",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.schedules()),
    "read the schedules",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.statuses(&ids)),
    "read the schedules' last jobs",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.resolve(id)),
    "read an alias",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.prune(T0, 10)),
    "prune finished jobs",
    "statementTimeoutMs",
  );
  // cancelJob and retryJob write in a transaction of their own, bounded
  // the same way.
  assert_timed_out(
    at_most_a_minute(&env, pg.cancel_job(id, T0)),
    "cancel a job",
    "statementTimeoutMs",
  );
  assert_timed_out(
    at_most_a_minute(&env, pg.retry(id, T0)),
    "retry a job",
    "statementTimeoutMs",
  );
  // Reads are not retried: nothing waits the hang out as an outage.
  assert_eq!(pg.conn().health(), crate::storage::StorageHealth::healthy());

  p.hang(false);
  let got = at_most_a_minute(&env, pg.get(id)).expect("read after the hang");
  assert_eq!(got.map(|j| j.job.id), Some(id));
  let counts = at_most_a_minute(&env, pg.counts()).expect("counts after the hang");
  assert_eq!(counts[Status::Pending as usize], 1);
}

/// The LISTEN connection against a server that stops answering: a connect
/// that gets no answer, and a `LISTEN` statement that gets none, fail with
/// ERR_STORAGE naming the step (the claimer then opens it again with
/// backoff) instead of hanging; the connect's own timeout still applies
/// when it is the shorter.
#[test]
fn a_hung_server_fails_listen_instead_of_holding_it() {
  let Some(env) = env("conn_hung_listen") else {
    return;
  };
  let p = Blackhole::start(env.rt());
  let c = PgConfig {
    port: p.port,
    // Longer than the statement timeout: that one cuts the connect off.
    connect_timeout: Duration::from_secs(30),
    statement_timeout: Duration::from_millis(300),
    ..test_env::cfg(&env.schema)
  };
  let pg = env.rt().block_on(PgStore::connect(&c)).expect("connect");
  // It works through the proxy while it forwards.
  drop(at_most_a_minute(&env, pg.listen()).expect("listen"));

  // The connect gets no answer.
  p.hang(true);
  assert_timed_out(
    at_most_a_minute(&env, pg.listen()),
    "LISTEN connection",
    "statementTimeoutMs",
  );
  p.hang(false);

  // The connect is answered, the LISTEN statement is not.
  p.cut_at(Some("LISTEN "));
  assert_timed_out(
    at_most_a_minute(&env, pg.listen()),
    "LISTEN",
    "statementTimeoutMs",
  );
  assert_eq!(
    p.cuts.load(Ordering::Acquire),
    1,
    "the connection was cut at its LISTEN"
  );
  p.cut_at(None);

  // A connect timeout shorter than the statement timeout says so.
  let short = PgConfig {
    connect_timeout: Duration::from_millis(200),
    statement_timeout: Duration::from_secs(30),
    ..c
  };
  let pg = env
    .rt()
    .block_on(PgStore::connect(&short))
    .expect("connect");
  p.hang(true);
  assert_timed_out(
    at_most_a_minute(&env, pg.listen()),
    "LISTEN connection",
    "connectTimeoutMs",
  );
  p.hang(false);
  drop(at_most_a_minute(&env, pg.listen()).expect("listen once it answers"));
}
