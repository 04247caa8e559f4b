//! [`SqliteStore`]: the embedded default. The live jobs (waiting, running,
//! a window of pending ones) are a [`MemoryStore`] rebuilt from the file on
//! open; every transition is also queued to one writer thread, which commits
//! whatever queued up while the previous commit ran in one transaction
//! (group commit). Payloads stay JSON text, as they came from JavaScript.
//!
//! Finished jobs (completed, failed, timed out, cancelled) live in the file
//! only: a job that finishes stays in memory until the writer has committed
//! its final row (reads see it there meanwhile), then leaves it
//! ([`MemoryStore::evict`], at the end of the next operation). So memory
//! holds the live jobs plus the finished ones of the writes in flight,
//! whatever the number of jobs processed or kept. Reading a finished job
//! (`get`, a listing) reads its row; retrying one brings it back into memory
//! as pending; a job added with `dependsOn` a finished one, or a retried
//! one whose dependencies finished, gets their outcome from the file.
//! [`Store::counts`] counts them with per-status counters (a `GROUP BY` on
//! open), and a prune is one `DELETE` in the writer, reading the rows up to
//! the last key a job created by then can have (no index: one would cost
//! every completion a write; measured, half the throughput).
//!
//! Pending jobs beyond the first [`HOT_PENDING`] live in the file only
//! ("cold"): plain jobs (priority `medium`, due when added, never attempted,
//! no dependencies) whose inserts are journaled like any other but which are
//! not kept in memory. Jobs with a unique key, a concurrency key or a
//! schedule id are never cold: [`super::keys`] works on memory only. They run in the order of their keys, which is their
//! (due time, id) order; a claim takes jobs from memory up to the first cold
//! one and reads the next ones from the file when it gets there (a refill).
//! Reading one (`get`) reads its row; a listing reads the cold rows it
//! returns (one range read on the key); changing one (`cancel`, depending on
//! it) brings it into memory first.
//!
//! The parts:
//!
//! - [`schema`]: the tables, their migrations (`PRAGMA user_version`) and
//!   opening a file (a file of a newer schema or of another program is
//!   refused and left untouched);
//! - [`codec`]: a job's row, column by column, with the stored form of each
//!   (statuses as TypeScript names them, priorities, backoffs, dependencies)
//!   and the `ERR_STORAGE` a corrupt value is, naming the job;
//! - [`writer`]: the writer thread and the writes it applies;
//! - [`lock`]: one process per file (`<path>.lock`, an advisory lock that
//!   the OS drops with the process, holding the owner's pid);
//! - [`cold`]: the pending jobs kept in the file only, and reading jobs
//!   (cold or finished) back from the file;
//! - this module: [`SqliteStore`], loading a file and the [`Store`]
//!   transitions, each applied to the memory store and queued to the writer.

mod codec;
mod cold;
mod lock;
mod schema;
mod writer;

pub use schema::SCHEMA_VERSION;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::watch;

use self::codec::{col, job_id, key, read_job, RowReader, JOB_COLUMNS};
use self::cold::Cold;
use self::lock::{canonical_path, take_lock};
use self::schema::{load_schedules, open_connection, open_reader};
use self::writer::{insert_row, state_row, Op, Pruned, UpdateRow, FINISHED_SQL};
use super::memory::MemoryStore;
use super::{Commit, FailKind, Failed, JobFilter, Lease, Names, Settled, Skew, Store, Unstarted};
use crate::error::{Error, Result};
use crate::job::{Job, JobError, JobId, Priority, Status};

/// What `synchronous` the file runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
  /// `synchronous=NORMAL` in WAL: survives a process crash; a power cut can
  /// lose the last commits.
  Normal,
  /// `synchronous=FULL`: every commit is on disk.
  Full,
}

/// Where and how to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
  pub path: PathBuf,
  pub durability: Durability,
  /// Pending jobs kept in memory before new plain ones stay in the file only
  /// (see the module docs); at least 1.
  pub hot_pending: usize,
}

