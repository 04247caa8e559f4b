//! Connection loss: when PostgreSQL restarts or the network drops, the
//! backend's writes are retried with backoff until they commit, and the
//! storage reports itself degraded meanwhile (issue #12, point 9).
//!
//! Why a probe rather than sorting errors: a write's error arrives as
//! `ERR_STORAGE` text, and the same broken socket shows up as an I/O error,
//! "connection closed", or a pool timeout depending on where it broke. So a
//! failed write asks the server directly ([`PgStore::probe`]: a fresh
//! pooled connection and `SELECT 1`). If the server does not answer, the
//! connection is down: the write waits ([`RetryBackoff`]: 100 ms doubling to
//! 5 s, jittered) and is tried again, for as long as it takes. If the
//! server answers, the write is tried again at once (its pooled connection
//! may have been the broken one); a write that still fails while the server
//! answers ([`RetryPolicy::real_tries`] times in a row) is a real error and
//! returned, as before this module.
//!
//! Retrying is safe because every write is idempotent or fenced: a group
//! commit matches `(id, owner, attempt)`, so an outcome whose first commit
//! went through although its answer was lost cannot apply twice, and a
//! retried commit first recognises what an earlier try committed
//! ([`PgStore::apply_again`]), so such an outcome is reported applied (its
//! event fires), not fenced; a hand-back is fenced the same way; a
//! heartbeat is an update; a progress write is an update fenced by the
//! lease (`progress.rs`); an insert is retried only for the jobs that are neither in `job` nor in
//! `done` ([`PgStore::insert_retrying`]), so a job whose insert committed and
//! ran elsewhere meanwhile is not added twice. A claim is not retried but
//! its jobs are released: one whose answer was lost would otherwise hold
//! its jobs as running here until their lease ran out
//! ([`PgStore::release_lost`]; found in the outage test, where it stalled
//! 65 jobs for a minute).
//!
//! A server that keeps the connection open but stops answering would hold
//! a write forever: each try is bounded by `storage.statementTimeoutMs`
//! ([`PgStore::bounded`]; default 30 s), after which it is a failed try
//! like any other (a claim so cut off is released as one whose answer was
//! lost). Reads (`read.rs`: a job, a page of jobs, the counts; the
//! schedules) are bounded by the same timeout but not retried: the caller
//! (`getJobStatus`, `getJobs`, the counts' refresh, the schedule task's
//! read) gets `ERR_STORAGE` saying which read timed out. The LISTEN
//! connection's connect and its `LISTEN` statement are bounded too
//! (`notify.rs`); the claimer opens it again with backoff.
//!
//! [`ConnHealth`] collects which tasks are failing (committer, inserter,
//! claimer, heartbeat, progress, LISTEN) and since when: degraded while any is, and
//! unhealthy after [`RetryPolicy::unhealthy_after`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::fast::Claiming;
use super::{big, int, pg_err, Applied, NewJob, Outcome, OutcomeKind, PgId, PgStore};
use crate::error::{Error, Result};
use crate::job::{JobId, Status};
use crate::storage::{StorageHealth, StorageState, StoreFailed};

/// How failed writes are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
  /// The first wait after the server did not answer.
  pub base: Duration,
  /// The longest wait between tries.
  pub cap: Duration,
  /// Failing for this long is unhealthy (before: degraded).
  pub unhealthy_after: Duration,
  /// Failures in a row while the server answers the probe before the
  /// error is given up as real.
  pub real_tries: u32,
}

impl Default for RetryPolicy {
  fn default() -> Self {
    RetryPolicy {
      base: Duration::from_millis(100),
      cap: Duration::from_secs(5),
      unhealthy_after: Duration::from_secs(30),
      real_tries: 3,
    }
  }
}

/// Capped exponential backoff with jitter: try `n` (from 0) waits a random
/// time in `[d/2, d]` with `d = min(cap, base * 2^n)` (half of it fixed, so
/// a wait is never near zero; half random, so that processes that lost the
/// server together do not come back in step).
#[derive(Debug, Clone)]
pub struct RetryBackoff {
  policy: RetryPolicy,
  tries: u32,
  seed: u64,
}

impl RetryBackoff {
  pub fn new(policy: RetryPolicy) -> RetryBackoff {
    let seed = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
      | 1;
    RetryBackoff {
      policy,
      tries: 0,
      seed,
    }
  }

