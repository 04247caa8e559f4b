//! Job storage, named in transitions (`insert`, `claim`, `complete`, `fail`,
//! `cancel`, `retry`, `recover_interrupted`, `prune`, ...), never in SQL.
//! The design (a backend, not a replica; leases and fencing; where the JS
//! thread may wait) is docs/design/storage.md.
//!
//! [`Store`] is what the queue talks to. [`MemoryStore`] is the reference
//! implementation (nothing survives the process); [`SqliteStore`] keeps the
//! live jobs in memory (waiting, running, a window of pending ones),
//! journals every transition to an SQLite file through one writer thread
//! with group commit, keeps finished jobs in the file only, and rebuilds
//! itself from the file on open. Both pass the same conformance suite
//! (`conformance.rs`) and agree with a naive model in a differential
//! property test (`differential.rs`).
//!
//! The queue keeps what is about running attempts (worker slots, deadlines);
//! the store keeps jobs, their order and their history.

pub mod health;
pub(crate) mod keys;
mod listing;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod differential;

pub use health::{StorageHealth, StorageState};
pub use listing::{JobFilter, Skew, ANY_STATUS};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteOptions, SqliteStore, SCHEMA_VERSION};

/// Blocks until everything `store` did so far is durable (see
/// [`Store::flush_mark`]); `Err` (`ERR_STORAGE`) when a commit failed or
/// the writer stopped first.
pub fn wait_flushed(store: &mut dyn Store) -> Result<()> {
  let Some((mark, mut rx)) = store.flush_mark() else {
    return Ok(());
  };
  loop {
    let c = rx.borrow_and_update().clone();
    if let Some(e) = c.error {
      return Err(crate::error::Error::Storage(e));
    }
    if c.seq >= mark {
      return Ok(());
    }
    if rx.has_changed().is_err() {
      return Err(crate::error::Error::Storage(
        "the writer stopped before the flush".into(),
      ));
    }
    // Blocking wait without a runtime: short sleeps until the writer catches up.
    std::thread::sleep(std::time::Duration::from_micros(200));
  }
}

/// Tests drive outcomes without holding the claim's lease: these look up the
/// job's current lease first (so they are never fenced by their own doing).
#[cfg(test)]
pub(crate) trait StoreExt: Store {
  /// The lease of the job's current claim (one that fences if it is not running).
  fn current_lease(&mut self, id: JobId) -> Lease {
    let owner = self.owner();
    match self.get(id) {
      Ok(Some(j)) => Lease {
        owner,
        attempt: j.attempts,
        hint: NO_HINT,
        claim: j.gen,
      },
      _ => Lease {
        owner,
        attempt: 0,
        hint: NO_HINT,
        claim: 0,
      },
    }
  }

  /// [`Store::complete`] under the current lease; true when applied.
  fn complete_current(&mut self, id: JobId, result: &str, now: u64) -> bool {
    let lease = self.current_lease(id);
    self
      .complete(lease, id, result, now)
      .expect("complete")
      .is_applied()
  }

  /// [`Store::fail`] under the current lease; `None` when fenced.
  fn fail_current(
    &mut self,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Option<Failed> {
    let lease = self.current_lease(id);
    self
      .fail(lease, id, err, kind, now, rand)
      .expect("fail")
      .applied()
  }
}

#[cfg(test)]
impl<S: Store + ?Sized> StoreExt for S {}

/// How far a durable store's writer got: the last write batch committed, and
/// the first error if a commit failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
  pub seq: u64,
  pub error: Option<String>,
}
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::job::{Job, JobError, JobId, Status};

/// Calculation names, interned: jobs carry a `u32`.
#[derive(Debug, Default, Clone)]
pub struct Names {
  names: Vec<Arc<str>>,
  index: HashMap<Box<str>, u32>,
}

impl Names {
  /// The index of `name`, adding it if new.
  pub fn intern(&mut self, name: &str) -> u32 {
    if let Some(&i) = self.index.get(name) {
      return i;
    }
    let i = self.names.len() as u32;
    self.names.push(name.into());
    self.index.insert(name.into(), i);
    i
  }

  /// The index of `name`, if it has one.
  pub fn find(&self, name: &str) -> Option<u32> {
    self.index.get(name).copied()
  }

