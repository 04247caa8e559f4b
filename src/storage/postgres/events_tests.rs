//! Events after the commit and no blocking store calls, on a real `Queue`
//! over [`PgBackend`] (the server at 127.0.0.1:5432, own schema per test;
//! skipped with a message when no server answers). The commit is held back
//! by a row lock another connection takes, not by time: what is asserted
//! while it is held cannot depend on the machine's speed.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::test_env::{add, cfg, env, flush, ok, stalling_proxy, take_until, Env};
use super::*;
use crate::queue::{Queue, QueueConfig};
use crate::storage::Names;

/// The `(kind, id)` of each event `drain` returns.
fn events(q: &mut Queue) -> Vec<(String, String)> {
  let v: Value = serde_json::from_str(&q.drain()).expect("drain json");
  v[1]
    .as_array()
    .map(|a| {
      a.iter()
        .map(|e| {
          (
            e[0].as_str().unwrap_or("").to_string(),
            e[1].as_str().unwrap_or("").to_string(),
          )
        })
        .collect()
    })
    .unwrap_or_default()
}

/// Another connection locks the rows of `ids` (the committer's statement
/// then waits for it); `fence` is then moved to another owner (a rescue
/// by another process) and the transaction commits when `go` fires.
/// Returns once the lock is held.
fn hold_rows(env: &Env, ids: Vec<JobId>, fence: Option<JobId>) -> oneshot::Sender<()> {
  let (go, wait) = oneshot::channel::<()>();
  let (locked_tx, locked_rx) = mpsc::channel();
  let pg = env.pg.clone();
  let s = quote_ident(&env.schema);
  env.rt().spawn(async move {
    let mut c = pg.client().await.expect("client");
    let tx = c.transaction().await.expect("begin");
    let ids: Vec<PgId> = ids.into_iter().map(PgId).collect();
    tx.query(
      &format!("SELECT id FROM {s}.job WHERE id = ANY($1) FOR UPDATE"),
      &[&ids],
    )
    .await
    .expect("lock");
    let _ = locked_tx.send(());
    let _ = wait.await;
    if let Some(f) = fence {
      tx.execute(
        &format!("UPDATE {s}.job SET owner = owner + 1000000 WHERE id = $1"),
        &[&PgId(f)],
      )
      .await
      .expect("fence");
    }
    tx.commit().await.expect("commit");
  });
  locked_rx
    .recv_timeout(Duration::from_secs(60))
    .expect("the rows were locked");
  go
}

#[test]
fn completed_failed_and_retrying_fire_after_the_commit_and_a_fenced_outcome_fires_none() {
  let Some(env) = env("pge_after") else { return };
  let (mut q, calc) = env.queue(4, BackendOptions::default());
  q.set_events(true);
  let now = env.now();
  let a = add(&mut q, calc, "1", json!({}), now);
  let b = add(&mut q, calc, "2", json!({}), now);
  let c = add(&mut q, calc, "3", json!({"retries": 0}), now);
  let d = add(&mut q, calc, "4", json!({"retries": 2}), now);
  flush(&mut q);
  let t = take_until(&mut q, 4, now);
  let at = |id: JobId| *t.iter().find(|x| x.2 == id).expect("taken");
  let go = hold_rows(&env, vec![a, b, c, d], Some(b));
  let err = |x: (u32, u32, JobId, u32)| {
    format!(
      "{},{},0,{{\"name\":\"Error\",\"message\":\"no\"}}",
      x.0, x.1
    )
  };
  q.settle(
    &format!(
      "[{},{},{},{}]",
      ok(&at(a)),
      ok(&at(b)),
      err(at(c)),
      err(at(d))
    ),
    now,
  )
  .expect("settle");
  q.end_batch();
  // Answered at once (the slots are free, the local state says so)...
  assert_eq!(q.get(a).map(|j| j.status), Some(Status::Completed));
  assert_eq!(q.get(d).map(|j| j.status), Some(Status::Pending));
  // ...but no event while the commit waits on the lock, however long.
  for _ in 0..20 {
    std::thread::sleep(Duration::from_millis(10));
    q.end_batch();
    assert_eq!(events(&mut q), vec![], "no event before the commit");
  }
  assert!(q.has_held());
  assert_eq!(env.db(a).job.status, Status::Running, "not committed");
  // b is rescued by another process meanwhile: its outcome is fenced.
  let _ = go.send(());
  flush(&mut q);
  q.end_batch();
  let mut got = events(&mut q);
  got.sort();
  let mut want = vec![
    ("completed".to_string(), a.to_string()),
    ("failed".to_string(), c.to_string()),
    ("retrying".to_string(), d.to_string()),
  ];
  want.sort();
  assert_eq!(got, want, "one event per committed outcome, none for b");
  assert!(!q.has_held());
  assert_eq!(q.store().late_fenced(), 1);
  assert_eq!(env.db(a).job.status, Status::Completed, "committed first");
  assert_eq!(env.db(b).job.status, Status::Running, "b is the rescuer's");
  assert_eq!(env.db(c).job.status, Status::Failed);
  q.check_invariants().expect("invariants");
}