  /// The ceiling of the next wait (before jitter).
  pub fn ceiling(&self) -> Duration {
    let f = 1u32 << self.tries.min(20);
    self.policy.base.saturating_mul(f).min(self.policy.cap)
  }

  /// The next wait, with `rand` in `[0, 1)`.
  pub fn next_with(&mut self, rand: f64) -> Duration {
    let d = self.ceiling();
    self.tries = self.tries.saturating_add(1);
    d.mul_f64(0.5 + 0.5 * rand.clamp(0.0, 1.0))
  }

  /// The next wait (xorshift jitter).
  pub fn next_wait(&mut self) -> Duration {
    self.seed ^= self.seed << 13;
    self.seed ^= self.seed >> 7;
    self.seed ^= self.seed << 17;
    let r = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
    self.next_with(r)
  }

  /// Back to the first wait (after a success).
  pub fn reset(&mut self) {
    self.tries = 0;
  }

  /// Tries since the last reset.
  pub fn tries(&self) -> u32 {
    self.tries
  }
}

/// A task whose writes are failing.
#[derive(Debug, Clone)]
struct Failing {
  since: Instant,
  error: String,
}

/// Which of the backend's tasks are failing, and since when (shared by
/// every clone of a [`PgStore`]).
#[derive(Debug)]
pub struct ConnHealth {
  policy: RetryPolicy,
  failing: Mutex<HashMap<&'static str, Failing>>,
  /// Times the storage went from healthy to failing.
  outages: AtomicU64,
  /// Closing: retries give up once the server does not answer.
  closing: AtomicBool,
}

impl Default for ConnHealth {
  fn default() -> Self {
    ConnHealth::new(RetryPolicy::default())
  }
}

impl ConnHealth {
  pub fn new(policy: RetryPolicy) -> ConnHealth {
    ConnHealth {
      policy,
      failing: Mutex::new(HashMap::new()),
      outages: AtomicU64::new(0),
      closing: AtomicBool::new(false),
    }
  }

  pub fn policy(&self) -> RetryPolicy {
    self.policy
  }

  /// `task` failed with `error` (it keeps the time of its first failure).
  pub fn failed(&self, task: &'static str, error: &str) {
    let mut f = self.failing.lock();
    if f.is_empty() {
      self.outages.fetch_add(1, Ordering::Relaxed);
    }
    let e = f.entry(task).or_insert_with(|| Failing {
      since: Instant::now(),
      error: String::new(),
    });
    e.error = error.to_string();
  }

  /// `task` succeeded.
  pub fn ok(&self, task: &'static str) {
    let mut f = self.failing.lock();
    if !f.is_empty() {
      f.remove(task);
    }
  }

  /// True while some task is failing.
  pub fn is_failing(&self) -> bool {
    !self.failing.lock().is_empty()
  }

  /// Times the storage went from healthy to failing.
  pub fn outages(&self) -> u64 {
    self.outages.load(Ordering::Relaxed)
  }

  /// Retries stop waiting for the server (the store is closing).
  pub fn set_closing(&self) {
    self.closing.store(true, Ordering::Release);
  }

  fn is_closing(&self) -> bool {
    self.closing.load(Ordering::Acquire)
  }

  /// Healthy, degraded (failing for less than `unhealthy_after`) or
  /// unhealthy, with the failing tasks and the last error.
  pub fn health(&self) -> StorageHealth {
    let f = self.failing.lock();
    let Some(first) = f.values().min_by_key(|x| x.since) else {
      return StorageHealth::healthy();
    };
    let down = first.since.elapsed();
    let mut tasks: Vec<&str> = f.keys().copied().collect();
    tasks.sort_unstable();
    let last = f
      .values()
      .max_by_key(|x| x.since)
      .map_or("", |x| x.error.as_str());
    let state = if down >= self.policy.unhealthy_after {
      StorageState::Unhealthy
    } else {
      StorageState::Degraded
    };
    StorageHealth {
      state,
      down_ms: Some(down.as_millis() as u64),
      message: Some(format!(
        "PostgreSQL has been failing for {} s; retrying ({}): {last}",
        down.as_secs(),
        tasks.join(", ")
      )),
    }
  }
}

