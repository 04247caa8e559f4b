//! [`PgBackend`]: the PostgreSQL backend behind the [`Store`] trait, so a
//! `Queue` runs on PostgreSQL without the JS thread waiting on the network
//! (docs/design/storage.md, "The decision").
//!
//! Three local structures sit in front of [`PgStore`], each fed or drained
//! by a task on the tokio runtime the backend is given:
//!
//! * **Ready buffer**: jobs already claimed in the database (`FOR NO KEY
//!   UPDATE SKIP LOCKED`, leased to this process). The **claimer task**
//!   refills it when it holds fewer than its low-water mark, in batches:
//!   `low_water` and `batch` at least, more while the workers drain it
//!   faster than a claim refills it ([`ClaimSizer`], up to 1,024 in one
//!   statement). It is woken by `take` (which never waits: it pops what is
//!   there and returns; after a claim that found nothing, a `take` alone
//!   claims again only `IDLE_CLAIM_GAP` later), by a NOTIFY of an insert
//!   (one LISTEN connection), at a delayed job's due time heard in such a
//!   notice, and by a poll every `poll` (the fallback, and what works
//!   behind a transaction-mode PgBouncer). It claims only calculations the
//!   queue can run: the names [`Store::claim`]'s `runnable` accepts, among
//!   the names the backend knows (those given at open and with each
//!   insert). It claims nothing before the first `take`.
//!   * **Claimed ahead**: while no backlog of due jobs waits, a claim also
//!     takes jobs due within [`BackendOptions::lookahead`] (100 ms); they
//!     wait in `early` and move to the buffer at their due time (the
//!     claimer's timer, or a `take`/`has_due` at a later `now`;
//!     [`Store::next_due`] tells the queue's timer). A delayed job then
//!     starts on time whatever a claim's round trip costs. Such a job reads
//!     `running` in the database up to 100 ms before it starts (its
//!     history's `started_at` is its due time). A job holding a unique key
//!     is not claimed ahead: a debounced or replacing add must find it
//!     unstarted (claimed, it would get a successor instead).
//!   * **Handed back when not taken**: a job that waited
//!     [`BackendOptions::hold`] (2 s) in the buffer with no worker taking
//!     it (all busy with long jobs) is handed back (pending, attempt
//!     uncounted, for any process), and for `sated_for` (10 s) the claimer
//!     claims only as many as the last `take` asked for beyond the buffer:
//!     a busy process does not hoard jobs an idle one could run.
//!   * **Added claimed**: an add this process can run now goes to the
//!     buffer at once and is inserted claimed by it (fast.rs); its outcome
//!     is written after that insert.
//! * **Outbox**: `complete`/`fail` check the lease locally, answer at once
//!   and hand the outcome to the [`Committer`] (group commits of
//!   `commit_max` outcomes or `commit_delay`, a few at once), fenced in SQL
//!   by `(id, owner, attempt)`.
//! * **Insert buffer**: `insert` answers at once; the **inserter task**
//!   writes whatever is waiting in one transaction (NOTIFY in it).
//!
//! Schedules are the cluster's: saves, deletes and fires go to the schedule
//! task of `cron.rs` (a fire is decided by the database, once per
//! cluster), which also reads the cluster's schedules back for the queue
//! ([`Store::take_schedule_news`]).
//!
//! [`Store::flush_mark`] covers both: every insert, outcome and hand-back
//! gets a sequence number; [`Commit::seq`] is the highest number below
//! which all are committed (or failed: [`Commit::error`]). `add`'s promise
//! resolves when its mark is reached.
//!
//! # The lease and the fence
//!
//! [`Lease::owner`] is the process's row id in `process` ([`PgStore::register`]),
//! [`Lease::attempt`] the attempt the database counted at the claim, and
//! [`Lease::claim`] a number this backend gives each claim it hands out
//! (no column: the local number fences within the process, the database's
//! `(owner, attempt)` across processes and lives). Why it is enough: a
//! stopped attempt is uncounted (attempt repeats) only for claims of the
//! same process, whose local record says which claim is current; any other
//! claim of the job (another process, or this one after a rescue counted
//! the attempt) differs in owner or attempt in the database.
//!
//! **When the fence is known.** An outcome whose lease is not this
//! process's current claim (cancelled here, settled already, handed back)
//! is [`Settled::Fenced`] at once. Otherwise the fence is only known after
//! the commit (a rescue by another process may have taken the job): the
//! outcome is answered [`Settled::Applied`] with the local decision (a
//! retry's delay, a final status) and, if the commit reports it fenced, it
//! is counted in [`Store::late_fenced`] (the queue adds those to
//! `lateOutcomes`). The backend says so ([`Store::commits_late`]), and
//! [`Store::take_committed`] reports the marks reached with the outcomes
//! their commit fenced: the queue holds the events of outcomes
//! (`completed`, `failed`, `retrying`, `timedOut`) until then and drops
//! those of fenced ones (`src/queue/held.rs`).
//!
//! # Reads and admin calls
//!
//! `get` answers from the process for the jobs it holds (running here,
//! being settled or inserted). Everything else (`get` of other jobs,
//! `list`, `list_jobs`, `cancel`, `retry`) needs a query: the trait
//! methods block on the runtime with a bounded timeout **only with
//! [`BackendOptions::sync_claims`]** (tests); otherwise they refuse at once
//! with `ERR_STORAGE` (the JavaScript thread never waits on the network),
//! and `prune` runs in the background. `dependsOn` is not looked up by
//! `add` ([`Store::checks_dependencies_late`]): the insert checks it, and
//! a job whose dependency names no job is recorded failed. The binding calls
//! the async variants ([`PgBackend::get_async`],
//! [`PgBackend::list_jobs_async`], [`PgBackend::counts_async`],
//! [`PgBackend::cancel_async`], or [`PgBackend::pg`]'s methods) on the
//! runtime without holding the queue lock. `counts` answers from a snapshot
//! the claimer refreshes every poll ([`Store::counts_as_of`] says when).
//!
//! Progress is written to the database in batches, the latest value per
//! job, fenced by lease (`progress.rs`).
//!
//! A cancel of a job running here (by [`PgReader::cancel`] once it commits,
//! or by another process: the claimer hears its NOTIFY) calls the hook
//! [`PgBackend::set_on_cancel`] installs (the binding aborts the queue's
//! slot) and the backend forgets the claim at its next call.
//!
//! # Unique keys
//!
//! `keyed` answers `None`: the inserting transaction decides each keyed
//! job against the key's holders in the database (`keys.rs`: skip,
//! replace, debounce, a successor behind a running holder), and a refused
//! job's id (what `add` returned) is an alias of its holder for `get`,
//! `cancel` and `retry`.
//!
//! # Not in this slice
//!
//! Heartbeats and the rescuer run in their own task every `heartbeat`
//! (5 s), with no leader and no advisory lock.
//!
//! # Connection loss
//!
//! Every write is retried until it commits ([`super::conn`]: a probe says
//! whether the server answers; if not, capped jittered backoff): the
//! committer's group commits, the inserter's batches (a retry skips jobs an
//! earlier try committed), hand-backs and heartbeats (one found dead during
//! the outage registers again under its id). The claimer retries claims and
//! the LISTEN connection on the same backoff; the jobs of a claim that
//! failed (its answer may be what was lost) are handed back once a claim
//! goes through again ([`PgStore::release_lost`]). While the server is
//! unreachable, `insert` keeps at most `max_buffered` jobs waiting and
//! refuses more with `ERR_STORAGE`; [`Store::health`] is degraded, then
//! unhealthy after 30 s. Only a write that fails while the server answers
//! (a real error, three times in a row) fails the store as before.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};

use super::cron::CronSide;
use super::fast::Claiming;
use super::{sleep_until_due, DueTimes, Listener, PgJob, PgStore, RetryBackoff, RetryPolicy};
use super::{
  ClaimOptions, ClaimSizer, Committer, Lease as PgLease, NewJob, Notice, Outcome, OutcomeKind,
};
use crate::error::{Error, Result};
use crate::job::{Job, JobError, JobId, Status};
use crate::storage::{
  Commit, FailKind, Failed, FireHandoff, FireRecord, JobFilter, Lease, Names, ScheduleNews,
  Settled, StorageHealth, Store, StoreFailed, Unstarted, NO_HINT,
};

/// The cluster's clock (ms since the epoch): the server's, or a manual one
/// in tests.
pub type ClusterClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the binding is told when a job that may run here was cancelled.
pub type CancelHook = Arc<dyn Fn(JobId) + Send + Sync>;