#[test]
fn the_queues_calls_on_the_javascript_thread_never_wait_for_a_stalled_database() {
  let Some(env) = env("pge_stall") else { return };
  let p = stalling_proxy(env.rt());
  let mut c = cfg(&env.schema);
  c.port = p.port;
  let mut names = Names::default();
  names.intern("work");
  let t0 = env.now();
  let clock: ClusterClock = Arc::new(move || t0);
  let opts = BackendOptions {
    // A blocking call would hang the test, not fail it at some bound.
    read_timeout: Duration::from_secs(24 * 3600),
    ..BackendOptions::default()
  };
  let n = names.clone();
  let backend = env
    .rt()
    .block_on(async move {
      let pg = PgStore::connect(&c).await?;
      PgBackend::open(pg, n, clock, opts).await
    })
    .expect("open through the proxy");
  let mut q = Queue::with_store(QueueConfig::default(), t0, Box::new(backend), names);
  let calc = q.register("work", &Value::Null).expect("register");
  q.start(t0);
  let elsewhere = JobId(u128::from(u64::MAX) << 64 | 7);
  p.stalled.store(true, Ordering::Release);
  // Every call the binding's synchronous methods and the chores make, on
  // a thread that is not the runtime's (as the JavaScript thread).
  let (done_tx, done_rx) = mpsc::channel();
  std::thread::spawn(move || {
    let now = t0;
    let mut r: Vec<(&str, bool)> = Vec::new();
    // Added while stalled: answered at once, held in the insert buffer.
    let held = add(&mut q, calc, "1", json!({}), now);
    r.push((
      "status of a job not held here",
      q.status_json(elsewhere).is_err(),
    ));
    r.push(("cancel", q.cancel(elsewhere, now).is_err()));
    r.push(("retry", q.retry(elsewhere, now).is_err()));
    r.push(("prune", q.prune(now).is_ok()));
    r.push((
      "getJobs",
      q.jobs_json(&crate::queue::JobQuery::default()).is_err(),
    ));
    r.push(("stats", q.stats_json(now).contains("\"cluster\"")));
    r.push(("schedules", q.schedules_json(&Value::Null).is_ok()));
    r.push(("a job added is held here", q.get(held).is_some()));
    q.tick(now + 60_000);
    q.end_batch();
    let _ = done_tx.send((r, q));
  });
  let (r, q) = done_rx
    .recv_timeout(Duration::from_secs(120))
    .expect("every call returned while the database was stalled");
  for (what, fine) in r {
    assert!(fine, "{what}");
  }
  p.stalled.store(false, Ordering::Release);
  drop(q);
}

#[test]
fn progress_is_written_in_batches_the_latest_value_wins_and_a_rescued_attempt_writes_none() {
  let Some(env) = env("pge_progress") else {
    return;
  };
  let (mut q, calc) = env.queue(2, BackendOptions::default());
  let now = env.now();
  let id = add(&mut q, calc, "1", json!({"retries": 3}), now);
  flush(&mut q);
  let t = take_until(&mut q, 1, now);
  for i in 1..=100 {
    assert!(q.progress(t[0].0, t[0].1, &i.to_string()));
  }
  q.end_batch();
  // flush() covers the progress reported so far.
  flush(&mut q);
  let progress = |env: &Env| {
    env
      .db(id)
      .job
      .extra
      .and_then(|e| e.progress)
      .map(|p| p.to_string())
  };
  assert_eq!(progress(&env).as_deref(), Some("100"));
  // Another process's rescuer takes the job: the old attempt's progress
  // changes nothing in the database.
  let later = now + 16 * 60_000;
  let r = env
    .rt()
    .block_on(env.pg.rescue(later, 30_000))
    .expect("rescue");
  assert_eq!(r.retried, vec![id]);
  assert!(q.progress(t[0].0, t[0].1, "\"stale\""));
  q.end_batch();
  flush(&mut q);
  assert_eq!(progress(&env).as_deref(), Some("100"));
}