/// Runs `op` until it succeeds (see the module docs): after a failure,
/// `probe` asks whether the server answers; if not, `task` is reported
/// failing in `health` and `op` is tried again after the next backoff
/// wait; if it does, `op` is tried again at once, and its error is returned
/// after [`RetryPolicy::real_tries`] such failures in a row. While closing
/// (see [`ConnHealth::set_closing`]), a failure the probe confirms is
/// returned instead of waited out.
pub async fn retry<T, Op, Fut, Pr, PFut>(
  health: &ConnHealth,
  task: &'static str,
  mut op: Op,
  mut probe: Pr,
) -> Result<T>
where
  Op: FnMut() -> Fut,
  Fut: Future<Output = Result<T>>,
  Pr: FnMut() -> PFut,
  PFut: Future<Output = Result<()>>,
{
  let policy = health.policy();
  let mut backoff = RetryBackoff::new(policy);
  let mut real = 0;
  loop {
    let e = match op().await {
      Ok(v) => {
        health.ok(task);
        return Ok(v);
      }
      Err(e) => e,
    };
    match probe().await {
      Ok(()) => {
        real += 1;
        if real >= policy.real_tries {
          health.ok(task);
          return Err(e);
        }
      }
      Err(down) => {
        real = 0;
        health.failed(task, &why(&down));
        if health.is_closing() {
          return Err(e);
        }
        tokio::time::sleep(backoff.next_wait()).await;
      }
    }
  }
}

/// An error's message without the "storage error:" prefix of its display.
pub(crate) fn why(e: &Error) -> String {
  match e {
    Error::Storage(m) => m.clone(),
    other => other.to_string(),
  }
}

impl PgStore {
  /// Whether the server answers: a pooled connection (a new one if the
  /// pool's are broken) runs `SELECT 1`, within the connect timeout.
  pub async fn probe(&self) -> Result<()> {
    let limit = self.cfg.connect_timeout + Duration::from_millis(100);
    let target = self.cfg.target();
    let fut = async {
      let c = self.client().await?;
      c.simple_query("SELECT 1").await.map_err(pg_err("probe"))?;
      Ok(())
    };
    tokio::time::timeout(limit, fut).await.map_err(|_| {
      Error::Storage(format!(
        "PostgreSQL at {target} did not answer within {} ms",
        limit.as_millis()
      ))
    })?
  }

  /// The connection's health (shared by every clone of this store).
  pub fn conn(&self) -> &ConnHealth {
    &self.conn
  }

  /// Runs `op` on this store until it succeeds (see [`retry`]), each try
  /// bounded by the statement timeout ([`PgStore::bounded`]).
  pub async fn retrying<T, Op, Fut>(&self, task: &'static str, mut op: Op) -> Result<T>
  where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
  {
    retry(
      &self.conn,
      task,
      || self.bounded(task, op()),
      || self.probe(),
    )
    .await
  }

  /// `fut` (statements on a pooled connection: a write's try, or a read),
  /// bounded by `storage.statementTimeoutMs`: a server that keeps the
  /// connection open but does not answer (hung, or a network that drops
  /// packets without a reset) fails it with `ERR_STORAGE` naming `what`
  /// instead of holding the write or the read, and the task or the caller
  /// behind it, forever. Under [`PgStore::retrying`] the probe (bounded by
  /// the connect timeout) then tells a hung server from a slow statement,
  /// and a hang is waited out like an outage; a read is not retried (its
  /// caller gets the error). The pool's idle connections are closed after a
  /// timeout (the one that hung went back to the pool when `fut` was
  /// dropped, and would hang the next try).
  pub async fn bounded<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(self.cfg.statement_timeout, fut).await {
      Ok(r) => r,
      Err(_) => {
        self.release_idle();
        Err(self.no_answer(what))
      }
    }
  }

  /// [`PgStore::bounded`] for statements outside the pool (the LISTEN
  /// connection's): the pool's connections are left alone.
  pub(crate) async fn unpooled_bounded<T>(
    &self,
    what: &str,
    fut: impl Future<Output = Result<T>>,
  ) -> Result<T> {
    tokio::time::timeout(self.cfg.statement_timeout, fut)
      .await
      .map_err(|_| self.no_answer(what))?
  }

  /// The error of `what` cut off by the statement timeout.
  fn no_answer(&self, what: &str) -> Error {
    Error::Storage(format!(
      "PostgreSQL at {} did not answer ({what}) within {} ms (storage.statementTimeoutMs)",
      self.cfg.target(),
      self.cfg.statement_timeout.as_millis()
    ))
  }