impl SqliteOptions {
  /// The file at `path`, with [`HOT_PENDING`] pending jobs in memory.
  pub fn new(path: impl Into<PathBuf>, durability: Durability) -> SqliteOptions {
    SqliteOptions {
      path: path.into(),
      durability,
      hot_pending: HOT_PENDING,
    }
  }
}

/// How many pending jobs stay in memory by default (see the module docs).
pub const HOT_PENDING: usize = 2048;

/// Writes sent to the writer and not committed yet beyond which an
/// operation waits for the writer (back-pressure): the writes in flight,
/// and the finished jobs that stay in memory until theirs are committed,
/// stay bounded when jobs are added or finish faster than the file takes
/// them (~200 B a write: ~10 MB). The writer commits up to 20,000 a
/// transaction, so it always has the next ones queued.
const MAX_WRITES_IN_FLIGHT: usize = 50_000;

fn sql_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
  Error::Storage(format!("{what} '{}': {e}", path.display()))
}

/// The SQLite store.
pub struct SqliteStore {
  mem: MemoryStore,
  path: PathBuf,
  /// Writes made since the last send.
  pending: Vec<Op>,
  /// Sequence number of the last batch sent.
  sent: u64,
  /// Batches sent and not known to be committed: (sequence number, writes).
  in_flight: VecDeque<(u64, usize)>,
  /// The writes in them.
  in_flight_writes: usize,
  tx: Option<Sender<(u64, Vec<Op>)>>,
  commits: watch::Receiver<Commit>,
  writer: Option<JoinHandle<()>>,
  lock: Option<File>,
  failure: Arc<Mutex<Option<String>>>,
  /// See [`Store::take_changed`].
  changed: Vec<JobId>,
  /// The schedules read on open.
  schedules: Vec<String>,
  /// See [`Cold`]; reads go through `reader`.
  cold: Cold,
  hot_pending: usize,
  reader: Option<Connection>,
  /// The file's canonical path (the reader's).
  file: PathBuf,
  /// Finished jobs still in memory, in the order they finished: (the write
  /// mark that makes their final row durable, id, generation). Each leaves
  /// memory once that mark is committed (see the module docs).
  finishing: VecDeque<(u64, u128, u32)>,
  /// Finished jobs in the file only, per status.
  stored: [usize; 7],
  /// The newest id stored.
  top: Option<JobId>,
  /// How jobs' creation times stray from their ids' (for listing the file).
  skew: Skew,
  /// Jobs the writer's prunes deleted, per status; and as last read.
  pruned: Pruned,
  pruned_seen: [u64; 7],
}

impl std::fmt::Debug for SqliteStore {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("SqliteStore")
      .field("path", &self.path)
      .finish_non_exhaustive()
  }
}

/// What [`load`] found besides the live jobs.
struct Loaded {
  cold: Cold,
  /// Finished jobs per status.
  stored: [usize; 7],
  top: Option<JobId>,
  skew: Skew,
}