/// How the backend claims, commits and waits.
#[derive(Debug, Clone)]
pub struct BackendOptions {
  /// The most jobs one claim takes.
  pub batch: usize,
  /// The claimer refills when the ready buffer holds fewer than this.
  pub low_water: usize,
  /// The poll fallback (default 1 s).
  pub poll: Duration,
  /// A group commit's size and wait.
  pub commit_max: usize,
  pub commit_delay: Duration,
  /// The bound on a blocking read (tests only, see the module docs).
  pub read_timeout: Duration,
  /// This process as registered in `process`.
  pub host: String,
  pub pid: u32,
  /// Listen for NOTIFY (off: poll only, as behind PgBouncer).
  pub listen: bool,
  /// Tests only (the conformance harness): no claimer task; a `claim`
  /// that finds the buffer empty waits for the writes so far and claims in
  /// the calling thread at the `now` it is given, and `counts` reads the
  /// database. Never on the JS thread.
  pub sync_claims: bool,
  /// How often the claimer task heartbeats this process and runs the
  /// cluster's rescuer (`None`: the caller does, see
  /// [`PgBackend::heartbeat`] and [`PgBackend::rescue`]).
  pub heartbeat: Option<Duration>,
  /// A process silent for this long is dead (its jobs rescued).
  pub dead_after_ms: u64,
  /// While PostgreSQL is unreachable, at most this many added jobs wait
  /// in the insert buffer; `add` refuses more (`ERR_STORAGE`).
  pub max_buffered: usize,
  /// Delayed jobs are claimed this long before they are due (while no
  /// backlog of due jobs waits) and start here at their due time from a
  /// local timer: a claim's round trip and a busy server's stalls are
  /// then not in their lateness. Zero: claimed when due.
  pub lookahead: Duration,
  /// A claimed job that waited this long in the ready buffer without a
  /// worker taking it is handed back (pending again, attempt uncounted,
  /// for any process), and for `sated_for` the claimer claims only what
  /// the workers ask for (`None`: kept until taken or closed).
  pub hold: Option<Duration>,
  pub sated_for: Duration,
}

impl Default for BackendOptions {
  fn default() -> Self {
    BackendOptions {
      batch: 128,
      low_water: 64,
      poll: Duration::from_secs(1),
      commit_max: 512,
      commit_delay: Duration::from_millis(2),
      read_timeout: Duration::from_secs(10),
      host: "localhost".into(),
      pid: std::process::id(),
      listen: true,
      sync_claims: false,
      heartbeat: Some(Duration::from_secs(5)),
      dead_after_ms: 30_000,
      max_buffered: 10_000,
      lookahead: Duration::from_millis(100),
      hold: Some(Duration::from_secs(2)),
      sated_for: Duration::from_secs(10),
    }
  }
}

/// How far the writes got (see [`Store::flush_mark`]).
#[derive(Default)]
struct Marks {
  issued: u64,
  done: u64,
  finished: BTreeSet<u64>,
  error: Option<String>,
  /// Outcomes answered `Applied` that their commit fenced: (mark, job),
  /// until [`Store::take_committed`] takes them.
  fenced: Vec<(u64, JobId)>,
}

/// The ready buffer: claimed jobs in claim order, each with when it came
/// (only `extend` adds, stamping now, so the times never decrease from
/// front to back).
#[derive(Default)]
struct Ready {
  q: VecDeque<(std::time::Instant, PgJob)>,
}

impl Ready {
  fn len(&self) -> usize {
    self.q.len()
  }

  fn is_empty(&self) -> bool {
    self.q.is_empty()
  }

  fn extend(&mut self, jobs: impl IntoIterator<Item = PgJob>) {
    let now = std::time::Instant::now();
    self.q.extend(jobs.into_iter().map(|j| (now, j)));
  }

  /// The first `k` (fewer if it holds fewer).
  fn pop(&mut self, k: usize) -> Vec<PgJob> {
    let k = k.min(self.q.len());
    self.q.drain(..k).map(|(_, j)| j).collect()
  }

  fn retain(&mut self, mut keep: impl FnMut(&PgJob) -> bool) {
    self.q.retain(|(_, j)| keep(j));
  }

  fn drain(&mut self) -> Vec<PgJob> {
    self.q.drain(..).map(|(_, j)| j).collect()
  }

  /// When the longest-waiting job came.
  fn oldest(&self) -> Option<std::time::Instant> {
    self.q.front().map(|(t, _)| *t)
  }

  /// Takes out the jobs that came at or before `before` (a prefix).
  fn take_older(&mut self, before: std::time::Instant) -> Vec<PgJob> {
    let k = self.q.partition_point(|(t, _)| *t <= before);
    self.pop(k)
  }
}

/// What the tasks and the backend share.
pub(super) struct Shared {
  ready: Mutex<Ready>,
  /// Jobs claimed ahead of their due time ([`BackendOptions::lookahead`]),
  /// by due time: they move to `ready` when due (the claimer's timer, or
  /// a `claim`/`has_due` at a later `now`).
  early: Mutex<BTreeMap<(u64, JobId), PgJob>>,
  /// The calculations the claimer may claim (`None`: not known yet, no
  /// `take` so far).
  names: Mutex<Option<Vec<String>>>,
  wake: Notify,
  pub(super) closed: AtomicBool,
  /// A NOTIFY said a schedule changed: the schedule task reads them again.
  pub(super) schedules: Notify,
  marks: Mutex<Marks>,
  commit: watch::Sender<Commit>,
  /// Outcomes answered `Applied` that their commit fenced.
  fenced: AtomicU64,
  /// Jobs settled here whose outcome is not committed yet: (its mark, the
  /// job as decided locally).
  settling: Mutex<HashMap<JobId, (u64, Job)>>,
  /// Jobs inserted here, not committed yet.
  inserting: Mutex<HashMap<JobId, Job>>,
  /// Jobs added claimed by this process and put in the ready buffer
  /// before their insert committed (fast.rs), with that insert's mark:
  /// their outcomes are written after it.
  prestarted: Mutex<HashMap<JobId, u64>>,
  counts: Mutex<[usize; 7]>,
  /// The claimer's low-water mark now ([`ClaimSizer`]): `take` wakes it
  /// below this.
  low_water: AtomicUsize,
  /// How many more jobs the last `claim` wanted than the buffer held.
  wanted: AtomicUsize,
  /// Jobs nobody took were handed back lately: claims (and adds claimed
  /// at once) take only what the workers ask for.
  sated: AtomicBool,
  /// A counts refresh is running ([`refresh_counts`]).
  counting: AtomicBool,
  /// How long the last counts query took (µs): the next one waits at
  /// least `COUNT_DUTY` times that (see [`refresh_counts`]).
  count_took_us: AtomicU64,
  /// When `counts` was read (the cluster's clock, ms).
  counts_at: AtomicU64,
  /// The last claim error (the claimer retries at the next wake-up).
  claim_error: Mutex<Option<String>>,
  /// Called when the claimer put jobs in an empty buffer (the binding
  /// wakes the JS thread to `take`).
  on_ready: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
  /// Jobs cancelled in the database while they may run here (by this
  /// process or, heard by NOTIFY, another): the backend forgets their
  /// claims at its next call.
  cancelled: Mutex<Vec<JobId>>,
  /// Called with such a job's id (the binding aborts its slot).
  on_cancel: Mutex<Option<CancelHook>>,
  /// The jobs this process added that may still be queued, and those its
  /// inserts failed (`known.rs`).
  known: super::known::Known,
  /// The last claim time handed out (claimer and inserter, fast.rs).
  claim_at: AtomicU64,
  /// The last claim came back full (due jobs may be left pending): no
  /// adds claimed at once (fast.rs) until one comes back short.
  backlog: AtomicBool,
}

impl Shared {
  /// Moves the jobs claimed ahead that are due at `now` to the ready
  /// buffer. True if it was empty and is not any more.
  fn promote_early(&self, now: u64) -> bool {
    let mut early = self.early.lock();
    if early.first_key_value().is_none_or(|(k, _)| k.0 > now) {
      return false;
    }
    let later = early.split_off(&(now.saturating_add(1), JobId(0)));
    let due = std::mem::replace(&mut *early, later);
    drop(early);
    let mut r = self.ready.lock();
    let was_empty = r.is_empty();
    r.extend(due.into_values());
    was_empty
  }

  /// The earliest due time of a job claimed ahead.
  fn next_early(&self) -> Option<u64> {
    self.early.lock().first_key_value().map(|(k, _)| k.0)
  }

  /// A fresh counts snapshot, read at `at`.
  fn set_counts(&self, c: [usize; 7], at: u64) {
    *self.counts.lock() = c;
    self.counts_at.store(at, Ordering::Release);
  }

  /// `id` was cancelled in the database while running: forget its claim
  /// and tell the binding.
  fn cancelled(&self, id: JobId) {
    self.cancelled.lock().push(id);
    let f = self.on_cancel.lock().clone();
    if let Some(f) = f {
      f(id);
    }
  }