  /// Inserts `jobs` until committed: the first try inserts them all; a
  /// retry first drops the jobs already in `job` or `done` (an earlier try
  /// committed although its answer was lost; such a job may even have run
  /// and finished since), so no job is inserted twice. With `claiming`,
  /// those of its ids go in claimed (fast.rs), on every try: they may be
  /// running here already, and the claim time is never released as a lost
  /// claim's is.
  ///
  /// Returns the jobs the insert failed at once (a dependency that failed
  /// or named no job), for their `failed` events; those of a try whose
  /// answer was lost are not known (their events do not fire).
  pub(crate) async fn insert_retrying(
    &self,
    jobs: &[NewJob],
    now: u64,
    claiming: Option<Claiming<'_>>,
  ) -> Result<Vec<StoreFailed>> {
    let mut first = true;
    self
      .retrying("insert", || {
        let again = !std::mem::replace(&mut first, false);
        async move {
          let left: Vec<NewJob>;
          let rows = if again {
            let have = self.existing(jobs).await?;
            left = jobs
              .iter()
              .filter(|j| !have.contains(&j.id))
              .cloned()
              .collect();
            if left.is_empty() {
              return Ok(Vec::new());
            }
            &left[..]
          } else {
            jobs
          };
          match claiming {
            None => self.insert_reporting(rows, now).await.map(|r| r.1),
            Some(c) => self
              .insert_claiming(rows, now, c.ids, c.opts, c.at)
              .await
              .map(|r| r.1),
          }
        }
      })
      .await
  }

  /// Applies outcomes again after a try whose answer was lost: the ones
  /// that try committed are recognised and reported applied (a completed
  /// or final failure is in `done` with that status and attempt; a retry is
  /// pending again with the attempt as decided and its exact `run_at`);
  /// the others go through [`PgStore::apply`] (fenced if no longer
  /// current). Another process's later outcome of the job never matches:
  /// a rescue counts the attempt, so its claim's attempt differs.
  pub async fn apply_again(&self, outcomes: &[Outcome], now: u64) -> Result<Applied> {
    let s = &self.quoted;
    let ids: Vec<PgId> = outcomes.iter().map(|o| PgId(o.lease.id)).collect();
    let c = self.client().await?;
    let what = "apply outcomes: checking a retried commit";
    let done: HashMap<JobId, (i16, i32)> = c
      .query(
        &format!("SELECT id, status, attempts FROM {s}.done WHERE id = ANY($1)"),
        &[&ids],
      )
      .await
      .map_err(pg_err(what))?
      .iter()
      .map(|r| (r.get::<_, PgId>(0).0, (r.get(1), r.get(2))))
      .collect();
    let pending: HashMap<JobId, (i32, i64)> = c
      .query(
        &format!(
          "SELECT id, attempts, run_at FROM {s}.job \
           WHERE id = ANY($1) AND state = 1 AND owner IS NULL"
        ),
        &[&ids],
      )
      .await
      .map_err(pg_err(what))?
      .iter()
      .map(|r| (r.get::<_, PgId>(0).0, (r.get(1), r.get(2))))
      .collect();
    drop(c);
    let mut applied = Applied::default();
    let mut rest = Vec::new();
    for o in outcomes {
      let id = o.lease.id;
      let attempt = int(o.lease.attempt);
      let (hit, list) = match &o.kind {
        OutcomeKind::Completed { .. } => (
          done.get(&id) == Some(&(Status::Completed as i16, attempt)),
          &mut applied.completed,
        ),
        OutcomeKind::Failed { status, .. } => (
          done.get(&id) == Some(&(*status as i16, attempt)),
          &mut applied.failed,
        ),
        OutcomeKind::Retry {
          run_at, uncount, ..
        } => (
          pending.get(&id) == Some(&(attempt - i32::from(*uncount), big(*run_at))),
          &mut applied.retried,
        ),
      };
      if hit {
        list.push(id);
      } else {
        rest.push(o.clone());
      }
    }
    if !rest.is_empty() {
      let a = self.apply(&rest, now).await?;
      applied.completed.extend(a.completed);
      applied.retried.extend(a.retried);
      applied.failed.extend(a.failed);
      applied.fenced.extend(a.fenced);
      applied.released.extend(a.released);
      applied.dependency_failed.extend(a.dependency_failed);
    }
    Ok(applied)
  }