/// Reads the live jobs (waiting, pending, running) into `mem`, leaving plain
/// pending jobs beyond `hot_pending` in the file (the cold set); finished
/// jobs stay in the file, counted per status (those a waiting job depends on
/// are read too, for their outcome, and leave memory again once filed).
/// Every calculation name in the file is interned.
fn load(
  conn: &Connection,
  path: &Path,
  mem: &mut MemoryStore,
  names: &mut Names,
  now: u64,
  hot_pending: usize,
) -> Result<Loaded> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read the jobs of", e);
  let mut cold = Cold::default();
  let mut stored = [0usize; 7];
  let mut skew = Skew::default();
  {
    // One pass over the keys, names and statuses: the counts, the names,
    // and how far creation times stray from the ids' (an id's timestamp
    // is its key shifted by 16).
    let mut stmt = conn
      .prepare(
        "SELECT name, status, count(*), min(created_at - (k >> 16)), max(created_at - (k >> 16)) \
         FROM jobwerk_jobs GROUP BY name, status",
      )
      .map_err(bad)?;
    let mut rows = stmt.query([]).map_err(bad)?;
    while let Some(r) = rows.next().map_err(bad)? {
      let name: String = r.get(0).map_err(bad)?;
      let i = names.intern(&name);
      if let Some(n) = names.get_shared(i) {
        cold.names.entry(n).or_insert(i);
      }
      let count: i64 = r.get(2).map_err(bad)?;
      // Other statuses are read (and a corrupt one reported, naming its
      // job) with the live jobs.
      if let Some(s) = r
        .get_ref(1)
        .ok()
        .and_then(|v| v.as_str().ok())
        .and_then(Status::parse)
        .filter(|s| s.is_finished())
      {
        stored[s as usize] += count.max(0) as usize;
      }
      let (lo, hi): (i64, i64) = (r.get(3).map_err(bad)?, r.get(4).map_err(bad)?);
      skew.ahead = skew.ahead.max(lo.min(0).unsigned_abs());
      skew.behind = skew.behind.max(hi.max(0) as u64);
    }
  }
  let top = conn
    .query_row(
      "SELECT k, lo FROM jobwerk_jobs ORDER BY k DESC LIMIT 1",
      [],
      |r| Ok(JobId(job_id(r.get(0)?, r.get(1)?))),
    )
    .map(Some)
    .or_else(|e| match e {
      rusqlite::Error::QueryReturnedNoRows => Ok(None),
      e => Err(bad(e)),
    })?;
  // Jobs that waiting jobs depend on stay in memory (their dependants are
  // filed under them).
  let mut needed: std::collections::HashSet<u128> = std::collections::HashSet::new();
  {
    let mut stmt = conn
      .prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobwerk_jobs WHERE status = 'waiting' AND deps IS NOT NULL"
      ))
      .map_err(bad)?;
    let mut rows = stmt.query([]).map_err(bad)?;
    while let Some(r) = rows.next().map_err(bad)? {
      if let Some(d) = RowReader::new(r, path)?.deps()? {
        needed.extend(d.ids.iter().map(|id| id.0));
      }
    }
  }
  let mut stmt = conn
    .prepare(&format!(
      "SELECT {JOB_COLUMNS} FROM jobwerk_jobs WHERE status NOT IN ({FINISHED_SQL}) ORDER BY k"
    ))
    .map_err(bad)?;
  let mut rows = stmt.query([]).map_err(bad)?;
  while let Some(r) = rows.next().map_err(bad)? {
    let row = RowReader::new(r, path)?;
    let name = names.intern(row.required(col::NAME)?);
    let id = row.id.0;
    let run_at = row.time(col::RUN_AT)?;
    // Plain pending jobs are read by their columns' stored forms here; the
    // rest of a cold job's row is checked when it is read back.
    let plain = row.status_text()? == Status::Pending.as_str()
      && row.int::<u32>(col::ATTEMPTS)? == 0
      && row.text(col::PRIORITY)? == Some("medium")
      && [
        col::RESULT,
        col::PROGRESS,
        col::ERRORS,
        col::DEPS,
        col::JOB_KEY,
        col::CONCURRENCY_KEY,
        col::SCHEDULE_ID,
      ]
      .iter()
      .all(|&c| matches!(r.get_ref(c), Ok(rusqlite::types::ValueRef::Null)))
      && run_at <= now
      && (run_at, id) >= cold.last
      && !needed.contains(&id);
    if plain && (cold.count > 0 || mem.counts()[Status::Pending as usize] >= hot_pending) {
      cold.push(run_at, id, name);
      continue;
    }
    mem.restore(read_job(r, path, name)?, now);
  }
  drop(rows);
  drop(stmt);
  // The finished jobs waiting jobs depend on: their outcomes.
  let mut stmt = conn
    .prepare(&format!(
      "SELECT {JOB_COLUMNS} FROM jobwerk_jobs WHERE k = ?1 AND status IN ({FINISHED_SQL})"
    ))
    .map_err(bad)?;
  for id in needed {
    if mem.contains(JobId(id)) {
      continue;
    }
    let mut rows = stmt.query([key(JobId(id))]).map_err(bad)?;
    if let Some(r) = rows.next().map_err(bad)? {
      let name = names.intern(RowReader::new(r, path)?.required(col::NAME)?);
      let job = read_job(r, path, name)?;
      if job.id.0 == id {
        stored[job.status as usize] = stored[job.status as usize].saturating_sub(1);
        mem.restore(job, now);
      }
    }
  }
  mem.restored();
  mem.restore_waiting(now);
  Ok(Loaded {
    cold,
    stored,
    top,
    skew,
  })
}