  /// A claim time, strictly after every one before (see
  /// [`PgStore::release_lost`]).
  fn next_claim_at(&self, now: u64) -> u64 {
    let prev = self
      .claim_at
      .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
        Some(now.max(p + 1))
      })
      .unwrap_or(now);
    now.max(prev + 1)
  }

  /// Hands `leases` back to the database under write mark `seq` (issued
  /// when the jobs were given up), after every write issued before it (a
  /// job added claimed here may not be committed yet); retried through an
  /// outage.
  async fn hand_back(&self, pg: &PgStore, seq: u64, leases: &[PgLease], now: u64) {
    let mut rx = self.commit.subscribe();
    let _ = rx.wait_for(|c| c.seq + 1 >= seq || c.error.is_some()).await;
    let err = pg
      .retrying("hand back", || pg.hand_back(leases, now))
      .await
      .err()
      .map(|e| e.to_string());
    self.finish(seq, err);
  }

  pub(super) fn issue(&self) -> u64 {
    let mut m = self.marks.lock();
    m.issued += 1;
    m.issued
  }

  /// Write `seq` is done (`err`: it failed).
  pub(super) fn finish(&self, seq: u64, err: Option<String>) {
    let mut m = self.marks.lock();
    if let Some(e) = err {
      m.error.get_or_insert(e);
    }
    m.finished.insert(seq);
    loop {
      let next = m.done + 1;
      if !m.finished.remove(&next) {
        break;
      }
      m.done = next;
    }
    let c = Commit {
      seq: m.done,
      error: m.error.clone(),
    };
    drop(m);
    self.commit.send_replace(c);
  }
}

/// What `insert` hands the inserter: its write's mark, the rows, and the
/// ids among them already claimed here and in the ready buffer (fast.rs).
type InsertBatch = (u64, Vec<NewJob>, Vec<JobId>);

/// A job this process runs: as claimed, and the claim's number.
struct Held {
  job: PgJob,
  claim: u32,
}

/// What the binding's async methods read through (see [`PgBackend::reader`]).
#[derive(Clone)]
pub struct PgReader {
  pg: PgStore,
  shared: Arc<Shared>,
  clock: ClusterClock,
}

impl PgReader {
  /// The SQL core.
  pub fn pg(&self) -> &PgStore {
    &self.pg
  }

  /// The cluster's time now.
  pub fn now(&self) -> u64 {
    (self.clock)()
  }

  /// The job as this process decided it but has not committed yet (being
  /// settled or inserted), if it is one; jobs running here are in the
  /// database as running.
  pub fn local(&self, id: JobId) -> Option<Job> {
    if let Some((_, j)) = self.shared.settling.lock().get(&id) {
      return Some(j.clone());
    }
    self.shared.inserting.lock().get(&id).cloned()
  }

  /// [`PgReader::local`], except that a keyed job still being inserted is
  /// waited for (the database decides whether it is added or an alias of
  /// its key's holder) and then read from the database (`None` here).
  pub async fn local_decided(&self, id: JobId) -> Option<Job> {
    let keyed = self
      .shared
      .inserting
      .lock()
      .get(&id)
      .is_some_and(|j| j.key().is_some());
    if keyed {
      self.settled().await;
    }
    self.local(id)
  }

  /// Waits until this process's writes issued so far are committed (or
  /// failed): an admin call sees what the process already answered (a job
  /// just added, an outcome a `failed` event reported).
  async fn settled(&self) {
    let target = self.shared.marks.lock().issued;
    let mut rx = self.shared.commit.subscribe();
    let _ = rx.wait_for(|c| c.seq >= target || c.error.is_some()).await;
  }

  /// Cancels a job anywhere in the cluster.
  pub async fn cancel(&self, id: JobId) -> Result<Option<Status>> {
    Ok(self.cancel_job(id).await?.map(|c| c.was))
  }

  /// [`PgReader::cancel`], saying also the job's calculation and attempt
  /// (the binding records the `cancelled` event of a job that did not run
  /// here).
  pub async fn cancel_job(&self, id: JobId) -> Result<Option<super::Cancelled>> {
    self.settled().await;
    // A refused duplicate's id cancels its key's holder (keys.rs).
    let id = self.pg.resolve(id).await?.unwrap_or(id);
    let c = self.pg.cancel_job(id, (self.clock)()).await?;
    if let Some(c) = &c {
      let failed = c.dependants_failed.iter().map(|f| f.id);
      self.shared.known.gone(std::iter::once(id).chain(failed));
    }
    if c.as_ref().is_some_and(|c| c.was == Status::Running) {
      // Committed: a handler running here is aborted now (the NOTIFY, heard
      // later, finds nothing left to abort).
      self.shared.cancelled(id);
    }
    Ok(c)
  }

  /// Puts a failed, timed-out or cancelled job back in line (see
  /// [`PgStore::retry`]).
  pub async fn retry(&self, id: JobId) -> Result<bool> {
    self.settled().await;
    let back = self.pg.retry(id, (self.clock)()).await?;
    if back {
      // In line again: it keeps this process alive like a job added here.
      self.shared.known.add([id]);
    }
    Ok(back)
  }

  /// Jobs per status in the cluster (and the snapshot refreshed).
  pub async fn counts(&self) -> Result<[usize; 7]> {
    let c = self.pg.counts().await?;
    self.shared.set_counts(c, (self.clock)());
    Ok(c)
  }
}

/// The PostgreSQL backend as a [`Store`] (see the module docs).
pub struct PgBackend {
  pg: PgStore,
  rt: Handle,
  owner: i64,
  clock: ClusterClock,
  opts: BackendOptions,
  shared: Arc<Shared>,
  names: Names,
  weights: [i32; 3],
  running: HashMap<JobId, Held>,
  claims: u32,
  committer: Committer,
  inserts: mpsc::UnboundedSender<InsertBatch>,
  /// Progress not written yet, and the wake-up of its writer task.
  progress: Arc<super::progress::Progress>,
  progress_tx: mpsc::UnboundedSender<()>,
  commit_rx: watch::Receiver<Commit>,
  closed: bool,
  /// The cluster's schedules and their fires (`cron.rs`).
  cron: CronSide,
}

impl std::fmt::Debug for PgBackend {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("PgBackend")
      .field("owner", &self.owner)
      .field("schema", &self.pg.schema())
      .finish_non_exhaustive()
  }
}

impl PgBackend {
  /// Registers this process, starts the claimer, the inserter and the
  /// committer on the current runtime. `names`: the calculation names the
  /// queue's registry holds (the same indexes).
  pub async fn open(
    pg: PgStore,
    names: Names,
    clock: ClusterClock,
    opts: BackendOptions,
  ) -> Result<PgBackend> {
    let rt = Handle::current();
    let owner = pg.register(&opts.host, opts.pid, clock()).await?;
    let (commit, commit_rx) = watch::channel(Commit::default());
    let shared = Arc::new(Shared {
      ready: Mutex::new(Ready::default()),
      early: Mutex::new(BTreeMap::new()),
      names: Mutex::new(None),
      wake: Notify::new(),
      closed: AtomicBool::new(false),
      schedules: Notify::new(),
      marks: Mutex::new(Marks::default()),
      commit,
      fenced: AtomicU64::new(0),
      settling: Mutex::new(HashMap::new()),
      inserting: Mutex::new(HashMap::new()),
      prestarted: Mutex::new(HashMap::new()),
      counts: Mutex::new(pg.counts().await?),
      low_water: AtomicUsize::new(ClaimSizer::new(opts.batch, opts.low_water).sizes().0),
      wanted: AtomicUsize::new(0),
      sated: AtomicBool::new(false),
      counting: AtomicBool::new(false),
      count_took_us: AtomicU64::new(0),
      counts_at: AtomicU64::new(clock()),
      claim_error: Mutex::new(None),
      on_ready: Mutex::new(None),
      cancelled: Mutex::new(Vec::new()),
      on_cancel: Mutex::new(None),
      known: Default::default(),
      claim_at: AtomicU64::new(0),
      backlog: AtomicBool::new(true),
    });
    let committer = Committer::start(
      pg.clone(),
      opts.commit_max,
      opts.commit_delay,
      clock.clone(),
    );
    let listener = if opts.listen {
      pg.listen().await.ok()
    } else {
      None
    };
    if !opts.sync_claims {
      if let Some(every) = opts.heartbeat {
        rt.spawn(heartbeater(
          pg.clone(),
          shared.clone(),
          owner,
          clock.clone(),
          opts.clone(),
          every,
        ));
      }
      rt.spawn(claimer(
        pg.clone(),
        shared.clone(),
        owner,
        clock.clone(),
        opts.clone(),
        listener,
      ));
    }
    let (inserts, rx) = mpsc::unbounded_channel();
    // Adds claimed at once need the claimer (not in tests' `sync_claims`).
    let fast = (!opts.sync_claims).then_some(owner);
    rt.spawn(inserter(
      pg.clone(),
      shared.clone(),
      clock.clone(),
      rx,
      fast,
    ));
    let progress = Arc::new(super::progress::Progress::default());
    let (progress_tx, rx) = mpsc::unbounded_channel();
    let done = shared.clone();
    rt.spawn(super::progress::writer(
      pg.clone(),
      progress.clone(),
      opts.commit_delay,
      rx,
      move |seq, err| done.finish(seq, err),
    ));
    let cron = CronSide::open(&pg, shared.clone(), clock.clone(), opts.poll, &rt).await?;
    Ok(PgBackend {
      pg,
      rt,
      owner,
      clock,
      opts,
      shared,
      names,
      weights: [0, 1, 2],
      running: HashMap::new(),
      claims: 0,
      committer,
      inserts,
      progress,
      progress_tx,
      commit_rx,
      closed: false,
      cron,
    })
  }

