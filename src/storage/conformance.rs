//! One conformance suite for every store: each test runs against the memory
//! store and the SQLite store. `reopen` gives the store as a fresh process
//! would see it (memory: the same store; SQLite: closed and opened again from
//! its file), so every durable fact is checked after a restart too.

use super::*;
use crate::job::{Backoff, BackoffKind, Dependencies, IdGen, JobExtra, Priority};

/// Makes stores of one kind and reopens them.
trait Harness {
  fn open(&mut self) -> Box<dyn Store>;
  fn reopen(&mut self, store: Box<dyn Store>, now: u64) -> Box<dyn Store>;
}

struct Memory;

impl Harness for Memory {
  fn open(&mut self) -> Box<dyn Store> {
    Box::new(MemoryStore::new())
  }
  fn reopen(&mut self, store: Box<dyn Store>, _now: u64) -> Box<dyn Store> {
    store
  }
}

#[cfg(feature = "sqlite")]
struct Sqlite {
  opts: SqliteOptions,
}

#[cfg(feature = "sqlite")]
impl Sqlite {
  fn new() -> Sqlite {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
      "jobwerk-conformance-{}-{}",
      std::process::id(),
      N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Sqlite {
      opts: SqliteOptions::new(dir.join("sub").join("jobs.db"), Durability::Normal),
    }
  }
}

#[cfg(feature = "sqlite")]
impl Sqlite {
  /// One pending job in memory: every plain job beyond it stays in the file.
  fn cold() -> Sqlite {
    let mut s = Sqlite::new();
    s.opts.hot_pending = 1;
    s
  }
}

#[cfg(feature = "sqlite")]
impl Drop for Sqlite {
  fn drop(&mut self) {
    if let Some(dir) = self.opts.path.parent().and_then(|p| p.parent()) {
      let _ = std::fs::remove_dir_all(dir);
    }
  }
}

#[cfg(feature = "sqlite")]
impl Harness for Sqlite {
  fn open(&mut self) -> Box<dyn Store> {
    let mut names = names();
    Box::new(SqliteStore::open(&self.opts, &mut names, 0).expect("open"))
  }
  fn reopen(&mut self, mut store: Box<dyn Store>, now: u64) -> Box<dyn Store> {
    wait_flushed(&mut *store).expect("sync");
    store.close();
    drop(store);
    let mut names = names();
    let s = SqliteStore::open(&self.opts, &mut names, now).expect("reopen");
    assert_eq!(names.len(), 3, "names are interned in the same order");
    Box::new(s)
  }
}

/// The calculation names every test uses: 0 `a`, 1 `b`, 2 `c`.
/// PostgreSQL through [`super::postgres::PgBackend`] in its test mode
/// (`sync_claims`: a claim with an empty buffer claims in the calling
/// thread), each harness on its own schema, dropped after.
#[cfg(feature = "postgres")]
struct Pg {
  rt: Option<tokio::runtime::Runtime>,
  schema: String,
}

#[cfg(feature = "postgres")]
impl Pg {
  /// `None` (with a printed message) when no server answers.
  fn new() -> Option<Pg> {
    if !super::postgres::test_env::server_up() {
      return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
      .worker_threads(2)
      .enable_all()
      .build()
      .expect("runtime");
    Some(Pg {
      rt: Some(rt),
      schema: super::postgres::test_env::unique("conf"),
    })
  }
}

#[cfg(feature = "postgres")]
impl Drop for Pg {
  fn drop(&mut self) {
    if let Some(rt) = self.rt.take() {
      rt.shutdown_background();
    }
    super::postgres::test_env::drop_schema(&self.schema);
  }
}

#[cfg(feature = "postgres")]
impl Harness for Pg {
  fn open(&mut self) -> Box<dyn Store> {
    use super::postgres::{BackendOptions, PgBackend, PgStore};
    let cfg = super::postgres::test_env::cfg(&self.schema);
    let rt = self.rt.as_ref().expect("runtime");
    let opts = BackendOptions {
      sync_claims: true,
      listen: false,
      ..BackendOptions::default()
    };
    let b = rt
      .block_on(async move {
        let pg = PgStore::connect(&cfg).await?;
        PgBackend::open(pg, names(), std::sync::Arc::new(|| 0), opts).await
      })
      .expect("open");
    Box::new(b)
  }
  /// A restart on PostgreSQL: the old process is gone (its `process` row
  /// deleted, as the cluster's rescuer does for a silent one) and the
  /// rescuer runs at `now`, putting its running jobs back in line with the
  /// attempt counted, as memory and SQLite do at open.
  fn reopen(&mut self, mut store: Box<dyn Store>, now: u64) -> Box<dyn Store> {
    wait_flushed(&mut *store).expect("sync");
    let owner = store.owner();
    store.close();
    wait_flushed(&mut *store).expect("sync");
    drop(store);
    super::postgres::test_env::admin(format!(
      "DELETE FROM {}.process WHERE id = {owner}",
      super::postgres::quote_ident(&self.schema)
    ));
    let cfg = super::postgres::test_env::cfg(&self.schema);
    let rt = self.rt.as_ref().expect("runtime");
    rt.block_on(async move {
      let pg = super::postgres::PgStore::connect(&cfg).await?;
      pg.rescue(now, u64::MAX).await
    })
    .expect("rescue");
    self.open()
  }
}

fn names() -> Names {
  let mut n = Names::default();
  for s in ["a", "b", "c"] {
    n.intern(s);
  }
  n
}

/// The job with this id (a read error fails the test).
fn job_of(s: &mut dyn Store, id: JobId) -> Option<Job> {
  s.get(id).expect("get")
}

fn all(_: u32) -> bool {
  true
}

/// Builds jobs with time-ordered ids.
struct Jobs(IdGen);

impl Jobs {
  fn new() -> Jobs {
    Jobs(IdGen::default())
  }

  fn job(&mut self, now: u64, priority: Priority, run_at: u64, retries: u32) -> Job {
    Job {
      priority,
      max_retries: retries,
      timeout_ms: 1_000,
      backoff: Backoff {
        kind: BackoffKind::Fixed,
        delay_ms: 100,
        max_delay_ms: 0,
        jitter: 0.0,
      },
      ..Job::new(self.0.next(now), 0, now, run_at, "{\"x\":1}".into())
    }
  }