impl SqliteStore {
  /// Opens the file (creating the directory and the file if needed), takes
  /// its lock, loads its jobs and recovers those a dead process left running.
  pub fn open(opts: &SqliteOptions, names: &mut Names, now: u64) -> Result<SqliteStore> {
    if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
      fs::create_dir_all(dir).map_err(|e| sql_err(dir, "cannot create the directory", e))?;
    }
    if opts.path.is_dir() {
      return Err(Error::Storage(format!(
        "'{}' is a directory; storage.path must name a file",
        opts.path.display()
      )));
    }
    // One lock per file, however the path is spelled (links, `..`).
    let canonical = canonical_path(&opts.path);
    let lock = take_lock(&canonical, &opts.path)?;
    let conn = open_connection(opts, &canonical)?;
    let mut mem = MemoryStore::for_durable();
    let hot_pending = opts.hot_pending.max(1);
    let loaded = load(&conn, &opts.path, &mut mem, names, now, hot_pending)?;
    let reader =
      open_reader(&canonical).map_err(|e| sql_err(&opts.path, "cannot open a reader of", e))?;
    let schedules = load_schedules(&conn, &opts.path)?;
    let (commit_tx, commits) = watch::channel(Commit::default());
    let (tx, rx) = mpsc::channel();
    let failure = Arc::new(Mutex::new(None));
    let f2 = failure.clone();
    let pruned: Pruned = Arc::default();
    let p2 = pruned.clone();
    let writer = std::thread::Builder::new()
      .name("jobwerk-sqlite".into())
      .spawn(move || writer::writer(conn, rx, commit_tx, f2, p2))
      .map_err(|e| Error::Storage(format!("cannot start the SQLite writer: {e}")))?;
    let mut store = SqliteStore {
      mem,
      path: opts.path.clone(),
      pending: Vec::new(),
      sent: 0,
      in_flight: VecDeque::new(),
      in_flight_writes: 0,
      tx: Some(tx),
      commits,
      writer: Some(writer),
      lock: Some(lock),
      failure,
      changed: Vec::new(),
      schedules,
      cold: loaded.cold,
      hot_pending,
      reader: Some(reader),
      file: canonical,
      finishing: VecDeque::new(),
      stored: loaded.stored,
      top: loaded.top,
      skew: loaded.skew,
      pruned,
      pruned_seen: [0; 7],
    };
    store.journal_changed();
    // The finished dependencies read on load are filed: they leave memory.
    store.evict();
    store.recover_interrupted(now)?;
    store.send();
    Ok(store)
  }

  /// The file.
  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Sends the writes made since the last call to the writer.
  fn send(&mut self) {
    if self.pending.is_empty() {
      return;
    }
    let ops = std::mem::take(&mut self.pending);
    if let Some(tx) = &self.tx {
      self.sent += 1;
      self.in_flight.push_back((self.sent, ops.len()));
      self.in_flight_writes += ops.len();
      if tx.send((self.sent, ops)).is_err() {
        let mut f = self.failure.lock();
        if f.is_none() {
          *f = Some("the SQLite writer has stopped".into());
        }
      }
    }
  }

  /// Journals the jobs the memory store changed through their dependencies
  /// and keeps them for [`Store::take_changed`]; then notes the jobs that
  /// finished, to leave memory once their final rows are committed.
  fn journal_changed(&mut self) {
    for id in self.mem.take_changed() {
      self.push_state(id, true);
      self.changed.push(id);
    }
    let mark = self.write_mark();
    for (id, gen) in self.mem.take_finish_log() {
      self.finishing.push_back((mark, id, gen));
    }
  }

  fn push_state(&mut self, id: JobId, errors: bool) {
    if let Some(job) = self.mem.job_ref(id) {
      self.pending.push(state_row(job, errors));
    }
  }

  /// Finished jobs whose final rows are committed leave memory (not after
  /// a failed write: the file may lack them).
  fn evict(&mut self) {
    if self.finishing.is_empty() || self.failure.lock().is_some() {
      return;
    }
    let committed = self.committed();
    let mut any = false;
    while let Some(&(mark, id, gen)) = self.finishing.front() {
      if mark > committed {
        break;
      }
      self.finishing.pop_front();
      if let Some(s) = self.mem.evict(id, gen) {
        self.stored[s as usize] += 1;
        any = true;
      }
    }
    if any {
      self.mem.evicted();
    }
  }

  /// Drops the batches committed by `committed` from those in flight.
  fn forget_committed(&mut self, committed: u64) {
    while let Some(&(seq, n)) = self.in_flight.front() {
      if seq > committed {
        break;
      }
      self.in_flight.pop_front();
      self.in_flight_writes -= n;
    }
  }

  /// How many jobs are in memory (the rest are in the file).
  pub fn resident(&self) -> usize {
    self.mem.len()
  }

  /// Brings the finished job with this id into memory (for a retry, or as a
  /// dependency's outcome); it leaves again like any finished job. False if
  /// it is not a finished job in the file.
  fn warm_finished(&mut self, id: JobId) -> Result<bool> {
    if self.mem.contains(id) {
      return Ok(false);
    }
    let Some(job) = self.read_stored(id)? else {
      return Ok(false);
    };
    if !job.status.is_finished() {
      return Ok(false);
    }
    let (s, at) = (job.status as usize, job.run_at);
    self.stored[s] = self.stored[s].saturating_sub(1);
    self.mem.restore(job, at);
    self.journal_changed();
    Ok(true)
  }

  /// What a retried job (`id`) or a new job depends on is in memory: cold
  /// jobs warmed, finished ones read back for their outcomes.
  fn warm_dependencies(&mut self, deps: &[JobId]) {
    for d in deps {
      self.warm(*d);
      if let Err(e) = self.warm_finished(*d) {
        self.read_failed(e);
      }
    }
  }

  /// Records a read error as the store's failure.
  fn read_failed(&self, e: impl std::fmt::Display) {
    let mut f = self.failure.lock();
    if f.is_none() {
      *f = Some(format!(
        "cannot read pending jobs back from '{}': {e}",
        self.path.display()
      ));
    }
  }

  /// Runs `read` on the reader (once closed, on a connection for this read
  /// only); an error becomes the store's failure.
  fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Option<T> {
    self.try_read(read).map_err(|e| self.read_failed(e)).ok()
  }

  /// Runs `read` on the reader (once closed, on a connection for this read
  /// only).
  fn try_read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    match &self.reader {
      Some(r) => read(r),
      None => open_reader(&self.file)
        .map_err(|e| sql_err(&self.path, "cannot open a reader of", e))
        .and_then(|r| read(&r)),
    }
  }
  /// Blocks until the writer has committed batch `mark` (what was sent by
  /// then; nothing is sent here).
  fn wait_for(&mut self, mark: u64) -> Result<()> {
    let mut rx = self.commits.clone();
    loop {
      let c = rx.borrow_and_update().clone();
      if let Some(e) = c.error {
        return Err(Error::Storage(e));
      }
      if c.seq >= mark || self.writer.is_none() {
        return Ok(());
      }
      if self.writer.as_ref().is_some_and(|w| w.is_finished()) {
        return Err(Error::Storage("the SQLite writer has stopped".into()));
      }
      // Blocking wait without a runtime: short sleeps until the writer catches up.
      std::thread::sleep(std::time::Duration::from_micros(200));
    }
  }

  /// A number that [`SqliteStore::committed`] reaches once every
  /// transition made so far is durable (without sending anything).
  pub(crate) fn write_mark(&self) -> u64 {
    self.sent + u64::from(!self.pending.is_empty())
  }

  /// How far writes are durable (see [`SqliteStore::write_mark`]).
  pub(crate) fn committed(&self) -> u64 {
    self.commits.borrow().seq
  }

  /// Blocks until everything written so far is durable.
  pub fn sync(&mut self) -> Result<()> {
    let (mark, _) = self.flush_handle();
    self.wait_for(mark)
  }

  /// A receiver of commit progress and the mark to wait for: everything
  /// written so far is durable once `seq >= mark`.
  pub fn flush_handle(&mut self) -> (u64, watch::Receiver<Commit>) {
    self.send();
    (self.sent, self.commits.clone())
  }
}

