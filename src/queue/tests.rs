//! Unit tests of the queue state machine, and a property test: random
//! sequences of operations never break its invariants.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn queue(max_workers: u32) -> (Queue, u32) {
  let cfg = QueueConfig {
    max_workers,
    max_queue_size: 1_000,
    default_backoff: crate::job::Backoff {
      kind: crate::job::BackoffKind::Fixed,
      delay_ms: 10,
      max_delay_ms: 0,
      jitter: 0.0,
    },
    ..QueueConfig::default()
  };
  let mut q = Queue::new(cfg, 0);
  let calc = q.register("calc", &Value::Null).expect("register");
  q.start(0);
  (q, calc)
}

/// Adds one job of `calc` with `options` (JSON, as JavaScript passes them).
pub(crate) fn add(q: &mut Queue, calc: u32, data: &str, options: Value, now: u64) -> JobId {
  let options =
    JobOptions::parse(&options, "options", q.config().default_backoff).expect("options");
  q.add(
    &[NewJob {
      calc,
      data,
      context: "{}",
      options,
    }],
    now,
  )
  .expect("add")[0]
}

/// Takes up to `n` jobs; returns (slot, seq, data) of each.
fn take(q: &mut Queue, n: usize, now: u64) -> Vec<(u32, u32, String)> {
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
        c[5].to_string(),
      )
    })
    .collect()
}

fn ok(slot: u32, seq: u32) -> String {
  format!("[{slot},{seq},1,\"done\"]")
}

fn err(slot: u32, seq: u32, kind: u8) -> String {
  format!("[{slot},{seq},{kind},{{\"name\":\"Error\",\"message\":\"boom\",\"stack\":\"at x\"}}]")
}

#[test]
fn priority_then_fifo() {
  let (mut q, c) = queue(1);
  add(&mut q, c, "1", json!({"priority": "low"}), 0);
  add(&mut q, c, "2", json!({"priority": "medium"}), 0);
  add(&mut q, c, "3", json!({"priority": "high"}), 0);
  add(&mut q, c, "4", json!({"priority": "high"}), 0);
  add(&mut q, c, "5", json!({"priority": 0}), 0);
  let mut order = vec![];
  for t in 1..=5 {
    let got = take(&mut q, 10, t);
    assert_eq!(got.len(), 1, "one worker");
    order.push(got[0].2.clone());
    q.settle(&ok(got[0].0, got[0].1), t).expect("settle");
  }
  assert_eq!(order, ["5", "3", "4", "2", "1"]);
  q.check_invariants().expect("invariants");
}

#[test]
fn concurrency_is_capped() {
  let (mut q, c) = queue(3);
  for i in 0..10 {
    add(&mut q, c, &i.to_string(), Value::Null, 0);
  }
  assert_eq!(take(&mut q, 100, 1).len(), 3);
  assert_eq!(take(&mut q, 100, 1).len(), 0);
  assert_eq!(q.running_count(), 3);
}

#[test]
fn error_retries_with_backoff_then_fails() {
  let (mut q, c) = queue(1);
  let id = add(
    &mut q,
    c,
    "1",
    json!({"retries": 1, "backoff": {"type": "fixed", "delay": 100}}),
    0,
  );
  let a = take(&mut q, 1, 0);
  q.settle(&err(a[0].0, a[0].1, 0), 5).expect("settle");
  assert_eq!(
    q.get(id).map(|j| (j.status, j.run_at)),
    Some((Status::Pending, 105))
  );
  assert!(take(&mut q, 1, 104).is_empty(), "not due yet");
  assert_eq!(q.plan_wake(), 105);
  let b = take(&mut q, 1, 105);
  assert_eq!(b.len(), 1);
  q.settle(&err(b[0].0, b[0].1, 0), 110).expect("settle");
  let j = q.get(id).expect("job");
  assert_eq!((j.status, j.attempts), (Status::Failed, 2));
  assert_eq!(j.extra.as_ref().map(|o| o.errors.len()), Some(2));
  q.check_invariants().expect("invariants");
}

#[test]
fn unrecoverable_fails_at_once() {
  let (mut q, c) = queue(1);
  let id = add(&mut q, c, "1", json!({"retries": 5}), 0);
  let a = take(&mut q, 1, 0);
  q.settle(&err(a[0].0, a[0].1, 2), 1).expect("settle");
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Failed));
}

#[test]
fn timeout_aborts_and_late_outcome_is_ignored() {
  let (mut q, c) = queue(1);
  q.set_events(true);
  let id = add(&mut q, c, "1", json!({"timeout": 50, "retries": 0}), 0);
  let a = take(&mut q, 1, 0);
  q.tick(49);
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Running));
  q.tick(50);
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Timeout));
  let drained: Value = serde_json::from_str(&q.drain()).expect("json");
  assert_eq!(drained[0], json!([a[0].0, a[0].1, 0]));
  assert_eq!(drained[1][0][0], "timedOut");
  q.settle(&ok(a[0].0, a[0].1), 60).expect("settle");
  assert_eq!(q.late_outcomes(), 1);
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Timeout));
  q.check_invariants().expect("invariants");
}