  fn add(
    &mut self,
    s: &mut dyn Store,
    now: u64,
    priority: Priority,
    run_at: u64,
    retries: u32,
  ) -> JobId {
    let j = self.job(now, priority, run_at, retries);
    let id = j.id;
    s.insert(vec![j], &names()).expect("insert");
    id
  }
}

fn claim(s: &mut dyn Store, max: usize, now: u64) -> Vec<JobId> {
  let mut got = vec![];
  s.claim(max, now, &all, &mut |j, _| got.push(j.id))
    .expect("claim");
  got
}

fn status(s: &mut dyn Store, id: JobId) -> Option<(Status, u32)> {
  job_of(&mut *s, id).map(|j| (j.status, j.attempts))
}

fn err(msg: &str) -> JobError {
  JobError {
    name: "Error".into(),
    message: msg.into(),
    stack: Some("at here".into()),
    code: None,
    attempt: 0,
  }
}

fn orders_by_priority_due_time_and_insertion(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let low = j.add(&mut *s, 10, Priority::Low, 10, 0);
  let med1 = j.add(&mut *s, 10, Priority::Medium, 10, 0);
  let high_late = j.add(&mut *s, 10, Priority::High, 12, 0);
  let high = j.add(&mut *s, 11, Priority::High, 11, 0);
  let med2 = j.add(&mut *s, 11, Priority::Medium, 10, 0);
  let top = j.add(&mut *s, 11, Priority::Weight(-5), 11, 0);
  s = h.reopen(s, 20);
  s.set_weights([1, 2, 3]);
  assert_eq!(
    claim(&mut *s, 10, 20),
    vec![top, high, high_late, med1, med2, low]
  );
  assert_eq!(s.counts()[Status::Running as usize], 6);
  s.check_invariants().expect("invariants");
}

fn delayed_jobs_wait_until_due(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let later = j.add(&mut *s, 0, Priority::High, 500, 0);
  let now_job = j.add(&mut *s, 0, Priority::Low, 0, 0);
  assert_eq!(s.next_due(), Some(500));
  assert_eq!(s.oldest_due(), Some(0), "the due job has waited since 0");
  s = h.reopen(s, 100);
  assert_eq!(claim(&mut *s, 10, 100), vec![now_job]);
  assert!(!s.has_due(499, &all));
  assert!(s.has_due(500, &all));
  assert_eq!(claim(&mut *s, 10, 500), vec![later]);
  assert_eq!(s.next_due(), None);
}

/// Context lives in the job's extra record with its outcome and
/// dependencies; all of it survives together, and no context reads as `{}`.
fn context_survives_with_outcome_and_dependencies(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let mut job = j.job(0, Priority::Medium, 0, 0);
  job.extra = JobExtra::of(None, "{\"tenant\":\"t1\"}");
  let with_context = job.id;
  s.insert(vec![job], &names()).expect("insert");
  let mut job = j.job(0, Priority::Medium, 0, 0);
  job.extra = JobExtra::of(
    Some(Dependencies {
      ids: vec![with_context],
      ignore_failure: false,
    }),
    "{\"tenant\":\"t2\"}",
  );
  let dependant = job.id;
  s.insert(vec![job], &names()).expect("insert");
  let plain = j.add(&mut *s, 0, Priority::Medium, 5, 0);
  assert_eq!(claim(&mut *s, 5, 1), vec![with_context]);
  assert!(s.complete_current(with_context, "7", 2));
  s = h.reopen(s, 10);
  let ctx = |s: &mut dyn Store, id| job_of(&mut *s, id).map(|j| j.context_json().to_string());
  assert_eq!(ctx(&mut *s, plain).as_deref(), Some("{}"));
  assert_eq!(
    ctx(&mut *s, with_context).as_deref(),
    Some("{\"tenant\":\"t1\"}")
  );
  assert_eq!(
    ctx(&mut *s, dependant).as_deref(),
    Some("{\"tenant\":\"t2\"}")
  );
  let done = job_of(&mut *s, with_context).expect("job");
  assert_eq!(
    done.extra.as_deref().and_then(|e| e.result.as_deref()),
    Some("7")
  );
  assert!(
    job_of(&mut *s, plain)
      .map(|j| j.extra.is_none())
      .unwrap_or(false),
    "nothing extra to keep"
  );
  let d = job_of(&mut *s, dependant).expect("job");
  assert_eq!(d.status, Status::Pending, "its dependency completed");
  assert_eq!(d.deps().map(|d| d.ids.clone()), Some(vec![with_context]));
}

/// An outcome under a lease that is no longer current changes nothing:
/// after a cancel, a retry and a new claim (same attempt number), a
/// timeout's retry, a stop, under another owner, or for an unknown id.
fn late_outcomes_are_fenced_by_their_lease(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 2);
  let b = j.add(&mut *s, 0, Priority::Medium, 0, 2);
  let c = j.add(&mut *s, 0, Priority::Medium, 0, 2);
  let mut leases = Vec::new();
  s.claim(3, 1, &all, &mut |job, lease| leases.push((job.id, lease)))
    .expect("claim");
  assert_eq!(
    leases.iter().map(|l| l.0).collect::<Vec<_>>(),
    vec![a, b, c]
  );
  let (la, lb, lc) = (leases[0].1, leases[1].1, leases[2].1);
  assert_eq!((la.owner, la.attempt), (s.owner(), 1));
  // Another owner's lease of a running job: fenced, the job runs on.
  let foreign = Lease {
    owner: la.owner.wrapping_add(1),
    ..la
  };
  assert_eq!(
    s.complete(foreign, a, "1", 2).expect("complete"),
    Settled::Fenced
  );
  assert_eq!(
    s.fail(foreign, a, err("x"), FailKind::Timeout, 2, 0.0)
      .expect("fail"),
    Settled::Fenced
  );
  assert_eq!(status(&mut *s, a), Some((Status::Running, 1)));
  // Cancelled, retried and claimed again: attempt 1 again, a new claim.
  assert_eq!(s.cancel(a, 3).expect("cancel"), Some(Status::Running));
  assert_eq!(
    s.complete(la, a, "1", 4).expect("complete"),
    Settled::Fenced
  );
  assert_eq!(status(&mut *s, a), Some((Status::Cancelled, 1)));
  assert!(s.retry(a, 5).expect("retry"));
  let mut again = Vec::new();
  s.claim(1, 6, &all, &mut |job, lease| again.push((job.id, lease)))
    .expect("claim");
  assert_eq!(again.len(), 1);
  let (id, la2) = again[0];
  assert_eq!((id, la2.attempt), (a, 1));
  assert_ne!(la2, la, "a new claim, a new lease");
  assert_eq!(
    s.complete(la, a, "\"late\"", 7).expect("complete"),
    Settled::Fenced
  );
  assert_eq!(
    s.fail(
      la,
      a,
      err("late"),
      FailKind::Error {
        unrecoverable: true
      },
      7,
      0.0
    )
    .expect("fail"),
    Settled::Fenced
  );
  assert_eq!(status(&mut *s, a), Some((Status::Running, 1)));
  assert_eq!(
    s.complete(la2, a, "\"now\"", 8).expect("complete"),
    Settled::Applied(())
  );
  // Timed out and retried: the late outcome of the first attempt is fenced
  // though the job is pending (and then running again).
  let f = s
    .fail(lb, b, err("slow"), FailKind::Timeout, 9, 0.0)
    .expect("fail");
  assert!(matches!(
    f,
    Settled::Applied(Failed {
      status: Status::Pending,
      ..
    })
  ));
  assert_eq!(
    s.complete(lb, b, "1", 10).expect("complete"),
    Settled::Fenced
  );
  assert_eq!(status(&mut *s, b).map(|s| s.0), Some(Status::Pending));
  // Stopped (the attempt not counted), claimed again at attempt 1.
  let f = s
    .fail(lc, c, err("stop"), FailKind::Stop, 11, 0.0)
    .expect("fail");
  assert!(f.is_applied());
  let mut third = Vec::new();
  s.claim(5, 10_000, &all, &mut |job, lease| {
    third.push((job.id, lease))
  })
  .expect("claim");
  let lc2 = third
    .iter()
    .find(|t| t.0 == c)
    .map(|t| t.1)
    .expect("c again");
  assert_eq!(lc2.attempt, lc.attempt);
  assert_eq!(
    s.complete(lc, c, "1", 10_001).expect("complete"),
    Settled::Fenced
  );
  assert_eq!(status(&mut *s, c), Some((Status::Running, 1)));
  // Unknown id.
  let ghost = j.job(0, Priority::Medium, 0, 0).id;
  assert_eq!(
    s.complete(lc2, ghost, "1", 10_002).expect("complete"),
    Settled::Fenced
  );
  assert!(s
    .complete(lc2, c, "2", 10_003)
    .expect("complete")
    .is_applied());
  s.end_batch();
  s = h.reopen(s, 10_004);
  let done = |s: &mut dyn Store, id| job_of(s, id).and_then(|j| j.extra.and_then(|e| e.result));
  assert_eq!(done(&mut *s, a).as_deref(), Some("\"now\""));
  assert_eq!(done(&mut *s, c).as_deref(), Some("2"));
  s.check_invariants().expect("invariants");
}

/// The hint a claim hands out finds the job; a stale or wrong hint still
/// completes the job named by its id, never another one.
fn complete_hints_never_complete_the_wrong_job(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let b = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let mut got = Vec::new();
  s.claim(2, 1, &all, &mut |job, lease| got.push((job.id, lease)))
    .expect("claim");
  assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![a, b]);
  let (lease_a, lease_b) = (got[0].1, got[1].1);
  let wrong_hint = Lease {
    hint: lease_b.hint,
    ..lease_a
  };
  assert_eq!(
    s.complete(wrong_hint, a, "\"a\"", 2).expect("complete"),
    Settled::Applied(()),
    "b's hint: a is found by id"
  );
  assert_eq!(job_of(&mut *s, b).map(|j| j.status), Some(Status::Running));
  assert_eq!(
    s.complete(lease_a, a, "1", 3).expect("complete"),
    Settled::Fenced,
    "a finished already"
  );
  assert!(s
    .complete(lease_b, b, "\"b\"", 4)
    .expect("complete")
    .is_applied());
  s = h.reopen(s, 10);
  for (id, result) in [(a, "\"a\""), (b, "\"b\"")] {
    let job = job_of(&mut *s, id).expect("job");
    assert_eq!(job.status, Status::Completed);
    let o = job.extra.as_deref().expect("outcome");
    assert_eq!(o.result.as_deref(), Some(result));
  }
}

fn complete_keeps_result_and_progress(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let id = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  assert!(!s.progress(id, "5").expect("progress"), "not running yet");
  claim(&mut *s, 1, 1);
  assert!(s.progress(id, "{\"p\":50}").expect("progress"));
  assert!(s.complete_current(id, "{\"table\":[1,2]}", 5));
  assert!(!s.complete_current(id, "1", 6), "only once");
  s = h.reopen(s, 10);
  let job = job_of(&mut *s, id).expect("job");
  assert_eq!(
    (job.status, job.attempts, job.started_at, job.finished_at),
    (Status::Completed, 1, 1, 5)
  );
  let o = job.extra.as_deref().expect("outcome");
  assert_eq!(o.result.as_deref(), Some("{\"table\":[1,2]}"));
  assert_eq!(o.progress.as_deref(), Some("{\"p\":50}"));
  assert_eq!(s.counts()[Status::Completed as usize], 1);
}

fn failures_retry_with_backoff_then_fail(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let id = j.add(&mut *s, 0, Priority::Medium, 0, 1);
  claim(&mut *s, 1, 0);
  let f = s.fail_current(
    id,
    err("one"),
    FailKind::Error {
      unrecoverable: false,
    },
    10,
    0.5,
  );
  assert_eq!(
    f,
    Some(Failed {
      status: Status::Pending,
      retry_delay: Some(100)
    })
  );
  s = h.reopen(s, 20);
  assert_eq!(job_of(&mut *s, id).map(|j| j.run_at), Some(110));
  assert!(claim(&mut *s, 1, 109).is_empty());
  assert_eq!(claim(&mut *s, 1, 110), vec![id]);
  let f = s.fail_current(
    id,
    err("two"),
    FailKind::Error {
      unrecoverable: false,
    },
    120,
    0.5,
  );
  assert_eq!(
    f,
    Some(Failed {
      status: Status::Failed,
      retry_delay: None
    })
  );
  s = h.reopen(s, 130);
  let job = job_of(&mut *s, id).expect("job");
  assert_eq!(
    (job.status, job.attempts, job.finished_at),
    (Status::Failed, 2, 120)
  );
  let errors = &job.extra.as_deref().expect("outcome").errors;
  assert_eq!(
    errors
      .iter()
      .map(|e| (e.message.as_str(), e.attempt))
      .collect::<Vec<_>>(),
    vec![("one", 1), ("two", 2)]
  );
  assert_eq!(errors[0].stack.as_deref(), Some("at here"));
}

fn unrecoverable_and_timeouts(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 5);
  let b = j.add(&mut *s, 0, Priority::Medium, 0, 1);
  claim(&mut *s, 2, 0);
  assert_eq!(
    s.fail_current(
      a,
      err("fatal"),
      FailKind::Error {
        unrecoverable: true
      },
      1,
      0.0
    )
    .map(|f| f.status),
    Some(Status::Failed)
  );
  assert_eq!(
    s.fail_current(b, err("slow"), FailKind::Timeout, 1, 0.0)
      .map(|f| f.status),
    Some(Status::Pending)
  );
  claim(&mut *s, 1, 200);
  assert_eq!(
    s.fail_current(b, err("slow"), FailKind::Timeout, 201, 0.0)
      .map(|f| f.status),
    Some(Status::Timeout)
  );
  assert_eq!(
    s.fail_current(b, err("again"), FailKind::Timeout, 202, 0.0),
    None,
    "not running"
  );
  s = h.reopen(s, 300);
  assert_eq!(status(&mut *s, a), Some((Status::Failed, 1)));
  assert_eq!(status(&mut *s, b), Some((Status::Timeout, 2)));
}

