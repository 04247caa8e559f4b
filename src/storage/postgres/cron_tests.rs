//! Schedules shared by the cluster: real `Queue`s on [`PgBackend`]s (each
//! its own "process": pool, process row, tasks) on one schema, against the
//! PostgreSQL at 127.0.0.1:5432 (skipped with a message when no server
//! answers). Time is a manual clock shared by the queues and backends; the
//! queues tick at the same times and wait for their writes (flush marks),
//! so the runs are deterministic but for which process wins each fire. The
//! only waits are bounded loops until a process has heard of a change.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use serde_json::{json, Value};

use super::test_env::{self, flush, T0};
use super::*;
use crate::queue::{Queue, QueueConfig};
use crate::storage::Names;

/// `T0` is on a whole second, so a `* * * * * *` cron fires at T0 + k * SEC.
const SEC: u64 = 1_000;

/// The tests here run one at a time: each opens two or three backends,
/// and the shared server's connections are few.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The common fixture, holding [`SERIAL`] until its schema is dropped.
struct Env {
  env: test_env::Env,
  _serial: parking_lot::MutexGuard<'static, ()>,
}

impl Deref for Env {
  type Target = test_env::Env;

  fn deref(&self) -> &test_env::Env {
    &self.env
  }
}

fn env(tag: &str) -> Option<Env> {
  let serial = SERIAL.lock();
  Some(Env {
    env: test_env::env(tag)?,
    _serial: serial,
  })
}

impl Env {
  /// The schema's config with a small pool.
  fn small(&self) -> PgConfig {
    PgConfig {
      pool_size: 2,
      ..self.cfg()
    }
  }

  /// A backend of its own (pool, process row, tasks).
  fn backend(&self, names: &Names) -> PgBackend {
    self.backend_on(self.small(), names, BackendOptions::default())
  }

  /// A started queue on its own backend, calculation `tick` registered.
  fn queue(&self) -> (Queue, u32) {
    let qc = QueueConfig {
      max_queue_size: 100_000,
      ..QueueConfig::default()
    };
    self.started_queue("tick", qc, self.small(), BackendOptions::default())
  }

  /// The id of the job schedule `id` added for fire time `at`.
  fn job_of(&self, id: &str, at: u64) -> String {
    let s = quote_ident(&self.schema);
    let sql = format!(
      "SELECT id FROM {s}.job WHERE schedule_id = $1 AND fire_at = $2 \
       UNION ALL SELECT id FROM {s}.done WHERE schedule_id = $1 AND fire_at = $2"
    );
    let pg = self.pg.clone();
    let id = id.to_string();
    self.rt().block_on(async move {
      let c = pg.client().await.expect("client");
      let row = c
        .query_one(&sql, &[&id, &(at as i64)])
        .await
        .expect("one job");
      row.get::<_, PgId>(0).0.to_string()
    })
  }

  /// Jobs per fire time of schedule `id`, live and finished.
  fn fires(&self, id: &str) -> BTreeMap<u64, i64> {
    let s = quote_ident(&self.schema);
    let sql = format!(
      "SELECT fire_at, count(*) FROM (SELECT fire_at FROM {s}.job WHERE schedule_id = $1 \
       UNION ALL SELECT fire_at FROM {s}.done WHERE schedule_id = $1) f GROUP BY fire_at"
    );
    let pg = self.pg.clone();
    let id = id.to_string();
    self.rt().block_on(async move {
      let c = pg.client().await.expect("client");
      let rows = c.query(&sql, &[&id]).await.expect("fires");
      rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1)))
        .collect()
    })
  }
}

/// The queue's schedules (its `getScheduledJobs()`).
fn listed(q: &mut Queue) -> Vec<Value> {
  serde_json::from_str(&q.schedules_json(&Value::Null).expect("schedules")).expect("json")
}

/// Ticks `q` at `now` until `done` holds for its schedules (it has heard of
/// a change: NOTIFY, or the 1 s poll), bounded.
fn until_heard(q: &mut Queue, now: u64, done: impl Fn(&[Value]) -> bool) {
  for _ in 0..1_000 {
    q.tick(now);
    q.end_batch();
    if done(&listed(q)) {
      return;
    }
    std::thread::sleep(Duration::from_millis(10));
  }
  panic!("the change was not heard: {:?}", listed(q));
}

fn cron(id: &str, extra: Value) -> Value {
  // From 1 s on: nothing fires at the time it is made.
  let mut v = json!({
    "id": id, "kind": "cron", "expression": "* * * * * *", "tz": "UTC", "startAt": T0 + SEC,
  });
  if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
    m.extend(e);
  }
  v
}