  /// The name with index `i`.
  pub fn get(&self, i: u32) -> Option<&str> {
    self.names.get(i as usize).map(|s| &**s)
  }

  /// The name with index `i`, shared (a durable store's writes carry it).
  pub fn get_shared(&self, i: u32) -> Option<Arc<str>> {
    self.names.get(i as usize).cloned()
  }

  /// How many names.
  pub fn len(&self) -> usize {
    self.names.len()
  }

  /// True when there are none.
  pub fn is_empty(&self) -> bool {
    self.names.is_empty()
  }
}

/// No hint: the store looks the job up by id (see [`Lease::hint`]).
pub const NO_HINT: u32 = u32::MAX;

/// The fencing token of one claimed attempt, handed out by [`Store::claim`]
/// with the job and passed back with its outcome ([`Store::complete`],
/// [`Store::fail`]). An outcome whose lease is no longer current (the job
/// was cancelled, timed out, rescued, retried, or claimed again since)
/// changes nothing: [`Settled::Fenced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
  /// The claiming process's instance id ([`Store::owner`]: memory and
  /// SQLite draw one at random each time the store is opened).
  pub owner: u64,
  /// The attempt the claim started (the job's `attempts` after the claim).
  pub attempt: u32,
  /// The store's own handle for the job (memory and SQLite: its slot), so
  /// an outcome finds it without a lookup; [`NO_HINT`] for none.
  pub hint: u32,
  /// The store's number for this claim of the job: `attempt` alone repeats
  /// (a retried job starts again at attempt 1; a stopped attempt is not
  /// counted), so two claims of one job differ here. Memory and SQLite: the
  /// job's generation, which every requeue moves on.
  pub claim: u32,
}

/// What an outcome did (see [`Lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled<T = ()> {
  /// The lease was current: the outcome is applied.
  Applied(T),
  /// The lease was not current (or the job is unknown): nothing changed.
  Fenced,
}

impl<T> Settled<T> {
  /// The applied outcome, `None` when fenced.
  pub fn applied(self) -> Option<T> {
    match self {
      Settled::Applied(t) => Some(t),
      Settled::Fenced => None,
    }
  }

  /// True when applied.
  pub fn is_applied(&self) -> bool {
    matches!(self, Settled::Applied(_))
  }
}

/// Why an attempt ended without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
  /// The handler threw; `unrecoverable` skips the retries.
  Error { unrecoverable: bool },
  /// The attempt passed its deadline.
  Timeout,
  /// The process died while it ran (found at recovery): back to pending,
  /// the attempt counted, or failed when no attempts are left, so a job that
  /// kills its process cannot loop forever.
  Interrupt,
  /// The service was stopped gracefully while it ran: back to pending, the
  /// attempt not counted (the job did not fail; the service stopped it).
  Stop,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
  /// The job's status now: `pending` (retry), `failed` or `timeout`.
  pub status: Status,
  /// With a retry: the delay before it is due.
  pub retry_delay: Option<u64>,
}

/// A job a store failed by itself in a write that has committed
/// (PostgreSQL: a `waiting` dependant failed in SQL because its dependency
/// failed, timed out or was cancelled, or named no job), for its `failed`
/// event ([`Store::take_failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailed {
  pub id: JobId,
  /// Its calculation's name.
  pub name: String,
  /// Its attempts so far.
  pub attempt: u32,
  /// The error recorded on it (JSON of a `JobError`).
  pub error: String,
}

/// A change to a job that has not started (`waiting` or `pending`): what an
/// add whose `key` the job holds does with `onDuplicate: 'replace'` or
/// `debounceMs` (see `queue/insert.rs`). `None` fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unstarted<'a> {
  /// New data (JSON text).
  pub data: Option<&'a str>,
  /// New context (JSON text; `{}` or empty for none).
  pub context: Option<&'a str>,
  /// New due time (epoch ms).
  pub run_at: Option<u64>,
}

/// One schedule fire handed to [`Store::record_fire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireRecord {
  /// The schedule's id.
  pub schedule: String,
  /// The fire time (epoch ms).
  pub at: u64,
  /// The schedule's `overlap: 'skip'`: while a job of the schedule is
  /// unfinished, the time is used up without a job; but a batch does not
  /// overlap itself (a catch-up batch): once a fire of the batch added its
  /// job, the batch's later fires are not checked.
  pub overlap: bool,
  /// The first fire of its batch (the fires one tick found due for the
  /// schedule).
  pub first: bool,
}