  /// A handle for the binding's async reads and admin calls: cheap to
  /// clone, it holds no lock of the queue across an await.
  pub fn reader(&self) -> PgReader {
    PgReader {
      pg: self.pg.clone(),
      shared: self.shared.clone(),
      clock: self.clock.clone(),
    }
  }

  /// Replaces the calculation names (the queue's, once it installs the
  /// backend: names registered while it connected are known too).
  pub fn set_names(&mut self, names: Names) {
    self.names = names;
  }

  /// The SQL core (its async reads are what the binding calls).
  pub fn pg(&self) -> &PgStore {
    &self.pg
  }

  /// Calls `f` (from the claimer task) whenever jobs arrive in an empty
  /// ready buffer: the binding wakes the JS thread with it, which then
  /// calls `take`.
  pub fn set_on_ready(&self, f: Arc<dyn Fn() + Send + Sync>) {
    *self.shared.on_ready.lock() = Some(f);
  }

  /// Calls `f` with the id of a job cancelled in the database while it
  /// may run here (cancelled by this process's reader, or by another
  /// process: heard by NOTIFY): the binding aborts its slot.
  pub fn set_on_cancel(&self, f: CancelHook) {
    *self.shared.on_cancel.lock() = Some(f);
  }

  /// Calls `f` (from the schedule task) when a read of the cluster's
  /// schedules found a change: the binding wakes the engine's timer, whose
  /// tick merges it ([`Store::take_schedule_news`]).
  pub fn set_on_schedules(&self, f: super::cron::NewsHook) {
    self.cron.set_on_news(f);
  }

  /// Forgets the claims of jobs cancelled in the database.
  fn forget_cancelled(&mut self) {
    let ids: Vec<JobId> = std::mem::take(&mut *self.shared.cancelled.lock());
    if ids.is_empty() {
      return;
    }
    for id in &ids {
      self.running.remove(id);
    }
    // Claimed but not started here yet: not started. Handed back rather
    // than dropped: the hand-back is fenced (it changes a cancelled job
    // not at all), and a cancel heard late (its NOTIFY) may name a job
    // retried and claimed again since, which must not be lost here.
    let gone: std::collections::HashSet<JobId> = ids.into_iter().collect();
    let mut back = Vec::new();
    self.shared.ready.lock().retain(|j| {
      let keep = !gone.contains(&j.job.id);
      if !keep {
        back.extend(j.lease());
      }
      keep
    });
    self.shared.early.lock().retain(|k, j| {
      let keep = !gone.contains(&k.1);
      if !keep {
        back.extend(j.lease());
      }
      keep
    });
    self.hand_back(back);
  }

  /// How many claimed jobs wait in the ready buffer.
  pub fn ready_len(&self) -> usize {
    self.shared.ready.lock().len()
  }

  /// The last claim error, if the claimer's last claim failed.
  pub fn claim_error(&self) -> Option<String> {
    self.shared.claim_error.lock().clone()
  }

  /// A job by id, from the process when it holds it, else the database.
  pub async fn get_async(&self, id: JobId, names: &mut Names) -> Result<Option<Job>> {
    if let Some(j) = self.local(id) {
      return Ok(Some(j));
    }
    Ok(self.pg.get(id).await?.map(|j| j.into_job(names)))
  }

  /// Jobs the filter selects, for the whole cluster.
  pub async fn list_jobs_async(&self, filter: &JobFilter, names: &mut Names) -> Result<Vec<Job>> {
    let jobs = self.pg.list(filter, names).await?;
    Ok(jobs.into_iter().map(|j| j.into_job(names)).collect())
  }

  /// Jobs per status in the cluster (and the snapshot refreshed).
  pub async fn counts_async(&self) -> Result<[usize; 7]> {
    let c = self.pg.counts().await?;
    self.shared.set_counts(c, (self.clock)());
    Ok(c)
  }

  /// Cancels a job anywhere in the cluster (a running one's process hears
  /// `c:<id>`). The caller first drops the local claim with
  /// [`PgBackend::forget`] if the job runs here.
  pub async fn cancel_async(&self, id: JobId) -> Result<Option<Status>> {
    self.pg.cancel(id, (self.clock)()).await
  }

  /// Drops this process's claim of `id` (its late outcome is then fenced
  /// locally).
  pub fn forget(&mut self, id: JobId) {
    self.running.remove(&id);
  }

  /// Heartbeat of this process (false: its row is gone, it was declared
  /// dead).
  pub async fn heartbeat(&self) -> Result<bool> {
    self.pg.heartbeat(self.owner, (self.clock)()).await
  }

  /// Runs the cluster's rescuer at `now`.
  pub async fn rescue(&self, now: u64, dead_after_ms: u64) -> Result<super::Rescued> {
    self.pg.rescue(now, dead_after_ms).await
  }

  /// The job as this process holds it (running here, being settled or
  /// inserted), if it does.
  fn local(&self, id: JobId) -> Option<Job> {
    if let Some(h) = self.running.get(&id) {
      return Some(h.job.job.clone());
    }
    if let Some((_, j)) = self.shared.settling.lock().get(&id) {
      return Some(j.clone());
    }
    self.shared.inserting.lock().get(&id).cloned()
  }

  /// Blocks on the runtime for `fut`, bounded by `read_timeout` (tests
  /// only, see [`BackendOptions::sync_claims`]; refused on a runtime
  /// thread, where it would stall the engine).
  fn wait<T>(&self, what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    if !self.opts.sync_claims {
      // The JavaScript thread never waits on the network
      // (docs/design/storage.md): the binding calls the async variants.
      return Err(Error::Storage(format!(
        "PostgreSQL: {what} is answered by the async API (it returns a Promise on PostgreSQL)"
      )));
    }
    if Handle::try_current().is_ok() {
      return Err(Error::Storage(format!(
        "PostgreSQL: {what} cannot block on the engine's runtime; use the async variant"
      )));
    }
    let limit = self.opts.read_timeout;
    self
      .rt
      .block_on(async { tokio::time::timeout(limit, fut).await })
      .map_err(|_| {
        Error::Storage(format!(
          "PostgreSQL: {what} did not answer within {} ms",
          limit.as_millis()
        ))
      })?
  }

  /// Waits until every write issued so far is committed (tests, see
  /// [`BackendOptions::sync_claims`]).
  fn drain_writes(&self) -> Result<()> {
    let target = self.shared.marks.lock().issued;
    let mut rx = self.commit_rx.clone();
    self.wait("flush", async move {
      loop {
        if rx.borrow_and_update().seq >= target {
          return Ok(());
        }
        if rx.changed().await.is_err() {
          return Err(Error::Storage("PostgreSQL: the writer stopped".into()));
        }
      }
    })
  }

  /// Claims into the buffer in the calling thread (tests, see
  /// [`BackendOptions::sync_claims`]).
  fn claim_now(&mut self, max: usize, now: u64) -> Result<()> {
    self.drain_writes()?;
    let names = self.shared.names.lock().clone().unwrap_or_default();
    if names.is_empty() || max == 0 {
      return Ok(());
    }
    let o = ClaimOptions {
      names: Some(names),
      ..ClaimOptions::new(self.owner, max)
    };
    let pg = self.pg.clone();
    let jobs = self.wait("claim", async move { pg.claim(&o, now).await })?;
    self.shared.ready.lock().extend(jobs);
    Ok(())
  }

  /// Tells the claimer which calculations the queue runs (from `runnable`).
  fn sync_runnable(&mut self, runnable: &dyn Fn(u32) -> bool) {
    let now: Vec<String> = (0..self.names.len() as u32)
      .filter(|&i| runnable(i))
      .filter_map(|i| self.names.get(i).map(str::to_string))
      .collect();
    let mut cur = self.shared.names.lock();
    if cur.as_ref() != Some(&now) {
      *cur = Some(now);
      drop(cur);
      self.shared.wake.notify_one();
    }
  }