fn cancel_and_retry(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let pending = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let running = j.add(&mut *s, 0, Priority::Low, 0, 0);
  assert_eq!(claim(&mut *s, 1, 0), vec![pending]);
  assert_eq!(s.cancel(running, 1).expect("cancel"), Some(Status::Pending));
  assert_eq!(s.cancel(pending, 1).expect("cancel"), Some(Status::Running));
  assert_eq!(s.cancel(pending, 2).expect("cancel"), None, "finished");
  assert!(
    claim(&mut *s, 5, 3).is_empty(),
    "a cancelled job never runs"
  );
  s = h.reopen(s, 4);
  assert_eq!(status(&mut *s, running), Some((Status::Cancelled, 0)));
  assert!(s.retry(running, 5).expect("retry"));
  assert!(!s.retry(running, 5).expect("retry"), "pending now");
  s = h.reopen(s, 6);
  assert_eq!(status(&mut *s, running), Some((Status::Pending, 0)));
  assert_eq!(claim(&mut *s, 5, 6), vec![running]);
  assert!(!s.retry(JobId(42), 7).expect("retry"), "unknown id");
}

fn prune_removes_old_finished_jobs(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let old = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let young = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let waiting = j.add(&mut *s, 0, Priority::Medium, 10_000, 0);
  claim(&mut *s, 2, 0);
  s.complete_current(old, "1", 10);
  s.complete_current(young, "2", 50);
  assert_eq!(s.prune(20).expect("prune"), 1);
  s = h.reopen(s, 60);
  assert!(job_of(&mut *s, old).is_none());
  assert!(job_of(&mut *s, young).is_some());
  assert!(job_of(&mut *s, waiting).is_some());
  assert_eq!(s.prune(100).expect("prune"), 1);
  s = h.reopen(s, 110);
  assert_eq!(s.list(None, 10), vec![waiting]);
  s.check_invariants().expect("invariants");
}

fn unregistered_jobs_wait(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let mut job = j.job(0, Priority::High, 0, 0);
  job.name = 1;
  let b = job.id;
  s.insert(vec![job], &names()).expect("insert");
  let a = j.add(&mut *s, 0, Priority::Low, 0, 0);
  s = h.reopen(s, 1);
  let only_a = |n: u32| n == 0;
  let mut got = vec![];
  s.claim(10, 1, &only_a, &mut |j, _| got.push(j.id))
    .expect("claim");
  assert_eq!(got, vec![a]);
  assert_eq!(s.unregistered(), 1);
  s.registered(1);
  assert_eq!(claim(&mut *s, 10, 2), vec![b]);
  assert_eq!(s.unregistered(), 0);
}

fn recovery_requeues_or_fails_interrupted_jobs(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let retriable = j.add(&mut *s, 0, Priority::Medium, 0, 1);
  let last_try = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  claim(&mut *s, 2, 5);
  s = h.reopen(s, 100);
  // A durable store recovers on open; memory recovers when told.
  s.recover_interrupted(100).expect("recover_interrupted");
  assert_eq!(status(&mut *s, retriable), Some((Status::Pending, 1)));
  assert_eq!(status(&mut *s, last_try), Some((Status::Failed, 1)));
  let e = s
    .get(last_try)
    .expect("read")
    .and_then(|j| j.last_error().cloned())
    .expect("error");
  assert_eq!(e.code.as_deref(), Some("ERR_INTERRUPTED"));
  s = h.reopen(s, 101);
  assert_eq!(status(&mut *s, retriable), Some((Status::Pending, 1)));
  assert_eq!(claim(&mut *s, 5, 101), vec![retriable]);
  s.check_invariants().expect("invariants");
}

fn graceful_stop_does_not_count_the_attempt(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let id = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  claim(&mut *s, 1, 0);
  let f = s.fail_current(id, err("stopped"), FailKind::Stop, 5, 0.0);
  assert_eq!(f.map(|f| f.status), Some(Status::Pending));
  s = h.reopen(s, 10);
  assert_eq!(status(&mut *s, id), Some((Status::Pending, 0)));
}

fn ids_stay_ordered_across_reopen(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 1_000, Priority::Medium, 0, 0);
  s = h.reopen(s, 1_000);
  assert_eq!(s.max_id(), Some(a));
  let mut g = IdGen::default();
  if let Some(max) = s.max_id() {
    g.seed(max);
  }
  assert!(g.next(1_000) > a, "same millisecond, still after");
  assert!(g.next(900) > a, "clock went back, still after");
}

fn dependent(j: &mut Jobs, s: &mut dyn Store, deps: &[JobId], ignore: bool) -> JobId {
  let mut job = j.job(0, Priority::Medium, 0, 0);
  job.extra = JobExtra::of(
    Some(Dependencies {
      ids: deps.to_vec(),
      ignore_failure: ignore,
    }),
    "{}",
  );
  let id = job.id;
  s.insert(vec![job], &names()).expect("insert");
  id
}

fn dependencies_chain_and_diamond(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let b = dependent(&mut j, &mut *s, &[a], false);
  let c = dependent(&mut j, &mut *s, &[a], false);
  let d = dependent(&mut j, &mut *s, &[b, c], false);
  assert_eq!(s.counts()[Status::Waiting as usize], 3);
  s = h.reopen(s, 1);
  assert_eq!(claim(&mut *s, 10, 1), vec![a], "only the root runs");
  s.complete_current(a, "1", 2);
  let mut changed = s.take_changed();
  changed.sort();
  assert_eq!(changed, vec![b, c]);
  s = h.reopen(s, 3);
  assert_eq!(status(&mut *s, b), Some((Status::Pending, 0)));
  assert_eq!(status(&mut *s, d), Some((Status::Waiting, 0)));
  assert_eq!(claim(&mut *s, 10, 3), vec![b, c]);
  s.complete_current(b, "2", 4);
  assert_eq!(
    status(&mut *s, d),
    Some((Status::Waiting, 0)),
    "c still runs"
  );
  s.complete_current(c, "3", 5);
  assert_eq!(claim(&mut *s, 10, 6), vec![d]);
  s.check_invariants().expect("invariants");
}

fn dependency_failure_propagates_unless_ignored(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let b = dependent(&mut j, &mut *s, &[a], false);
  let c = dependent(&mut j, &mut *s, &[b], false);
  let ignoring = dependent(&mut j, &mut *s, &[a], true);
  claim(&mut *s, 1, 0);
  s.fail_current(
    a,
    err("boom"),
    FailKind::Error {
      unrecoverable: true,
    },
    1,
    0.0,
  );
  s = h.reopen(s, 2);
  assert_eq!(status(&mut *s, b), Some((Status::Failed, 0)));
  assert_eq!(
    status(&mut *s, c),
    Some((Status::Failed, 0)),
    "transitively"
  );
  let e = s
    .get(c)
    .expect("read")
    .and_then(|j| j.last_error().cloned())
    .expect("error");
  assert_eq!(e.code.as_deref(), Some("ERR_DEPENDENCY_FAILED"));
  assert_eq!(status(&mut *s, ignoring), Some((Status::Pending, 0)));
  // A job added after its dependency already failed fails at once.
  let late = dependent(&mut j, &mut *s, &[a], false);
  assert_eq!(status(&mut *s, late), Some((Status::Failed, 0)));
  assert!(s.take_changed().contains(&late));
  // A cancelled dependency counts as failed too.
  let x = j.add(&mut *s, 3, Priority::Medium, 0, 0);
  let y = dependent(&mut j, &mut *s, &[x], false);
  s.cancel(x, 4).expect("cancel");
  s = h.reopen(s, 5);
  assert_eq!(status(&mut *s, y), Some((Status::Failed, 0)));
  // Cancelling a waiting job is allowed.
  let z = j.add(&mut *s, 6, Priority::Medium, 0, 0);
  let w = dependent(&mut j, &mut *s, &[z], false);
  assert_eq!(s.cancel(w, 7).expect("cancel"), Some(Status::Waiting));
  s.check_invariants().expect("invariants");
}

/// Issue 17, bug 5: retrying a job that failed with `ERR_DEPENDENCY_FAILED`
/// puts it back to `waiting`, not in line: it runs once its dependencies
/// complete (its failed dependency retried, before or after it), and fails
/// again if that dependency fails again.
fn retry_of_a_dependency_failed_job_waits_for_its_dependencies(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let b = dependent(&mut j, &mut *s, &[a], false);
  let unrecoverable = FailKind::Error {
    unrecoverable: true,
  };
  assert_eq!(claim(&mut *s, 1, 0), vec![a]);
  s.fail_current(a, err("boom"), unrecoverable, 1, 0.0);
  assert_eq!(status(&mut *s, b), Some((Status::Failed, 0)));
  s.take_changed();
  // The dependant first: it waits for the failed dependency.
  assert!(s.retry(b, 2).expect("retry"));
  assert_eq!(status(&mut *s, b), Some((Status::Waiting, 0)));
  assert_eq!(claim(&mut *s, 10, 2), Vec::<JobId>::new(), "b must not run");
  s = h.reopen(s, 3);
  assert_eq!(status(&mut *s, b), Some((Status::Waiting, 0)));
  assert!(s.retry(a, 3).expect("retry"));
  assert_eq!(claim(&mut *s, 10, 3), vec![a]);
  s.complete_current(a, "1", 4);
  assert_eq!(status(&mut *s, b), Some((Status::Pending, 0)));
  assert_eq!(claim(&mut *s, 10, 5), vec![b]);
  s.complete_current(b, "2", 6);
  // The dependency first: the dependant retried after it completed runs.
  let c = j.add(&mut *s, 7, Priority::Medium, 0, 0);
  let d = dependent(&mut j, &mut *s, &[c], false);
  assert_eq!(claim(&mut *s, 1, 7), vec![c]);
  s.fail_current(c, err("boom"), unrecoverable, 8, 0.0);
  assert_eq!(status(&mut *s, d), Some((Status::Failed, 0)));
  assert!(s.retry(c, 9).expect("retry"));
  assert_eq!(claim(&mut *s, 10, 9), vec![c]);
  s.complete_current(c, "3", 10);
  assert_eq!(status(&mut *s, d), Some((Status::Failed, 0)));
  assert!(s.retry(d, 11).expect("retry"));
  assert_eq!(claim(&mut *s, 10, 11), vec![d]);
  // A dependency that fails again fails the waiting dependant again.
  let e = j.add(&mut *s, 12, Priority::Medium, 0, 0);
  let f = dependent(&mut j, &mut *s, &[e], false);
  assert_eq!(claim(&mut *s, 1, 12), vec![e]);
  s.fail_current(e, err("boom"), unrecoverable, 13, 0.0);
  assert!(s.retry(f, 14).expect("retry"));
  assert!(s.retry(e, 14).expect("retry"));
  assert_eq!(claim(&mut *s, 10, 14), vec![e]);
  s.fail_current(e, err("again"), unrecoverable, 15, 0.0);
  assert_eq!(status(&mut *s, f), Some((Status::Failed, 0)));
  s.check_invariants().expect("invariants");
}