  /// The ids among `jobs` that are in `job` or `done`.
  pub(super) async fn existing(&self, jobs: &[NewJob]) -> Result<HashSet<JobId>> {
    let s = &self.quoted;
    let ids: Vec<PgId> = jobs.iter().map(|j| PgId(j.id)).collect();
    let c = self.client().await?;
    let rows = c
      .query(
        &format!(
          "SELECT id FROM {s}.job WHERE id = ANY($1) UNION ALL \
           SELECT id FROM {s}.done WHERE id = ANY($1)"
        ),
        &[&ids],
      )
      .await
      .map_err(pg_err("insert: checking a retried batch"))?;
    Ok(rows.iter().map(|r| r.get::<_, PgId>(0).0).collect())
  }

  /// Hands back the jobs of claims whose answer was lost: a claim is one
  /// statement, so a connection that broke while it ran may have committed
  /// it without this process ever seeing its jobs, which would then sit as
  /// running here until their lease ran out (15 min without a timeout).
  /// Every claim of a process starts its jobs at a distinct `started_at`
  /// (the claimer makes its claim times strictly increasing), so the jobs
  /// still running under `owner` since one of `claimed_at` are exactly the
  /// lost ones: pending again, attempt uncounted, as a hand-back. Returns
  /// how many.
  pub async fn release_lost(&self, owner: i64, claimed_at: &[u64], now: u64) -> Result<usize> {
    if claimed_at.is_empty() {
      return Ok(0);
    }
    let s = &self.quoted;
    let at: Vec<i64> = claimed_at.iter().map(|t| big(*t)).collect();
    let mut client = self.client().await?;
    let tx = client
      .transaction()
      .await
      .map_err(pg_err("release lost claims"))?;
    let n = tx
      .execute(
        &format!(
          "UPDATE {s}.job j SET state = 1, attempts = j.attempts - 1, owner = NULL, \
             lease_until = NULL \
           WHERE j.state::int = 2 AND j.owner = $1 AND j.started_at = ANY($2::bigint[])"
        ),
        &[&owner, &at],
      )
      .await
      .map_err(pg_err("release lost claims"))? as usize;
    if n > 0 {
      self.notify_in(&tx, &format!("i:{now}")).await?;
    }
    tx.commit()
      .await
      .map_err(pg_err("release lost claims: commit"))?;
    Ok(n)
  }