  /// True when `lease` is this process's current claim of `id`.
  fn is_current(&self, id: JobId, lease: &Lease) -> bool {
    matches!(self.running.get(&id), Some(h) if h.claim == lease.claim
      && lease.owner == self.owner as u64
      && lease.attempt == h.job.job.attempts)
  }

  /// Sends an outcome to the committer under a new mark; `job` is what the
  /// process says of the job until the commit.
  fn send_outcome(&self, o: Outcome, job: Job) {
    let seq = self.shared.issue();
    let id = job.id;
    let frees_key = job.concurrency_key().is_some();
    self.shared.settling.lock().insert(id, (seq, job));
    let committer = self.committer.clone();
    let shared = self.shared.clone();
    let clock = self.clock.clone();
    // Its unwritten progress first: the finished row keeps the last value.
    let progress = self.progress.take_job(id);
    let pg = self.pg.clone();
    // Added claimed here and started before its insert committed: the
    // outcome is written after that commit.
    let after = self.shared.prestarted.lock().get(&id).copied();
    let mut rx = self.commit_rx.clone();
    self.rt.spawn(async move {
      if let Some(mark) = after {
        let _ = rx.wait_for(|c| c.seq >= mark || c.error.is_some()).await;
      }
      if let Some(p) = progress {
        // Retried through an outage like the outcome that follows it.
        let p = [p];
        let _ = pg.retrying("commit", || pg.write_progress(&p)).await;
      }
      let r = committer.send(o).await;
      if frees_key && matches!(r, Ok(true)) {
        // The next job of its concurrency key may run now, here or anywhere.
        shared.wake.notify_one();
        pg.key_freed(clock()).await;
      }
      {
        let mut s = shared.settling.lock();
        if s.get(&id).map(|e| e.0) == Some(seq) {
          s.remove(&id);
        }
      }
      let err = match r {
        Ok(true) => None,
        Ok(false) => {
          shared.fenced.fetch_add(1, Ordering::Relaxed);
          // Before the mark moves past it (see Store::take_committed).
          shared.marks.lock().fenced.push((seq, id));
          None
        }
        Err(e) => Some(e.to_string()),
      };
      shared.finish(seq, err);
    });
  }

  /// While PostgreSQL is unreachable, added jobs wait in the insert
  /// buffer up to `max_buffered`; past it `add` is refused (nothing is
  /// added, the buffer does not grow without bound).
  fn check_buffer(&self, adding: usize) -> Result<()> {
    if !self.pg.conn().is_failing() {
      return Ok(());
    }
    let waiting = self.shared.inserting.lock().len();
    let max = self.opts.max_buffered;
    if waiting + adding <= max {
      return Ok(());
    }
    Err(Error::Storage(format!(
      "PostgreSQL is unreachable (retrying): {waiting} added jobs are waiting to be written, \
       at most {max} are kept meanwhile; nothing was added, try again later"
    )))
  }

  /// The jobs of `rows` this process takes at once (fast.rs): claimed by
  /// the insert of write `seq`, they go to the ready buffer now, before it
  /// commits, so an add's handler starts without waiting for the database
  /// (their outcomes wait for that commit, see `send_outcome`). Returns
  /// their ids.
  fn prestart(&self, rows: &[NewJob], seq: u64) -> Vec<JobId> {
    if self.opts.sync_claims
      || self.shared.backlog.load(Ordering::Acquire)
      || self.shared.closed.load(Ordering::Acquire)
    {
      return Vec::new();
    }
    let Some(names) = self.shared.names.lock().clone() else {
      return Vec::new();
    };
    let low = if self.shared.sated.load(Ordering::Relaxed) {
      self.shared.wanted.load(Ordering::Relaxed)
    } else {
      self.shared.low_water.load(Ordering::Relaxed)
    };
    let room = low.saturating_sub(self.shared.ready.lock().len());
    let now = (self.clock)();
    let picked = super::fast::pick_indices(rows, now, &names, room);
    if picked.is_empty() {
      return Vec::new();
    }
    let o = ClaimOptions::new(self.owner, 0);
    let jobs: Vec<PgJob> = {
      let ins = self.shared.inserting.lock();
      picked
        .iter()
        .filter_map(|&i| {
          let row = &rows[i];
          let job = ins.get(&row.id)?;
          Some(super::fast::claimed_here(job, row, &o, now))
        })
        .collect()
    };
    {
      let mut pre = self.shared.prestarted.lock();
      for j in &jobs {
        pre.insert(j.job.id, seq);
      }
    }
    let ids: Vec<JobId> = jobs.iter().map(|j| j.job.id).collect();
    let was_empty = {
      let mut r = self.shared.ready.lock();
      let was = r.is_empty();
      r.extend(jobs);
      was
    };
    if was_empty {
      wake_js(&self.shared);
    }
    ids
  }

  /// Hands claimed jobs back to the database (not started here), once the
  /// writes before it are done (a job added claimed here may not be
  /// committed yet).
  fn hand_back(&self, leases: Vec<PgLease>) {
    if leases.is_empty() {
      return;
    }
    let seq = self.shared.issue();
    let pg = self.pg.clone();
    let shared = self.shared.clone();
    let now = (self.clock)();
    self
      .rt
      .spawn(async move { shared.hand_back(&pg, seq, &leases, now).await });
  }
}