/// Found by the engine fuzz: a dependency whose failure the dependant
/// ignores, retried while the dependant still waits for another, is waited
/// for again (the dependant was left waiting for nothing, forever).
fn an_ignored_failed_dependency_retried_is_waited_for_again(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let a = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let b = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let w = dependent(&mut j, &mut *s, &[a, b], true);
  assert_eq!(claim(&mut *s, 1, 0), vec![a]);
  let unrecoverable = FailKind::Error {
    unrecoverable: true,
  };
  s.fail_current(a, err("boom"), unrecoverable, 1, 0.0);
  assert!(s.retry(a, 2).expect("retry"));
  assert_eq!(claim(&mut *s, 2, 2), vec![b, a]);
  s.complete_current(b, "1", 3);
  assert_eq!(
    status(&mut *s, w),
    Some((Status::Waiting, 0)),
    "a runs again"
  );
  s.check_invariants().expect("invariants");
  s.complete_current(a, "2", 4);
  assert_eq!(status(&mut *s, w), Some((Status::Pending, 0)));
  assert_eq!(claim(&mut *s, 1, 5), vec![w]);
  s.check_invariants().expect("invariants");
}

/// Weights applied after the store is opened (as the queue does) order the
/// jobs it already holds too: on open, a durable store loads them before it
/// knows the configuration.
fn weights_order_jobs_already_stored(h: &mut dyn Harness) {
  let inverted = [30, 20, 10];
  let mut s = h.open();
  let mut j = Jobs::new();
  let high = j.add(&mut *s, 0, Priority::High, 0, 0);
  let low = j.add(&mut *s, 0, Priority::Low, 0, 0);
  s.set_weights(inverted);
  assert_eq!(status(&mut *s, high), Some((Status::Pending, 0)));
  s = h.reopen(s, 1);
  s.set_weights(inverted);
  assert_eq!(claim(&mut *s, 2, 1), vec![low, high]);
  s.check_invariants().expect("invariants");
}

/// The jobs a listing must return, computed from each job as `get` reads
/// it: a plain filter and sort, independent of the stores' ordered indexes.
fn naive_list(s: &mut dyn Store, known: &[JobId], f: &JobFilter) -> Vec<JobId> {
  let mut ids: Vec<JobId> = known
    .iter()
    .copied()
    .filter(|id| {
      let Some(j) = job_of(&mut *s, *id) else {
        return false;
      };
      f.statuses & (1 << j.status as u8) != 0
        && f.name.is_none_or(|n| n == j.name)
        && f.since.is_none_or(|t| j.created_at >= t)
        && f.until.is_none_or(|t| j.created_at < t)
        && match f.after {
          None => true,
          Some(c) if f.ascending => *id > c,
          Some(c) => *id < c,
        }
    })
    .collect();
  ids.sort_unstable();
  if !f.ascending {
    ids.reverse();
  }
  ids.truncate(f.limit);
  ids
}

fn listed(s: &mut dyn Store, f: &JobFilter) -> Vec<JobId> {
  let jobs = s.list_jobs(f, &names()).expect("list_jobs");
  jobs.iter().map(|j| j.id).collect()
}

/// Every page of `f` with `limit` jobs each, following the cursor.
fn all_pages(s: &mut dyn Store, f: &JobFilter, limit: usize) -> Vec<JobId> {
  let mut out = vec![];
  let mut f = JobFilter {
    limit,
    after: None,
    ..f.clone()
  };
  loop {
    let page = listed(s, &f);
    out.extend(&page);
    if page.len() < limit {
      return out;
    }
    f.after = page.last().copied();
  }
}

fn check_listings(s: &mut dyn Store, known: &[JobId]) {
  let bits = |st: &[Status]| st.iter().fold(0u8, |b, s| b | 1 << *s as u8);
  let filters = [
    JobFilter::default(),
    JobFilter {
      statuses: bits(&[Status::Pending]),
      ..JobFilter::default()
    },
    JobFilter {
      statuses: bits(&[Status::Completed, Status::Failed, Status::Cancelled]),
      ascending: true,
      ..JobFilter::default()
    },
    JobFilter {
      statuses: bits(&[Status::Waiting, Status::Running]),
      ..JobFilter::default()
    },
    JobFilter {
      name: Some(1),
      ..JobFilter::default()
    },
    JobFilter {
      name: Some(2),
      statuses: bits(&[Status::Pending]),
      ascending: true,
      ..JobFilter::default()
    },
    JobFilter {
      since: Some(15),
      ..JobFilter::default()
    },
    JobFilter {
      until: Some(15),
      ascending: true,
      ..JobFilter::default()
    },
    JobFilter {
      since: Some(12),
      until: Some(14),
      ..JobFilter::default()
    },
    // The jobs whose creation time strays from their id's.
    JobFilter {
      until: Some(6),
      ..JobFilter::default()
    },
    JobFilter {
      since: Some(999),
      ..JobFilter::default()
    },
  ];
  for f in &filters {
    let want = naive_list(s, known, f);
    assert_eq!(listed(s, f), want, "{f:?}");
    assert_eq!(all_pages(s, f, 3), want, "pages of 3, {f:?}");
    assert_eq!(all_pages(s, f, 1), want, "pages of 1, {f:?}");
    let first = JobFilter {
      limit: 4,
      ..f.clone()
    };
    assert_eq!(listed(s, &first), want[..want.len().min(4)].to_vec());
  }
  // Without data: no payload, no result; everything else as `get` has it.
  let f = JobFilter {
    include_data: false,
    ..JobFilter::default()
  };
  for j in s.list_jobs(&f, &names()).expect("list_jobs") {
    assert_eq!(&*j.data, "");
    assert!(j.extra.as_ref().is_none_or(|e| e.result.is_none()));
    let full = job_of(&mut *s, j.id).expect("listed job");
    assert_eq!(
      (
        j.status,
        j.attempts,
        j.created_at,
        j.context_json().to_string()
      ),
      (
        full.status,
        full.attempts,
        full.created_at,
        full.context_json().to_string()
      )
    );
  }
  let with = s.list_jobs(&JobFilter::default(), &names()).expect("list");
  for j in &with {
    let full = job_of(&mut *s, j.id).expect("listed job");
    assert_eq!(&*j.data, &*full.data);
    assert_eq!(
      j.extra.as_ref().and_then(|e| e.result.clone()),
      full.extra.as_ref().and_then(|e| e.result.clone())
    );
  }
}

fn lists_jobs_by_filter_and_pages_by_cursor(h: &mut dyn Harness) {
  let mut s = h.open();
  let mut j = Jobs::new();
  let mut known = vec![];
  for i in 0..40u64 {
    let now = 10 + i / 4;
    let delayed = i % 7 == 3;
    let mut job = j.job(now, Priority::Medium, if delayed { 500 } else { now }, 1);
    job.name = (i % 3) as u32;
    if i % 5 == 0 {
      job.extra = JobExtra::of(None, "{\"i\":1}");
    }
    known.push(job.id);
    s.insert(vec![job], &names()).expect("insert");
  }
  s.end_batch();
  let got = claim(&mut *s, 12, 30);
  assert_eq!(got.len(), 12);
  for (k, id) in got.iter().enumerate() {
    match k % 4 {
      0 | 3 => assert!(s.complete_current(*id, "{\"r\":2}", 31)),
      1 => {
        let kind = FailKind::Error {
          unrecoverable: true,
        };
        assert!(s.fail_current(*id, err("no"), kind, 31, 0.0).is_some());
      }
      _ => {}
    }
  }
  assert_eq!(
    s.cancel(known[39], 32).expect("cancel"),
    Some(Status::Pending)
  );
  known.push(dependent(&mut j, &mut *s, &[got[2]], false));
  // Created at 5 with an id of time 100, and at 1000 with an id of 100.
  for created in [5, 1_000] {
    let job = Job {
      created_at: created,
      ..j.job(100, Priority::Medium, created, 0)
    };
    known.push(job.id);
    s.insert(vec![job], &names()).expect("insert");
  }
  s.end_batch();
  s.check_invariants().expect("invariants");
  check_listings(&mut *s, &known);
  s = h.reopen(s, 40);
  check_listings(&mut *s, &known);
  // Pruned jobs are gone from the listing too.
  assert!(s.prune(31).expect("prune") > 0);
  s.end_batch();
  check_listings(&mut *s, &known);
  assert_eq!(
    listed(&mut *s, &JobFilter::default()).len(),
    s.counts().iter().sum::<usize>()
  );
}

// --- unique keys, debounce, concurrency keys (through the queue's insert
// path, over each store) --------------------------------------------------

/// A started queue over `store` with calculation `a` (index 0) registered.
fn keyed_queue(store: Box<dyn Store>, now: u64) -> crate::queue::Queue {
  use crate::queue::{Queue, QueueConfig};
  let cfg = QueueConfig {
    max_workers: 4,
    max_queue_size: 1_000,
    ..QueueConfig::default()
  };
  let mut q = Queue::with_store(cfg, now, store, names());
  assert_eq!(
    q.register("a", &serde_json::Value::Null).expect("register"),
    0
  );
  q.start(now);
  q
}

/// The queue as a new process would find it (SQLite: its file reopened).
fn restart(h: &mut dyn Harness, q: crate::queue::Queue, now: u64) -> crate::queue::Queue {
  let mut store = q.into_store();
  store.end_batch();
  let mut store = h.reopen(store, now);
  // Memory: the same store; what a new process finds running died with
  // the old one (SQLite recovers it on open already).
  store.recover_interrupted(now).expect("recover_interrupted");
  keyed_queue(store, now)
}

