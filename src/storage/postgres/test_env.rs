//! The fixtures of the PostgreSQL tests, against the server at
//! 127.0.0.1:5432 (database `test`, user `postgres`, trust): each test
//! makes its own schema and drops it. When no server answers, each test
//! prints why and passes without checking anything.
//!
//! [`Fx`] is a store on a fresh schema for the async tests of the core;
//! [`Env`] a runtime, a fresh schema, a manual clock and a store to check
//! the database, for the tests of real `Queue`s on [`PgBackend`]s; the
//! queue helpers below drive those queues, and [`stalling_proxy`] stands
//! for a database that stopped answering.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::job::{Backoff, BackoffKind, IdGen};
use crate::queue::{Queue, QueueConfig};
use crate::storage::{wait_flushed, Names};

pub(crate) const HOST: &str = "127.0.0.1";
pub(crate) const PORT: u16 = 5432;

/// The tests' start time, on a whole second (a `* * * * * *` cron fires
/// at `T0 + k * 1000`).
pub(crate) const T0: u64 = 1_800_000_000_000;

pub(crate) fn server_up() -> bool {
  let addr = std::net::SocketAddr::from(([127, 0, 0, 1], PORT));
  if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
    return true;
  }
  // CI must run them: a server that is down there fails the run instead
  // of passing it with nothing checked.
  assert!(
    std::env::var_os("CI").is_none(),
    "no PostgreSQL answers at {HOST}:{PORT} and CI is set: the PostgreSQL tests must run in CI"
  );
  eprintln!("SKIPPED: no PostgreSQL answers at {HOST}:{PORT}; start one (user postgres, database test) to run the PostgreSQL tests");
  false
}

