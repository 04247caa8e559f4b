//! A real `Queue` on [`PgBackend`], against the PostgreSQL at
//! 127.0.0.1:5432 (own schema per test; skipped with a message when no
//! server answers). The queue's time is a manual clock shared with the
//! backend; the waits below (a take until a job arrives) are bounded loops
//! on the claimer task, never assertions on wall-clock time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::test_env::{add, cfg, env, flush, ok, take, take_until, Env, T0};
use super::*;
use crate::queue::{Queue, QueueConfig};
use crate::storage::{wait_flushed, Lease as StoreLease, Names, Settled, Store, NO_HINT};

#[test]
fn a_job_added_taken_and_settled_is_completed_in_the_database() {
  let Some(env) = env("pgb_ok") else { return };
  let (mut q, calc) = env.queue(4, BackendOptions::default());
  let now = env.now();
  let id = add(&mut q, calc, "{\"n\":1}", json!({}), now);
  flush(&mut q);
  assert_eq!(
    env.db(id).job.status,
    Status::Pending,
    "committed by add's mark"
  );
  let t = take_until(&mut q, 1, now);
  assert_eq!((t[0].2, t[0].3), (id, 1));
  assert_eq!(env.db(id).job.status, Status::Running);
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Running));
  q.settle(&format!("[{}]", ok(&t[0])), now).expect("settle");
  flush(&mut q);
  let done = env.db(id);
  assert_eq!(done.job.status, Status::Completed);
  assert_eq!(
    done.job.extra.as_ref().and_then(|e| e.result.as_deref()),
    Some("\"done\"")
  );
  assert_eq!(q.store().late_fenced(), 0);
  q.check_invariants().expect("invariants");
}