/// Adds one job of `a`; returns its id.
fn add_opts(
  q: &mut crate::queue::Queue,
  data: &str,
  context: &str,
  options: serde_json::Value,
  now: u64,
) -> JobId {
  use crate::queue::{JobOptions, NewJob};
  let options = JobOptions::parse(&options, "options", Backoff::default()).expect("options");
  let ids = q
    .add(
      &[NewJob {
        calc: 0,
        data,
        context,
        options,
      }],
      now,
    )
    .expect("add");
  q.end_batch();
  ids[0]
}

/// Takes up to `n` jobs: (slot, seq, id, data) of each.
fn take_jobs(q: &mut crate::queue::Queue, n: usize, now: u64) -> Vec<(u32, u32, JobId, String)> {
  let mut out = String::new();
  let k = q.take(n, now, &mut out);
  q.end_batch();
  let v: Vec<serde_json::Value> =
    serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("taken JSON");
  assert_eq!(v.len(), k * 7);
  v.chunks(7)
    .map(|c| {
      (
        c[0].as_u64().unwrap_or(0) as u32,
        c[1].as_u64().unwrap_or(0) as u32,
        JobId::parse(c[2].as_str().unwrap_or("")).expect("id"),
        c[5].to_string(),
      )
    })
    .collect()
}

fn settle_ok(q: &mut crate::queue::Queue, slot: u32, seq: u32, now: u64) {
  q.settle(&format!("[{slot},{seq},1,\"done\"]"), now)
    .expect("settle");
  q.end_batch();
}

fn queued_job(q: &mut crate::queue::Queue, id: JobId) -> Job {
  q.get(id).expect("the job")
}

/// Adds one job of `a`; returns the id of the job that holds its key
/// then: the one `add` returned, or, on PostgreSQL, whose id that is an
/// alias of when the database found a holder (postgres/keys.rs).
fn add_held(
  q: &mut crate::queue::Queue,
  data: &str,
  context: &str,
  options: serde_json::Value,
  now: u64,
) -> JobId {
  let id = add_opts(q, data, context, options, now);
  queued_job(q, id).id
}

fn unique_key_skips_while_a_job_holds_it(h: &mut dyn Harness) {
  use serde_json::json;
  let mut q = keyed_queue(h.open(), 0);
  let first = add_opts(&mut q, "1", "{\"v\":1}", json!({"key": "k"}), 0);
  for d in ["2", "3"] {
    assert_eq!(add_held(&mut q, d, "{}", json!({"key": "k"}), 0), first);
  }
  let other = add_opts(&mut q, "9", "{}", json!({"key": "other"}), 0);
  assert_ne!(other, first);
  assert_eq!(q.count(Status::Pending), 2, "duplicates add nothing");
  let j = queued_job(&mut q, first);
  assert_eq!(
    (&*j.data, j.context_json()),
    ("1", "{\"v\":1}"),
    "skip keeps the first data"
  );
  // The key is held across a restart too (the index is rebuilt).
  let mut q = restart(h, q, 0);
  assert_eq!(add_held(&mut q, "4", "{}", json!({"key": "k"}), 0), first);
  assert_eq!(queued_job(&mut q, first).key(), Some("k"));
  // While it runs, a skip returns it.
  let taken = take_jobs(&mut q, 1, 1);
  assert_eq!(taken[0].2, first);
  assert_eq!(add_held(&mut q, "5", "{}", json!({"key": "k"}), 1), first);
  // Finished, it holds the key no more.
  settle_ok(&mut q, taken[0].0, taken[0].1, 2);
  let next = add_opts(&mut q, "6", "{}", json!({"key": "k"}), 2);
  assert_ne!(next, first);
  // A cancelled job frees its key.
  assert!(q.cancel(next, 3).expect("cancel"));
  q.end_batch();
  let after = add_opts(&mut q, "7", "{}", json!({"key": "k"}), 3);
  assert_ne!(after, next);
  // Retried, a finished job holds its key again.
  assert!(q.cancel(after, 3).expect("cancel"));
  q.end_batch();
  let fresh = add_opts(&mut q, "7", "{}", json!({"key": "k"}), 3);
  assert_ne!(fresh, after);
  assert!(q.cancel(fresh, 3).expect("cancel"));
  q.end_batch();
  assert!(q.retry(after, 3).expect("retry"));
  q.end_batch();
  assert_eq!(add_held(&mut q, "7", "{}", json!({"key": "k"}), 3), after);
  let mut q = restart(h, q, 4);
  assert_eq!(add_held(&mut q, "8", "{}", json!({"key": "k"}), 4), after);
  q.check_invariants().expect("invariants");
}

fn replace_updates_an_unstarted_job_and_queues_behind_a_running_one(h: &mut dyn Harness) {
  use serde_json::json;
  let mut q = keyed_queue(h.open(), 0);
  let r = json!({"key": "k", "onDuplicate": "replace"});
  let first = add_opts(&mut q, "1", "{\"v\":1}", r.clone(), 0);
  assert_eq!(add_held(&mut q, "2", "{\"v\":2}", r.clone(), 0), first);
  assert_eq!(add_held(&mut q, "3", "{}", r.clone(), 0), first);
  let j = queued_job(&mut q, first);
  assert_eq!((&*j.data, j.context_json()), ("3", "{}"));
  assert_eq!(q.count(Status::Pending), 1);
  let mut q = restart(h, q, 0);
  let j = queued_job(&mut q, first);
  assert_eq!(
    (&*j.data, j.context_json()),
    ("3", "{}"),
    "the replacement is durable"
  );
  let taken = take_jobs(&mut q, 1, 1);
  assert_eq!((taken[0].2, taken[0].3.as_str()), (first, "3"));
  // Running: a replace cannot change it; a new job goes behind it.
  let second = add_opts(&mut q, "4", "{\"v\":4}", r.clone(), 1);
  assert_ne!(second, first);
  assert_eq!(add_held(&mut q, "5", "{\"v\":5}", r.clone(), 1), second);
  assert_eq!(
    add_held(&mut q, "6", "{}", json!({"key": "k"}), 1),
    second,
    "a skip returns the newest"
  );
  let j = queued_job(&mut q, second);
  assert_eq!((&*j.data, j.context_json()), ("5", "{\"v\":5}"));
  assert_eq!(queued_job(&mut q, first).status, Status::Running);
  let mut q = restart(h, q, 2);
  let j = queued_job(&mut q, second);
  assert_eq!((&*j.data, j.status), ("5", Status::Pending));
  assert_eq!(add_held(&mut q, "7", "{}", r, 2), second);
  q.check_invariants().expect("invariants");
}

fn debounce_runs_once_after_the_last_add(h: &mut dyn Harness) {
  use serde_json::json;
  let mut q = keyed_queue(h.open(), 0);
  let d = json!({"key": "t", "debounceMs": 100});
  let id = add_opts(&mut q, "0", "{}", d.clone(), 0);
  assert_eq!(queued_job(&mut q, id).run_at, 100);
  for t in 1..=50u64 {
    assert_eq!(
      add_held(
        &mut q,
        &t.to_string(),
        &format!("{{\"t\":{t}}}"),
        d.clone(),
        t
      ),
      id
    );
  }
  let j = queued_job(&mut q, id);
  assert_eq!((j.run_at, &*j.data), (150, "50"));
  assert!(
    take_jobs(&mut q, 4, 149).is_empty(),
    "not before 100 ms after the last add"
  );
  // Durable: after a restart the debounced job is there, once.
  let mut q = restart(h, q, 149);
  assert_eq!(q.count(Status::Pending), 1);
  let j = queued_job(&mut q, id);
  assert_eq!(
    (j.run_at, &*j.data, j.context_json()),
    (150, "50", "{\"t\":50}")
  );
  assert!(take_jobs(&mut q, 4, 149).is_empty());
  // One more add after the restart still moves it.
  assert_eq!(add_held(&mut q, "51", "{}", d.clone(), 149), id);
  assert!(take_jobs(&mut q, 4, 248).is_empty());
  let taken = take_jobs(&mut q, 4, 249);
  assert_eq!(taken.len(), 1);
  assert_eq!((taken[0].2, taken[0].3.as_str()), (id, "51"));
  // `skip` with a debounce keeps the first data but still moves the time.
  let s = json!({"key": "s", "debounceMs": 10, "onDuplicate": "skip"});
  let sid = add_opts(&mut q, "\"first\"", "{}", s.clone(), 250);
  assert_eq!(add_held(&mut q, "\"second\"", "{}", s, 255), sid);
  let j = queued_job(&mut q, sid);
  assert_eq!((j.run_at, &*j.data), (265, "\"first\""));
  q.check_invariants().expect("invariants");
}

