//! Adds claimed at once (fast.rs), against the PostgreSQL at
//! 127.0.0.1:5432 (own schema per test; skipped when no server answers):
//! which jobs qualify, the claim as the database holds it (fencing, rescue,
//! cancel, a lost answer released), and the backend putting them in its
//! ready buffer with no claim by the claimer.

use std::time::Duration;

use super::fast::pick;
use super::store_tests::env;
use super::tests::{admin, cfg, server_up, unique};
use super::*;
use crate::job::{Dependencies, IdGen, Priority};
use crate::storage::{wait_flushed, Names, Store};

const T0: u64 = 1_800_000_000_000;

struct Fx {
  store: PgStore,
  schema: String,
}

impl Drop for Fx {
  fn drop(&mut self) {
    self.store.close();
    admin(format!(
      "DROP SCHEMA IF EXISTS {} CASCADE",
      quote_ident(&self.schema)
    ));
  }
}

async fn fx(tag: &str) -> Option<Fx> {
  if !server_up() {
    return None;
  }
  let schema = unique(tag);
  let store = PgStore::connect(&cfg(&schema)).await.expect("connect");
  Some(Fx { store, schema })
}

fn jobs(n: usize, name: &str, now: u64) -> Vec<NewJob> {
  let mut g = IdGen::default();
  (0..n)
    .map(|i| NewJob::new(g.next(now), name, &format!("{{\"i\":{i}}}"), now))
    .collect()
}