  /// The heartbeat, registering the process again under its id when its
  /// row is gone (another process found it silent for `deadAfterMs`
  /// during an outage and rescued its jobs: their late outcomes are fenced
  /// by attempt). Without this, every job it claims later would be rescued
  /// from an owner that does not exist. Returns false when it had to
  /// register again.
  pub async fn heartbeat_or_register(
    &self,
    id: i64,
    host: &str,
    pid: u32,
    now: u64,
  ) -> Result<bool> {
    if self.heartbeat(id, now).await? {
      return Ok(true);
    }
    let s = &self.quoted;
    let c = self.client().await?;
    c.execute(
      &format!(
        "INSERT INTO {s}.process (id, host, pid, started_at, last_seen) \
         OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (id) DO UPDATE SET last_seen = greatest({s}.process.last_seen, $4)"
      ),
      &[&id, &host, &(pid as i32), &big(now)],
    )
    .await
    .map_err(pg_err("register the process again"))?;
    Ok(false)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::atomic::AtomicU32;
  use std::sync::Arc;

  fn down() -> Result<()> {
    Err(Error::Storage("connection refused".into()))
  }

  #[test]
  fn backoff_doubles_from_base_to_cap_with_jitter_in_the_upper_half() {
    let mut b = RetryBackoff::new(RetryPolicy::default());
    let ceilings: Vec<u64> = (0..9)
      .map(|_| {
        let c = b.ceiling().as_millis() as u64;
        let w = b.next_wait();
        assert!(
          w >= b_half(c) && w <= Duration::from_millis(c),
          "{w:?} of {c}"
        );
        c
      })
      .collect();
    assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    assert_eq!(b.tries(), 9);
    b.reset();
    assert_eq!(b.ceiling(), Duration::from_millis(100));
    // The jitter's ends.
    assert_eq!(b.next_with(0.0), Duration::from_millis(50));
    assert_eq!(b.next_with(1.0), Duration::from_millis(200));
    // Many tries never overflow.
    for _ in 0..100 {
      b.next_wait();
    }
    assert_eq!(b.ceiling(), Duration::from_secs(5));
  }

  fn b_half(ms: u64) -> Duration {
    Duration::from_millis(ms) / 2
  }

  /// The server is down for 6 tries: the op waits out the backoff (paused
  /// time: the waits add up exactly within their jitter bounds), the
  /// storage is degraded meanwhile, then healthy once it committed.
  #[tokio::test(start_paused = true)]
  async fn retries_with_backoff_while_the_server_is_down_then_succeeds() {
    let h = ConnHealth::default();
    let tries = AtomicU32::new(0);
    let seen = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let r = retry(
      &h,
      "commit",
      || {
        let n = tries.fetch_add(1, Ordering::SeqCst);
        seen.lock().push(h.health().state);
        async move {
          if n < 6 {
            Err(Error::Storage("io error".into()))
          } else {
            Ok(n)
          }
        }
      },
      || {
        let n = tries.load(Ordering::SeqCst);
        async move {
          if n <= 6 {
            down()
          } else {
            Ok(())
          }
        }
      },
    )
    .await;
    assert_eq!(r, Ok(6));
    let waited = t0.elapsed();
    // Six waits: ceilings 100+200+400+800+1600+3200 = 6300 ms, each at
    // least half of its ceiling.
    assert!(waited >= Duration::from_millis(3150), "{waited:?}");
    assert!(waited <= Duration::from_millis(6300), "{waited:?}");
    let states = seen.lock().clone();
    assert_eq!(states[0], StorageState::Healthy);
    assert!(states[1..].iter().all(|s| *s == StorageState::Degraded));
    assert_eq!(h.health(), StorageHealth::healthy());
    assert_eq!(h.outages(), 1);
  }

  /// An error while the server answers is real: given up after
  /// `real_tries` immediate tries, with no wait and no degraded state left.
  #[tokio::test(start_paused = true)]
  async fn an_error_while_the_server_answers_is_returned_after_a_few_tries() {
    let h = ConnHealth::default();
    let tries = AtomicU32::new(0);
    let t0 = Instant::now();
    let r: Result<()> = retry(
      &h,
      "insert",
      || {
        tries.fetch_add(1, Ordering::SeqCst);
        async { Err(Error::Storage("duplicate key".into())) }
      },
      || async { Ok(()) },
    )
    .await;
    assert_eq!(r, Err(Error::Storage("duplicate key".into())));
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(h.health().state, StorageState::Healthy);
  }

  /// A stale pooled connection: the op fails once, the probe (a fresh
  /// connection) answers, the second try goes through at once.
  #[tokio::test(start_paused = true)]
  async fn a_broken_pooled_connection_is_retried_at_once() {
    let h = ConnHealth::default();
    let tries = AtomicU32::new(0);
    let r = retry(
      &h,
      "commit",
      || {
        let n = tries.fetch_add(1, Ordering::SeqCst);
        async move {
          if n == 0 {
            Err(Error::Storage("connection closed".into()))
          } else {
            Ok(())
          }
        }
      },
      || async { Ok(()) },
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(tries.load(Ordering::SeqCst), 2);
    assert_eq!(h.outages(), 0);
  }

  /// Degraded, then unhealthy after `unhealthy_after`; the message names
  /// the failing tasks and the last error; healthy once all recovered.
  #[tokio::test(start_paused = true)]
  async fn health_is_degraded_then_unhealthy_and_names_the_failing_tasks() {
    let h = ConnHealth::new(RetryPolicy {
      unhealthy_after: Duration::from_secs(30),
      ..RetryPolicy::default()
    });
    assert_eq!(h.health().state, StorageState::Healthy);
    h.failed("insert", "connection refused");
    tokio::time::advance(Duration::from_secs(10)).await;
    h.failed("commit", "connection reset");
    let d = h.health();
    assert_eq!(d.state, StorageState::Degraded);
    assert_eq!(d.down_ms, Some(10_000));
    let m = d.message.unwrap_or_default();
    assert!(m.contains("commit, insert"), "{m}");
    assert!(m.contains("connection reset"), "{m}");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(h.health().state, StorageState::Unhealthy);
    h.ok("insert");
    // The commit has been failing for 20 s only.
    assert_eq!(h.health().state, StorageState::Degraded);
    h.ok("commit");
    assert_eq!(h.health(), StorageHealth::healthy());
    assert_eq!(h.outages(), 1);
  }

  /// Closing: a retry the probe confirms down gives up at once.
  #[tokio::test(start_paused = true)]
  async fn closing_stops_waiting_for_the_server() {
    let h = Arc::new(ConnHealth::default());
    h.set_closing();
    let r: Result<()> = retry(
      &h,
      "hand back",
      || async { Err(Error::Storage("connection refused".into())) },
      || async { down() },
    )
    .await;
    assert!(r.is_err());
  }
}