#[test]
fn cancel_pending_and_running_then_retry() {
  let (mut q, c) = queue(1);
  let a = add(&mut q, c, "1", Value::Null, 0);
  let b = add(&mut q, c, "2", Value::Null, 0);
  let running = take(&mut q, 1, 0);
  assert!(q.cancel(b, 1).expect("cancel"));
  assert!(q.cancel(a, 1).expect("cancel"));
  assert!(!q.cancel(a, 1).expect("cancel"), "already cancelled");
  assert!(q.has_news(), "the running one must be aborted");
  assert_eq!(q.count(Status::Cancelled), 2);
  q.settle(&ok(running[0].0, running[0].1), 2)
    .expect("settle");
  assert_eq!(q.late_outcomes(), 1);
  assert_eq!(q.retry(a, 3), Ok(true));
  assert_eq!(q.retry(a, 3), Ok(false), "pending now");
  // The cancelled attempt's worker is free once its abort was drained.
  q.drain();
  let again = take(&mut q, 5, 3);
  assert_eq!(again.len(), 1);
  assert_eq!(
    q.get(a).map(|j| (j.status, j.attempts)),
    Some((Status::Running, 1))
  );
  q.check_invariants().expect("invariants");
}

#[test]
fn queue_full_adds_nothing() {
  let cfg = QueueConfig {
    max_queue_size: 2,
    ..QueueConfig::default()
  };
  let mut q = Queue::new(cfg, 0);
  let c = q.register("c", &Value::Null).expect("register");
  let job = NewJob {
    calc: c,
    data: "1",
    context: "{}",
    options: JobOptions::default(),
  };
  let e = q
    .add(&[job.clone(), job.clone(), job.clone()], 0)
    .expect_err("full");
  assert_eq!(e.code(), "ERR_QUEUE_FULL");
  assert_eq!(q.count(Status::Pending), 0);
  q.add(&[job.clone(), job.clone()], 0).expect("fits");
  assert_eq!(
    q.add(&[job], 0).map_err(|e| e.code()),
    Err("ERR_QUEUE_FULL")
  );
}

#[test]
fn payload_limit() {
  let cfg = QueueConfig {
    max_payload_bytes: 10,
    ..QueueConfig::default()
  };
  let mut q = Queue::new(cfg, 0);
  let c = q.register("c", &Value::Null).expect("register");
  let big = NewJob {
    calc: c,
    data: "\"0123456789\"",
    context: "{}",
    options: JobOptions::default(),
  };
  assert_eq!(
    q.add(&[big], 0).map_err(|e| e.code()),
    Err("ERR_PAYLOAD_TOO_LARGE")
  );
  assert_eq!(q.count(Status::Pending), 0);
}

#[test]
fn prune_removes_only_old_finished_jobs() {
  let (mut q, c) = queue(2);
  let a = add(&mut q, c, "1", Value::Null, 0);
  let b = add(&mut q, c, "2", Value::Null, 0);
  let t = take(&mut q, 2, 0);
  q.settle(&ok(t[0].0, t[0].1), 10).expect("settle");
  q.settle(&ok(t[1].0, t[1].1), 20).expect("settle");
  assert_eq!(q.prune(15).expect("prune"), 1);
  assert!(q.get(a).is_none());
  assert!(q.get(b).is_some());
  q.check_invariants().expect("invariants");
}

/// A slot whose attempt timed out or was cancelled is handed out again only
/// after JavaScript drained the abort (issue 17, bug 1): otherwise the new
/// attempt takes the slot and the old one's abort finds nobody to abort.
#[test]
fn aborted_slot_is_reused_only_after_drain() {
  let (mut q, c) = queue(2);
  let a = add(&mut q, c, "1", json!({"timeout": 50, "retries": 0}), 0);
  let b = add(&mut q, c, "2", Value::Null, 0);
  add(&mut q, c, "3", Value::Null, 0);
  add(&mut q, c, "4", Value::Null, 0);
  let t = take(&mut q, 2, 0);
  assert_eq!(t.len(), 2);
  q.tick(50);
  assert_eq!(q.get(a).map(|j| j.status), Some(Status::Timeout));
  assert!(q.cancel(b, 51).expect("cancel"));
  assert!(
    take(&mut q, 2, 52).is_empty(),
    "slots reused before their aborts were drained"
  );
  assert_eq!(q.running_count(), 0);
  q.check_invariants().expect("invariants");
  let drained: Value = serde_json::from_str(&q.drain()).expect("json");
  assert_eq!(drained[0].as_array().map(|a| a.len()), Some(6));
  assert_eq!(take(&mut q, 2, 53).len(), 2);
  q.check_invariants().expect("invariants");
}