/// What [`Store::record_fire`] did with the fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireHandoff {
  /// The job was inserted (memory, SQLite).
  Inserted,
  /// The backend decides: see [`ScheduleNews::fired`].
  Handed,
}

/// A schedule as a shared backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSchedule {
  /// The schedule's JSON ([`crate::scheduler::Schedule`]), with the
  /// cluster's run state (`runCount`, `lastRunAt`, `lastJobId`).
  pub json: String,
  /// The last fire time the cluster used up (fired, or skipped by the
  /// overlap rule).
  pub last_fire: Option<u64>,
}

/// The cluster's schedules as a shared backend last read them
/// ([`Store::take_schedule_news`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleNews {
  /// Fires handed over by this process that were decided: (schedule id,
  /// fire time, the job added; `None`: another process fired that time
  /// first, or it was skipped).
  pub fired: Vec<(String, u64, Option<JobId>)>,
  /// Every schedule of the cluster, when read again since the last call.
  pub all: Option<Vec<SharedSchedule>>,
  /// Schedules this process saved or deleted after that read began: the
  /// read does not show their last change, so the local one stands.
  pub fresh: Vec<String>,
}

/// Where jobs live: a backend, named in transitions.
///
/// A job is in one of these states (`Status`): `waiting` (for its
/// dependencies), `pending` (in line; due at `run_at`), `running` (claimed,
/// under a [`Lease`]), or finished: `completed`, `failed`, `timeout`,
/// `cancelled`. Each method says below which states it moves a job between
/// and what it does with a job in another state or an unknown id (always:
/// nothing, with an answer that says so, never a panic).
///
/// Transitions are fallible: `Err` is the backend's failure
/// (`Error::Storage`, `ERR_STORAGE`), and then the transition did not
/// happen. Reads that cannot fail in a backend holding them in memory
/// (`counts`, `next_due`, ...) are infallible here; the PostgreSQL backend
/// answers them from its own snapshot (docs/design/storage.md).
///
/// All methods are synchronous: a durable backend applies a transition to
/// its in-memory state of the live jobs and queues the write (see
/// [`Store::flush_mark`] for when it is durable). Jobs it keeps in its file
/// only (SQLite: finished jobs, and pending ones beyond a window) are read
/// back where a method needs them (`get`, `retry`, `list_jobs`, a
/// dependency's outcome); a `prune` waits for its delete; and an operation
/// may wait for the writer when too many writes are in flight
/// (back-pressure). The job goes from `pending` to `running` in one place:
/// [`Store::claim`], called by `Queue::take`.
pub trait Store: Send {
  /// The backend's name: `memory`, `sqlite`.
  fn kind(&self) -> &'static str;

  /// Adds validated jobs with new ids: -> `waiting` when a dependency has
  /// not finished, -> `failed` (`ERR_DEPENDENCY_FAILED`) at once when one
  /// ended otherwise than completed (unless its failure is ignored), else
  /// -> `pending` due at their `run_at`. Unique keys are not checked here
  /// (the queue asks [`Store::keyed`] first); a job with a key holds it
  /// until it finishes.
  fn insert(&mut self, jobs: Vec<Job>, names: &Names) -> Result<()>;

  /// Claims up to `max` due jobs in order (priority weight, then due time,
  /// then insertion), skipping jobs whose calculation `runnable` refuses (they
  /// wait, counted by [`Store::unregistered`], until [`Store::registered`]).
  /// Each claimed job goes `pending` -> `running` with its attempt counted
  /// and `started_at = now` when `visit` sees it, with its [`Lease`]. The
  /// visitor borrows the job (no copy on the hot path). Returns how many.
  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> Result<usize>;

  /// True when a claim at `now` would find a job. Changes no job.
  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool;

  /// The instance id this store claims as ([`Lease::owner`]).
  fn owner(&self) -> u64;

  /// The attempt `lease` finished with `result` (JSON): `running` ->
  /// `completed`, `finished_at = now`; waiting dependants are released.
  /// A lease that is not current (the job is not running, or running under
  /// another claim) or an unknown id: nothing changes, [`Settled::Fenced`].
  fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Result<Settled>;