/// The claimer task: keeps the ready buffer above its low-water mark.
/// A failed claim is tried again after a backoff wait (the storage reports
/// itself degraded meanwhile); a lost LISTEN connection is opened again
/// the same way (the poll covers the NOTIFYs missed meanwhile).
async fn claimer(
  pg: PgStore,
  shared: Arc<Shared>,
  owner: i64,
  clock: ClusterClock,
  opts: BackendOptions,
  mut listener: Option<Listener>,
) {
  let mut sizer = ClaimSizer::new(opts.batch, opts.low_water);
  let mut due = DueTimes::default();
  // Only a LISTEN that worked once is opened again (none at all: polling
  // by choice, or behind PgBouncer).
  let listens = listener.is_some();
  let mut relisten = Retrying::new(pg.conn().policy());
  let mut claims = Retrying::new(pg.conn().policy());
  // Claim times strictly increase (`Shared::next_claim_at`); those of
  // failed claims are released once a claim goes through again.
  let mut lost: Vec<u64> = Vec::new();
  // The counts snapshot is refreshed every `poll` even while NOTIFYs keep
  // the loop busy (a sleep of `poll` would then never end).
  let mut counted = tokio::time::Instant::now();
  let ahead_ms = u64::try_from(opts.lookahead.as_millis()).unwrap_or(u64::MAX);
  // A claim that found nothing is not repeated for a mere `take` (the
  // workers asking for more) within `IDLE_CLAIM_GAP`: every add, outcome
  // and hand-back that makes a job claimable sends a NOTIFY, and without
  // LISTEN the poll finds it. An idle process used to claim (a round trip
  // and an index walk) for every job it started.
  let mut last_empty: Option<tokio::time::Instant> = None;
  let mut why = Wake::Start;
  let mut sated_until: Option<tokio::time::Instant> = None;
  loop {
    if shared.closed.load(Ordering::Acquire) {
      break;
    }
    let took = Duration::from_micros(shared.count_took_us.load(Ordering::Relaxed));
    if counted.elapsed() >= opts.poll.max(took * COUNT_DUTY) {
      counted = tokio::time::Instant::now();
      refresh_counts(&pg, &shared, &clock);
    }
    if shared.promote_early(clock()) {
      wake_js(&shared);
    }
    if let Some(hold) = opts.hold {
      if hand_back_stale(&pg, &shared, &clock, hold).await {
        sated_until = Some(tokio::time::Instant::now() + opts.sated_for);
      }
    }
    let sated = sated_until.is_some_and(|t| t > tokio::time::Instant::now());
    shared.sated.store(sated, Ordering::Relaxed);
    let idle_gap = match (why, last_empty) {
      (Wake::Take, Some(t)) => {
        let until = t + IDLE_CLAIM_GAP;
        (until > tokio::time::Instant::now()).then_some(until)
      }
      _ => None,
    };
    let names = shared.names.lock().clone();
    if let Some(names) = names.filter(|n| !n.is_empty() && claims.due() && idle_gap.is_none()) {
      let have = shared.ready.lock().len() + shared.early.lock().len();
      // Sated: only what the workers asked for beyond the buffer (once
      // claimed, the buffer holds that many until they take them).
      let (low, batch) = if sated {
        let w = shared.wanted.load(Ordering::Relaxed);
        (w, w)
      } else {
        sizer.sizes()
      };
      if have < low {
        sizer.before_claim(have);
        let want = batch - have;
        let now = clock();
        let at = shared.next_claim_at(now);
        let o = ClaimOptions {
          names: Some(names),
          at: Some(at),
          // Jobs due within the lookahead too, unless due ones wait.
          ahead_ms: if shared.backlog.load(Ordering::Acquire) {
            0
          } else {
            ahead_ms
          },
          ..ClaimOptions::new(owner, want)
        };
        let started = std::time::Instant::now();
        match pg.bounded("claim", pg.claim(&o, now)).await {
          Ok(mut jobs) => {
            *shared.claim_error.lock() = None;
            if !lost.is_empty() && pg.release_lost(owner, &lost, clock()).await.is_ok() {
              lost.clear();
            }
            claims.ok(&pg, "claim");
            let full = jobs.len() == want;
            shared.backlog.store(full, Ordering::Release);
            last_empty = jobs.is_empty().then(tokio::time::Instant::now);
            if shared.closed.load(Ordering::Acquire) {
              // Closed meanwhile: nobody takes these.
              let leases: Vec<PgLease> = jobs.iter().filter_map(PgJob::lease).collect();
              let _ = pg.hand_back(&leases, clock()).await;
              break;
            }
            shared.known.gone(jobs.iter().map(|j| j.job.id));
            let now = clock();
            if jobs.iter().any(|j| j.job.run_at > now) {
              let mut early = shared.early.lock();
              jobs.retain(|j| {
                if j.job.run_at > now {
                  early.insert((j.job.run_at, j.job.id), j.clone());
                  false
                } else {
                  true
                }
              });
            }
            let was_empty = {
              let mut r = shared.ready.lock();
              let was = r.is_empty();
              r.extend(jobs);
              sizer.after_claim(started.elapsed(), r.len());
              was && !r.is_empty()
            };
            shared.low_water.store(sizer.sizes().0, Ordering::Relaxed);
            if was_empty {
              wake_js(&shared);
            }
            if full {
              continue;
            }
          }
          Err(e) => {
            // Its answer may be what was lost (bounded: the oldest go; their
            // jobs are rescued when their lease runs out).
            if lost.len() >= 1_024 {
              lost.remove(0);
            }
            lost.push(at);
            claims.failed(&pg, "claim", &e);
            *shared.claim_error.lock() = Some(e.to_string());
          }
        }
      }
    }
    // A delayed job heard of is claimed `lookahead` before it is due.
    let next_due = due.next().map(|t| t.saturating_sub(ahead_ms));
    let next_early = shared.next_early();
    let stale_at = opts.hold.and_then(|h| {
      let t = shared.ready.lock().oldest()?;
      Some(tokio::time::Instant::from_std(t + h))
    });
    why = Wake::Other;
    tokio::select! {
      _ = shared.wake.notified() => why = Wake::Take,
      _ = sleep_until_due(next_due, &*clock) => due.passed(clock().saturating_add(ahead_ms)),
      _ = sleep_until_due(next_early, &*clock) => {}
      _ = sleep_until(idle_gap) => {}
      _ = sleep_until(stale_at) => {}
      n = next_notice(&mut listener) => match n {
        Some(Notice::Inserted { earliest }) => due.add(earliest, clock().saturating_add(ahead_ms)),
        Some(Notice::Cancelled(id)) => shared.cancelled(id),
        Some(Notice::Schedule(_)) => shared.schedules.notify_one(),
        Some(Notice::Lost(e)) => {
          listener = None;
          relisten.failed(&pg, "listen", &Error::Storage(e));
        }
        None => {
          listener = None;
          let e = Error::Storage("the LISTEN connection closed".into());
          relisten.failed(&pg, "listen", &e);
        }
      },
      _ = claims.wait() => {}
      _ = relisten.wait(), if listens && listener.is_none() => {
        match pg.listen().await {
          Ok(l) => {
            listener = Some(l);
            relisten.ok(&pg, "listen");
          }
          Err(e) => relisten.failed(&pg, "listen", &e),
        }
      }
      _ = tokio::time::sleep(opts.poll) => {}
    }
  }
}

/// Hands back the jobs that waited in the ready buffer for `hold` or
/// longer (no worker here took them; another process may run them now),
/// after this process's earlier writes (a job added claimed here may not
/// be committed yet). True if there were any.
async fn hand_back_stale(
  pg: &PgStore,
  shared: &Shared,
  clock: &ClusterClock,
  hold: Duration,
) -> bool {
  let Some(before) = std::time::Instant::now().checked_sub(hold) else {
    return false;
  };
  let stale = shared.ready.lock().take_older(before);
  if stale.is_empty() {
    return false;
  }
  let leases: Vec<PgLease> = stale.iter().filter_map(PgJob::lease).collect();
  let seq = shared.issue();
  shared.hand_back(pg, seq, &leases, clock()).await;
  true
}

/// Why the claimer's loop woke up (see `IDLE_CLAIM_GAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
  Start,
  /// `take`/`has_due` found the buffer low.
  Take,
  /// A notice, a due time, the poll, a retry.
  Other,
}

/// A counts query runs at most this fraction of the time (one in ten).
const COUNT_DUTY: u32 = 10;

/// After a claim that found nothing, a `take` alone claims again only this
/// much later (see the claimer).
const IDLE_CLAIM_GAP: Duration = Duration::from_millis(25);

async fn sleep_until(at: Option<tokio::time::Instant>) {
  match at {
    Some(t) => tokio::time::sleep_until(t).await,
    None => std::future::pending().await,
  }
}

/// A task's retry schedule: after a failure, the next try waits out the
/// backoff (conn.rs), and the storage is reported failing until a try
/// succeeds.
struct Retrying {
  backoff: RetryBackoff,
  next: Option<tokio::time::Instant>,
}

impl Retrying {
  fn new(policy: RetryPolicy) -> Retrying {
    Retrying {
      backoff: RetryBackoff::new(policy),
      next: None,
    }
  }

  /// True when no wait is pending.
  fn due(&self) -> bool {
    self.next.is_none_or(|t| t <= tokio::time::Instant::now())
  }

  fn failed(&mut self, pg: &PgStore, task: &'static str, e: &Error) {
    pg.conn().failed(task, &super::conn::why(e));
    self.next = Some(tokio::time::Instant::now() + self.backoff.next_wait());
  }

  fn ok(&mut self, pg: &PgStore, task: &'static str) {
    if self.backoff.tries() > 0 {
      pg.conn().ok(task);
      self.backoff.reset();
    }
    self.next = None;
  }

  /// Resolves when the pending wait ends (never when none is pending).
  async fn wait(&self) {
    match self.next {
      Some(t) => tokio::time::sleep_until(t).await,
      None => std::future::pending().await,
    }
  }
}

/// The heartbeat task: every `every`, this process's heartbeat (retried
/// through an outage until it lands; if the process was found dead
/// meanwhile, it registers again under its id), then the cluster's
/// rescuer (a failure is retried at the next beat).
async fn heartbeater(
  pg: PgStore,
  shared: Arc<Shared>,
  owner: i64,
  clock: ClusterClock,
  opts: BackendOptions,
  every: Duration,
) {
  loop {
    tokio::time::sleep(every).await;
    if shared.closed.load(Ordering::Acquire) {
      break;
    }
    let beat = pg
      .retrying("heartbeat", || {
        pg.heartbeat_or_register(owner, &opts.host, opts.pid, clock())
      })
      .await;
    if shared.closed.load(Ordering::Acquire) {
      break;
    }
    if beat.is_ok() {
      let _ = pg
        .bounded("rescue", pg.rescue(clock(), opts.dead_after_ms))
        .await;
    }
  }
}

/// Refreshes the cluster's counts in the background, one refresh at a
/// time: counting reads every row of both tables (seconds once they are
/// large or bloated), which must not hold up the claims.
///
/// A count's snapshot holds back the server's cleanup horizon while it
/// runs: dead index entries of claimed jobs cannot be marked dead, so
/// every claim walks past all of them. Counting back to back on a table of
/// millions (a second or more per count) slowed claims to seconds and
/// stalled a 10-minute run for most of a minute; the next count therefore
/// waits at least `COUNT_DUTY` times the last one's duration (the counts
/// are that much older under such load, `countsAsOf` says so).
fn refresh_counts(pg: &PgStore, shared: &Arc<Shared>, clock: &ClusterClock) {
  if shared.counting.swap(true, Ordering::AcqRel) {
    return;
  }
  let (pg, shared, clock) = (pg.clone(), shared.clone(), clock.clone());
  tokio::spawn(async move {
    let t = std::time::Instant::now();
    if let Ok(c) = pg.counts().await {
      shared.set_counts(c, clock());
    }
    let took = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.count_took_us.store(took, Ordering::Relaxed);
    // The jobs this process added: those that left the queue elsewhere
    // stop keeping it alive (known.rs).
    if shared
      .known
      .check(&pg, &shared.inserting, &shared.settling)
      .await
    {
      wake_js(&shared);
    }
    shared.counting.store(false, Ordering::Release);
  });
}