fn a_concurrency_key_runs_one_job_at_a_time(h: &mut dyn Harness) {
  use serde_json::json;
  let mut q = keyed_queue(h.open(), 0);
  let t = json!({"concurrencyKey": "table"});
  let t1 = add_opts(&mut q, "1", "{}", t.clone(), 0);
  let t2 = add_opts(&mut q, "2", "{}", t.clone(), 0);
  let t3 = add_opts(
    &mut q,
    "3",
    "{}",
    json!({"concurrencyKey": "table", "priority": "high"}),
    0,
  );
  let u1 = add_opts(&mut q, "4", "{}", json!({"concurrencyKey": "other"}), 0);
  let plain = add_opts(&mut q, "5", "{}", json!({}), 0);
  let taken = take_jobs(&mut q, 4, 1);
  let ids: Vec<JobId> = taken.iter().map(|t| t.2).collect();
  // t3 first (high), then one job per key and the plain one; t1 and t2 wait
  // (pending, not failed) with a worker free.
  assert_eq!(ids, vec![t3, u1, plain]);
  assert_eq!(queued_job(&mut q, t1).status, Status::Pending);
  assert_eq!(queued_job(&mut q, t1).concurrency_key(), Some("table"));
  assert!(
    !q.has_work(1),
    "the waiting jobs are not due while their key runs"
  );
  // t3 done: the next of its key, in order.
  settle_ok(&mut q, taken[0].0, taken[0].1, 2);
  let next = take_jobs(&mut q, 4, 2);
  assert_eq!(next.iter().map(|t| t.2).collect::<Vec<_>>(), vec![t1]);
  // A restart while t1 runs: it goes back in line (the attempt counted),
  // behind t2 (due earlier), and the key is free again, for one of them.
  let mut q = restart(h, q, 3);
  let again = take_jobs(&mut q, 4, 3);
  assert_eq!(
    again.iter().map(|t| t.2).collect::<Vec<_>>(),
    vec![t2, u1, plain]
  );
  assert_eq!(queued_job(&mut q, t1).attempts, 1);
  assert_eq!(queued_job(&mut q, t1).status, Status::Pending);
  // A failed attempt frees the key too: t2 retries later, t1 runs.
  q.settle(
    &format!(
      "[{},{},0,{{\"name\":\"Error\",\"message\":\"x\"}}]",
      again[0].0, again[0].1
    ),
    4,
  )
  .expect("settle");
  q.end_batch();
  assert_eq!(
    queued_job(&mut q, t2).status,
    Status::Pending,
    "t2 retries later"
  );
  let last = take_jobs(&mut q, 4, 4);
  assert_eq!(last.iter().map(|t| t.2).collect::<Vec<_>>(), vec![t1]);
  // Cancelling the running one frees the key: a new job of the key takes
  // it, and t2's retry waits behind that one when due.
  assert!(q.cancel(t1, 5).expect("cancel"));
  q.end_batch();
  q.drain();
  let t4 = add_opts(&mut q, "6", "{}", t, 5);
  let retry_at = queued_job(&mut q, t2).run_at;
  assert!(retry_at > 5);
  assert_eq!(
    take_jobs(&mut q, 4, 5)
      .iter()
      .map(|t| t.2)
      .collect::<Vec<_>>(),
    vec![t4]
  );
  assert!(
    take_jobs(&mut q, 4, retry_at).is_empty(),
    "t4 holds the key"
  );
  q.check_invariants().expect("invariants");
}

fn keys_and_schedule_ids_survive_a_restart(h: &mut dyn Harness) {
  use crate::job::JobKeys;
  let mut s = h.open();
  let mut j = Jobs::new();
  // Plain jobs around it (cold on SQLite with one hot job): it stays in memory.
  let before = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let mut job = j.job(0, Priority::Medium, 0, 0);
  job.set_keys(JobKeys::of(Some("k"), Some("c"), Some("sched-1")));
  let id = job.id;
  s.insert(vec![job], &names()).expect("insert");
  let after = j.add(&mut *s, 0, Priority::Medium, 0, 0);
  let mut s = h.reopen(s, 0);
  let got = s.get(id).expect("read").expect("stored");
  assert_eq!(
    got.keys(),
    Some(&JobKeys {
      key: Some("k".into()),
      concurrency_key: Some("c".into()),
      schedule_id: Some("sched-1".into()),
      ..JobKeys::default()
    })
  );
  if s.kind() == "postgres" {
    // The database decides at insert (postgres/keys.rs): the queue is told
    // of no holder, and adds the job with its policy.
    assert_eq!(s.keyed("k"), None);
  } else {
    assert_eq!(s.keyed("k"), Some(id));
    assert_eq!(s.keyed("c"), None, "a concurrency key is not a unique key");
  }
  assert_eq!(claim(&mut *s, 3, 0), vec![before, id, after]);
  s.check_invariants().expect("invariants");
}

macro_rules! conformance {
  ($modname:ident, $harness:expr) => {
    mod $modname {
      use super::*;

      #[test]
      fn orders_by_priority_due_time_and_insertion() {
        super::orders_by_priority_due_time_and_insertion(&mut $harness);
      }
      #[test]
      fn delayed_jobs_wait_until_due() {
        super::delayed_jobs_wait_until_due(&mut $harness);
      }
      #[test]
      fn context_survives_with_outcome_and_dependencies() {
        super::context_survives_with_outcome_and_dependencies(&mut $harness);
      }
      #[test]
      fn late_outcomes_are_fenced_by_their_lease() {
        super::late_outcomes_are_fenced_by_their_lease(&mut $harness);
      }
      #[test]
      fn complete_hints_never_complete_the_wrong_job() {
        super::complete_hints_never_complete_the_wrong_job(&mut $harness);
      }
      #[test]
      fn complete_keeps_result_and_progress() {
        super::complete_keeps_result_and_progress(&mut $harness);
      }
      #[test]
      fn failures_retry_with_backoff_then_fail() {
        super::failures_retry_with_backoff_then_fail(&mut $harness);
      }
      #[test]
      fn unrecoverable_and_timeouts() {
        super::unrecoverable_and_timeouts(&mut $harness);
      }
      #[test]
      fn cancel_and_retry() {
        super::cancel_and_retry(&mut $harness);
      }
      #[test]
      fn prune_removes_old_finished_jobs() {
        super::prune_removes_old_finished_jobs(&mut $harness);
      }
      #[test]
      fn unregistered_jobs_wait() {
        super::unregistered_jobs_wait(&mut $harness);
      }
      #[test]
      fn recovery_requeues_or_fails_interrupted_jobs() {
        super::recovery_requeues_or_fails_interrupted_jobs(&mut $harness);
      }
      #[test]
      fn graceful_stop_does_not_count_the_attempt() {
        super::graceful_stop_does_not_count_the_attempt(&mut $harness);
      }
      #[test]
      fn dependencies_chain_and_diamond() {
        super::dependencies_chain_and_diamond(&mut $harness);
      }
      #[test]
      fn dependency_failure_propagates_unless_ignored() {
        super::dependency_failure_propagates_unless_ignored(&mut $harness);
      }
      #[test]
      fn retry_of_a_dependency_failed_job_waits_for_its_dependencies() {
        super::retry_of_a_dependency_failed_job_waits_for_its_dependencies(&mut $harness);
      }
      #[test]
      fn an_ignored_failed_dependency_retried_is_waited_for_again() {
        super::an_ignored_failed_dependency_retried_is_waited_for_again(&mut $harness);
      }
      #[test]
      fn weights_order_jobs_already_stored() {
        super::weights_order_jobs_already_stored(&mut $harness);
      }
      #[test]
      fn lists_jobs_by_filter_and_pages_by_cursor() {
        super::lists_jobs_by_filter_and_pages_by_cursor(&mut $harness);
      }
      #[test]
      fn ids_stay_ordered_across_reopen() {
        super::ids_stay_ordered_across_reopen(&mut $harness);
      }
      #[test]
      fn unique_key_skips_while_a_job_holds_it() {
        super::unique_key_skips_while_a_job_holds_it(&mut $harness);
      }
      #[test]
      fn replace_updates_an_unstarted_job_and_queues_behind_a_running_one() {
        super::replace_updates_an_unstarted_job_and_queues_behind_a_running_one(&mut $harness);
      }
      #[test]
      fn debounce_runs_once_after_the_last_add() {
        super::debounce_runs_once_after_the_last_add(&mut $harness);
      }
      #[test]
      fn a_concurrency_key_runs_one_job_at_a_time() {
        super::a_concurrency_key_runs_one_job_at_a_time(&mut $harness);
      }
      #[test]
      fn keys_and_schedule_ids_survive_a_restart() {
        super::keys_and_schedule_ids_survive_a_restart(&mut $harness);
      }
    }
  };
}

conformance!(memory, Memory);
/// The conformance cases on PostgreSQL through [`Pg`]'s harness (skipped
/// with a message when no server answers). The cases left out, and why,
/// are listed below the list.
#[cfg(feature = "postgres")]
mod postgres {
  use super::*;

  macro_rules! on_pg {
    ($($case:ident),* $(,)?) => {
      $(
        #[test]
        fn $case() {
          if let Some(mut h) = Pg::new() {
            super::$case(&mut h);
          }
        }
      )*
    };
  }

  on_pg!(
    orders_by_priority_due_time_and_insertion,
    context_survives_with_outcome_and_dependencies,
    complete_hints_never_complete_the_wrong_job,
    unrecoverable_and_timeouts,
    graceful_stop_does_not_count_the_attempt,
    cancel_and_retry,
    retry_of_a_dependency_failed_job_waits_for_its_dependencies,
    an_ignored_failed_dependency_retried_is_waited_for_again,
    lists_jobs_by_filter_and_pages_by_cursor,
    unique_key_skips_while_a_job_holds_it,
    replace_updates_an_unstarted_job_and_queues_behind_a_running_one,
    debounce_runs_once_after_the_last_add,
    a_concurrency_key_runs_one_job_at_a_time,
  );
  on_pg!(
    late_outcomes_are_fenced_by_their_lease,
    recovery_requeues_or_fails_interrupted_jobs,
  );

  // Not on PostgreSQL, each for a reason of the backend's design or of a
  // part another change owns:
  // - `complete_keeps_result_and_progress`, `failures_retry_with_backoff_then_fail`,
  //   `prune_removes_old_finished_jobs`: `finished_at` is the committer's
  //   clock at the group commit (the cluster's time), not the `now` the
  //   outcome was given; the harness's clock stands still.
  // - `delayed_jobs_wait_until_due`: `next_due` is `None`: the process
  //   keeps no line of pending jobs (the claimer polls and hears NOTIFY).
  // - `dependencies_chain_and_diamond`, `dependency_failure_propagates_unless_ignored`:
  //   dependants are released or failed in SQL by the completing statement;
  //   the process is not told which (`take_changed` is empty).
  // - `unregistered_jobs_wait`: `unregistered` is 0: jobs of calculations
  //   no process runs wait in the database uncounted by the process.
  // - `weights_order_jobs_already_stored`: the priority weight is stored
  //   with the job at insert; `set_weights` orders later inserts only.
  // - `ids_stay_ordered_across_reopen`: `max_id` is `None`: ids come from
  //   each process's clock, ordered by time across the cluster, not by one
  //   process's last id.
  // - `keys_and_schedule_ids_survive_a_restart`: the insert path does not
  //   write a fired job's schedule id yet (schedules per cluster are the
  //   PostgreSQL schedules change); its key and concurrency key are checked
  //   by the keyed cases above.
}
#[cfg(feature = "sqlite")]
conformance!(sqlite, Sqlite::new());
#[cfg(feature = "sqlite")]
conformance!(sqlite_cold, Sqlite::cold());