  /// The attempt `lease` failed: `running` -> `pending` due after the
  /// backoff when attempts are left and `kind` allows a retry (a
  /// [`FailKind::Stop`] is not counted as an attempt), else -> `failed`
  /// (`timeout` for [`FailKind::Timeout`]) with dependants failed in turn.
  /// `err` is appended to the job's errors. Fenced like [`Store::complete`].
  fn fail(
    &mut self,
    lease: Lease,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Result<Settled<Failed>>;

  /// The newest job holding unique key `key` (`options.key`) that has not
  /// finished (waiting, pending or running), if any. Changes no job.
  fn keyed(&mut self, key: &str) -> Option<JobId>;

  /// Changes a job that has not started (`waiting` or `pending`, which it
  /// stays): its data, context, due time (a pending job moves in line).
  /// False (nothing changed) for `running` or finished jobs and unknown ids.
  fn update_unstarted(&mut self, id: JobId, change: &Unstarted<'_>, now: u64) -> Result<bool>;

  /// `waiting`/`pending`/`running` -> `cancelled` (an error
  /// `ERR_JOB_CANCELLED` appended, `finished_at = now`); a running job's
  /// lease is no longer current, so its late outcome is fenced; waiting
  /// dependants fail in turn (unless they ignore failures). Returns the
  /// previous status; `None` (nothing changed) for finished jobs and
  /// unknown ids.
  fn cancel(&mut self, id: JobId, now: u64) -> Result<Option<Status>>;

  /// `failed`/`timeout`/`cancelled` -> `pending` due now with its attempts
  /// reset (-> `waiting` again when it has dependencies: it waits for
  /// those not completed, a failed one's retry included); it holds its key
  /// again. False (nothing changed) for other states or unknown ids. A
  /// durable store reads a finished job back from its file: `Err` when that
  /// read fails.
  fn retry(&mut self, id: JobId, now: u64) -> Result<bool>;

  /// Records a `running` job's progress (JSON); its state is unchanged.
  /// False (nothing recorded) for other states or unknown ids.
  fn progress(&mut self, id: JobId, json: &str) -> Result<bool>;

  /// Jobs left `running` by a process that died (memory and SQLite: every
  /// running job, called once at open) -> `pending` due now, the attempt
  /// counted, or out of attempts -> `failed` with `ERR_INTERRUPTED`. Their
  /// leases are no longer current. Returns how many.
  fn recover_interrupted(&mut self, now: u64) -> Result<usize>;

  /// Deletes finished jobs (`completed`, `failed`, `timeout`, `cancelled`)
  /// that finished at or before `before`; afterwards [`Store::get`] says
  /// `None` for them, and a waiting job that depended on one counts it as
  /// done long ago. Other states are untouched. Returns how many. (SQLite
  /// deletes them in its file, waiting for that write.)
  fn prune(&mut self, before: u64) -> Result<usize>;

  /// A copy of the job with this id, whatever its status (`None`: no such
  /// job, or pruned). Changes no job. A durable store may read it from its
  /// file (SQLite keeps finished jobs there only): `Err` is a read that
  /// failed or a stored value that is corrupt (`ERR_STORAGE`, naming the
  /// job).
  fn get(&mut self, id: JobId) -> Result<Option<Job>>;

  /// Ids of jobs with this status (any if `None`), oldest first, at most
  /// `limit`. Changes no job.
  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId>;

  /// The jobs `filter` selects, in id order (newest first unless
  /// `filter.ascending`), at most `filter.limit`: copies, with their data
  /// and result only when `filter.include_data`. Jobs that `filter` does not
  /// return are not copied (nor read from a file beyond their keys). Changes
  /// no job. Cold and finished jobs are listed like any other.
  fn list_jobs(&mut self, filter: &JobFilter, names: &Names) -> Result<Vec<Job>>;

  /// Jobs per status (indexed by `Status as usize`), finished ones kept in
  /// a file included. Changes no job.
  fn counts(&self) -> [usize; 7];

  /// Due `pending` jobs held back because their calculation is not
  /// registered (still `pending`).
  fn unregistered(&self) -> usize;

  /// Calculation `name` can run now: its held-back `pending` jobs go back
  /// in line (in their order).
  fn registered(&mut self, name: u32);

  /// Jobs whose status changed because of their dependencies (`waiting` ->
  /// `pending`, or -> `failed` with `ERR_DEPENDENCY_FAILED`) since the last
  /// call, for the queue's events. Changes no job.
  fn take_changed(&mut self) -> Vec<JobId> {
    Vec::new()
  }

  /// Stores a schedule (JSON of [`crate::scheduler::Schedule`]), replacing
  /// the one with the same id. No job changes. Memory: nothing to do (the
  /// scheduler holds it).
  fn save_schedule(&mut self, _id: &str, _json: &str) -> Result<()> {
    Ok(())
  }

  /// Deletes a stored schedule (its jobs already added stay as they are).
  fn delete_schedule(&mut self, _id: &str) -> Result<()> {
    Ok(())
  }

  /// The schedules stored when the store was opened (JSON each). Changes
  /// nothing.
  fn schedules(&self) -> Vec<String> {
    Vec::new()
  }

  /// True when several processes share this backend's schedules and the
  /// backend decides each fire (PostgreSQL): fires go through
  /// [`Store::record_fire`] and are decided later, the overlap rule is the
  /// backend's, and the cluster's schedules arrive through
  /// [`Store::take_schedule_news`]. False: the queue's scheduler is the only
  /// one (memory, SQLite).
  fn shares_schedules(&self) -> bool {
    false
  }

  /// Adds the job of schedule `fire.schedule`'s fire at `fire.at` (a
  /// validated `pending` job, due at its fire time). Memory and SQLite (the
  /// default): [`Store::insert`] at once, [`FireHandoff::Inserted`]. A
  /// backend that [`Store::shares_schedules`] adds it only if no process
  /// fired this schedule at `fire.at` or later (once per cluster; with
  /// `fire.overlap`, not while a job of the schedule is unfinished, see
  /// [`FireRecord::overlap`]), deciding later without blocking:
  /// [`FireHandoff::Handed`], the outcome in the next
  /// [`Store::take_schedule_news`], the write covered by
  /// [`Store::flush_mark`].
  fn record_fire(&mut self, fire: &FireRecord, job: Job, names: &Names) -> Result<FireHandoff> {
    let _ = fire;
    self.insert(vec![job], names)?;
    Ok(FireHandoff::Inserted)
  }

  /// What the backend learned of the cluster's schedules since the last
  /// call ([`Store::shares_schedules`] only; `None`: nothing new).
  fn take_schedule_news(&mut self) -> Option<ScheduleNews> {
    None
  }

  /// The status of job `id` as the backend's last read of the cluster's
  /// schedules saw it (a schedule's last job; [`Store::shares_schedules`]
  /// only, no I/O). `None`: not known.
  fn schedule_job_status(&self, _id: JobId) -> Option<Status> {
    None
  }

  /// The due time of the longest-waiting due job (held-back jobs of
  /// unregistered calculations not counted), for the monitor's oldest wait.
  fn oldest_due(&self) -> Option<u64> {
    None
  }

  /// The earliest due time of a `pending` job not yet due (the timer's
  /// next wake-up for it). Changes no job.
  fn next_due(&self) -> Option<u64>;

  /// The newest id stored (so ids stay ordered across restarts). Changes
  /// no job.
  fn max_id(&self) -> Option<JobId>;

  /// Sets the priority weights used for ordering (`[high, medium, low]`):
  /// the `pending` jobs in line are ordered again; no state changes.
  fn set_weights(&mut self, weights: [i32; 3]);

  /// The end of one queue operation: a durable store sends the writes it
  /// collected to its writer (and, SQLite, lets finished jobs whose rows
  /// are committed leave memory). No state changes.
  fn end_batch(&mut self) {}

  /// Durability, the one capability a backend that commits later than it
  /// answers has: sends what it collected to its writer and returns the
  /// mark that covers every transition made so far, with a receiver of the
  /// writer's progress ([`Commit::seq`] reaches the mark once all of it is
  /// durable; [`Commit::error`] is the first failed commit). `None` when
  /// every transition is durable at once, or never (memory). Changes no job.
  /// `add`'s and `flush()`'s promises wait on it; [`wait_flushed`] blocks
  /// on it (tests, `close`).
  fn flush_mark(&mut self) -> Option<(u64, tokio::sync::watch::Receiver<Commit>)> {
    None
  }

  /// Outcomes this store answered [`Settled::Applied`] whose commit later
  /// found them fenced (PostgreSQL: the fence is known only after the group
  /// commit; a rescue by another process had taken the job). Counted with
  /// `lateOutcomes`. Memory and SQLite fence at once: always 0.
  fn late_fenced(&self) -> u64 {
    0
  }

  /// The first write error, if the backend failed (the queue then refuses
  /// `add` and `start` with it). Changes nothing.
  fn failure(&self) -> Option<String> {
    None
  }

  /// How the storage is doing (`getSystemHealth().storage`): by default
  /// healthy, or unhealthy once [`Store::failure`] says it failed.
  /// PostgreSQL is degraded while its connection is down or writes are
  /// being retried. Changes nothing.
  fn health(&self) -> StorageHealth {
    StorageHealth::of_failure(self.failure())
  }

  /// True when `complete` and `fail` answer before the outcome commits and
  /// the commit may still fence it (PostgreSQL): the queue then holds the
  /// events of those outcomes (`completed`, `failed`, `retrying`,
  /// `timedOut`) until [`Store::take_committed`] says the mark covering
  /// them is reached, and drops those of fenced outcomes. Memory and SQLite
  /// fence at once: their events fire as the outcome is recorded.
  fn commits_late(&self) -> bool {
    false
  }

  /// When [`Store::counts`] was read, for a store that answers them from a
  /// snapshot of a shared database (PostgreSQL: the cluster's counts, at
  /// most one poll old); `None` when they are the store's own, exact now.
  fn counts_as_of(&self) -> Option<u64> {
    None
  }

  /// How far the writes got (the [`Commit::seq`] of [`Store::flush_mark`])
  /// and the outcomes answered [`Settled::Applied`] that a commit at or
  /// below it found fenced since the last call, as (the outcome's mark,
  /// job): taken together, so a fenced outcome is never seen as committed.
  /// Only asked when [`Store::commits_late`]. Changes no job.
  fn take_committed(&mut self) -> (u64, Vec<(u64, JobId)>) {
    (u64::MAX, Vec::new())
  }

  /// Jobs this store failed by itself in writes that committed since the
  /// last call (see [`StoreFailed`]), for their `failed` events. Memory and
  /// SQLite report theirs through [`Store::take_changed`]. Changes no job.
  fn take_failed(&mut self) -> Vec<StoreFailed> {
    Vec::new()
  }

  /// The work this process knows of, for a store whose [`Store::counts`]
  /// are not its own (PostgreSQL: the cluster's, from a snapshot): jobs it
  /// added that are not yet committed or still queued (`waiting` or
  /// `pending`) in the database, jobs it claimed and has not handed out
  /// yet, and outcomes not committed yet. `None`: the counts are the
  /// store's own (the queue keeps the process alive for its queued jobs).
  /// Changes no job.
  fn local_work(&self) -> Option<usize> {
    None
  }

  /// Whether job `id` exists (for `dependsOn`), and its status. The default
  /// reads it with [`Store::get`]. Not asked of a store that
  /// [`Store::checks_dependencies_late`].
  fn dependency(&mut self, id: JobId) -> Result<Option<Status>> {
    Ok(self.get(id)?.map(|j| j.status))
  }

  /// True when the store checks `dependsOn` ids in its insert, after `add`
  /// answered (PostgreSQL: a look-up would be a network read on the
  /// JavaScript thread): a job whose dependency names no job is recorded
  /// `failed` with `ERR_DEPENDENCY_FAILED` (its `failed` event through
  /// [`Store::take_failed`]), the rest of its batch inserted. Memory and
  /// SQLite answer [`Store::dependency`] at once and `add` refuses
  /// (`ERR_DEPENDENCY_NOT_FOUND`).
  fn checks_dependencies_late(&self) -> bool {
    false
  }

  /// Makes everything durable and releases the backend (its file lock);
  /// the in-memory state stays readable. `running` jobs stay `running` in
  /// the file: the next open recovers them ([`Store::recover_interrupted`]).
  fn close(&mut self) {}

  /// True after [`Store::close`].
  fn is_closed(&self) -> bool {
    false
  }

  /// True when jobs outlive the process.
  fn is_durable(&self) -> bool {
    false
  }

  /// Checks internal invariants (tests).
  fn check_invariants(&self) -> std::result::Result<(), String>;
}