pub(crate) fn cfg(schema: &str) -> PgConfig {
  PgConfig {
    host: HOST.into(),
    port: PORT,
    database: "test".into(),
    user: "postgres".into(),
    schema: schema.into(),
    pool_size: 4,
    ..PgConfig::default()
  }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A unique schema name for one test.
pub(crate) fn unique(tag: &str) -> String {
  format!(
    "jw_t_{}_{}_{}",
    tag,
    std::process::id(),
    SEQ.fetch_add(1, Ordering::Relaxed)
  )
}

/// Runs `sql` as postgres on database `test`, on its own runtime (usable
/// from `Drop`).
pub(crate) fn admin(sql: String) {
  std::thread::spawn(move || {
    let rt = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .expect("a runtime");
    rt.block_on(async move {
      let pc = cfg("x").driver_config().expect("config");
      if let Ok((client, conn)) = pc.connect(tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        if let Err(e) = client.batch_execute(&sql).await {
          eprintln!("admin SQL failed: {e}");
        }
      }
    });
  })
  .join()
  .expect("admin thread");
}

/// Drops `schema` and all in it.
pub(crate) fn drop_schema(schema: &str) {
  admin(format!(
    "DROP SCHEMA IF EXISTS {} CASCADE",
    quote_ident(schema)
  ));
}

/// A store on a fresh schema, dropped with the fixture.
pub(crate) struct Fx {
  pub(crate) store: PgStore,
  pub(crate) schema: String,
}

impl Drop for Fx {
  fn drop(&mut self) {
    self.store.close();
    drop_schema(&self.schema);
  }
}

pub(crate) async fn fx(tag: &str) -> Option<Fx> {
  if !server_up() {
    return None;
  }
  let schema = unique(tag);
  let store = PgStore::connect(&cfg(&schema)).await.expect("connect");
  Some(Fx { store, schema })
}

/// Another store (another "process") on the fixture's schema.
pub(crate) async fn peer(fx: &Fx) -> PgStore {
  PgStore::connect(&cfg(&fx.schema))
    .await
    .expect("connect peer")
}

/// `n` time-ordered ids made at `now`.
pub(crate) fn ids(n: usize, now: u64) -> Vec<JobId> {
  let mut g = IdGen::default();
  (0..n).map(|_| g.next(now)).collect()
}

/// `n` jobs of calculation `name` due at `now`, data `{"i":<index>}`.
pub(crate) fn jobs(n: usize, name: &str, now: u64) -> Vec<NewJob> {
  ids(n, now)
    .into_iter()
    .enumerate()
    .map(|(i, id)| NewJob::new(id, name, &format!("{{\"i\":{i}}}"), now))
    .collect()
}

/// A runtime, a schema, a manual clock (from [`T0`]) and a store to check
/// the database; the schema is dropped with it.
pub(crate) struct Env {
  rt: Option<tokio::runtime::Runtime>,
  pub(crate) schema: String,
  now: Arc<AtomicU64>,
  pub(crate) pg: PgStore,
}

impl Drop for Env {
  fn drop(&mut self) {
    if let Some(rt) = self.rt.take() {
      rt.shutdown_background();
    }
    drop_schema(&self.schema);
  }
}

pub(crate) fn env(tag: &str) -> Option<Env> {
  if !server_up() {
    return None;
  }
  let rt = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .expect("runtime");
  let schema = unique(tag);
  let pg = rt
    .block_on(PgStore::connect(&cfg(&schema)))
    .expect("connect");
  Some(Env {
    rt: Some(rt),
    schema,
    now: Arc::new(AtomicU64::new(T0)),
    pg,
  })
}

impl Env {
  pub(crate) fn rt(&self) -> &tokio::runtime::Runtime {
    self.rt.as_ref().expect("runtime")
  }

  pub(crate) fn now(&self) -> u64 {
    self.now.load(Ordering::SeqCst)
  }

  pub(crate) fn set_now(&self, t: u64) {
    self.now.store(t, Ordering::SeqCst);
  }

  /// The connection config of the fixture's schema.
  pub(crate) fn cfg(&self) -> PgConfig {
    cfg(&self.schema)
  }

  /// A backend of its own (pool, process row, tasks) on the manual clock,
  /// connected with `c`.
  pub(crate) fn backend_on(&self, c: PgConfig, names: &Names, opts: BackendOptions) -> PgBackend {
    let now = self.now.clone();
    let clock: ClusterClock = Arc::new(move || now.load(Ordering::SeqCst));
    let n = names.clone();
    self
      .rt()
      .block_on(async move {
        let pg = PgStore::connect(&c).await?;
        PgBackend::open(pg, n, clock, opts).await
      })
      .expect("open the backend")
  }

  /// A backend of its own on the fixture's schema.
  pub(crate) fn backend(&self, names: &Names, opts: BackendOptions) -> PgBackend {
    self.backend_on(self.cfg(), names, opts)
  }

  /// A queue started now on a backend of its own (connected with `c`),
  /// calculation `calc` registered.
  pub(crate) fn started_queue(
    &self,
    calc: &str,
    qc: QueueConfig,
    c: PgConfig,
    opts: BackendOptions,
  ) -> (Queue, u32) {
    let mut names = Names::default();
    names.intern(calc);
    let backend = self.backend_on(c, &names, opts);
    let mut q = Queue::with_store(qc, self.now(), Box::new(backend), names);
    let calc = q.register(calc, &Value::Null).expect("register");
    q.start(self.now());
    (q, calc)
  }

  /// A started queue with `workers` workers on its own backend (its own
  /// process row, pool and tasks), calculation `work` registered.
  pub(crate) fn queue(&self, workers: u32, opts: BackendOptions) -> (Queue, u32) {
    let qc = QueueConfig {
      max_workers: workers,
      max_queue_size: 100_000,
      default_backoff: Backoff {
        kind: BackoffKind::Fixed,
        delay_ms: 10,
        max_delay_ms: 0,
        jitter: 0.0,
      },
      ..QueueConfig::default()
    };
    self.started_queue("work", qc, self.cfg(), opts)
  }

  pub(crate) fn db(&self, id: JobId) -> PgJob {
    self
      .rt()
      .block_on(self.pg.get(id))
      .expect("read")
      .expect("the job is in the database")
  }

  /// How many jobs the database holds in each status (one snapshot,
  /// indexed by `Status as usize`).
  pub(crate) fn counts(&self) -> [usize; 7] {
    self.rt().block_on(self.pg.counts()).expect("counts")
  }

  /// How many jobs the database holds in `status`.
  pub(crate) fn counts_of(&self, status: Status) -> usize {
    self.counts()[status as usize]
  }
}

pub(crate) use crate::queue::tests::add;

/// One taken job: slot, seq, id, attempt.
pub(crate) type Taken = (u32, u32, JobId, u32);

/// Takes up to `n` jobs at once (never waits).
pub(crate) fn take(q: &mut Queue, n: usize, now: u64) -> Vec<Taken> {
  let mut out = String::new();
  let k = q.take(n, now, &mut out);
  let v: Vec<Value> =
    serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
  assert_eq!(v.len(), k * 7);
  v.chunks(7)
    .map(|c| {
      (
        c[0].as_u64().unwrap_or(0) as u32,
        c[1].as_u64().unwrap_or(0) as u32,
        JobId::parse(c[2].as_str().unwrap_or("")).expect("an id"),
        c[4].as_u64().unwrap_or(0) as u32,
      )
    })
    .collect()
}

/// Takes until `n` jobs came (the claimer fills the buffer meanwhile),
/// bounded.
pub(crate) fn take_until(q: &mut Queue, n: usize, now: u64) -> Vec<Taken> {
  let mut got = Vec::new();
  for _ in 0..2_000 {
    got.extend(take(q, n - got.len(), now));
    if got.len() >= n {
      return got;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  panic!("only {} of {n} jobs arrived", got.len());
}

/// The outcome of `t` completed, as `settle` reads it.
pub(crate) fn ok(t: &Taken) -> String {
  format!("{},{},1,\"done\"", t.0, t.1)
}

pub(crate) fn flush(q: &mut Queue) {
  wait_flushed(q.store_mut()).expect("flushed");
}

/// A TCP proxy to the server that can stall: while stalled it forwards
/// nothing (a database that stopped answering, not one that refuses).
pub(crate) struct StallingProxy {
  pub(crate) port: u16,
  pub(crate) stalled: Arc<AtomicBool>,
}

pub(crate) fn stalling_proxy(rt: &tokio::runtime::Runtime) -> StallingProxy {
  let stalled = Arc::new(AtomicBool::new(false));
  let listener = rt
    .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
    .expect("bind");
  let port = listener.local_addr().expect("addr").port();
  let st = stalled.clone();
  rt.spawn(async move {
    while let Ok((client, _)) = listener.accept().await {
      let Ok(server) = tokio::net::TcpStream::connect((HOST, PORT)).await else {
        continue;
      };
      let (cr, cw) = client.into_split();
      let (sr, sw) = server.into_split();
      tokio::spawn(pipe(cr, sw, st.clone()));
      tokio::spawn(pipe(sr, cw, st.clone()));
    }
  });
  StallingProxy { port, stalled }
}

async fn pipe(
  mut from: tokio::net::tcp::OwnedReadHalf,
  mut to: tokio::net::tcp::OwnedWriteHalf,
  stalled: Arc<AtomicBool>,
) {
  let mut buf = vec![0u8; 16 * 1024];
  loop {
    let n = match from.read(&mut buf).await {
      Ok(0) | Err(_) => return,
      Ok(n) => n,
    };
    while stalled.load(Ordering::Acquire) {
      tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if to.write_all(&buf[..n]).await.is_err() {
      return;
    }
  }
}