#[cfg(feature = "sqlite")]
mod sqlite_only {
  use super::*;

  #[test]
  fn a_second_open_is_refused_with_the_pid() {
    let mut h = Sqlite::new();
    let _first = h.open();
    let e = SqliteStore::open(&h.opts, &mut names(), 0).expect_err("locked");
    let msg = e.to_string();
    assert_eq!(e.code(), "ERR_STORAGE");
    assert!(
      msg.contains("in use") && msg.contains(&std::process::id().to_string()),
      "{msg}"
    );
    // names only what exists (no PostgreSQL store yet)
    assert!(
      msg.contains("storage.path") && !msg.contains("postgres"),
      "{msg}"
    );
  }

  #[test]
  fn a_newer_schema_is_refused_and_left_alone() {
    let h = Sqlite::new();
    if let Some(dir) = h.opts.path.parent() {
      std::fs::create_dir_all(dir).expect("dir");
    }
    {
      let c = rusqlite::Connection::open(&h.opts.path).expect("create");
      c.execute_batch("PRAGMA user_version = 7;")
        .expect("version");
    }
    let before = std::fs::read(&h.opts.path).expect("read");
    let e = SqliteStore::open(&h.opts, &mut names(), 0).expect_err("newer");
    let msg = e.to_string();
    assert!(
      msg.contains("version 7") && msg.contains(&format!("version {SCHEMA_VERSION}")),
      "{msg}"
    );
    assert_eq!(std::fs::read(&h.opts.path).expect("read"), before);
  }

  #[test]
  fn garbage_is_not_a_database_and_is_left_alone() {
    let h = Sqlite::new();
    if let Some(dir) = h.opts.path.parent() {
      std::fs::create_dir_all(dir).expect("dir");
    }
    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&h.opts.path, &junk).expect("write");
    let e = SqliteStore::open(&h.opts, &mut names(), 0).expect_err("garbage");
    assert_eq!(e.code(), "ERR_STORAGE");
    assert_eq!(std::fs::read(&h.opts.path).expect("read"), junk);
  }

  #[test]
  fn a_directory_is_not_a_file() {
    let h = Sqlite::new();
    std::fs::create_dir_all(&h.opts.path).expect("dir");
    let e = SqliteStore::open(&h.opts, &mut names(), 0).expect_err("dir");
    assert!(e.to_string().contains("is a directory"), "{e}");
  }

  /// Claims and outcomes in one group commit: the claim is folded into the
  /// outcome's write; a claim with no later outcome is still written (a
  /// retried job claimed again, a job still running).
  #[test]
  fn claim_and_outcome_in_one_commit_leave_the_final_state() {
    let mut h = Sqlite::new();
    let mut s = h.open();
    let mut j = Jobs::new();
    let done = j.add(&mut *s, 0, Priority::Medium, 0, 0);
    let retried = j.add(&mut *s, 0, Priority::Medium, 0, 2);
    let running = j.add(&mut *s, 0, Priority::Medium, 0, 0);
    assert_eq!(claim(&mut *s, 3, 1), vec![done, retried, running]);
    assert!(s.complete_current(done, "\"ok\"", 2));
    let boom = JobError {
      name: "Error".into(),
      message: "boom".into(),
      ..JobError::default()
    };
    s.fail_current(
      retried,
      boom,
      FailKind::Error {
        unrecoverable: false,
      },
      2,
      0.0,
    );
    assert_eq!(claim(&mut *s, 1, 500), vec![retried], "claimed again");
    s.end_batch();
    wait_flushed(&mut *s).expect("sync");
    s = h.reopen(s, 501);
    let get =
      |s: &mut dyn Store, id| job_of(&mut *s, id).map(|j| (j.status, j.attempts, j.started_at));
    assert_eq!(get(&mut *s, done), Some((Status::Completed, 1, 1)));
    // Both were running when the store closed, which recovery reads from
    // their claims on file: the attempt counted, then pending again with
    // retries left, failed (interrupted) without.
    assert_eq!(
      get(&mut *s, retried).map(|g| (g.0, g.1)),
      Some((Status::Pending, 2))
    );
    assert_eq!(
      get(&mut *s, running).map(|g| (g.0, g.1)),
      Some((Status::Failed, 1))
    );
  }

  /// Batches that fill the writer's transaction exactly, then one more:
  /// the one read while checking for more is written too.
  #[test]
  fn a_full_transaction_and_the_batch_after_it_are_all_written() {
    let mut h = Sqlite::new();
    let mut s = h.open();
    let mut j = Jobs::new();
    for _ in 0..40 {
      let batch = (0..1_000).map(|_| j.job(0, Priority::High, 0, 0)).collect();
      s.insert(batch, &names()).expect("insert");
      s.end_batch();
    }
    j.add(&mut *s, 0, Priority::High, 0, 0);
    s.end_batch();
    wait_flushed(&mut *s).expect("sync");
    s = h.reopen(s, 1);
    assert_eq!(s.counts()[Status::Pending as usize], 40_001);
  }

  #[test]
  fn many_writes_group_into_few_commits_and_sync_waits_for_them() {
    let mut h = Sqlite::new();
    let mut s = h.open();
    let mut j = Jobs::new();
    for _ in 0..2_000 {
      j.add(&mut *s, 0, Priority::Medium, 0, 0);
      s.end_batch();
    }
    wait_flushed(&mut *s).expect("sync");
    let (mark, rx) = s.flush_mark().expect("a durable store has a mark");
    assert!(rx.borrow().seq >= mark);
    s = h.reopen(s, 1);
    assert_eq!(s.counts()[Status::Pending as usize], 2_000);
  }
}

/// The SQLite store with few pending jobs in memory against the memory
/// store: the same operations give the same claims, states and counts.
#[cfg(feature = "sqlite")]
mod cold {
  use super::*;

  /// A small deterministic generator (xorshift).
  struct Rng(u64);

  impl Rng {
    fn below(&mut self, n: u64) -> u64 {
      self.0 ^= self.0 << 13;
      self.0 ^= self.0 >> 7;
      self.0 ^= self.0 << 17;
      self.0 % n
    }
  }

  fn seen(s: &mut dyn Store, id: JobId) -> Option<(Status, u32, u64, String, String)> {
    job_of(&mut *s, id).map(|j| {
      (
        j.status,
        j.attempts,
        j.run_at,
        j.data.to_string(),
        j.context_json().to_string(),
      )
    })
  }

  /// What a listing shows of each job.
  fn listing(
    s: &mut dyn Store,
    f: &JobFilter,
  ) -> Vec<(JobId, Status, u32, String, Option<String>)> {
    let jobs = s.list_jobs(f, &names()).expect("list_jobs");
    jobs
      .iter()
      .map(|j| {
        (
          j.id,
          j.status,
          j.attempts,
          j.data.to_string(),
          j.extra
            .as_ref()
            .and_then(|e| e.result.as_deref().map(String::from)),
        )
      })
      .collect()
  }

  fn random_filter(rng: &mut Rng, known: &[JobId], now: u64) -> JobFilter {
    let mut f = JobFilter {
      limit: 1 + rng.below(12) as usize,
      ascending: rng.below(2) == 0,
      include_data: rng.below(2) == 0,
      ..JobFilter::default()
    };
    match rng.below(4) {
      0 => f.statuses = 1 << Status::Pending as u8,
      1 => f.statuses = 1 + rng.below(0x7f) as u8,
      _ => {}
    }
    if rng.below(3) == 0 {
      f.name = Some(rng.below(3) as u32);
    }
    if rng.below(3) == 0 {
      f.since = Some(now.saturating_sub(rng.below(200)));
    }
    if rng.below(4) == 0 {
      f.until = Some(now.saturating_sub(rng.below(100)));
    }
    if rng.below(2) == 0 && !known.is_empty() {
      f.after = Some(known[rng.below(known.len() as u64) as usize]);
    }
    f
  }