impl Drop for SqliteStore {
  fn drop(&mut self) {
    self.close();
  }
}

impl Store for SqliteStore {
  fn kind(&self) -> &'static str {
    "sqlite"
  }

  fn insert(&mut self, jobs: Vec<Job>, names: &Names) -> Result<()> {
    // What new jobs depend on is in memory (they are filed under it, or
    // see its outcome).
    let mut needed = Vec::new();
    for job in &jobs {
      if let Some(d) = job.deps() {
        needed.extend_from_slice(&d.ids);
      }
      self.skew.note(job.id, job.created_at);
      self.top = self.top.max(Some(job.id));
    }
    if !needed.is_empty() {
      self.warm_dependencies(&needed);
    }
    let mut hot = Vec::with_capacity(jobs.len());
    let mut hot_pending = self.mem.counts()[Status::Pending as usize];
    let mut cold = false;
    for job in jobs {
      if self.goes_cold(&job, hot_pending) && !needed.contains(&job.id) {
        self.push_cold(job, names);
        cold = true;
      } else {
        hot_pending += 1;
        hot.push(job);
      }
    }
    if cold {
      self.cold.mark = self.write_mark();
    }
    let (pending, known) = (&mut self.pending, &mut self.cold.names);
    self.mem.insert_with(hot, &mut |job| {
      let row = insert_row(job, job.data.clone(), names);
      if let Op::Insert(r) = &row {
        if !known.contains_key(&*r.name) {
          known.insert(r.name.clone(), job.name);
        }
      }
      pending.push(row);
    });
    self.journal_changed();
    Ok(())
  }

  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> Result<usize> {
    if self.cold.stale {
      self.refill(0);
    }
    let mut n = 0;
    loop {
      // The cold jobs bound the claim while one of them can run (jobs of
      // calculations not registered wait, as in memory, without holding
      // others back).
      let medium = self.mem.weight(Priority::Medium);
      let bound = self
        .cold
        .head
        .filter(|_| self.cold.runnable(runnable))
        .map(|(run_at, id)| (medium, run_at, id));
      let pending = &mut self.pending;
      n += self
        .mem
        .claim_until(max - n, now, bound, runnable, &mut |job, lease| {
          pending.push(Op::Claim {
            k: key(job.id),
            attempts: job.attempts,
            started_at: job.started_at,
          });
          visit(job, lease)
        });
      if n >= max || !self.cold.runnable(runnable) || self.refill(max - n) == 0 {
        return Ok(n);
      }
    }
  }

  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.mem.has_due(now, runnable) || self.cold.runnable(runnable)
  }

  fn owner(&self) -> u64 {
    self.mem.owner()
  }

  fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Result<Settled> {
    let done = self.mem.complete(lease, id, result, now);
    if done.is_applied() {
      if let Some(job) = self.mem.get_hinted(id, lease.hint) {
        let result = job.extra.as_ref().and_then(|e| e.result.clone());
        self.pending.push(Op::Completed {
          k: key(job.id),
          attempts: job.attempts,
          started_at: job.started_at,
          finished_at: job.finished_at,
          result: result.unwrap_or_else(|| Arc::from("null")),
        });
      }
      self.journal_changed();
    }
    Ok(done)
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
    let f = self.mem.fail(lease, id, err, kind, now, rand);
    if f.is_applied() {
      self.push_state(id, true);
      self.journal_changed();
    }
    Ok(f)
  }

  fn keyed(&mut self, key: &str) -> Option<JobId> {
    // Keyed jobs are never cold: memory knows them all.
    self.mem.keyed(key)
  }

  fn update_unstarted(&mut self, id: JobId, change: &Unstarted<'_>, now: u64) -> Result<bool> {
    self.warm(id);
    if !self.mem.update_unstarted(id, change, now) {
      return Ok(false);
    }
    let context = change
      .context
      .map(|c| Box::from(if c.is_empty() { "{}" } else { c }));
    self.pending.push(Op::Update(Box::new(UpdateRow {
      k: key(id),
      data: change.data.map(Into::into),
      context,
      run_at: change.run_at,
    })));
    Ok(true)
  }

  fn cancel(&mut self, id: JobId, now: u64) -> Result<Option<Status>> {
    self.warm(id);
    let Some(was) = self.mem.cancel(id, now) else {
      return Ok(None);
    };
    self.push_state(id, true);
    self.journal_changed();
    Ok(Some(was))
  }

  fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    // A row that cannot be read is not retried: the error is the caller's.
    self.warm_finished(id)?;
    // A job with dependencies waits for them again: their outcomes.
    let deps: Vec<JobId> = match self.mem.job_ref(id) {
      Some(j) if j.status.is_finished() => j.deps().map(|d| d.ids.clone()).unwrap_or_default(),
      _ => return Ok(false),
    };
    if !deps.is_empty() {
      self.warm_dependencies(&deps);
    }
    let ok = self.mem.retry(id, now);
    if ok {
      self.push_state(id, false);
      self.journal_changed();
    }
    Ok(ok)
  }

  fn progress(&mut self, id: JobId, json: &str) -> Result<bool> {
    let ok = self.mem.progress(id, json);
    if ok {
      self.pending.push(Op::Progress {
        k: key(id),
        json: json.into(),
      });
    }
    Ok(ok)
  }

  fn recover_interrupted(&mut self, now: u64) -> Result<usize> {
    let running = self.mem.ids_with(Status::Running);
    let n = self.mem.recover_interrupted(now);
    for id in running {
      self.push_state(id, true);
    }
    self.journal_changed();
    Ok(n)
  }

  fn prune(&mut self, before: u64) -> Result<usize> {
    // Every write so far committed and every finished job out of memory:
    // the file holds them all, and one DELETE removes the old ones. The
    // prune waits for it (it runs every `cleanupInterval`, about as long as
    // the rows it deletes take).
    self.sync()?;
    self.evict();
    // Jobs that finished by `before` were created by then: their ids'
    // timestamps are at most `before` plus how far ids ran ahead of
    // creation times (keys: timestamps shifted by 16).
    const MAX_TS: u64 = (i64::MAX as u64) >> 16;
    let ts = before.saturating_add(self.skew.ahead);
    let last_key = if ts >= MAX_TS {
      i64::MAX
    } else {
      (((ts + 1) << 16) - 1) as i64
    };
    self.pending.push(Op::Prune { before, last_key });
    if self.is_closed() {
      return Ok(0);
    }
    self.sync()?;
    let total = *self.pruned.lock();
    let mut n = 0;
    for (s, (t, seen)) in total.iter().zip(self.pruned_seen.iter_mut()).enumerate() {
      let d = (t - *seen) as usize;
      *seen = *t;
      self.stored[s] = self.stored[s].saturating_sub(d);
      n += d;
    }
    // Waiting jobs filed under pruned dependencies go on.
    self.mem.pruned(before);
    self.journal_changed();
    Ok(n)
  }

  fn get(&mut self, id: JobId) -> Result<Option<Job>> {
    if let Some(job) = self.mem.job_ref(id) {
      return Ok(Some(job.clone()));
    }
    self.read_stored(id)
  }

  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let mut ids = self.mem.list(status, limit);
    ids.extend(self.stored_ids(status, limit));
    ids.sort_unstable();
    ids.truncate(limit);
    ids
  }

  fn list_jobs(&mut self, filter: &JobFilter, names: &Names) -> Result<Vec<Job>> {
    let hot = self.mem.list_jobs(filter, names)?;
    let stored = self.file_page(filter, names)?;
    Ok(filter.merge(hot, stored))
  }

  fn counts(&self) -> [usize; 7] {
    let mut c = self.mem.counts();
    c[Status::Pending as usize] += self.cold.count;
    for (c, s) in c.iter_mut().zip(self.stored) {
      *c += s;
    }
    c
  }

  fn unregistered(&self) -> usize {
    self.mem.unregistered()
  }

  fn registered(&mut self, name: u32) {
    self.mem.registered(name)
  }

  fn oldest_due(&self) -> Option<u64> {
    let cold = self.cold.head.map(|(run_at, _)| run_at);
    match (self.mem.oldest_due(), cold) {
      (Some(a), Some(b)) => Some(a.min(b)),
      (a, b) => a.or(b),
    }
  }

  fn next_due(&self) -> Option<u64> {
    self.mem.next_due()
  }

  fn take_changed(&mut self) -> Vec<JobId> {
    std::mem::take(&mut self.changed)
  }

  fn save_schedule(&mut self, id: &str, json: &str) -> Result<()> {
    self.pending.push(Op::SaveSchedule {
      id: id.into(),
      json: json.into(),
    });
    Ok(())
  }

  fn delete_schedule(&mut self, id: &str) -> Result<()> {
    self.pending.push(Op::DeleteSchedule(id.into()));
    Ok(())
  }

  fn schedules(&self) -> Vec<String> {
    self.schedules.clone()
  }

  fn max_id(&self) -> Option<JobId> {
    self.top
  }

  fn set_weights(&mut self, weights: [i32; 3]) {
    self.mem.set_weights(weights)
  }

  fn end_batch(&mut self) {
    self.send();
    let committed = self.committed();
    self.forget_committed(committed);
    if self.in_flight_writes > MAX_WRITES_IN_FLIGHT {
      // Back-pressure: wait until at most half of them are left.
      let mut left = self.in_flight_writes;
      let mut mark = committed;
      for &(seq, n) in &self.in_flight {
        if left <= MAX_WRITES_IN_FLIGHT / 2 {
          break;
        }
        left -= n;
        mark = seq;
      }
      if self.wait_for(mark).is_ok() {
        self.forget_committed(mark);
      }
    }
    self.evict();
  }

  fn failure(&self) -> Option<String> {
    self.failure.lock().clone()
  }

  fn flush_mark(&mut self) -> Option<(u64, watch::Receiver<Commit>)> {
    Some(self.flush_handle())
  }

  fn close(&mut self) {
    self.send();
    self.tx = None;
    // Before the writer closes, so that the writer's close, the last one,
    // removes the WAL. (Reads after this open a connection each.)
    self.reader = None;
    if let Some(w) = self.writer.take() {
      let _ = w.join();
    }
    self.lock = None;
    self.evict();
  }

  fn is_closed(&self) -> bool {
    self.tx.is_none()
  }

  fn is_durable(&self) -> bool {
    true
  }

  fn check_invariants(&self) -> std::result::Result<(), String> {
    if self.in_flight_writes > 2 * MAX_WRITES_IN_FLIGHT {
      return Err(format!("{} writes in flight", self.in_flight_writes));
    }
    if self.finishing.len() > self.in_flight_writes + MAX_WRITES_IN_FLIGHT {
      return Err(format!(
        "{} finished jobs wait for their writes",
        self.finishing.len()
      ));
    }
    if (self.cold.count > 0) != self.cold.head.is_some() {
      return Err(format!(
        "{} cold jobs, first {:?}",
        self.cold.count, self.cold.head
      ));
    }
    self.mem.check_invariants()
  }
}

#[cfg(test)]
mod tests;