#[test]
fn stop_aborts_running_and_keeps_pending() {
  let (mut q, c) = queue(1);
  let a = add(&mut q, c, "1", Value::Null, 0);
  add(&mut q, c, "2", Value::Null, 0);
  take(&mut q, 1, 0);
  q.begin_stop();
  assert!(take(&mut q, 1, 1).is_empty());
  assert_eq!(q.finish_stop(2), 1);
  assert_eq!(
    q.get(a).map(|j| (j.status, j.attempts)),
    Some((Status::Pending, 0)),
    "a graceful stop does not count the aborted attempt"
  );
  assert_eq!(q.count(Status::Pending), 2);
  q.check_invariants().expect("invariants");
}

#[derive(Debug, Clone)]
enum Op {
  Add {
    delay: u64,
    retries: u32,
    priority: u8,
  },
  Take(usize),
  SettleOk(usize),
  SettleErr(usize, bool),
  Late(u32),
  Tick(u64),
  Cancel(usize),
  Retry(usize),
  Prune,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    (0u64..50, 0u32..3, 0u8..4).prop_map(|(delay, retries, priority)| Op::Add {
      delay,
      retries,
      priority
    }),
    (1usize..5).prop_map(Op::Take),
    (0usize..8).prop_map(Op::SettleOk),
    (0usize..8, any::<bool>()).prop_map(|(i, u)| Op::SettleErr(i, u)),
    (0u32..40).prop_map(Op::Late),
    (0u64..80).prop_map(Op::Tick),
    (0usize..40).prop_map(Op::Cancel),
    (0usize..40).prop_map(Op::Retry),
    Just(Op::Prune),
  ]
}

proptest! {
  #[test]
  fn random_operations_keep_invariants(ops in proptest::collection::vec(op(), 1..120)) {
    let (mut q, c) = queue(3);
    let mut now = 0u64;
    let mut ids: Vec<JobId> = vec![];
    let mut held: Vec<(u32, u32)> = vec![];
    for op in ops {
      match op {
        Op::Add { delay, retries, priority } => {
          let p = ["high", "medium", "low", "medium"][priority as usize];
          let o = json!({"delay": delay, "retries": retries, "priority": p, "timeout": 30});
          ids.push(add(&mut q, c, "1", o, now));
        }
        Op::Take(n) => held.extend(take(&mut q, n, now).into_iter().map(|(s, q, _)| (s, q))),
        Op::SettleOk(i) if i < held.len() => {
          let (s, sq) = held.remove(i);
          q.settle(&ok(s, sq), now).expect("settle");
        }
        Op::SettleErr(i, unrecoverable) if i < held.len() => {
          let (s, sq) = held.remove(i);
          q.settle(&err(s, sq, if unrecoverable { 2 } else { 0 }), now).expect("settle");
        }
        Op::Late(seq) => { q.settle(&ok(0, seq + 10_000), now).expect("settle"); }
        Op::Tick(dt) => { now += dt; q.tick(now); }
        Op::Cancel(i) if i < ids.len() => { q.cancel(ids[i], now).expect("cancel"); }
        Op::Retry(i) if i < ids.len() => { let _ = q.retry(ids[i], now); }
        Op::Prune => { q.prune(now.saturating_sub(20)).expect("prune"); }
        _ => {}
      }
      q.drain();
      prop_assert!(q.running_count() <= 3);
      if let Err(e) = q.check_invariants() {
        prop_assert!(false, "{}", e);
      }
    }
  }
}

#[test]
fn unknown_dependencies_are_refused_before_anything_is_written() {
  let (mut q, c) = queue(1);
  let a = add(&mut q, c, "1", Value::Null, 0);
  let missing = "01a22572-de9e-7000-a52f-8c5acf718cbf";
  for deps in [json!([missing]), json!(["not-an-id"])] {
    let options = JobOptions::parse(
      &json!({ "dependsOn": deps }),
      "options",
      q.config().default_backoff,
    )
    .expect("options");
    let job = NewJob {
      calc: c,
      data: "2",
      context: "{}",
      options,
    };
    let ok = NewJob {
      calc: c,
      data: "3",
      context: "{}",
      options: JobOptions::default(),
    };
    let e = q.add(&[ok, job], 0).expect_err("unknown");
    assert_eq!(e.code(), "ERR_DEPENDENCY_NOT_FOUND");
    assert!(e.to_string().contains("jobs[1]"), "{e}");
  }
  assert_eq!(q.count(Status::Pending), 1, "nothing half-added");
  let options = JobOptions::parse(
    &json!({ "dependsOn": [a.to_string()] }),
    "options",
    q.config().default_backoff,
  )
  .expect("options");
  let b = q
    .add(
      &[NewJob {
        calc: c,
        data: "2",
        context: "{}",
        options,
      }],
      0,
    )
    .expect("add")[0];
  assert_eq!(q.get(b).map(|j| j.status), Some(Status::Waiting));
  q.set_events(true);
  let t = take(&mut q, 1, 1);
  q.settle(&err(t[0].0, t[0].1, 2), 2).expect("settle");
  q.end_batch();
  let drained: Value = serde_json::from_str(&q.drain()).expect("json");
  let kinds: Vec<&str> = drained[1]
    .as_array()
    .map(|a| a.iter().filter_map(|e| e[0].as_str()).collect())
    .unwrap_or_default();
  assert_eq!(kinds, vec!["failed", "failed"], "the job and its dependant");
  assert_eq!(q.get(b).map(|j| j.status), Some(Status::Failed));
  q.check_invariants().expect("invariants");
}