#[test]
fn only_due_plain_jobs_of_known_calculations_qualify_up_to_the_room_in_claim_order() {
  let names = vec!["a".to_string()];
  let mut js = jobs(8, "a", T0);
  js[0].run_at = T0 + 1; // not due
  js[1].key = Some("k".into());
  js[2].concurrency_key = Some("c".into());
  js[3].deps = Some(Dependencies {
    ids: vec![js[0].id],
    ignore_failure: false,
  });
  js[4].schedule = Some(("s".into(), T0));
  js[5].name = "b".into(); // not run here
  js[7].priority = Priority::High;
  js[7].weight = -1;
  assert_eq!(pick(&js, T0, &names, 10), vec![js[7].id, js[6].id]);
  assert_eq!(pick(&js, T0, &names, 1), vec![js[7].id], "room for one");
  assert!(pick(&js, T0, &names, 0).is_empty());
  assert!(pick(&js, T0, &[], 10).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_added_claimed_are_leased_fenced_rescued_and_cancelled_as_claimed_ones() {
  let Some(fx) = fx("fast").await else { return };
  let dead = fx.store.register("b", 2, T0).await.expect("register");
  let alive = fx.store.register("a", 1, T0).await.expect("register");
  let mut js = jobs(4, "x", T0);
  js[3].key = Some("k".into());
  js[0].max_retries = 3;
  let want = [js[0].id, js[1].id, js[2].id, js[3].id];
  let mut o = ClaimOptions::new(dead, 0);
  o.default_lease_ms = 60_000;
  let got = fx
    .store
    .insert_claiming(&js, T0, &want, &o, T0 + 5)
    .await
    .expect("insert")
    .0;
  // The keyed one goes in as usual, pending.
  let ids: Vec<JobId> = got.iter().map(|j| j.job.id).collect();
  assert_eq!(ids, vec![js[0].id, js[1].id, js[2].id]);
  for j in &got {
    assert_eq!(j.job.status, Status::Running);
    assert_eq!(j.job.attempts, 1);
    assert_eq!(j.owner, Some(dead));
    assert_eq!(j.lease_until, Some(T0 + 5 + 60_000 + 30_000));
  }
  let k = fx.store.get(js[3].id).await.expect("get").expect("there");
  assert_eq!(k.job.status, Status::Pending);
  // A claim by another process finds only the pending one.
  let other = fx
    .store
    .claim(&ClaimOptions::new(alive, 10), T0 + 6)
    .await
    .expect("claim");
  assert_eq!(other.len(), 1);
  assert_eq!(other[0].job.id, js[3].id);
  // Cancel: as a claimed job.
  assert_eq!(
    fx.store.cancel(js[2].id, T0 + 7).await.expect("cancel"),
    Some(Status::Running)
  );
  // The process dies: its jobs are rescued, its late outcomes fenced.
  assert!(fx.store.heartbeat(alive, T0 + 31_000).await.expect("beat"));
  let r = fx.store.rescue(T0 + 31_000, 30_000).await.expect("rescue");
  assert_eq!(r.dead, vec![dead]);
  assert_eq!(r.retried, vec![js[0].id]);
  assert_eq!(r.failed, vec![js[1].id]);
  let late: Vec<Outcome> = got
    .iter()
    .map(|j| Outcome::completed(j.lease().expect("lease"), "late"))
    .collect();
  let a = fx.store.apply(&late, T0 + 32_000).await.expect("apply");
  assert_eq!(a.fenced.len(), 3);
  let j0 = fx.store.get(js[0].id).await.expect("get").expect("there");
  assert_eq!((j0.job.status, j0.job.attempts), (Status::Pending, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_an_insert_whose_answer_was_lost_is_released() {
  let Some(fx) = fx("fastlost").await else {
    return;
  };
  let me = fx.store.register("a", 1, T0).await.expect("register");
  let js = jobs(3, "x", T0);
  let ids: Vec<JobId> = js.iter().map(|j| j.id).collect();
  let o = ClaimOptions::new(me, 0);
  // An ordinary claim at another time keeps its jobs.
  let more = jobs(1, "y", T0);
  fx.store.insert(&more, T0).await.expect("insert");
  let kept = fx
    .store
    .claim(&ClaimOptions::new(me, 1), T0 + 1)
    .await
    .expect("claim");
  assert_eq!(kept.len(), 1);
  let got = fx
    .store
    .insert_claiming(&js, T0, &ids, &o, T0 + 2)
    .await
    .expect("insert")
    .0;
  assert_eq!(got.len(), 3);
  // The inserter retries as after a lost answer: nothing inserted twice,
  // and the claim at that time released.
  fx.store
    .insert_retrying(&js, T0 + 3, None)
    .await
    .expect("again");
  assert_eq!(
    fx.store
      .release_lost(me, &[T0 + 2], T0 + 3)
      .await
      .expect("release"),
    3
  );
  let c = fx.store.counts().await.expect("counts");
  assert_eq!(c[Status::Pending as usize], 3);
  assert_eq!(c[Status::Running as usize], 1);
  for id in ids {
    let j = fx.store.get(id).await.expect("get").expect("there");
    assert_eq!(
      (j.job.status, j.job.attempts, j.owner),
      (Status::Pending, 0, None)
    );
  }
}

#[test]
fn an_add_to_a_process_with_room_arrives_claimed_without_a_claim() {
  let Some(env) = env("pgb_fast") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  // No NOTIFY and a long poll: only the fast path can bring the job.
  let opts = BackendOptions {
    listen: false,
    poll: Duration::from_secs(600),
    ..BackendOptions::default()
  };
  let mut s = env.backend(&names, opts);
  let now = env.now();
  let mut ids = IdGen::default();
  let mut add = |s: &mut PgBackend| {
    let job = crate::job::Job::new(ids.next(now), work, now, now, "1".into());
    let id = job.id;
    s.insert(vec![job], &names).expect("insert");
    wait_flushed(s).expect("flushed");
    id
  };
  let wait_ready = |s: &PgBackend| {
    for _ in 0..2_000 {
      if s.ready_len() > 0 {
        return;
      }
      std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no job arrived");
  };
  // Before the first take the claimer does not know what runs here: the
  // job goes in pending, and the take's wake-up claims it (a short claim:
  // no backlog).
  let a = add(&mut s);
  let mut got = Vec::new();
  s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
    .expect("claim");
  wait_ready(&s);
  s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![a]);
  // Now an add arrives claimed by its insert (nothing else claims: no
  // NOTIFY, no poll, no take).
  let id = add(&mut s);
  wait_ready(&s);
  assert_eq!(s.ready_len(), 1);
  let db = env.db(id);
  assert_eq!(db.job.status, Status::Running);
  assert_eq!(db.owner, Some(s.owner() as i64));
  s.claim(4, now, &|n| n == work, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![a, id]);
  // A delayed add goes in pending.
  let job = crate::job::Job::new(ids.next(now), work, now, now + 500, "1".into());
  let delayed = job.id;
  s.insert(vec![job], &names).expect("insert");
  wait_flushed(&mut s).expect("flushed");
  assert_eq!(env.db(delayed).job.status, Status::Pending);
  assert_eq!(s.ready_len(), 0);
  s.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_adds_send_no_notify_and_the_rest_of_the_batch_goes_in_as_usual() {
  let Some(fx) = fx("fastrest").await else {
    return;
  };
  let me = fx.store.register("a", 1, T0).await.expect("register");
  let mut l = fx.store.listen().await.expect("listen");
  let mut js = jobs(3, "x", T0);
  js[1].run_at = T0 + 1_000;
  js[2].deps = Some(Dependencies {
    ids: vec![js[0].id],
    ignore_failure: false,
  });
  let o = ClaimOptions::new(me, 0);
  // Only the first: claimed, no notice.
  let got = fx
    .store
    .insert_claiming(&js[..1], T0, &[js[0].id], &o, T0 + 1)
    .await
    .expect("insert")
    .0;
  assert_eq!(got.len(), 1);
  // The other two (one delayed, one waiting on the claimed one): a notice
  // with the delayed one's time, the waiting one waits.
  let got = fx
    .store
    .insert_claiming(&js[1..], T0, &[], &o, T0 + 2)
    .await
    .expect("insert")
    .0;
  assert!(got.is_empty());
  let n = tokio::time::timeout(Duration::from_secs(10), l.recv())
    .await
    .expect("a notice");
  assert_eq!(
    n,
    Some(Notice::Inserted {
      earliest: T0 + 1_000
    })
  );
  assert!(l.try_recv().is_none(), "one notice, for the second insert");
  let w = fx.store.get(js[2].id).await.expect("get").expect("there");
  assert_eq!(w.job.status, Status::Waiting);
  let d = fx.store.get(js[1].id).await.expect("get").expect("there");
  assert_eq!(d.job.status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_time_ahead_of_the_clock_takes_only_what_the_clock_says_is_due() {
  let Some(fx) = fx("claimat").await else {
    return;
  };
  let me = fx.store.register("a", 1, T0).await.expect("register");
  let mut js = jobs(2, "x", T0);
  js[1].run_at = T0 + 500;
  fx.store.insert(&js, T0).await.expect("insert");
  // The claimer's claim times run ahead when it claims often.
  let o = ClaimOptions {
    at: Some(T0 + 600),
    ..ClaimOptions::new(me, 10)
  };
  let got = fx.store.claim(&o, T0).await.expect("claim");
  assert_eq!(got.len(), 1);
  assert_eq!(got[0].job.id, js[0].id);
  assert_eq!(got[0].job.started_at, T0 + 600, "the claim's time");
  // That claim's time identifies it (a lost answer releases it).
  assert_eq!(
    fx.store
      .release_lost(me, &[T0 + 600], T0 + 1)
      .await
      .expect("release"),
    1
  );
}

/// Waits (up to 10 s) until `id` is `status` in the database.
fn wait_db(env: &super::store_tests::Env, id: JobId, status: Status) -> PgJob {
  for _ in 0..2_000 {
    let j = env.db(id);
    if j.job.status == status {
      return j;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  panic!("{id:?} never became {status:?}");
}

#[test]
fn a_delayed_job_is_claimed_ahead_and_starts_here_no_earlier_than_due() {
  let Some(env) = env("pgb_ahead") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  // A long poll: the insert's notice and the due time drive the claims.
  let opts = BackendOptions {
    poll: Duration::from_secs(600),
    lookahead: Duration::from_millis(100),
    ..BackendOptions::default()
  };
  let mut s = env.backend(&names, opts);
  let now = env.now();
  let run = |n: u32| n == work;
  let mut got = Vec::new();
  // The first take tells the claimer what runs here.
  s.claim(4, now, &run, &mut |j, _| got.push(j.id))
    .expect("claim");
  let mut ids = IdGen::default();
  let mut delayed = |s: &mut PgBackend, by: u64| {
    let job = crate::job::Job::new(ids.next(now), work, now, now + by, "1".into());
    let id = job.id;
    s.insert(vec![job], &names).expect("insert");
    wait_flushed(s).expect("flushed");
    id
  };
  // Due within the lookahead: claimed at once (the clock stands still), held
  // here until due.
  let a = delayed(&mut s, 50);
  let db = wait_db(&env, a, Status::Running);
  assert_eq!(db.owner, Some(s.owner() as i64));
  let held = |s: &PgBackend, at: u64| {
    for _ in 0..2_000 {
      if s.next_due() == Some(at) {
        return;
      }
      std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no job held here for {at}");
  };
  held(&s, now + 50);
  assert!(!s.has_due(now + 49, &run));
  s.claim(4, now + 49, &run, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert!(got.is_empty(), "not before it is due");
  assert!(s.has_due(now + 50, &run));
  s.claim(4, now + 50, &run, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![a]);
  assert_eq!(s.next_due(), None);
  // Due later than the lookahead: pending until the claimer's timer says
  // (the clock stands still, so it stays pending).
  let b = delayed(&mut s, 60_000);
  std::thread::sleep(Duration::from_millis(300));
  assert_eq!(env.db(b).job.status, Status::Pending);
  // Cancelled while held here: never started.
  let c = delayed(&mut s, 80);
  wait_db(&env, c, Status::Running);
  held(&s, now + 80);
  let reader = s.reader();
  let was = env
    .rt()
    .block_on(reader.cancel(c))
    .expect("cancel")
    .expect("there");
  assert_eq!(was, Status::Running);
  s.claim(4, now + 100, &run, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![a], "the cancelled job did not start");
  // Held here at close: handed back, its attempt uncounted.
  let d = delayed(&mut s, 90);
  wait_db(&env, d, Status::Running);
  held(&s, now + 90);
  s.close();
  let back = wait_db(&env, d, Status::Pending);
  assert_eq!((back.job.attempts, back.owner), (0, None));
}

#[test]
fn jobs_nobody_here_takes_in_time_are_handed_back_and_then_only_what_is_asked_is_claimed() {
  let Some(env) = env("pgb_stale") else { return };
  let mut names = Names::default();
  let work = names.intern("work");
  let opts = BackendOptions {
    poll: Duration::from_secs(600),
    hold: Some(Duration::from_millis(300)),
    sated_for: Duration::from_secs(600),
    ..BackendOptions::default()
  };
  let mut s = env.backend(&names, opts);
  let now = env.now();
  let run = |n: u32| n == work;
  let mut got = Vec::new();
  s.claim(4, now, &run, &mut |j, _| got.push(j.id))
    .expect("claim");
  let mut ids = IdGen::default();
  let jobs: Vec<crate::job::Job> = (0..10)
    .map(|_| crate::job::Job::new(ids.next(now), work, now, now, "1".into()))
    .collect();
  s.insert(jobs, &names).expect("insert");
  wait_flushed(&mut s).expect("flushed");
  // The workers take two; the other eight wait here...
  for _ in 0..2_000 {
    s.claim(2 - got.len(), now, &run, &mut |j, _| got.push(j.id))
      .expect("claim");
    if got.len() == 2 {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  assert_eq!(got.len(), 2);
  // ...until the hold passes: handed back, free for any process.
  let pending = |env: &super::store_tests::Env| env.counts_of(Status::Pending);
  for _ in 0..2_000 {
    if pending(&env) == 8 {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  assert_eq!(pending(&env), 8, "handed back");
  assert_eq!(s.ready_len(), 0);
  // A worker asks for one: one is claimed, not a batch.
  let before = got.len();
  for _ in 0..2_000 {
    s.claim(1, now, &run, &mut |j, _| got.push(j.id))
      .expect("claim");
    if got.len() > before {
      break;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
  assert_eq!(got.len(), 3);
  assert_eq!(pending(&env), 7, "only what was asked for");
  assert_eq!(env.counts_of(Status::Running), 3);
  s.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_ahead_skips_keyed_jobs_and_the_history_says_it_started_when_due() {
  let Some(fx) = fx("ahead_sql").await else {
    return;
  };
  let me = fx.store.register("a", 1, T0).await.expect("register");
  let mut js = jobs(3, "x", T0);
  js[0].run_at = T0 + 50;
  js[1].run_at = T0 + 50;
  js[1].key = Some("k".into());
  js[2].run_at = T0 + 500;
  fx.store.insert(&js, T0).await.expect("insert");
  let o = ClaimOptions {
    at: Some(T0),
    ahead_ms: 100,
    ..ClaimOptions::new(me, 10)
  };
  let got = fx.store.claim(&o, T0).await.expect("claim");
  // Only the plain job due within the lookahead: the keyed one stays
  // pending (a debounced add must still find it unstarted), the later one
  // is not due yet.
  assert_eq!(got.len(), 1);
  assert_eq!(got[0].job.id, js[0].id);
  let k = fx.store.get(js[1].id).await.expect("get").expect("there");
  assert_eq!(k.job.status, Status::Pending);
  // It ran from its due time on: the history's start is not the claim's.
  let lease = got[0].lease().expect("lease");
  let a = fx
    .store
    .apply(&[Outcome::completed(lease, "1")], T0 + 60)
    .await
    .expect("apply");
  assert!(a.fenced.is_empty());
  let done = fx.store.get(js[0].id).await.expect("get").expect("there");
  assert_eq!(done.job.status, Status::Completed);
  assert_eq!(done.job.started_at, T0 + 50);
}