fn ticks(env: &Env, queues: &mut [&mut Queue], from: u64, to: u64) {
  for k in from..=to {
    let now = T0 + k * SEC;
    env.set_now(now);
    // Each process evaluates every schedule, in a varying order.
    let n = queues.len();
    for i in 0..n {
      let q = &mut queues[(i + k as usize) % n];
      q.tick(now);
      q.end_batch();
    }
    for q in queues.iter_mut() {
      flush(q);
    }
  }
}

#[test]
fn two_queues_on_one_schema_insert_each_fire_time_once() {
  let Some(env) = env("cron_two") else { return };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  // Jobs pile up unrun here: overlap 'queue' fires anyway.
  a.schedule(
    calc,
    &cron("tick", json!({ "overlap": "queue" })),
    env.now(),
  )
  .expect("schedule");
  a.end_batch();
  flush(&mut a);
  // B hears of it (NOTIFY) without being told.
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  ticks(&env, &mut [&mut a, &mut b], 1, 30);
  let fires = env.fires("tick");
  assert!(
    fires.values().all(|&n| n == 1),
    "a fire time inserted twice: {fires:?}"
  );
  for k in 1..=30 {
    assert!(fires.contains_key(&(T0 + k * SEC)), "tick {k} missing");
  }
  // Both answer for the cluster (within a read): the last fire's job,
  // whichever process added it; lost fires are not skipped fires.
  ticks(&env, &mut [&mut a, &mut b], 31, 31);
  let last = T0 + 31 * SEC;
  let job = env.job_of("tick", last);
  for q in [&mut a, &mut b] {
    until_heard(q, last, |s| {
      s[0]["lastJobId"] == json!(job)
        && ["pending", "running"]
          .map(|x| json!(x))
          .contains(&s[0]["lastStatus"])
    });
    let s = &listed(q)[0];
    assert_eq!(s["lastRunAt"], json!(last));
    assert_eq!(s["runCount"], json!(31));
    assert_eq!(s["skippedFires"], json!(0));
    assert_eq!(s["nextRunAt"], json!(last + SEC));
  }
}

#[test]
fn a_schedule_changed_or_removed_by_one_process_changes_on_the_other() {
  let Some(env) = env("cron_change") else {
    return;
  };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  a.schedule(
    calc,
    &cron("tick", json!({ "overlap": "queue" })),
    env.now(),
  )
  .expect("schedule");
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  ticks(&env, &mut [&mut a, &mut b], 1, 3);
  // B disables it; A fires no more, even before it hears of it (the
  // stored schedule decides).
  assert!(b.set_schedule_enabled("tick", false, env.now()));
  b.end_batch();
  flush(&mut b);
  ticks(&env, &mut [&mut a], 4, 5);
  assert_eq!(env.fires("tick").len(), 3);
  until_heard(&mut a, env.now(), |s| s[0]["enabled"] == json!(false));
  // Enabled again from A: from now on, no replay of the disabled time.
  assert!(a.set_schedule_enabled("tick", true, T0 + 6 * SEC));
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s[0]["enabled"] == json!(true));
  ticks(&env, &mut [&mut a, &mut b], 6, 8);
  let fires: Vec<u64> = env.fires("tick").into_keys().collect();
  assert_eq!(
    fires,
    [1, 2, 3, 6, 7, 8].map(|k| T0 + k * SEC).to_vec(),
    "fired while disabled, or replayed"
  );
  // Removed by B: gone on A.
  assert!(b.unschedule("tick"));
  flush(&mut b);
  until_heard(&mut a, env.now(), |s| s.is_empty());
  ticks(&env, &mut [&mut a, &mut b], 9, 10);
  assert_eq!(env.fires("tick").len(), 6);
}

#[test]
fn misfires_apply_to_the_clusters_downtime_not_one_process() {
  let Some(env) = env("cron_misfire") else {
    return;
  };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  let spec = cron(
    "tick",
    json!({ "misfire": "catchUp", "maxCatchUp": 100, "overlap": "queue" }),
  );
  a.schedule(calc, &spec, env.now()).expect("schedule");
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  ticks(&env, &mut [&mut a, &mut b], 1, 5);
  // B stops at 5 s; A fires on until 20 s and stops: the cluster is down
  // from 20 s to 30 s.
  b.store_mut().close();
  ticks(&env, &mut [&mut a], 6, 20);
  a.store_mut().close();
  env.set_now(T0 + 30 * SEC);
  // B starts again (a new process): it catches up the cluster's missed
  // times (21 s to 30 s), not its own (6 s to 30 s).
  let (mut b2, calc2) = env.queue();
  // The app defines its schedules again at boot: the pending run stays.
  b2.schedule(calc2, &spec, env.now()).expect("schedule");
  b2.end_batch();
  b2.tick(env.now());
  b2.end_batch();
  flush(&mut b2);
  let fires = env.fires("tick");
  assert!(fires.values().all(|&n| n == 1), "{fires:?}");
  let times: Vec<u64> = fires.into_keys().collect();
  assert_eq!(times, (1..=30).map(|k| T0 + k * SEC).collect::<Vec<_>>());
}