#[test]
fn a_take_with_an_empty_buffer_returns_at_once_and_the_job_arrives_later() {
  let Some(env) = env("pgb_nb") else { return };
  let (mut q, calc) = env.queue(4, BackendOptions::default());
  let now = env.now();
  let id = add(&mut q, calc, "1", json!({}), now);
  flush(&mut q);
  // The claimer claims nothing before the first take (it does not know
  // yet what the queue runs): this take finds the buffer empty and returns
  // without waiting for the database.
  assert!(take(&mut q, 4, now).is_empty());
  let t = take_until(&mut q, 1, now);
  assert_eq!(t[0].2, id);
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff_then_completes() {
  let Some(env) = env("pgb_retry") else { return };
  // Claimed when due (not ahead): the database shows the retry pending.
  let opts = BackendOptions {
    lookahead: Duration::ZERO,
    ..BackendOptions::default()
  };
  let (mut q, calc) = env.queue(2, opts);
  let now = env.now();
  let id = add(&mut q, calc, "1", json!({"retries": 1}), now);
  flush(&mut q);
  let t = take_until(&mut q, 1, now);
  q.settle(
    &format!(
      "[{},{},0,{{\"name\":\"Error\",\"message\":\"boom\"}}]",
      t[0].0, t[0].1
    ),
    now,
  )
  .expect("settle");
  assert_eq!(q.get(id).map(|j| j.status), Some(Status::Pending));
  flush(&mut q);
  let j = env.db(id);
  assert_eq!(j.job.status, Status::Pending);
  assert_eq!(j.job.attempts, 1);
  assert_eq!(j.job.run_at, now + 10, "the fixed backoff");
  assert_eq!(j.job.extra.as_ref().map_or(0, |e| e.errors.len()), 1);
  // Not due yet: nothing comes.
  assert!(take(&mut q, 2, now).is_empty());
  env.set_now(now + 10);
  let t = take_until(&mut q, 1, now + 10);
  assert_eq!((t[0].2, t[0].3), (id, 2));
  q.settle(&format!("[{}]", ok(&t[0])), now + 10)
    .expect("settle");
  flush(&mut q);
  let j = env.db(id);
  assert_eq!((j.job.status, j.job.attempts), (Status::Completed, 2));
}

#[test]
fn a_late_outcome_after_a_rescue_is_fenced_after_the_commit() {
  let Some(env) = env("pgb_rescue") else { return };
  let (mut a, calc) = env.queue(2, BackendOptions::default());
  let now = env.now();
  let id = add(&mut a, calc, "1", json!({"retries": 3}), now);
  flush(&mut a);
  let t = take_until(&mut a, 1, now);
  // Another process's rescuer, after the lease (15 min + 30 s) expired.
  let later = now + 16 * 60_000;
  let r = env
    .rt()
    .block_on(env.pg.rescue(later, 30_000))
    .expect("rescue");
  assert_eq!(r.retried, vec![id]);
  // The late outcome: answered at once, fenced by the commit.
  a.settle(&format!("[{}]", ok(&t[0])), later)
    .expect("settle");
  flush(&mut a);
  assert_eq!(a.store().late_fenced(), 1);
  let j = env.db(id);
  assert_eq!((j.job.status, j.job.attempts), (Status::Pending, 1));
  // Another process runs it.
  env.set_now(later);
  let (mut b, _) = env.queue(2, BackendOptions::default());
  let t = take_until(&mut b, 1, later);
  assert_eq!((t[0].2, t[0].3), (id, 2));
  b.settle(&format!("[{}]", ok(&t[0])), later)
    .expect("settle");
  flush(&mut b);
  assert_eq!(env.db(id).job.status, Status::Completed);
  assert_eq!(b.store().late_fenced(), 0);
}

#[test]
fn a_lease_that_is_not_the_current_claim_is_fenced_at_once() {
  let Some(env) = env("pgb_fence") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  let mut s = env.backend(&names, BackendOptions::default());
  let now = env.now();
  let mut ids = crate::job::IdGen::default();
  let mut job = crate::job::Job::new(ids.next(now), work, now, now, "1".into());
  job.max_retries = 0;
  s.insert(vec![job.clone()], &names).expect("insert");
  wait_flushed(&mut s).expect("flushed");
  let mut got = Vec::new();
  for _ in 0..2_000 {
    s.claim(1, now, &|n| n == work, &mut |j, l| got.push((j.id, l)))
      .expect("claim");
    if !got.is_empty() {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  let (id, lease) = got[0];
  let stale = StoreLease {
    claim: lease.claim.wrapping_add(1),
    ..lease
  };
  assert_eq!(
    s.complete(stale, id, "1", now).expect("complete"),
    Settled::Fenced
  );
  let unknown = StoreLease {
    owner: s.owner(),
    attempt: 1,
    hint: NO_HINT,
    claim: 0,
  };
  assert_eq!(
    s.complete(unknown, crate::job::JobId(7), "1", now)
      .expect("complete"),
    Settled::Fenced
  );
  assert!(s
    .complete(lease, id, "1", now)
    .expect("complete")
    .is_applied());
  assert_eq!(
    s.complete(lease, id, "1", now).expect("complete"),
    Settled::Fenced,
    "settled already"
  );
  wait_flushed(&mut s).expect("flushed");
  assert_eq!(env.db(id).job.status, Status::Completed);
  assert_eq!(s.late_fenced(), 0);
  s.close();
}

#[test]
fn two_queues_on_one_schema_share_two_thousand_jobs_each_run_once() {
  let Some(env) = env("pgb_two") else { return };
  let opts = BackendOptions {
    batch: 32,
    low_water: 16,
    ..BackendOptions::default()
  };
  let (mut a, calc_a) = env.queue(16, opts.clone());
  let (mut b, calc_b) = env.queue(16, opts);
  let now = env.now();
  const N: usize = 2_000;
  let mut added = Vec::with_capacity(N);
  for i in 0..N {
    // Both processes add.
    let (q, c) = if i % 2 == 0 {
      (&mut a, calc_a)
    } else {
      (&mut b, calc_b)
    };
    added.push(add(q, c, &i.to_string(), json!({}), now));
  }
  flush(&mut a);
  flush(&mut b);
  let mut runs: HashMap<JobId, u32> = HashMap::new();
  let mut per = [0usize; 2];
  let mut idle = 0;
  while runs.values().sum::<u32>() < N as u32 {
    let mut any = false;
    for (k, q) in [&mut a, &mut b].into_iter().enumerate() {
      let t = take(q, 16, now);
      if t.is_empty() {
        continue;
      }
      any = true;
      per[k] += t.len();
      for x in &t {
        *runs.entry(x.2).or_default() += 1;
      }
      let outs: Vec<String> = t.iter().map(ok).collect();
      q.settle(&format!("[{}]", outs.join(",")), now)
        .expect("settle");
    }
    if any {
      idle = 0;
    } else {
      idle += 1;
      assert!(idle < 2_000, "stalled after {} runs", runs.len());
      std::thread::sleep(Duration::from_millis(5));
    }
  }
  flush(&mut a);
  flush(&mut b);
  eprintln!("two queues: a ran {}, b ran {}", per[0], per[1]);
  assert_eq!(runs.len(), N);
  assert!(runs.values().all(|&n| n == 1), "each job ran once");
  assert!(added.iter().all(|id| runs.contains_key(id)));
  let c = env.counts();
  assert_eq!(c[Status::Completed as usize], N);
  assert_eq!(c[Status::Pending as usize] + c[Status::Running as usize], 0);
  assert_eq!(a.store().late_fenced() + b.store().late_fenced(), 0);
}

#[test]
fn the_claimer_says_when_jobs_arrive_in_an_empty_buffer() {
  let Some(env) = env("pgb_ready") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  let mut s = env.backend(&names, BackendOptions::default());
  let rang = Arc::new(AtomicU64::new(0));
  let r = rang.clone();
  s.set_on_ready(Arc::new(move || {
    r.fetch_add(1, Ordering::SeqCst);
  }));
  let now = env.now();
  let mut ids = crate::job::IdGen::default();
  let job = crate::job::Job::new(ids.next(now), work, now, now, "1".into());
  let id = job.id;
  s.insert(vec![job], &names).expect("insert");
  wait_flushed(&mut s).expect("flushed");
  let mut got = Vec::new();
  // The first claim finds nothing (the claimer learns here what runs).
  assert_eq!(
    s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
      .expect("claim"),
    0
  );
  for _ in 0..2_000 {
    if rang.load(Ordering::SeqCst) > 0 {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  assert_eq!(rang.load(Ordering::SeqCst), 1, "told once");
  assert_eq!(s.ready_len(), 1);
  s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![id]);
  s.close();
}

/// A queue on a backend whose cancel hook records the ids it hears.
fn queue_hearing_cancels(env: &Env) -> (Queue, u32, PgReader, Arc<Mutex<Vec<JobId>>>) {
  let mut names = Names::default();
  names.intern("work");
  let backend = env.backend(&names, BackendOptions::default());
  let heard = Arc::new(Mutex::new(Vec::new()));
  let h = heard.clone();
  backend.set_on_cancel(Arc::new(move |id| h.lock().push(id)));
  let reader = backend.reader();
  let mut q = Queue::with_store(QueueConfig::default(), env.now(), Box::new(backend), names);
  let calc = q.register("work", &Value::Null).expect("register");
  q.start(env.now());
  (q, calc, reader, heard)
}

/// Waits (bounded) until `heard` holds `id`.
fn hear(heard: &Mutex<Vec<JobId>>, id: JobId) {
  for _ in 0..2_000 {
    if heard.lock().contains(&id) {
      return;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  panic!("the cancel of {id} was never heard");
}

#[test]
fn a_cancel_by_this_process_or_another_aborts_the_slot_running_it() {
  let Some(env) = env("pgb_cancel") else { return };
  let (mut q, calc, reader, heard) = queue_hearing_cancels(&env);
  let now = env.now();
  let a = add(&mut q, calc, "1", json!({}), now);
  let b = add(&mut q, calc, "2", json!({}), now);
  flush(&mut q);
  let t = take_until(&mut q, 2, now);
  let slot_of = |id: JobId| t.iter().find(|x| x.2 == id).copied().expect("taken");
  // This process's reader: the hook is called once the cancel committed.
  assert_eq!(
    env.rt().block_on(reader.cancel(a)).expect("cancel"),
    Some(Status::Running)
  );
  assert!(heard.lock().contains(&a), "told at the commit");
  assert!(q.abort_cancelled(a, now), "a ran here");
  assert!(!q.abort_cancelled(a, now), "aborted once");
  assert!(q.has_news(), "the abort is news for JavaScript");
  // Another process (the SQL core directly): heard by NOTIFY.
  assert_eq!(
    env.rt().block_on(env.pg.cancel(b, now)).expect("cancel"),
    Some(Status::Running)
  );
  hear(&heard, b);
  assert!(q.abort_cancelled(b, now));
  // The handlers' late outcomes change nothing.
  let (sa, sb) = (slot_of(a), slot_of(b));
  q.settle(&format!("[{},{}]", ok(&sa), ok(&sb)), now)
    .expect("settle");
  flush(&mut q);
  assert_eq!(q.late_outcomes(), 2);
  assert_eq!(env.db(a).job.status, Status::Cancelled);
  assert_eq!(env.db(b).job.status, Status::Cancelled);
  q.drain();
  q.check_invariants().expect("invariants");
  // A cancelled job retried runs again here.
  assert!(env.rt().block_on(reader.retry(a)).expect("retry"));
  assert!(
    !env.rt().block_on(reader.retry(a)).expect("retry"),
    "pending now"
  );
  let again = take_until(&mut q, 1, now);
  assert_eq!((again[0].2, again[0].3), (a, 1), "attempts reset");
}

#[test]
fn a_retry_is_refused_while_another_unfinished_job_holds_its_key() {
  let Some(env) = env("pgb_rkey") else { return };
  let (mut q, calc, reader, _) = queue_hearing_cancels(&env);
  let now = env.now();
  let a = add(&mut q, calc, "1", json!({"key": "k"}), now);
  flush(&mut q);
  assert_eq!(
    env.rt().block_on(reader.cancel(a)).expect("cancel"),
    Some(Status::Pending)
  );
  let b = add(&mut q, calc, "2", json!({"key": "k", "delay": 60_000}), now);
  flush(&mut q);
  assert_ne!(a, b);
  assert!(!env.rt().block_on(reader.retry(a)).expect("retry"));
  assert_eq!(env.db(a).job.status, Status::Cancelled, "left as it was");
  assert!(env
    .rt()
    .block_on(reader.cancel(b))
    .expect("cancel")
    .is_some());
  assert!(env.rt().block_on(reader.retry(a)).expect("retry"));
  assert_eq!(env.db(a).job.status, Status::Pending);
}

#[test]
fn a_delayed_job_is_claimed_when_due_not_at_the_next_poll() {
  let Some(env) = env("pgb_due") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  // A real clock (the claimer's timer sleeps until the due time the insert
  // notice names), and a poll far longer than the wait allowed below: only
  // the timer can claim the job in time.
  let start = std::time::Instant::now();
  let clock: ClusterClock = Arc::new(move || T0 + start.elapsed().as_millis() as u64);
  let opts = BackendOptions {
    poll: Duration::from_secs(600),
    heartbeat: None,
    ..BackendOptions::default()
  };
  let schema = env.schema.clone();
  let c = clock.clone();
  let mut s = env
    .rt()
    .block_on(async move {
      let pg = PgStore::connect(&cfg(&schema)).await?;
      PgBackend::open(pg, names_of(work), c, opts).await
    })
    .expect("open the backend");
  let rang = Arc::new(AtomicU64::new(0));
  let r = rang.clone();
  s.set_on_ready(Arc::new(move || {
    r.fetch_add(1, Ordering::SeqCst);
  }));
  let now = clock();
  // The first claim tells the claimer what runs (nothing is due yet).
  let mut got = Vec::new();
  assert_eq!(
    s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
      .expect("claim"),
    0
  );
  let mut ids = crate::job::IdGen::default();
  let job = crate::job::Job::new(ids.next(now), work, now, now + 300, "1".into());
  let id = job.id;
  s.insert(vec![job], &names_of(work)).expect("insert");
  wait_flushed(&mut s).expect("flushed");
  // No take from here on (a take wakes the claimer too): wait, bounded by
  // 60 s (the poll is 600 s), for the claimer to say the job arrived.
  for _ in 0..12_000 {
    if rang.load(Ordering::SeqCst) > 0 {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  assert_eq!(
    rang.load(Ordering::SeqCst),
    1,
    "claimed by the due-time timer"
  );
  s.claim(4, clock(), &|n| n == work, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![id]);
  s.close();
}

fn names_of(work: u32) -> Names {
  let mut names = Names::default();
  assert_eq!(names.intern("work"), work);
  names
}