async fn next_notice(l: &mut Option<Listener>) -> Option<Notice> {
  match l {
    Some(l) => l.recv().await,
    None => std::future::pending().await,
  }
}

/// Wakes JavaScript (the binding's hook): jobs are ready, failure events
/// wait, or the keep-alive may change.
fn wake_js(shared: &Shared) {
  let f = shared.on_ready.lock().clone();
  if let Some(f) = f {
    f();
  }
}

/// The inserter task: writes what is waiting in one transaction; the jobs
/// `insert` already put in the ready buffer go in claimed by this process
/// (`fast`, its id; fast.rs).
async fn inserter(
  pg: PgStore,
  shared: Arc<Shared>,
  clock: ClusterClock,
  mut rx: mpsc::UnboundedReceiver<InsertBatch>,
  fast: Option<i64>,
) {
  while let Some((seq, jobs, ids)) = rx.recv().await {
    let mut seqs = vec![seq];
    let mut all = jobs;
    let mut claimed = ids;
    while all.len() < 5_000 {
      match rx.try_recv() {
        Ok((s, j, c)) => {
          seqs.push(s);
          all.extend(j);
          claimed.extend(c);
        }
        Err(_) => break,
      }
    }
    // Until committed (an outage is waited out, conn.rs); the jobs of
    // `claimed` (already in the ready buffer) claimed by this process at a
    // claim time of their own.
    let r = match fast.filter(|_| !claimed.is_empty()) {
      Some(owner) => {
        let opts = ClaimOptions::new(owner, 0);
        let at = shared.next_claim_at(clock());
        let c = Claiming {
          ids: &claimed,
          opts: &opts,
          at,
        };
        pg.insert_retrying(&all, clock(), Some(c)).await
      }
      None => pg.insert_retrying(&all, clock(), None).await,
    };
    {
      let mut ins = shared.inserting.lock();
      for j in &all {
        ins.remove(&j.id);
      }
    }
    let err = match r {
      Ok(failed) if !failed.is_empty() => {
        // Committed: their `failed` events can fire (the queue takes them
        // at its next operation; JavaScript is woken for it).
        shared.known.push_failed(failed);
        wake_js(&shared);
        None
      }
      Ok(_) => None,
      Err(e) => {
        shared.known.gone(all.iter().map(|j| j.id));
        Some(e.to_string())
      }
    };
    for s in seqs {
      shared.finish(s, err.clone());
    }
    if !claimed.is_empty() {
      let mut pre = shared.prestarted.lock();
      for id in &claimed {
        pre.remove(id);
      }
    }
  }
}