/// The caller (JavaScript) emits `completed` events itself only when every
/// outcome of the batch is current; otherwise they are recorded here.
#[test]
fn caller_emits_completed_only_when_every_outcome_is_current() {
  let (mut q, c) = queue(3);
  q.set_events(true);
  for i in 0..3 {
    add(&mut q, c, &i.to_string(), Value::Null, 0);
  }
  let t = take(&mut q, 3, 1);
  let batch = format!("[{},{},1,1,{},{},1,2]", t[0].0, t[0].1, t[1].0, t[1].1);
  assert_eq!(q.settle_with(&batch, 2, true), Ok((2, true)));
  assert!(!q.has_news(), "no completed event recorded");
  assert_eq!(q.count(Status::Completed), 2);

  // One stale outcome (already settled) in the batch: recorded as events.
  let batch = format!("[{},{},1,3,{},{},1,1]", t[2].0, t[2].1, t[0].0, t[0].1);
  assert_eq!(q.settle_with(&batch, 3, true), Ok((2, false)));
  assert_eq!(q.late_outcomes(), 1);
  let drained: Value = serde_json::from_str(&q.drain()).expect("json");
  assert_eq!(drained[1].as_array().map(|a| a.len()), Some(1));
  assert_eq!(drained[1][0][0], "completed");
  assert_eq!(drained[1][0][4], 3);

  // The same slot twice in one batch: the second is late.
  add(&mut q, c, "9", Value::Null, 4);
  let u = take(&mut q, 1, 4);
  let batch = format!("[{0},{1},1,5,{0},{1},1,6]", u[0].0, u[0].1);
  assert_eq!(q.settle_with(&batch, 5, true), Ok((2, false)));
  assert_eq!(q.late_outcomes(), 2);
  q.check_invariants().expect("invariants");
}

#[test]
fn malformed_outcomes_are_refused_and_change_nothing() {
  let (mut q, c) = queue(1);
  add(&mut q, c, "1", Value::Null, 0);
  let t = take(&mut q, 1, 1);
  for bad in [
    "[1,2,1]".to_string(),
    format!("[{},{},\"x\",1]", t[0].0, t[0].1),
    format!("[{},{},300,1]", t[0].0, t[0].1),
    format!("[{},-1,1,1]", t[0].0),
    "{}".to_string(),
  ] {
    let e = q.settle(&bad, 2).expect_err(&bad);
    assert!(e.to_string().contains("malformed outcomes"), "{e}");
  }
  assert_eq!(q.count(Status::Running), 1);
  q.settle(&ok(t[0].0, t[0].1), 3).expect("settle");
  assert_eq!(q.count(Status::Completed), 1);
}

/// The engine's timer loop: after each operation a dirty timer replans.
fn replan(q: &mut Queue, planned: &mut u64) {
  if q.take_timer_dirty() {
    *planned = q.plan_wake();
  }
}

/// Issue 17, bug 2: a job with both `delay` and `dependsOn` whose dependency
/// completes before its delay passes must wake the timer at its due time
/// (it stayed pending with idle workers until something else woke the timer).
#[test]
fn a_delayed_dependant_released_early_wakes_the_timer_at_its_due_time() {
  let (mut q, c) = queue(2);
  let mut planned = q.plan_wake();
  let dep = add(&mut q, c, "1", json!({}), 0);
  replan(&mut q, &mut planned);
  let waiting = add(
    &mut q,
    c,
    "2",
    json!({"delay": 5_000, "dependsOn": [dep.to_string()]}),
    0,
  );
  replan(&mut q, &mut planned);
  let got = take(&mut q, 10, 1);
  assert_eq!(got.len(), 1);
  replan(&mut q, &mut planned);
  q.settle(&ok(got[0].0, got[0].1), 2).expect("settle");
  q.end_batch();
  replan(&mut q, &mut planned);
  assert_eq!(q.get(waiting).map(|j| j.status), Some(Status::Pending));
  // The dependant is due at 5,000: the timer must wake by then.
  assert!(planned <= 5_000, "timer sleeps until {planned}");
  q.tick(planned);
  assert!(q.has_work(planned));
  assert_eq!(take(&mut q, 10, planned).len(), 1);
}