  fn run(seed: u64, hot_pending: usize, steps: usize) {
    let mut h = Sqlite::new();
    h.opts.hot_pending = hot_pending;
    let mut cold: Box<dyn Store> = h.open();
    let mut mem: Box<dyn Store> = Box::new(MemoryStore::new());
    let mut rng = Rng(seed);
    let mut ids = IdGen::default();
    let mut known: Vec<JobId> = Vec::new();
    let mut running: Vec<JobId> = Vec::new();
    let mut now = 1_000u64;
    for step in 0..steps {
      let what = rng.below(100);
      if what < 40 {
        let mut batch = Vec::new();
        for i in 0..1 + rng.below(6) {
          let priority = match rng.below(10) {
            0 => Priority::High,
            1 => Priority::Low,
            2 => Priority::Weight(2),
            _ => Priority::Medium,
          };
          let run_at = if rng.below(8) == 0 {
            now + 1 + rng.below(50)
          } else {
            now
          };
          let deps = (rng.below(12) == 0 && !known.is_empty()).then(|| Dependencies {
            ids: vec![known[rng.below(known.len() as u64) as usize]],
            ignore_failure: rng.below(2) == 0,
          });
          let context = if rng.below(5) == 0 { "{\"t\":1}" } else { "" };
          let job = Job {
            max_retries: rng.below(3) as u32,
            extra: JobExtra::of(deps, context),
            priority,
            ..Job::new(
              ids.next(now),
              (i % 3) as u32,
              now,
              run_at,
              format!("{{\"n\":{step}}}").into(),
            )
          };
          known.push(job.id);
          batch.push(job);
        }
        let copy: Vec<Job> = batch.iter().map(|j| Job { ..j.clone() }).collect();
        mem.insert(copy, &names()).expect("insert");
        cold.insert(batch, &names()).expect("insert");
      } else if what < 65 {
        let max = 1 + rng.below(4) as usize;
        let (a, b) = (claim(&mut *mem, max, now), claim(&mut *cold, max, now));
        assert_eq!(
          a, b,
          "claims at step {step} (seed {seed}, hot {hot_pending})"
        );
        running.extend(a);
      } else if what < 80 && !running.is_empty() {
        let id = running.swap_remove(rng.below(running.len() as u64) as usize);
        if rng.below(3) == 0 {
          let kind = FailKind::Error {
            unrecoverable: false,
          };
          let a = mem.fail_current(id, err("x"), kind, now, 0.0);
          assert_eq!(
            a,
            cold.fail_current(id, err("x"), kind, now, 0.0),
            "step {step}"
          );
        } else {
          let a = mem.complete_current(id, "1", now);
          assert_eq!(a, cold.complete_current(id, "1", now), "step {step}");
        }
      } else if what < 85 && !known.is_empty() {
        let id = known[rng.below(known.len() as u64) as usize];
        assert_eq!(
          mem.cancel(id, now).expect("cancel"),
          cold.cancel(id, now).expect("cancel"),
          "cancel at step {step}"
        );
        running.retain(|r| *r != id);
      } else if what < 95 && !known.is_empty() {
        let id = known[rng.below(known.len() as u64) as usize];
        assert_eq!(
          seen(&mut *mem, id),
          seen(&mut *cold, id),
          "get at step {step}"
        );
        let f = random_filter(&mut rng, &known, now);
        assert_eq!(
          listing(&mut *mem, &f),
          listing(&mut *cold, &f),
          "list_jobs at step {step} (seed {seed}, hot {hot_pending}): {f:?}"
        );
      } else if what < 96 {
        let before = now.saturating_sub(rng.below(30));
        assert_eq!(
          mem.prune(before).expect("prune"),
          cold.prune(before).expect("prune"),
          "prune at step {step}"
        );
      } else if what < 97 {
        // A restart: both recover what was running.
        cold.end_batch();
        cold = h.reopen(cold, now);
        mem.recover_interrupted(now).expect("recover_interrupted");
        running.clear();
      } else {
        now += 1 + rng.below(20);
      }
      if rng.below(3) == 0 {
        now += 1;
      }
      cold.end_batch();
      assert_eq!(
        mem.counts(),
        cold.counts(),
        "counts at step {step} (seed {seed})"
      );
      // Exact, but after the first cold job was cancelled (brought into
      // memory) it counts from that job's due time until the next claim.
      let (m, c) = (mem.oldest_due(), cold.oldest_due());
      assert!(
        c == m || (c.is_some() && m.is_some() && c < m),
        "oldest due at step {step}: {m:?} in memory, {c:?}"
      );
      cold.check_invariants().expect("invariants");
    }
    // Everything left runs, in the same order.
    now += 1_000;
    loop {
      let (a, b) = (claim(&mut *mem, 7, now), claim(&mut *cold, 7, now));
      assert_eq!(a, b, "draining (seed {seed}, hot {hot_pending})");
      if a.is_empty() {
        break;
      }
      for id in a {
        mem.complete_current(id, "1", now);
        cold.complete_current(id, "1", now);
      }
    }
    assert_eq!(mem.counts(), cold.counts());
    assert_eq!(mem.list(None, usize::MAX), cold.list(None, usize::MAX));
    let all = JobFilter::default();
    assert_eq!(listing(&mut *mem, &all), listing(&mut *cold, &all));
  }

  #[test]
  fn behaves_like_the_memory_store() {
    for seed in 1..=6u64 {
      for hot in [1, 4] {
        run(seed * 7919, hot, 500);
      }
    }
  }

  /// 3 in memory, 7 in the file only.
  fn ten_plain(h: &mut Sqlite) -> (Box<dyn Store>, Vec<JobId>) {
    h.opts.hot_pending = 3;
    let mut s = h.open();
    let mut j = Jobs::new();
    let ids = (0..10)
      .map(|_| j.add(&mut *s, 5, Priority::Medium, 5, 0))
      .collect();
    s.end_batch();
    (s, ids)
  }

  #[test]
  fn a_cold_job_reads_counts_and_lists_like_any_pending_job() {
    let mut h = Sqlite::new();
    let (mut s, ids) = ten_plain(&mut h);
    assert_eq!(s.counts()[Status::Pending as usize], 10);
    let j = job_of(&mut *s, ids[9]).expect("the last job, read from the file");
    assert_eq!(
      (j.status, j.attempts, &*j.data),
      (Status::Pending, 0, "{\"x\":1}")
    );
    assert_eq!(s.list(Some(Status::Pending), 100), ids);
    assert_eq!(s.list(None, 4), ids[..4].to_vec());
    assert_eq!(s.oldest_due(), Some(5));
    assert_eq!(s.max_id(), Some(ids[9]));
    assert!(
      job_of(&mut *s, JobId(ids[9].0 + 1)).is_none(),
      "an id no job has"
    );
  }

  #[test]
  fn cancelling_or_depending_on_a_cold_job_works_and_the_rest_keep_their_order() {
    let mut h = Sqlite::new();
    let (mut s, ids) = ten_plain(&mut h);
    assert_eq!(s.cancel(ids[6], 6).expect("cancel"), Some(Status::Pending));
    let mut j = Jobs::new();
    j.0.seed(ids[9]);
    let waits = dependent(&mut j, &mut *s, &[ids[8]], false);
    assert_eq!(status(&mut *s, waits), Some((Status::Waiting, 0)));
    let order: Vec<JobId> = ids.iter().copied().filter(|&id| id != ids[6]).collect();
    assert_eq!(claim(&mut *s, 20, 7), order);
    assert!(s.complete_current(ids[8], "1", 8));
    assert_eq!(status(&mut *s, waits), Some((Status::Pending, 0)));
    assert_eq!(s.counts()[Status::Cancelled as usize], 1);
  }

  #[test]
  fn cold_jobs_stay_in_the_file_across_a_restart() {
    let mut h = Sqlite::new();
    let (s, ids) = ten_plain(&mut h);
    let mut s = h.reopen(s, 9);
    assert_eq!(s.counts()[Status::Pending as usize], 10);
    assert_eq!(s.check_invariants(), Ok(()));
    assert_eq!(claim(&mut *s, 4, 10), ids[..4].to_vec());
    assert_eq!(claim(&mut *s, 20, 10), ids[4..].to_vec());
  }

  #[test]
  fn cold_jobs_read_after_close_and_leave_no_wal_behind() {
    let mut h = Sqlite::new();
    let (mut s, ids) = ten_plain(&mut h);
    s.close();
    assert_eq!(status(&mut *s, ids[9]), Some((Status::Pending, 0)));
    assert_eq!(s.list(Some(Status::Pending), 100), ids);
    let newest: Vec<JobId> = ids.iter().rev().copied().collect();
    assert_eq!(listed(&mut *s, &JobFilter::default()), newest);
    let dir = h.opts.path.parent().expect("dir");
    let mut files: Vec<String> = std::fs::read_dir(dir)
      .expect("dir")
      .filter_map(|e| e.ok()?.file_name().into_string().ok())
      .collect();
    files.sort();
    assert_eq!(files, ["jobs.db", "jobs.db.lock"]);
  }

  /// A job pruned from memory is still pending in the file until the writer
  /// commits its outcome and its removal: it is not taken for a cold job.
  #[test]
  fn a_pruned_job_not_yet_committed_is_not_read_back() {
    let (_h, mut s, mut j, a, b) = one_in_memory_one_in_the_file();
    let high = j.add(&mut *s, 5, Priority::High, 5, 0);
    s.end_batch();
    wait_flushed(&mut *s).expect("sync");
    assert_eq!(claim(&mut *s, 1, 6), vec![high]);
    assert!(s.complete_current(high, "1", 6));
    assert_eq!(s.prune(6).expect("prune"), 1);
    assert!(job_of(&mut *s, high).is_none());
    assert_eq!(claim(&mut *s, 10, 7), vec![a, b]);
  }

  /// One pending job in memory (`a`), one in the file only (`b`), its
  /// insert not sent to the writer yet.
  fn one_in_memory_one_in_the_file() -> (Sqlite, Box<dyn Store>, Jobs, JobId, JobId) {
    let mut h = Sqlite::new();
    h.opts.hot_pending = 1;
    let mut s = h.open();
    let mut j = Jobs::new();
    let a = j.add(&mut *s, 5, Priority::Medium, 5, 0);
    let b = j.add(&mut *s, 5, Priority::Medium, 5, 0);
    (h, s, j, a, b)
  }

  #[test]
  fn a_cold_job_added_just_now_is_read_without_sending_anything() {
    let mut h = Sqlite::new();
    h.opts.hot_pending = 1;
    let mut s = SqliteStore::open(&h.opts, &mut names(), 0).expect("open");
    let mut j = Jobs::new();
    let a = j.add(&mut s, 5, Priority::Medium, 5, 0);
    let b = j.add(&mut s, 5, Priority::Medium, 5, 0);
    let s = &mut s;
    // No end_batch: the insert is still with the store, and stays there
    // (an operation's writes reach the writer together).
    let mark = s.write_mark();
    assert_eq!(status(&mut *s, b), Some((Status::Pending, 0)));
    assert_eq!(s.cancel(b, 6).expect("cancel"), Some(Status::Pending));
    assert_eq!(s.write_mark(), mark);
    assert_eq!(s.committed(), 0);
    assert_eq!(claim(&mut *s, 2, 6), vec![a]);
    assert_eq!(status(&mut *s, b), Some((Status::Cancelled, 0)));
  }

  /// Cold jobs of a calculation that cannot run stay in the file and do not
  /// hold back jobs that can.
  #[test]
  fn cold_jobs_of_an_unregistered_calculation_stay_cold_and_do_not_block() {
    let mut h = Sqlite::new();
    h.opts.hot_pending = 2;
    let mut s = h.open();
    let mut j = Jobs::new();
    let waits: Vec<JobId> = (0..10)
      .map(|_| j.add(&mut *s, 5, Priority::Medium, 5, 0))
      .collect();
    let mut low = j.job(5, Priority::Low, 5, 0);
    low.name = 1;
    let low_id = low.id;
    s.insert(vec![low], &names()).expect("insert");
    s.end_batch();
    let only_b = |n: u32| n == 1;
    let mut got = vec![];
    s.claim(5, 6, &only_b, &mut |job, _| got.push(job.id))
      .expect("claim");
    assert_eq!(got, vec![low_id]);
    assert!(!s.has_due(6, &only_b));
    assert_eq!(s.unregistered(), 2, "only the two in memory are held back");
    assert_eq!(s.counts()[Status::Pending as usize], 10);
    // Registered: all run, in order.
    s.registered(0);
    assert_eq!(claim(&mut *s, 20, 7), waits);
  }
}