#[test]
fn dependants_failed_in_sql_fire_failed_events_after_the_commit_and_a_missing_dependency_is_decided_by_the_insert(
) {
  let Some(env) = env("pge_deps") else { return };
  let (mut q, calc) = env.queue(4, BackendOptions::default());
  q.set_events(true);
  let now = env.now();
  let root = add(&mut q, calc, "1", json!({"retries": 0}), now);
  let dep = add(
    &mut q,
    calc,
    "2",
    json!({"dependsOn": [root.to_string()]}),
    now,
  );
  let deeper = add(
    &mut q,
    calc,
    "3",
    json!({"dependsOn": [dep.to_string()]}),
    now,
  );
  // Named no job: `add` answers at once (no read on this thread) and the
  // insert records it failed; the other jobs of the store go on.
  let nowhere = JobId(u128::from(u64::MAX) << 64 | 9);
  let missing = add(
    &mut q,
    calc,
    "4",
    json!({"dependsOn": [nowhere.to_string()]}),
    now,
  );
  assert!(q.active() >= 4, "its own jobs keep the process alive");
  flush(&mut q);
  q.end_batch();
  assert_eq!(
    events(&mut q),
    vec![("failed".to_string(), missing.to_string())]
  );
  let m = env.db(missing).job;
  assert_eq!(m.status, Status::Failed);
  let e = m.last_error().expect("an error");
  assert_eq!(
    e.code.as_deref(),
    Some(crate::error::JobErrorCode::DependencyFailed.as_str())
  );
  assert!(e.message.contains("not found"), "{}", e.message);
  assert!(q.store_failure().is_none(), "the store keeps working");
  // The root fails for good: its dependants fail in the same commit, and
  // their events fire after it, in this process.
  let t = take_until(&mut q, 1, now);
  assert_eq!(t[0].2, root);
  q.settle(
    &format!(
      "[{},{},0,{{\"name\":\"Error\",\"message\":\"no\"}}]",
      t[0].0, t[0].1
    ),
    now,
  )
  .expect("settle");
  q.end_batch();
  flush(&mut q);
  q.end_batch();
  let mut got = events(&mut q);
  got.sort();
  let mut want = vec![
    ("failed".to_string(), root.to_string()),
    ("failed".to_string(), dep.to_string()),
    ("failed".to_string(), deeper.to_string()),
  ];
  want.sort();
  assert_eq!(got, want);
  assert_eq!(env.db(deeper).job.status, Status::Failed);
  // Nothing of its own left: the keep-alive ends.
  assert_eq!(q.active(), 0);
  q.check_invariants().expect("invariants");
}

#[test]
fn the_keep_alive_counts_this_processs_own_jobs_not_the_clusters() {
  let Some(env) = env("pge_alive") else { return };
  let opts = BackendOptions {
    poll: Duration::from_millis(50),
    ..BackendOptions::default()
  };
  let (mut q, calc) = env.queue(2, opts.clone());
  let (mut other, other_calc) = env.queue(2, opts);
  let now = env.now();
  // Another instance's delayed job does not keep this one alive.
  add(
    &mut other,
    other_calc,
    "x",
    json!({"delay": 3_600_000}),
    now,
  );
  flush(&mut other);
  // This one's delayed job does, before and after its commit.
  let mine = add(&mut q, calc, "1", json!({"delay": 3_600_000}), now);
  assert_eq!(q.active(), 1);
  flush(&mut q);
  q.end_batch();
  assert_eq!(q.active(), 1);
  // Taken elsewhere (cancelled in the database by another instance): the
  // next poll's check forgets it.
  env.rt().block_on(env.pg.cancel(mine, now)).expect("cancel");
  let mut left = q.active();
  for _ in 0..600 {
    if left == 0 {
      break;
    }
    std::thread::sleep(Duration::from_millis(50));
    left = q.active();
  }
  assert_eq!(left, 0, "forgotten once the check found it gone");
  // A job run here: counted until its outcome commits.
  let id = add(&mut q, calc, "2", json!({}), now);
  flush(&mut q);
  let t = take_until(&mut q, 1, now);
  assert_eq!(t[0].2, id);
  assert_eq!(q.active(), 1, "running");
  q.settle(&format!("[{}]", ok(&t[0])), now).expect("settle");
  q.end_batch();
  flush(&mut q);
  q.end_batch();
  assert_eq!(q.active(), 0);
  // A failed attempt back in line for a retry (an hour's backoff) counts
  // like a job added here, before and after its commit, through the polls'
  // checks.
  let r = add(
    &mut q,
    calc,
    "3",
    json!({"retries": 1, "backoff": 3_600_000}),
    now,
  );
  flush(&mut q);
  let t = take_until(&mut q, 1, now);
  assert_eq!(t[0].2, r);
  q.settle(
    &format!(
      "[{},{},0,{{\"name\":\"Error\",\"message\":\"again\"}}]",
      t[0].0, t[0].1
    ),
    now,
  )
  .expect("settle");
  q.end_batch();
  // (Its outcome is counted too until it commits: only "> 0" matters.)
  assert!(q.active() >= 1);
  flush(&mut q);
  q.end_batch();
  assert_eq!(env.db(r).job.status, Status::Pending);
  assert_eq!(q.active(), 1);
  // Many polls later (50 ms each): still counted.
  std::thread::sleep(Duration::from_millis(600));
  assert_eq!(q.active(), 1, "the retry keeps the process alive");
  drop(other);
}