/// Issue 17, bug 8: schedule fires respect `maxQueueSize` (33 jobs were
/// queued against a limit of 3): a fire that would exceed it adds no job
/// and is counted on the schedule (`skippedFires`).
#[test]
fn schedule_fires_over_max_queue_size_are_skipped_and_counted() {
  let cfg = QueueConfig {
    max_queue_size: 3,
    ..QueueConfig::default()
  };
  let mut q = Queue::new(cfg, 0);
  let c = q.register("calc", &Value::Null).expect("register");
  q.set_monitor(
    crate::monitor::MonitorConfig::default(),
    ChannelsConfig::default(),
    true,
    0,
  );
  q.start(0);
  let spec = json!({"id": "tick", "kind": "interval", "intervalMs": 100, "startAt": 100, "overlap": "queue"});
  q.schedule(c, &spec, 0).expect("schedule");
  for t in 1..=10 {
    q.tick(t * 100);
    q.end_batch();
  }
  assert_eq!(q.count(Status::Pending), 3, "maxQueueSize holds");
  let list: Value =
    serde_json::from_str(&q.schedules_json(&Value::Null).expect("list")).expect("json");
  assert_eq!(list[0]["skippedFires"], json!(7));
  let alerts: Vec<&str> = q
    .monitor()
    .map(|m| {
      m.active_alerts()
        .iter()
        .map(|a| a.rule_id.as_str())
        .collect()
    })
    .unwrap_or_default();
  assert_eq!(
    alerts,
    vec!["schedule-skipped:tick"],
    "one alert, not seven"
  );
  assert!(q.drain().contains("skipped a fire"));
  // Room again: the next fire adds its job.
  let got = take(&mut q, 1, 1_001);
  q.settle(&ok(got[0].0, got[0].1), 1_002).expect("settle");
  q.tick(1_100);
  assert_eq!(q.count(Status::Pending), 3);
  q.check_invariants().expect("invariants");
}