#[test]
fn the_overlap_rule_sees_the_unfinished_job_another_process_fired() {
  let Some(env) = env("cron_overlap") else {
    return;
  };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  a.schedule(calc, &cron("tick", json!({})), env.now())
    .expect("schedule");
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  // A fires 1 s; its job is not finished when B evaluates 2 s and 3 s.
  ticks(&env, &mut [&mut a], 1, 1);
  ticks(&env, &mut [&mut b], 2, 3);
  assert_eq!(
    env.fires("tick").into_keys().collect::<Vec<_>>(),
    [T0 + SEC]
  );
  // Skipped times are neither fires nor skipped fires (the queue was not
  // full).
  until_heard(&mut b, env.now(), |s| s[0]["runCount"].as_u64() >= Some(1));
  assert_eq!(listed(&mut b)[0]["skippedFires"], json!(0));
  // Once it completed, B fires again. (Either process's claimer may hold
  // the job.)
  let mut done = None;
  for _ in 0..1_000 {
    for q in [&mut a, &mut b] {
      let mut out = String::new();
      if q.take(1, env.now(), &mut out) == 1 {
        let v: Vec<Value> =
          serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
        q.settle(&format!("[{},{},1,null]", v[0], v[1]), env.now())
          .expect("settle");
        flush(q);
        done = Some(());
      }
    }
    if done.is_some() {
      break;
    }
    std::thread::sleep(Duration::from_millis(10));
  }
  assert!(done.is_some(), "the fired job did not arrive");
  ticks(&env, &mut [&mut b], 4, 4);
  assert_eq!(
    env.fires("tick").into_keys().collect::<Vec<_>>(),
    [T0 + SEC, T0 + 4 * SEC]
  );
}

#[test]
fn max_runs_holds_for_the_cluster() {
  let Some(env) = env("cron_max") else { return };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  let spec = cron("tick", json!({ "maxRuns": 3, "overlap": "queue" }));
  a.schedule(calc, &spec, env.now()).expect("schedule");
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  ticks(&env, &mut [&mut a, &mut b], 1, 2);
  // A third process starts after two fires: it knows the cluster's count.
  let (mut c, _) = env.queue();
  ticks(&env, &mut [&mut a, &mut b, &mut c], 3, 8);
  let fires = env.fires("tick");
  assert_eq!(fires.len(), 3, "{fires:?}");
  assert!(fires.values().all(|&n| n == 1));
  until_heard(&mut c, env.now(), |s| s[0]["runCount"] == json!(3));
  assert_eq!(listed(&mut c)[0]["nextRunAt"], Value::Null);
}

#[test]
fn a_schedule_made_before_the_store_opened_joins_the_clusters() {
  let Some(env) = env("cron_early") else { return };
  let (mut a, calc) = env.queue();
  a.schedule(
    calc,
    &cron("tick", json!({ "overlap": "queue" })),
    env.now(),
  )
  .expect("schedule");
  a.end_batch();
  flush(&mut a);
  ticks(&env, &mut [&mut a], 1, 2);
  // A service defines its schedules before `start()` connects (the binding
  // holds a placeholder store meanwhile): the same one, and a new one.
  let mut b = Queue::new(QueueConfig::default(), env.now());
  b.await_store("postgres");
  let calc_b = b.register("tick", &Value::Null).expect("register");
  b.schedule(
    calc_b,
    &cron("tick", json!({ "overlap": "queue" })),
    env.now(),
  )
  .expect("schedule");
  b.schedule(
    calc_b,
    &cron(
      "tock",
      json!({ "overlap": "queue", "startAt": T0 + 3 * SEC }),
    ),
    env.now(),
  )
  .expect("schedule");
  let mut backend = env.backend(&Names::default());
  b.open_store(|names| {
    backend.set_names(names.clone());
    Ok(Box::new(backend) as Box<dyn crate::storage::Store>)
  })
  .expect("open");
  b.start(env.now());
  b.end_batch();
  flush(&mut b);
  // "tick" kept the cluster's state (no fire again at 1 s or 2 s), "tock"
  // is stored for every process.
  let s = listed(&mut b);
  assert_eq!(s.len(), 2);
  assert_eq!(s[0]["id"], json!("tick"));
  assert_eq!(s[0]["runCount"], json!(2));
  assert_eq!(s[0]["nextRunAt"], json!(T0 + 3 * SEC));
  until_heard(&mut a, env.now(), |s| s.len() == 2);
  ticks(&env, &mut [&mut a, &mut b], 3, 4);
  let tick: Vec<u64> = env.fires("tick").into_keys().collect();
  assert_eq!(tick, [1, 2, 3, 4].map(|k| T0 + k * SEC).to_vec());
  let tock: Vec<u64> = env.fires("tock").into_keys().collect();
  assert_eq!(tock, [3, 4].map(|k| T0 + k * SEC).to_vec());
}