impl Store for PgBackend {
  fn kind(&self) -> &'static str {
    "postgres"
  }

  fn insert(&mut self, jobs: Vec<Job>, names: &Names) -> Result<()> {
    if self.closed {
      return Err(Error::Storage("PostgreSQL: the store is closed".into()));
    }
    self.check_buffer(jobs.len())?;
    if names.len() > self.names.len() {
      self.names = names.clone();
    }
    let mut rows = Vec::with_capacity(jobs.len());
    {
      let mut ins = self.shared.inserting.lock();
      for job in jobs {
        let name = names.get(job.name).ok_or_else(|| {
          Error::Storage(format!("job {}: unknown calculation {}", job.id, job.name))
        })?;
        let mut row = NewJob::from_job(&job, name, &self.weights);
        row.key = job.key().map(str::to_string);
        row.concurrency_key = job.concurrency_key().map(str::to_string);
        row.on_dup = job.keys().map(|k| k.on_dup).unwrap_or_default();
        rows.push(row);
        ins.insert(job.id, job);
      }
    }
    self.shared.known.add(rows.iter().map(|r| r.id));
    if rows.is_empty() {
      return Ok(());
    }
    let seq = self.shared.issue();
    let fast = self.prestart(&rows, seq);
    if self.inserts.send((seq, rows, fast)).is_err() {
      self.shared.finish(seq, Some("the inserter stopped".into()));
      return Err(Error::Storage("PostgreSQL: the inserter stopped".into()));
    }
    Ok(())
  }

  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> Result<usize> {
    self.forget_cancelled();
    self.sync_runnable(runnable);
    self.shared.promote_early(now);
    if self.opts.sync_claims && self.shared.ready.lock().is_empty() {
      self.claim_now(max, now)?;
    }
    let popped: Vec<PgJob> = {
      let mut r = self.shared.ready.lock();
      let got = r.pop(max);
      // What the workers wanted beyond the buffer (a claimer that handed
      // back jobs nobody took claims only that much for a while).
      self
        .shared
        .wanted
        .store(max.saturating_sub(got.len()), Ordering::Relaxed);
      got
    };
    let mut back = Vec::new();
    let mut n = 0;
    for mut pj in popped {
      let idx = self.names.intern(&pj.name);
      // A job whose lease ran out while it waited here (a long outage)
      // may have been rescued and run elsewhere: not started here.
      let expired = pj.lease_until.is_some_and(|t| t <= now);
      if !runnable(idx) || expired {
        back.extend(pj.lease());
        continue;
      }
      pj.job.name = idx;
      pj.job.started_at = now;
      pj.job.status = Status::Running;
      self.claims = self.claims.wrapping_add(1);
      // The job's generation is this process's claim number (what a
      // lease's `claim` is checked against).
      pj.job.gen = self.claims;
      let lease = Lease {
        owner: self.owner as u64,
        attempt: pj.job.attempts,
        hint: NO_HINT,
        claim: self.claims,
      };
      visit(&pj.job, lease);
      self.running.insert(
        pj.job.id,
        Held {
          job: pj,
          claim: self.claims,
        },
      );
      n += 1;
    }
    self.hand_back(back);
    if self.shared.ready.lock().len() < self.shared.low_water.load(Ordering::Relaxed) {
      self.shared.wake.notify_one();
    }
    Ok(n)
  }

  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.shared.promote_early(now);
    let empty = self.shared.ready.lock().is_empty();
    if empty {
      self.sync_runnable(runnable);
      self.shared.wake.notify_one();
    }
    !empty
  }

  fn owner(&self) -> u64 {
    self.owner as u64
  }

  fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Result<Settled> {
    self.forget_cancelled();
    let current = self.is_current(id, &lease);
    let Some(h) = current.then(|| self.running.remove(&id)).flatten() else {
      return Ok(Settled::Fenced);
    };
    let Some(pl) = h.job.lease() else {
      return Ok(Settled::Fenced);
    };
    let mut job = h.job.job;
    job.status = Status::Completed;
    job.finished_at = now;
    self.send_outcome(Outcome::completed(pl, result), job);
    Ok(Settled::Applied(()))
  }

  fn fail(
    &mut self,
    lease: Lease,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Result<Settled<Failed>> {
    self.forget_cancelled();
    let current = self.is_current(id, &lease);
    let Some(h) = current.then(|| self.running.remove(&id)).flatten() else {
      return Ok(Settled::Fenced);
    };
    if h.job.owner.is_none() {
      return Ok(Settled::Fenced);
    }
    let o = Outcome::failed(&h.job, err, kind, now, rand);
    let mut job = h.job.job;
    let failed = match &o.kind {
      OutcomeKind::Retry {
        run_at, uncount, ..
      } => {
        job.status = Status::Pending;
        job.run_at = *run_at;
        if *uncount {
          job.attempts = job.attempts.saturating_sub(1);
        }
        Failed {
          status: Status::Pending,
          retry_delay: Some(run_at.saturating_sub(now)),
        }
      }
      OutcomeKind::Failed { status, .. } => {
        job.status = *status;
        job.finished_at = now;
        Failed {
          status: *status,
          retry_delay: None,
        }
      }
      OutcomeKind::Completed { .. } => Failed {
        status: Status::Completed,
        retry_delay: None,
      },
    };
    self.send_outcome(o, job);
    if failed.status == Status::Pending {
      // Back in line: it keeps this process alive like a job added here
      // (after `settling` holds it, so a check never reads it as running).
      self.shared.known.add([id]);
    }
    Ok(Settled::Applied(failed))
  }

  /// `None`: the database decides at insert, in order with this
  /// process's other inserts (`keys.rs`), so the queue adds every keyed
  /// job with its policy; a refused one's id becomes an alias of the
  /// holder.
  fn keyed(&mut self, _key: &str) -> Option<JobId> {
    None
  }

  /// Never asked (`keyed` finds no holder): the inserting transaction
  /// changes a key's unstarted holder (`keys.rs`).
  fn update_unstarted(&mut self, _id: JobId, _change: &Unstarted<'_>, _now: u64) -> Result<bool> {
    Ok(false)
  }

  fn cancel(&mut self, id: JobId, _now: u64) -> Result<Option<Status>> {
    let pg = self.pg.clone();
    let now = (self.clock)();
    let was = self.wait("cancelJob", async move { pg.cancel(id, now).await })?;
    self.running.remove(&id);
    Ok(was)
  }

  fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    self.drain_writes()?;
    let pg = self.pg.clone();
    self.wait("retryJob", async move { pg.retry(id, now).await })
  }

  fn progress(&mut self, id: JobId, json: &str) -> Result<bool> {
    let Some(h) = self.running.get_mut(&id) else {
      return Ok(false);
    };
    let extra = h.job.job.extra.get_or_insert_with(Default::default);
    extra.progress = Some(json.into());
    if let Some(lease) = h.job.lease() {
      let shared = &self.shared;
      self
        .progress
        .put(lease, json, || shared.issue(), &self.progress_tx);
    }
    Ok(true)
  }

  fn recover_interrupted(&mut self, _now: u64) -> Result<usize> {
    // The cluster's rescuer does it (PgBackend::rescue): a new process
    // owns nothing yet.
    Ok(0)
  }

  fn prune(&mut self, before: u64) -> Result<usize> {
    if self.opts.sync_claims {
      self.drain_writes()?;
    } else {
      // The prune chore runs on the engine's timer (a runtime thread, where
      // blocking is refused): the delete runs in the background, and a
      // failure is retried at the next cleanup.
      let pg = self.pg.clone();
      self.rt.spawn(async move {
        let _ = pg.prune(before, 1_000).await;
      });
      return Ok(0);
    }
    let pg = self.pg.clone();
    self.wait("prune", async move { pg.prune(before, 1_000).await })
  }

  fn get(&mut self, id: JobId) -> Result<Option<Job>> {
    if self.opts.sync_claims {
      // Tests: the database's word once the writes so far are in.
      self.drain_writes()?;
      if let Some(h) = self.running.get(&id) {
        return Ok(Some(h.job.job.clone()));
      }
    } else if let Some(j) = self.local(id) {
      return Ok(Some(j));
    }
    let pg = self.pg.clone();
    let got = self.wait("getJobStatus", async move { pg.get(id).await })?;
    Ok(got.map(|j| j.into_job(&mut self.names)))
  }

  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let filter = JobFilter {
      statuses: status.map_or(crate::storage::ANY_STATUS, |s| 1 << s as u8),
      ascending: true,
      limit,
      include_data: false,
      ..JobFilter::default()
    };
    let names = self.names.clone();
    let pg = self.pg.clone();
    self
      .wait("list", async move { pg.list(&filter, &names).await })
      .map(|v| v.into_iter().map(|j| j.job.id).collect())
      .unwrap_or_default()
  }

  fn list_jobs(&mut self, filter: &JobFilter, names: &Names) -> Result<Vec<Job>> {
    let pg = self.pg.clone();
    let f = filter.clone();
    let n = names.clone();
    let jobs = self.wait("getJobs", async move { pg.list(&f, &n).await })?;
    let mut names = names.clone();
    Ok(jobs.into_iter().map(|j| j.into_job(&mut names)).collect())
  }

  fn counts(&self) -> [usize; 7] {
    if self.opts.sync_claims {
      let pg = self.pg.clone();
      if let Ok(c) = self
        .drain_writes()
        .and_then(|()| self.wait("counts", async move { pg.counts().await }))
      {
        self.shared.set_counts(c, (self.clock)());
      }
    }
    *self.shared.counts.lock()
  }

  fn counts_as_of(&self) -> Option<u64> {
    Some(self.shared.counts_at.load(Ordering::Acquire))
  }

  fn unregistered(&self) -> usize {
    0
  }

  fn save_schedule(&mut self, id: &str, json: &str) -> Result<()> {
    self.cron.save(&self.shared, id, json)
  }

  fn delete_schedule(&mut self, id: &str) -> Result<()> {
    self.cron.delete(&self.shared, id)
  }

  fn shares_schedules(&self) -> bool {
    true
  }

  fn record_fire(&mut self, fire: &FireRecord, job: Job, names: &Names) -> Result<FireHandoff> {
    if self.closed {
      return Err(Error::Storage("PostgreSQL: the store is closed".into()));
    }
    if names.len() > self.names.len() {
      self.names = names.clone();
    }
    self
      .cron
      .fire(&self.shared, fire, &job, names, &self.weights)
  }

  fn take_schedule_news(&mut self) -> Option<ScheduleNews> {
    self.cron.news()
  }

  fn schedule_job_status(&self, id: JobId) -> Option<Status> {
    self.cron.status(id)
  }

  fn registered(&mut self, _name: u32) {
    self.shared.wake.notify_one();
  }

  fn next_due(&self) -> Option<u64> {
    // Jobs claimed ahead: the claimer moves them at their due time; the
    // queue's timer (a manual clock's steps) finds them too.
    self.shared.next_early()
  }

  fn max_id(&self) -> Option<JobId> {
    None
  }

  fn set_weights(&mut self, weights: [i32; 3]) {
    self.weights = weights;
  }

  fn flush_mark(&mut self) -> Option<(u64, watch::Receiver<Commit>)> {
    let mark = self.shared.marks.lock().issued;
    Some((mark, self.commit_rx.clone()))
  }

  fn failure(&self) -> Option<String> {
    self.shared.marks.lock().error.clone()
  }

  fn health(&self) -> StorageHealth {
    match self.failure() {
      Some(e) => StorageHealth::of_failure(Some(e)),
      None => self.pg.conn().health(),
    }
  }

  fn late_fenced(&self) -> u64 {
    self.shared.fenced.load(Ordering::Relaxed)
  }

  fn commits_late(&self) -> bool {
    true
  }

  fn take_committed(&mut self) -> (u64, Vec<(u64, JobId)>) {
    let mut m = self.shared.marks.lock();
    let done = m.done;
    let mut out = Vec::new();
    if !m.fenced.is_empty() {
      m.fenced.retain(|&(seq, id)| {
        let now = seq <= done;
        if now {
          out.push((seq, id));
        }
        !now
      });
    }
    (done, out)
  }

  fn checks_dependencies_late(&self) -> bool {
    // The insert checks them (`insert.rs`): a look-up here would be a
    // network read on the JavaScript thread.
    true
  }

  fn take_failed(&mut self) -> Vec<StoreFailed> {
    let mut out = self.committer.take_failed();
    self.shared.known.gone(out.iter().map(|f| f.id));
    out.extend(self.shared.known.take_failed());
    out
  }

  fn local_work(&self) -> Option<usize> {
    Some(
      self.shared.known.queued()
        + self.shared.ready.lock().len()
        + self.shared.early.lock().len()
        + self.shared.settling.lock().len(),
    )
  }

  fn close(&mut self) {
    if self.closed {
      return;
    }
    self.closed = true;
    self.shared.closed.store(true, Ordering::Release);
    // What is still retried gives up if the server does not answer.
    self.pg.conn().set_closing();
    self.shared.wake.notify_one();
    let mut left: Vec<PgLease> = self
      .shared
      .ready
      .lock()
      .drain()
      .into_iter()
      .filter_map(|j| j.lease())
      .collect();
    let early = std::mem::take(&mut *self.shared.early.lock());
    left.extend(early.into_values().filter_map(|j| j.lease()));
    self.hand_back(left);
    // Once the last writes are done (or given up), the idle connections
    // are closed: a stopped service holds none (a service started and
    // stopped again and again, as in a test suite, used to keep two each
    // until the process ended). Tasks still finishing a round return
    // theirs within a poll; those are closed by the later passes.
    let target = self.shared.marks.lock().issued;
    let mut rx = self.commit_rx.clone();
    let pg = self.pg.clone();
    self.rt.spawn(async move {
      let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while rx.borrow_and_update().seq < target {
          if rx.changed().await.is_err() {
            break;
          }
        }
      })
      .await;
      for _ in 0..3 {
        pg.release_idle();
        tokio::time::sleep(Duration::from_secs(1)).await;
      }
      pg.release_idle();
    });
  }

  fn is_closed(&self) -> bool {
    self.closed
  }

  fn is_durable(&self) -> bool {
    true
  }

  fn check_invariants(&self) -> std::result::Result<(), String> {
    for (id, h) in &self.running {
      if h.job.job.id != *id || h.job.owner != Some(self.owner) {
        return Err(format!("job {id} is held here under another owner"));
      }
    }
    Ok(())
  }
}