#[test]
fn take_hands_raw_calculations_data_and_context_over_as_json_text() {
  let (mut q, calc) = queue(4);
  let plain = q.register("plain", &Value::Null).expect("register");
  assert!(q.set_raw(calc, true));
  assert!(!q.set_raw(99, true));
  add(&mut q, calc, r#"{"x":"a\"b"}"#, Value::Null, 0);
  add(&mut q, plain, r#"{"x":1}"#, Value::Null, 0);
  let mut out = String::new();
  assert_eq!(q.take(4, 0, &mut out), 2);
  let v: Vec<Value> =
    serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("json");
  assert_eq!(v[5], json!(r#"{"x":"a\"b"}"#));
  assert_eq!(v[6], json!("{}"));
  assert_eq!(v[12], json!({ "x": 1 }));
  assert_eq!(v[13], json!({}));
  // Registering again (new defaults) hands values over again.
  q.register("calc", &Value::Null).expect("register");
  add(&mut q, calc, "[1]", Value::Null, 0);
  assert_eq!(take(&mut q, 4, 0)[0].2, "[1]");
}

/// Issue 11 point 4: a fire goes through the same insert path as `add`. A
/// stored schedule whose job options cannot be read (a damaged file) used to
/// add its job with default options (no retries, no timeout, no
/// dependencies) as if nothing was wrong; now the fire adds no job and is
/// counted in `skippedFires`, like a fire over `maxQueueSize`.
#[test]
fn a_fire_whose_stored_options_cannot_be_read_adds_no_job_and_is_counted() {
  for bad in [
    json!("not json"),
    json!(r#"{"retries":"many"}"#),
    json!(r#"{"nope":1}"#),
    json!(r#"{"delay":5}"#),
  ] {
    let (mut q, c) = queue(1);
    let spec = json!({"id": "s", "kind": "interval", "intervalMs": 100, "startAt": 100,
      "overlap": "queue", "jobOptions": {"retries": 2}});
    q.schedule(c, &spec, 0).expect("schedule");
    // Damage the stored options, then restore the schedule as a restart would.
    let mut stored: Value =
      serde_json::to_value(q.scheduler.get("s").expect("schedule")).expect("json");
    stored["jobOptions"] = bad.clone();
    let damaged: Schedule = serde_json::from_value(stored).expect("schedule");
    q.scheduler = Scheduler::new();
    q.scheduler.restore(vec![damaged]);
    q.tick(100);
    q.end_batch();
    assert_eq!(
      q.count(Status::Pending),
      0,
      "{bad}: no job with made-up options"
    );
    let list: Value =
      serde_json::from_str(&q.schedules_json(&Value::Null).expect("list")).expect("json");
    assert_eq!(list[0]["skippedFires"], json!(1), "{bad}");
    q.check_invariants().expect("invariants");
  }
  // The same schedule with readable options adds its job with them.
  let (mut q, c) = queue(1);
  let spec = json!({"id": "s", "kind": "interval", "intervalMs": 100, "startAt": 100,
    "overlap": "queue", "jobOptions": {"retries": 2}});
  q.schedule(c, &spec, 0).expect("schedule");
  q.tick(100);
  q.end_batch();
  assert_eq!(q.count(Status::Pending), 1);
  let id = q
    .scheduler
    .get("s")
    .and_then(|s| s.last_job_id.as_deref())
    .and_then(JobId::parse)
    .expect("the fire's job");
  assert_eq!(q.get(id).map(|j| j.max_retries), Some(2));
}

/// A fired job remembers its schedule (`scheduleId`); an added one has none.
/// A fire whose job options hold a key adds nothing while its last job
/// still holds it, even with `overlap: 'queue'`.
#[test]
fn fired_jobs_carry_their_schedule_id_and_keys_dedupe_fires() {
  let (mut q, c) = queue(1);
  let spec = json!({"id": "nightly", "kind": "interval", "intervalMs": 100, "startAt": 100,
    "overlap": "queue", "jobOptions": {"key": "nightly-run", "concurrencyKey": "tables"}});
  q.schedule(c, &spec, 0).expect("schedule");
  let added = add(&mut q, c, "1", json!({}), 0);
  for t in 1..=3 {
    q.tick(t * 100);
    q.end_batch();
  }
  assert_eq!(
    q.count(Status::Pending),
    2,
    "one fired job for three fires, one added"
  );
  let page: Value = serde_json::from_str(
    &q.jobs_json(&JobQuery {
      ascending: true,
      ..JobQuery::default()
    })
    .expect("jobs"),
  )
  .expect("json");
  let jobs = page["jobs"].as_array().expect("jobs");
  assert_eq!(jobs[0]["jobId"], json!(added.to_string()));
  assert_eq!(
    (
      &jobs[0]["scheduleId"],
      &jobs[0]["key"],
      &jobs[0]["concurrencyKey"]
    ),
    (&Value::Null, &Value::Null, &Value::Null)
  );
  assert_eq!(jobs[1]["scheduleId"], json!("nightly"));
  assert_eq!(jobs[1]["key"], json!("nightly-run"));
  assert_eq!(jobs[1]["concurrencyKey"], json!("tables"));
  let id = JobId::parse(jobs[1]["jobId"].as_str().expect("id")).expect("id");
  let status: Value =
    serde_json::from_str(&q.status_json(id).expect("read").expect("status")).expect("json");
  assert_eq!(status["scheduleId"], json!("nightly"));
  let list: Value =
    serde_json::from_str(&q.schedules_json(&Value::Null).expect("list")).expect("json");
  assert_eq!(list[0]["lastJobId"], json!(id.to_string()));
  q.check_invariants().expect("invariants");
}

/// Duplicates within one batch behave as if added one after the other, and
/// count nothing against `maxQueueSize`; a batch with a bad job changes no
/// job that holds a key.
#[test]
fn duplicates_in_one_batch_and_the_queue_limit() {
  let cfg = QueueConfig {
    max_queue_size: 2,
    ..QueueConfig::default()
  };
  let mut q = Queue::new(cfg, 0);
  let c = q.register("calc", &Value::Null).expect("register");
  let opts =
    |v: Value| JobOptions::parse(&v, "options", crate::job::Backoff::default()).expect("options");
  let job = |data: &'static str, o: Value| NewJob {
    calc: c,
    data,
    context: "{}",
    options: opts(o),
  };
  let r = json!({"key": "k", "onDuplicate": "replace"});
  let batch: Vec<NewJob<'_>> = (0..50)
    .map(|i| job(if i < 49 { "1" } else { "2" }, r.clone()))
    .chain([job("3", json!({}))])
    .collect();
  let ids = q
    .add(&batch, 0)
    .expect("50 duplicates and one more fit in 2");
  assert!(ids[..50].iter().all(|id| *id == ids[0]));
  assert_ne!(ids[50], ids[0]);
  assert_eq!(q.get(ids[0]).map(|j| j.data.to_string()), Some("2".into()));
  // Full now; a duplicate still returns its job.
  assert_eq!(
    q.add(&[job("4", r.clone())], 0).expect("duplicate"),
    vec![ids[0]]
  );
  let e = q
    .add(&[job("5", json!({"key": "new"}))], 0)
    .expect_err("full");
  assert_eq!(e.code(), "ERR_QUEUE_FULL");
  // All or nothing: a bad job leaves the keyed one as it was.
  let e = q
    .add(
      &[
        job("6", r.clone()),
        job("7", json!({"dependsOn": ["nope"]})),
      ],
      0,
    )
    .expect_err("bad");
  assert_eq!(e.code(), "ERR_DEPENDENCY_NOT_FOUND");
  assert_eq!(q.get(ids[0]).map(|j| j.data.to_string()), Some("4".into()));
  q.check_invariants().expect("invariants");
}

/// A calculation may give its jobs a default concurrency key, never a
/// unique key or a debounce (they are per job).
#[test]
fn a_calculation_may_not_set_per_job_keys() {
  let mut q = Queue::new(QueueConfig::default(), 0);
  for defaults in [json!({"key": "k"}), json!({"key": "k", "debounceMs": 5})] {
    let e = q.register("calc", &defaults).expect_err("per job");
    assert_eq!(e.code(), "ERR_INVALID_ARGUMENT");
    assert!(e.to_string().contains("per job"), "{e}");
  }
  let c = q
    .register("calc", &json!({"concurrencyKey": "one"}))
    .expect("a default concurrency key");
  let id = add(&mut q, c, "1", json!({}), 0);
  assert_eq!(
    q.get(id)
      .and_then(|j| j.concurrency_key().map(String::from)),
    Some("one".into())
  );
}

/// A memory store whose transitions fail on demand (a backend that lost
/// its database): every fallible transition returns `ERR_STORAGE`.
struct Faulty {
  inner: MemoryStore,
  down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Faulty {
  fn check(&self) -> Result<()> {
    if self.down.load(std::sync::atomic::Ordering::SeqCst) {
      return Err(Error::Storage("the database is down".into()));
    }
    Ok(())
  }
}

impl Store for Faulty {
  fn kind(&self) -> &'static str {
    "faulty"
  }
  fn insert(&mut self, jobs: Vec<Job>, names: &Names) -> Result<()> {
    self.check()?;
    Store::insert(&mut self.inner, jobs, names)
  }
  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> Result<usize> {
    self.check()?;
    Store::claim(&mut self.inner, max, now, runnable, visit)
  }
  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.inner.has_due(now, runnable)
  }
  fn owner(&self) -> u64 {
    self.inner.owner()
  }
  fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Result<Settled> {
    self.check()?;
    Store::complete(&mut self.inner, lease, id, result, now)
  }
  fn fail(
    &mut self,
    lease: Lease,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Result<Settled<crate::storage::Failed>> {
    self.check()?;
    Store::fail(&mut self.inner, lease, id, err, kind, now, rand)
  }
  fn keyed(&mut self, key: &str) -> Option<JobId> {
    self.inner.keyed(key)
  }
  fn update_unstarted(
    &mut self,
    id: JobId,
    change: &crate::storage::Unstarted<'_>,
    now: u64,
  ) -> Result<bool> {
    self.check()?;
    Store::update_unstarted(&mut self.inner, id, change, now)
  }
  fn cancel(&mut self, id: JobId, now: u64) -> Result<Option<Status>> {
    self.check()?;
    Store::cancel(&mut self.inner, id, now)
  }
  fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    self.check()?;
    Store::retry(&mut self.inner, id, now)
  }
  fn progress(&mut self, id: JobId, json: &str) -> Result<bool> {
    self.check()?;
    Store::progress(&mut self.inner, id, json)
  }
  fn recover_interrupted(&mut self, now: u64) -> Result<usize> {
    self.check()?;
    Store::recover_interrupted(&mut self.inner, now)
  }
  fn prune(&mut self, before: u64) -> Result<usize> {
    self.check()?;
    Store::prune(&mut self.inner, before)
  }
  fn get(&mut self, id: JobId) -> Result<Option<Job>> {
    self.inner.get(id)
  }
  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    self.inner.list(status, limit)
  }
  fn list_jobs(&mut self, filter: &crate::storage::JobFilter, names: &Names) -> Result<Vec<Job>> {
    self.inner.list_jobs(filter, names)
  }
  fn counts(&self) -> [usize; 7] {
    self.inner.counts()
  }
  fn unregistered(&self) -> usize {
    self.inner.unregistered()
  }
  fn registered(&mut self, name: u32) {
    self.inner.registered(name)
  }
  fn take_changed(&mut self) -> Vec<JobId> {
    self.inner.take_changed()
  }
  fn oldest_due(&self) -> Option<u64> {
    self.inner.oldest_due()
  }
  fn next_due(&self) -> Option<u64> {
    self.inner.next_due()
  }
  fn max_id(&self) -> Option<JobId> {
    self.inner.max_id()
  }
  fn set_weights(&mut self, weights: [i32; 3]) {
    self.inner.set_weights(weights)
  }
  fn check_invariants(&self) -> std::result::Result<(), String> {
    self.inner.check_invariants()
  }
}

/// A backend that fails: callers (add, cancel, retry) get `ERR_STORAGE`;
/// transitions nobody waits for (a claim, an outcome, the prune chore) are
/// recorded as the store's failure, which `add` then refuses with. Nothing
/// panics and nothing changes.
#[test]
fn storage_errors_reach_the_caller_or_are_recorded() {
  let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
  let store = Faulty {
    inner: MemoryStore::new(),
    down: down.clone(),
  };
  let cfg = QueueConfig {
    max_workers: 2,
    cleanup_interval_ms: 100,
    ..QueueConfig::default()
  };
  let mut q = Queue::with_store(cfg, 0, Box::new(store), Names::default());
  let calc = q.register("calc", &Value::Null).expect("register");
  q.start(0);
  let a = add(&mut q, calc, "1", Value::Null, 0);
  let b = add(&mut q, calc, "2", Value::Null, 0);
  let taken = take(&mut q, 1, 1);
  assert_eq!(taken.len(), 1);
  down.store(true, std::sync::atomic::Ordering::SeqCst);
  let code = |e: Error| e.code();
  // Callers are told.
  let opts =
    JobOptions::parse(&Value::Null, "options", q.config().default_backoff).expect("options");
  let added = q.add(
    &[NewJob {
      calc,
      data: "3",
      context: "{}",
      options: opts,
    }],
    2,
  );
  assert_eq!(added.map_err(code).err(), Some("ERR_STORAGE"));
  assert_eq!(q.cancel(b, 2).map_err(code).err(), Some("ERR_STORAGE"));
  assert_eq!(q.count(Status::Pending), 1, "b is still pending");
  assert_eq!(q.store_failure(), None, "told to the caller, not recorded");
  // A claim nobody waits for: nothing handed out, the error recorded.
  assert!(take(&mut q, 1, 3).is_empty());
  assert_eq!(q.store_failure().as_deref(), Some("the database is down"));
  // An outcome: the slot is released, the job stays running in the store.
  let (slot, seq, _) = taken[0].clone();
  assert_eq!(q.settle(&ok(slot, seq), 4).expect("settle"), 1);
  assert_eq!(q.get(a).map(|j| j.status), Some(Status::Running));
  // The prune chore.
  q.tick(1_000);
  // Back up: the recorded failure still refuses adds (like a failed write).
  down.store(false, std::sync::atomic::Ordering::SeqCst);
  let opts =
    JobOptions::parse(&Value::Null, "options", q.config().default_backoff).expect("options");
  let again = q.add(
    &[NewJob {
      calc,
      data: "4",
      context: "{}",
      options: opts,
    }],
    1_001,
  );
  assert_eq!(again.map_err(code).err(), Some("ERR_STORAGE"));
}

/// An outcome the queue still takes for current but whose lease the store
/// no longer honours (another process cancelled the job: here, the store
/// directly) changes nothing and is counted in `lateOutcomes`.
#[test]
fn outcomes_fenced_by_the_store_count_as_late() {
  let (mut q, calc) = queue(2);
  let a = add(&mut q, calc, "1", Value::Null, 0);
  let b = add(&mut q, calc, "2", json!({ "retries": 3 }), 0);
  let taken = take(&mut q, 2, 1);
  assert_eq!(taken.len(), 2);
  for id in [a, b] {
    assert_eq!(
      q.store_mut().cancel(id, 2).expect("cancel"),
      Some(Status::Running)
    );
  }
  let (sa, qa, _) = taken[0].clone();
  let (sb, qb, _) = taken[1].clone();
  let outcomes = format!("[{sa},{qa},1,\"done\",{sb},{qb},0,{{\"message\":\"boom\"}}]");
  assert_eq!(q.settle(&outcomes, 3).expect("settle"), 2);
  assert_eq!(q.late_outcomes(), 2);
  for id in [a, b] {
    let j = q.get(id).expect("job");
    assert_eq!((j.status, j.attempts), (Status::Cancelled, 1));
    assert!(j.extra.and_then(|e| e.result).is_none());
  }
  assert!(q.stats_json(3).contains("\"lateOutcomes\":2"));
  assert_eq!(q.running_count(), 0, "the workers are free");
}

/// A retry that would give a unique key two holders is refused: the key's
/// newer job runs instead. Once that one finished, the retry goes ahead.
#[test]
fn a_retry_is_refused_while_another_job_holds_its_key() {
  let (mut q, c) = queue(1);
  let first = add(&mut q, c, "1", json!({ "key": "table" }), 0);
  assert!(q.cancel(first, 1).expect("cancel"));
  let second = add(&mut q, c, "2", json!({ "key": "table" }), 2);
  assert_ne!(first, second, "the cancelled job no longer holds the key");
  assert_eq!(
    q.retry(first, 3),
    Ok(false),
    "the key is held by the second"
  );
  assert_eq!(q.get(first).map(|j| j.status), Some(Status::Cancelled));
  let running = take(&mut q, 1, 4);
  q.settle(&ok(running[0].0, running[0].1), 5)
    .expect("settle");
  q.end_batch();
  assert_eq!(q.retry(first, 6), Ok(true), "the key is free again");
  assert_eq!(q.get(first).map(|j| j.status), Some(Status::Pending));
  q.check_invariants().expect("invariants");
}

#[test]
fn an_add_while_the_durable_store_is_awaited_is_refused_not_lost() {
  let (mut q, calc) = queue(1);
  q.await_store("postgres");
  let options =
    JobOptions::parse(&json!({}), "options", q.config().default_backoff).expect("options");
  let job = NewJob {
    calc,
    data: "1",
    context: "{}",
    options,
  };
  match q.add(std::slice::from_ref(&job), 0) {
    Err(Error::Storage(m)) => assert!(m.contains("not open yet"), "{m}"),
    other => panic!("expected a storage error, got {other:?}"),
  }
  assert_eq!(q.queued(), 0);
  // Once a store is installed, adds go through.
  q.open_store(|_| Ok(Box::new(crate::storage::MemoryStore::new())))
    .expect("open");
  assert!(q.add(&[job], 0).is_ok());
}