#[test]
fn an_interval_created_by_two_processes_at_two_times_fires_on_one_grid() {
  let Some(env) = env("cron_grid") else { return };
  let (mut a, calc) = env.queue();
  let (mut b, calc_b) = env.queue();
  let every =
    json!({ "id": "beat", "kind": "interval", "intervalMs": 10 * SEC, "overlap": "queue" });
  a.schedule(calc, &every, env.now()).expect("schedule");
  a.end_batch();
  flush(&mut a);
  // B defines it 3 s later: its own grid would be 13 s, 23 s, ...; the
  // first creator's anchor is kept. (Whether B has already read A's copy
  // at this point depends on its 1 s poll in real time: not asserted.)
  b.schedule(calc_b, &every, T0 + 3 * SEC).expect("schedule");
  b.end_batch();
  flush(&mut b);
  // Once B has read the stored one (within a poll; real time, the manual
  // clock stands still), it is on the first grid.
  until_heard(&mut b, T0, |s| s[0]["nextRunAt"] == json!(T0 + 10 * SEC));
  ticks(&env, &mut [&mut a, &mut b], 1, 40);
  let fires: Vec<u64> = env.fires("beat").into_keys().collect();
  assert_eq!(fires, [10, 20, 30, 40].map(|k| T0 + k * SEC).to_vec());
}

#[test]
fn a_fired_job_with_dependencies_waits_for_them() {
  let Some(env) = env("cron_deps") else { return };
  let (mut a, calc) = env.queue();
  let dep = a
    .add(
      &[crate::queue::NewJob {
        calc,
        data: "1",
        context: "{}",
        options: crate::queue::JobOptions::default(),
      }],
      env.now(),
    )
    .expect("add")[0];
  a.end_batch();
  flush(&mut a);
  let spec = cron(
    "dep",
    json!({ "overlap": "queue", "jobOptions": { "dependsOn": [dep.to_string()] } }),
  );
  a.schedule(calc, &spec, env.now()).expect("schedule");
  a.end_batch();
  flush(&mut a);
  ticks(&env, &mut [&mut a], 1, 1);
  let state = |env: &Env| -> Vec<i16> {
    let s = quote_ident(&env.schema);
    let pg = env.pg.clone();
    env.rt().block_on(async move {
      let c = pg.client().await.expect("client");
      let sql = format!("SELECT state FROM {s}.job WHERE schedule_id = 'dep'");
      let rows = c.query(&sql, &[]).await.expect("state");
      rows.iter().map(|r| r.get(0)).collect()
    })
  };
  assert_eq!(state(&env), [Status::Waiting as i16]);
  // The dependency completes: the fired job is released.
  let mut done = false;
  for _ in 0..1_000 {
    let mut out = String::new();
    if a.take(1, env.now(), &mut out) == 1 {
      let v: Vec<Value> =
        serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
      assert_eq!(v[2], json!(dep.to_string()));
      a.settle(&format!("[{},{},1,null]", v[0], v[1]), env.now())
        .expect("settle");
      flush(&mut a);
      done = true;
      break;
    }
    std::thread::sleep(Duration::from_millis(10));
  }
  assert!(done, "the dependency did not arrive");
  let after = state(&env);
  assert_eq!(after.len(), 1);
  assert!(
    [Status::Pending as i16, Status::Running as i16].contains(&after[0]),
    "{after:?}"
  );
}

#[test]
fn a_fire_whose_key_a_live_job_holds_adds_nothing_and_names_that_job() {
  let Some(env) = env("cron_key") else { return };
  let (mut a, calc) = env.queue();
  let (mut b, _) = env.queue();
  let spec = cron(
    "keyed",
    json!({ "overlap": "queue", "jobOptions": { "key": "nightly" } }),
  );
  a.schedule(calc, &spec, env.now()).expect("schedule");
  a.end_batch();
  flush(&mut a);
  until_heard(&mut b, env.now(), |s| s.len() == 1);
  // Nobody runs the jobs: the first fire's job holds the key.
  ticks(&env, &mut [&mut a, &mut b], 1, 4);
  let fires: Vec<u64> = env.fires("keyed").into_keys().collect();
  assert_eq!(fires, [T0 + SEC]);
  let holder = env.job_of("keyed", T0 + SEC);
  for q in [&mut a, &mut b] {
    until_heard(q, env.now(), |s| s[0]["runCount"] == json!(4));
    assert_eq!(listed(q)[0]["lastJobId"], json!(holder));
  }
}
