//! [`SqliteStore`]: the embedded default. The live state is a
//! [`MemoryStore`] rebuilt from the file on open; every transition is also
//! queued to one writer thread, which commits whatever queued up while the
//! previous commit ran in one transaction (group commit). Payloads stay JSON
//! text, as they came from JavaScript.
//!
//! Pending jobs beyond the first [`HOT_PENDING`] live in the file only
//! ("cold"): plain jobs (priority `medium`, due when added, never attempted,
//! no dependencies) whose inserts are journaled like any other but which are
//! not kept in memory. They run in the order of their keys, which is their
//! (due time, id) order; a claim takes jobs from memory up to the first cold
//! one and reads the next ones from the file when it gets there (a refill).
//! Reading one (`get`) reads its row; a listing reads the cold rows it
//! returns (one range read on the key); changing one (`cancel`, depending on
//! it) brings it into memory first.
//!
//! One process per file: a lock file (`<path>.lock`, an advisory lock that
//! the OS drops with the process) holds the owner's pid.
//!
//! Schema versions are `PRAGMA user_version`; a file written by a newer
//! schema is refused, never rewritten. Nothing is written to a file that is
//! not already a jobwerk database or empty.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::watch;

use super::memory::MemoryStore;
use super::{Commit, FailKind, Failed, JobFilter, Names, Skew, Store};
use crate::error::{Error, Result};
use crate::job::{
  Backoff, BackoffKind, Dependencies, Job, JobError, JobExtra, JobId, Priority, Status, Text,
};

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

/// Pending jobs kept in the file only (see the module docs).
#[derive(Debug, Default)]
struct Cold {
  /// How many.
  count: usize,
  /// (due time, id) at or before the first of them: a claim takes nothing
  /// from memory that ranks at or after it without a refill first.
  head: Option<(u64, u128)>,
  /// The head was the job `warm` brought into memory: a claim looks the
  /// next one up first (until then it ranks before every cold job still).
  stale: bool,
  /// (due time, id) of the newest: a new job ranking before it stays in memory.
  last: (u64, u128),
  /// Every cold job's key is above this.
  cursor: i64,
  /// The write mark after the newest cold job's insert: the file holds
  /// every cold job once the writer has committed it.
  mark: u64,
  /// The write mark after the newest prune: until it is committed, the file
  /// may still hold pruned jobs as pending, which a read would take for cold.
  pruned: u64,
  /// Calculation name -> index, for reading rows back.
  names: HashMap<Arc<str>, u32>,
  /// Cold jobs per calculation index.
  per_calc: HashMap<u32, usize>,
  /// How cold jobs' creation times stray from their ids' (for listing).
  skew: Skew,
}

impl Cold {
  /// One more cold job, `(due time, id)`, of calculation `name`.
  fn push(&mut self, run_at: u64, id: u128, name: u32) {
    if self.count == 0 {
      self.head = Some((run_at, id));
      self.stale = false;
      self.cursor = ((id >> 64) as i64) - 1;
    }
    self.count += 1;
    self.last = (run_at, id);
    *self.per_calc.entry(name).or_default() += 1;
  }

  /// A cold job of calculation `name` went into memory.
  fn taken(&mut self, name: u32) {
    if let Some(c) = self.per_calc.get_mut(&name) {
      *c = c.saturating_sub(1);
    }
  }

  /// True when a cold job's calculation can run.
  fn runnable(&self, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.count > 0 && self.per_calc.iter().any(|(&n, &c)| c > 0 && runnable(n))
  }

  /// None left (after a refill found the last, or a write was lost).
  fn clear(&mut self) {
    self.count = 0;
    self.head = None;
    self.stale = false;
    self.per_calc.clear();
  }
}

/// The schema version this build writes (and the newest it reads).
pub const SCHEMA_VERSION: i64 = 3;

/// Migrations, one per version, applied in order in one transaction.
const MIGRATIONS: &[&str] = &[
  // 1: jobs. `k` is the id's upper 64 bits (time + counter: unique and
  // ordered within one file), `lo` its lower 64.
  "CREATE TABLE jobwerk_jobs (
     k INTEGER PRIMARY KEY,
     lo INTEGER NOT NULL,
     name TEXT NOT NULL,
     priority TEXT NOT NULL,
     status INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     max_retries INTEGER NOT NULL,
     timeout_ms INTEGER NOT NULL,
     backoff TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     run_at INTEGER NOT NULL,
     started_at INTEGER NOT NULL,
     finished_at INTEGER NOT NULL,
     data TEXT NOT NULL,
     context TEXT NOT NULL,
     result TEXT,
     progress TEXT,
     errors TEXT
   );",
  // 2: dependencies (`f|id,id` or `i|id,id` to ignore their failures).
  "ALTER TABLE jobwerk_jobs ADD COLUMN deps TEXT;",
  // 3: schedules, one JSON text each. A fire and the job it creates commit
  // in one transaction, so a crash neither loses nor doubles it.
  "CREATE TABLE jobwerk_schedules (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
];

/// One write, as the writer thread applies it.
#[derive(Debug)]
enum Op {
  Insert(Box<Row>),
  Claim {
    k: i64,
    attempts: u32,
    started_at: u64,
  },
  State(Box<StateRow>),
  /// A job completed: its result shared with the job in memory.
  Completed {
    k: i64,
    attempts: u32,
    started_at: u64,
    finished_at: u64,
    result: Arc<str>,
  },
  Progress {
    k: i64,
    json: Box<str>,
  },
  Delete(Vec<i64>),
  SaveSchedule {
    id: Box<str>,
    json: Box<str>,
  },
  DeleteSchedule(Box<str>),
}

#[derive(Debug)]
/// A new job's row: one allocation (the box) for the common job, its text
/// shared or inline; the writer thread turns it into SQL values.
struct Row {
  k: i64,
  lo: i64,
  name: Arc<str>,
  priority: Priority,
  status: u8,
  attempts: u32,
  max_retries: u32,
  timeout_ms: u32,
  backoff: Backoff,
  created_at: u64,
  run_at: u64,
  data: Text,
  /// `None`: `{}`.
  context: Option<Box<str>>,
  deps: Option<String>,
}

#[derive(Debug)]
struct StateRow {
  k: i64,
  status: u8,
  attempts: u32,
  run_at: u64,
  started_at: u64,
  finished_at: u64,
  errors: Option<String>,
}

fn key(id: JobId) -> i64 {
  (id.0 >> 64) as i64
}

fn sql_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
  Error::Storage(format!("{what} '{}': {e}", path.display()))
}

fn backoff_text(b: &Backoff) -> String {
  let kind = match b.kind {
    BackoffKind::Exponential => "e",
    BackoffKind::Fixed => "f",
  };
  format!("{kind},{},{},{}", b.delay_ms, b.max_delay_ms, b.jitter)
}

fn parse_backoff(s: &str) -> Backoff {
  let mut p = s.split(',');
  let kind = match p.next() {
    Some("f") => BackoffKind::Fixed,
    _ => BackoffKind::Exponential,
  };
  let mut num = || p.next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
  Backoff {
    kind,
    delay_ms: num() as u32,
    max_delay_ms: num() as u32,
    jitter: num() as f32,
  }
}

/// Dependencies as text: `i|` (ignore failures) or `f|`, then the ids.
fn deps_text(d: &Dependencies) -> String {
  let mut s = String::from(if d.ignore_failure { "i|" } else { "f|" });
  for (i, id) in d.ids.iter().enumerate() {
    if i > 0 {
      s.push(',');
    }
    id.write_to(&mut s);
  }
  s
}

fn parse_deps(s: &str) -> Option<Dependencies> {
  let (policy, ids) = s.split_once('|')?;
  Some(Dependencies {
    ids: ids.split(',').filter_map(JobId::parse).collect(),
    ignore_failure: policy == "i",
  })
}

fn parse_priority(s: &str) -> Priority {
  match s {
    "\"high\"" => Priority::High,
    "\"low\"" => Priority::Low,
    "\"medium\"" => Priority::Medium,
    n => n.parse().map(Priority::Weight).unwrap_or(Priority::Medium),
  }
}

/// A job's new state (not after a completion: see [`Op::Completed`]), with
/// its errors when `errors`.
fn state_row(job: &Job, errors: bool) -> Op {
  let o = job.extra.as_deref();
  Op::State(Box::new(StateRow {
    k: key(job.id),
    status: job.status as u8,
    attempts: job.attempts,
    run_at: job.run_at,
    started_at: job.started_at,
    finished_at: job.finished_at,
    errors: if errors {
      o.and_then(|o| serde_json::to_string(&o.errors).ok())
    } else {
      None
    },
  }))
}

/// The insert of a new job, with its data.
fn insert_row(job: &Job, data: Text, names: &Names) -> Op {
  Op::Insert(Box::new(Row {
    k: key(job.id),
    lo: job.id.0 as u64 as i64,
    name: names.get_shared(job.name).unwrap_or_else(|| Arc::from("")),
    priority: job.priority,
    status: job.status as u8,
    attempts: job.attempts,
    max_retries: job.max_retries,
    timeout_ms: job.timeout_ms,
    backoff: job.backoff,
    created_at: job.created_at,
    run_at: job.run_at,
    data,
    context: job.extra.as_ref().and_then(|e| e.context.clone()),
    deps: job.deps().map(deps_text),
  }))
}

/// The SQLite store.
pub struct SqliteStore {
  mem: MemoryStore,
  path: PathBuf,
  /// Writes made since the last send.
  pending: Vec<Op>,
  /// Sequence number of the last batch sent.
  sent: u64,
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
  /// The last cold job `get` read from the file.
  peeked: Option<Box<Job>>,
}

impl std::fmt::Debug for SqliteStore {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("SqliteStore")
      .field("path", &self.path)
      .finish_non_exhaustive()
  }
}

/// The file's canonical path (the parent's, plus the name, when the file
/// does not exist yet).
fn canonical_path(path: &Path) -> PathBuf {
  if let Ok(p) = fs::canonicalize(path) {
    return p;
  }
  match (path.parent(), path.file_name()) {
    (Some(dir), Some(name)) => fs::canonicalize(if dir.as_os_str().is_empty() {
      Path::new(".")
    } else {
      dir
    })
    .map(|d| d.join(name))
    .unwrap_or_else(|_| path.to_path_buf()),
    _ => path.to_path_buf(),
  }
}

/// Takes the file's lock or says who holds it.
fn take_lock(path: &Path, shown: &Path) -> Result<File> {
  let mut lock_path = path.as_os_str().to_owned();
  lock_path.push(".lock");
  let lock_path = PathBuf::from(lock_path);
  let mut f = OpenOptions::new()
    .read(true)
    .write(true)
    .create(true)
    .truncate(false)
    .open(&lock_path)
    .map_err(|e| {
      Error::Storage(format!(
        "cannot create the lock file of '{}' ('{}'): {e}",
        shown.display(),
        lock_path.display()
      ))
    })?;
  match f.try_lock() {
    Ok(()) => {}
    Err(TryLockError::WouldBlock) => {
      let mut pid = String::new();
      let _ = f.read_to_string(&mut pid);
      let pid = pid.trim();
      let who = if pid.is_empty() {
        "another jobwerk service".to_string()
      } else if pid == std::process::id().to_string() {
        format!("another jobwerk service in this process (pid {pid})")
      } else {
        format!("another process (pid {pid})")
      };
      return Err(Error::Storage(format!(
        "'{}' is in use by {who}: one process (and one service) per SQLite file; \
         give each service its own storage.path",
        shown.display()
      )));
    }
    Err(TryLockError::Error(e)) => return Err(sql_err(shown, "cannot lock", e)),
  }
  let _ = f.set_len(0);
  let _ = f.seek(SeekFrom::Start(0));
  let _ = write!(f, "{}", std::process::id());
  let _ = f.flush();
  Ok(f)
}

/// Opens (creating if needed) and migrates the database.
fn open_connection(opts: &SqliteOptions, open_path: &Path) -> Result<Connection> {
  let path = &opts.path;
  if path.is_dir() {
    return Err(Error::Storage(format!(
      "'{}' is a directory; storage.path must name a file",
      path.display()
    )));
  }
  let conn = Connection::open_with_flags(
    open_path,
    OpenFlags::SQLITE_OPEN_READ_WRITE
      | OpenFlags::SQLITE_OPEN_CREATE
      | OpenFlags::SQLITE_OPEN_NO_MUTEX,
  )
  .map_err(|e| sql_err(path, "cannot open", e))?;
  let not_ours = |e: rusqlite::Error| {
    Error::Storage(format!(
      "'{}' is not a usable SQLite database ({e}); it was left untouched",
      path.display()
    ))
  };
  // Reading the header first: a file that is not SQLite fails here, before
  // anything is written.
  let version: i64 = conn
    .query_row("PRAGMA user_version", [], |r| r.get(0))
    .map_err(not_ours)?;
  let tables: i64 = conn
    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
    .map_err(not_ours)?;
  if version > SCHEMA_VERSION {
    return Err(Error::Storage(format!(
      "'{}' was written by jobwerk schema version {version}; this jobwerk reads up to version {SCHEMA_VERSION}. \
       Upgrade jobwerk, or point storage.path at another file",
      path.display()
    )));
  }
  if version > 0 {
    let ours: i64 = conn
      .query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobwerk_jobs'",
        [],
        |r| r.get(0),
      )
      .map_err(not_ours)?;
    if ours == 0 {
      return Err(Error::Storage(format!(
        "'{}' is an SQLite database of something else (user_version {version} but no jobwerk tables); it was left untouched",
        path.display()
      )));
    }
  }
  if version == 0 && tables > 0 {
    return Err(Error::Storage(format!(
      "'{}' is an SQLite database of something else (it has tables but no jobwerk schema); it was left untouched",
      path.display()
    )));
  }
  if version == 0 {
    conn
      .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
      .map_err(|e| sql_err(path, "cannot set up", e))?;
  }
  conn
    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
    .map_err(|e| sql_err(path, "cannot switch to WAL", e))?;
  let sync = match opts.durability {
    Durability::Normal => "NORMAL",
    Durability::Full => "FULL",
  };
  conn
    .execute_batch(&format!(
      "PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = 10000;"
    ))
    .map_err(|e| sql_err(path, "cannot configure", e))?;
  if version < SCHEMA_VERSION {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for m in &MIGRATIONS[version as usize..] {
      sql.push_str(m);
    }
    sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
    if let Err(e) = conn.execute_batch(&sql) {
      let _ = conn.execute_batch("ROLLBACK");
      return Err(sql_err(path, "cannot create the schema in", e));
    }
  }
  Ok(conn)
}

/// The columns of a job, in the order [`read_job`] reads them.
const JOB_COLUMNS: &str =
  "k, lo, name, priority, status, attempts, max_retries, timeout_ms, backoff, created_at, \
  run_at, started_at, finished_at, data, context, result, progress, errors, deps";

/// A job from a row of [`JOB_COLUMNS`]; `name` is its calculation's index.
fn read_job(r: &rusqlite::Row<'_>, path: &Path, name: u32) -> Result<Job> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read a job from", e);
  // Text columns read in place (no copy) unless the job keeps them.
  let text = |i: usize| -> Result<Option<&str>> {
    let v = r.get_ref(i).map_err(bad)?;
    match v {
      rusqlite::types::ValueRef::Null => Ok(None),
      v => v
        .as_str()
        .map(Some)
        .map_err(|e| sql_err(path, "cannot read a job from", e)),
    }
  };
  let k: i64 = r.get(0).map_err(bad)?;
  let lo: i64 = r.get(1).map_err(bad)?;
  let priority = text(3)?.unwrap_or("");
  let status: u8 = r.get(4).map_err(bad)?;
  let status = *Status::ALL.get(status as usize).ok_or_else(|| {
    Error::Storage(format!(
      "'{}' holds a job with unknown status {status}",
      path.display()
    ))
  })?;
  let backoff = text(8)?.unwrap_or("");
  let result = text(15)?;
  let progress = text(16)?;
  let errors: Vec<JobError> = text(17)?
    .and_then(|e| serde_json::from_str(e).ok())
    .unwrap_or_default();
  let deps = text(18)?.and_then(parse_deps);
  let extra = JobExtra::of(deps, text(14)?.unwrap_or(""));
  let extra = if result.is_some() || progress.is_some() || !errors.is_empty() {
    let mut e = extra.unwrap_or_default();
    e.result = result.map(Into::into);
    e.progress = progress.map(Into::into);
    e.errors = errors;
    Some(e)
  } else {
    extra
  };
  Ok(Job {
    id: JobId(job_id(k, lo)),
    name,
    priority: parse_priority(priority),
    status,
    attempts: r.get(5).map_err(bad)?,
    max_retries: r.get(6).map_err(bad)?,
    timeout_ms: r.get(7).map_err(bad)?,
    backoff: parse_backoff(backoff),
    gen: 0,
    created_at: r.get::<_, i64>(9).map_err(bad)? as u64,
    run_at: r.get::<_, i64>(10).map_err(bad)? as u64,
    started_at: r.get::<_, i64>(11).map_err(bad)? as u64,
    finished_at: r.get::<_, i64>(12).map_err(bad)? as u64,
    data: text(13)?.unwrap_or("null").into(),
    extra,
  })
}

/// What a cold job's row holds beyond what every cold job has (never
/// attempted, no outcome, no dependencies): the columns a refill reads.
const COLD_COLUMNS: &str =
  "k, lo, name, priority, status, max_retries, timeout_ms, backoff, created_at, run_at, data, context";

/// A cold job from a row of [`COLD_COLUMNS`]; `backoff` is the last row's
/// backoff text and value (rows of one calculation share it).
fn read_cold_row(
  r: &rusqlite::Row<'_>,
  path: &Path,
  name: u32,
  backoff: &mut (String, Backoff),
) -> Result<Job> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read a job from", e);
  let text = |i: usize| -> Result<&str> {
    r.get_ref(i)
      .map_err(bad)?
      .as_str()
      .map_err(|e| sql_err(path, "cannot read a job from", e))
  };
  let b = text(7)?;
  if b != backoff.0 {
    *backoff = (b.to_string(), parse_backoff(b));
  }
  let k: i64 = r.get(0).map_err(bad)?;
  Ok(Job {
    priority: parse_priority(text(3)?),
    max_retries: r.get(5).map_err(bad)?,
    timeout_ms: r.get(6).map_err(bad)?,
    backoff: backoff.1,
    extra: JobExtra::of(None, text(11)?),
    ..Job::new(
      JobId(job_id(k, r.get(1).map_err(bad)?)),
      name,
      r.get::<_, i64>(8).map_err(bad)? as u64,
      r.get::<_, i64>(9).map_err(bad)? as u64,
      text(10)?.into(),
    )
  })
}

fn job_id(k: i64, lo: i64) -> u128 {
  ((k as u64 as u128) << 64) | lo as u64 as u128
}

/// The calculation index of a cold job's row (names of cold jobs are known:
/// they were added or loaded by this store); unknown: an index no
/// calculation has, so the job waits rather than runs the wrong handler.
fn cold_name(r: &rusqlite::Row<'_>, names: &HashMap<Arc<str>, u32>) -> u32 {
  r.get_ref(2)
    .ok()
    .and_then(|n| n.as_str().ok())
    .and_then(|n| names.get(n).copied())
    .unwrap_or(u32::MAX)
}

/// Reads the jobs into `mem`, leaving plain pending jobs beyond
/// `hot_pending` in the file (returned as the cold set).
fn load(
  conn: &Connection,
  path: &Path,
  mem: &mut MemoryStore,
  names: &mut Names,
  now: u64,
  hot_pending: usize,
) -> Result<Cold> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read a job from", e);
  // Jobs that waiting jobs depend on stay in memory (their dependants are
  // filed under them).
  let mut needed: std::collections::HashSet<u128> = std::collections::HashSet::new();
  {
    let mut stmt = conn
      .prepare("SELECT deps FROM jobwerk_jobs WHERE status = 0 AND deps IS NOT NULL")
      .map_err(|e| sql_err(path, "cannot read", e))?;
    let mut rows = stmt.query([]).map_err(bad)?;
    while let Some(r) = rows.next().map_err(bad)? {
      let deps: String = r.get(0).map_err(bad)?;
      if let Some(d) = parse_deps(&deps) {
        needed.extend(d.ids.iter().map(|id| id.0));
      }
    }
  }
  let mut stmt = conn
    .prepare(&format!(
      "SELECT {JOB_COLUMNS} FROM jobwerk_jobs ORDER BY k"
    ))
    .map_err(|e| sql_err(path, "cannot read", e))?;
  let mut rows = stmt
    .query([])
    .map_err(|e| sql_err(path, "cannot read", e))?;
  let mut cold = Cold::default();
  while let Some(r) = rows.next().map_err(bad)? {
    let name = {
      let n = r.get_ref(2).map_err(bad)?;
      let n = n
        .as_str()
        .map_err(|e| sql_err(path, "cannot read a job from", e))?;
      names.intern(n)
    };
    let k: i64 = r.get(0).map_err(bad)?;
    let id = job_id(k, r.get(1).map_err(bad)?);
    let run_at = r.get::<_, i64>(10).map_err(bad)? as u64;
    let plain = r.get::<_, u8>(4).map_err(bad)? == Status::Pending as u8
      && r.get::<_, u32>(5).map_err(bad)? == 0
      && r.get_ref(3).map_err(bad)?.as_str().ok() == Some("\"medium\"")
      && [15, 16, 17, 18]
        .iter()
        .all(|&c| matches!(r.get_ref(c), Ok(rusqlite::types::ValueRef::Null)))
      && run_at <= now
      && (run_at, id) >= cold.last
      && !needed.contains(&id);
    if plain && (cold.count > 0 || mem.counts()[Status::Pending as usize] >= hot_pending) {
      cold.push(run_at, id, name);
      cold
        .skew
        .note(JobId(id), r.get::<_, i64>(9).map_err(bad)? as u64);
      if let Some(n) = names.get_shared(name) {
        cold.names.entry(n).or_insert(name);
      }
      continue;
    }
    mem.restore(read_job(r, path, name)?, now);
  }
  mem.restored();
  mem.restore_waiting(now);
  Ok(cold)
}

/// A second connection, for reading cold jobs back on the JavaScript thread
/// while the writer writes (WAL). Read-write, though it only reads: the last
/// connection to close removes the WAL, whichever it is.
fn open_reader(file: &Path) -> rusqlite::Result<Connection> {
  let r = Connection::open_with_flags(
    file,
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
  )?;
  r.execute_batch("PRAGMA cache_size = -256; PRAGMA busy_timeout = 5000;")?;
  Ok(r)
}

/// Reads every schedule's JSON.
fn load_schedules(conn: &Connection, path: &Path) -> Result<Vec<String>> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read the schedules of", e);
  let mut stmt = conn
    .prepare("SELECT body FROM jobwerk_schedules ORDER BY id")
    .map_err(bad)?;
  let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(bad)?;
  rows.collect::<rusqlite::Result<Vec<String>>>().map_err(bad)
}

fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<()> {
  match op {
    Op::Insert(r) => {
      conn
        .prepare_cached(
          "INSERT INTO jobwerk_jobs (k, lo, name, priority, status, attempts, max_retries, timeout_ms, backoff,
             created_at, run_at, started_at, finished_at, data, context, deps)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, ?12, ?13, ?14)",
        )?
        .execute(params![
          r.k,
          r.lo,
          &*r.name,
          r.priority.to_json(),
          r.status,
          r.attempts,
          r.max_retries,
          r.timeout_ms,
          backoff_text(&r.backoff),
          r.created_at as i64,
          r.run_at as i64,
          &*r.data,
          r.context.as_deref().unwrap_or("{}"),
          r.deps.as_deref(),
        ])?;
    }
    Op::Claim {
      k,
      attempts,
      started_at,
    } => {
      conn
        .prepare_cached(
          "UPDATE jobwerk_jobs SET status = 2, attempts = ?2, started_at = ?3 WHERE k = ?1",
        )?
        .execute(params![k, attempts, *started_at as i64])?;
    }
    Op::State(s) => {
      conn
        .prepare_cached(
          "UPDATE jobwerk_jobs SET status = ?2, attempts = ?3, run_at = ?4, started_at = ?5, finished_at = ?6,
             errors = coalesce(?7, errors) WHERE k = ?1",
        )?
        .execute(params![
          s.k,
          s.status,
          s.attempts,
          s.run_at as i64,
          s.started_at as i64,
          s.finished_at as i64,
          s.errors.as_deref(),
        ])?;
    }
    Op::Completed {
      k,
      attempts,
      started_at,
      finished_at,
      result,
    } => {
      conn
        .prepare_cached(
          "UPDATE jobwerk_jobs SET status = 3, attempts = ?2, started_at = ?3, finished_at = ?4, result = ?5
           WHERE k = ?1",
        )?
        .execute(params![
          k,
          attempts,
          *started_at as i64,
          *finished_at as i64,
          &**result
        ])?;
    }
    Op::Progress { k, json } => {
      conn
        .prepare_cached("UPDATE jobwerk_jobs SET progress = ?2 WHERE k = ?1")?
        .execute(params![k, &**json])?;
    }
    Op::SaveSchedule { id, json } => {
      conn
        .prepare_cached("INSERT OR REPLACE INTO jobwerk_schedules (id, body) VALUES (?1, ?2)")?
        .execute(params![&**id, &**json])?;
    }
    Op::DeleteSchedule(id) => {
      conn
        .prepare_cached("DELETE FROM jobwerk_schedules WHERE id = ?1")?
        .execute([&**id])?;
    }
    Op::Delete(keys) => {
      let mut stmt = conn.prepare_cached("DELETE FROM jobwerk_jobs WHERE k = ?1")?;
      for k in keys {
        stmt.execute([k])?;
      }
    }
  }
  Ok(())
}

/// After this many writes, once the writer has caught up, the memory they
/// held is handed back to the system.
const TRIM_AFTER_WRITES: usize = 5_000;

/// Hands the memory of written writes back to the system. They were
/// allocated on the JavaScript thread and freed on this one; glibc keeps
/// such memory resident in the process until trimmed (measured: ~150 B per
/// job added, as much again as the job itself).
fn trim_freed_memory() {
  #[cfg(all(target_os = "linux", target_env = "gnu"))]
  {
    extern "C" {
      fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers; it only releases free memory.
    unsafe {
      malloc_trim(0);
    }
  }
}

/// The writer thread: commits whatever queued up as one transaction.
fn writer(
  conn: Connection,
  rx: Receiver<(u64, Vec<Op>)>,
  commits: watch::Sender<Commit>,
  failure: Arc<Mutex<Option<String>>>,
) {
  const MAX_BATCH: usize = 20_000;
  // Writes applied since memory was last handed back (see trim_freed_memory).
  let mut since_trim = 0usize;
  // A batch received while finding out whether the queue was empty.
  let mut next: Option<(u64, Vec<Op>)> = None;
  while let Some(first) = next.take().or_else(|| rx.recv().ok()) {
    let mut last = first.0;
    let mut batches = vec![first.1];
    let mut n = batches[0].len();
    let mut drained = false;
    while n < MAX_BATCH {
      match rx.try_recv() {
        Ok((seq, ops)) => {
          last = seq;
          n += ops.len();
          batches.push(ops);
        }
        Err(_) => {
          drained = true;
          break;
        }
      }
    }
    since_trim += n;
    let mut vacuum = false;
    // A claim whose job's state is written later in the same transaction
    // (it completed or failed meanwhile) is overwritten by that write: skip it.
    let mut last_state: HashMap<i64, usize> = HashMap::new();
    for (i, op) in batches.iter().flatten().enumerate() {
      match op {
        Op::State(s) => {
          last_state.insert(s.k, i);
        }
        Op::Completed { k, .. } => {
          last_state.insert(*k, i);
        }
        _ => {}
      }
    }
    let res = (|| -> rusqlite::Result<()> {
      conn.execute_batch("BEGIN")?;
      for (i, op) in batches.iter().flatten().enumerate() {
        if let Op::Claim { k, .. } = op {
          if last_state.get(k).is_some_and(|&at| at > i) {
            continue;
          }
        }
        vacuum |= matches!(op, Op::Delete(_));
        apply(&conn, op)?;
      }
      conn.execute_batch("COMMIT")
    })();
    let error = match res {
      Ok(()) => {
        if vacuum {
          // Each step of the pragma frees one page: run it to the end.
          let _ = conn
            .prepare("PRAGMA incremental_vacuum")
            .and_then(|mut st| {
              let mut rows = st.query([])?;
              while rows.next()?.is_some() {}
              Ok(())
            });
        }
        None
      }
      Err(e) => {
        let _ = conn.execute_batch("ROLLBACK");
        let hint = match &e {
          rusqlite::Error::SqliteFailure(f, _)
            if matches!(
              f.code,
              rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            ) =>
          {
            " (is the disk full, or the file size limited?)"
          }
          _ => "",
        };
        let msg = format!("a write to the SQLite file failed: {e}{hint}");
        let mut f = failure.lock();
        if f.is_none() {
          *f = Some(msg.clone());
        }
        Some(f.clone().unwrap_or(msg))
      }
    };
    drop(batches);
    if !drained {
      // The batch filled up: was that all there was?
      match rx.try_recv() {
        Ok(more) => next = Some(more),
        Err(_) => drained = true,
      }
    }
    // Once the backlog is written, before saying so (a flush() that returns
    // then sees the memory back).
    if drained && since_trim >= TRIM_AFTER_WRITES {
      since_trim = 0;
      // SQLite's page cache too: the next writes read their pages back
      // from the OS's file cache.
      let _ = conn.execute_batch("PRAGMA shrink_memory");
      trim_freed_memory();
    }
    commits.send_modify(|c| {
      c.seq = last;
      if c.error.is_none() {
        c.error = error;
      }
    });
  }
  let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
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
    let mut mem = MemoryStore::new();
    let hot_pending = opts.hot_pending.max(1);
    let cold = load(&conn, &opts.path, &mut mem, names, now, hot_pending)?;
    let reader =
      open_reader(&canonical).map_err(|e| sql_err(&opts.path, "cannot open a reader of", e))?;
    let schedules = load_schedules(&conn, &opts.path)?;
    let (commit_tx, commits) = watch::channel(Commit::default());
    let (tx, rx) = mpsc::channel();
    let failure = Arc::new(Mutex::new(None));
    let f2 = failure.clone();
    let writer = std::thread::Builder::new()
      .name("jobwerk-sqlite".into())
      .spawn(move || writer(conn, rx, commit_tx, f2))
      .map_err(|e| Error::Storage(format!("cannot start the SQLite writer: {e}")))?;
    let mut store = SqliteStore {
      mem,
      path: opts.path.clone(),
      pending: Vec::new(),
      sent: 0,
      tx: Some(tx),
      commits,
      writer: Some(writer),
      lock: Some(lock),
      failure,
      changed: Vec::new(),
      schedules,
      cold,
      hot_pending,
      reader: Some(reader),
      file: canonical,
      peeked: None,
    };
    store.journal_changed();
    store.recover_interrupted(now);
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
      if tx.send((self.sent, ops)).is_err() {
        let mut f = self.failure.lock();
        if f.is_none() {
          *f = Some("the SQLite writer has stopped".into());
        }
      }
    }
  }

  /// Journals the jobs the memory store changed through their dependencies
  /// and keeps them for [`Store::take_changed`].
  fn journal_changed(&mut self) {
    for id in self.mem.take_changed() {
      self.push_state(id, true);
      self.changed.push(id);
    }
  }

  fn push_state(&mut self, id: JobId, errors: bool) {
    if let Some(job) = self.mem.get(id) {
      self.pending.push(state_row(job, errors));
    }
  }

  /// True when `job`, being added with `hot_pending` pending jobs in
  /// memory, stays in the file only (see [`Cold`]).
  fn goes_cold(&self, job: &Job, hot_pending: usize) -> bool {
    let c = &self.cold;
    job.status == Status::Pending
      && job.priority == Priority::Medium
      && job.attempts == 0
      && job.run_at <= job.created_at
      && job.extra.as_deref().is_none_or(|e| {
        e.deps.is_none() && e.result.is_none() && e.progress.is_none() && e.errors.is_empty()
      })
      && (c.count == 0 || (job.run_at, job.id.0) >= c.last)
      && (c.count > 0 || hot_pending >= self.hot_pending)
  }

  /// Journals a new job that stays in the file only.
  fn push_cold(&mut self, mut job: Job, names: &Names) {
    let c = &mut self.cold;
    c.push(job.run_at, job.id.0, job.name);
    c.skew.note(job.id, job.created_at);
    let data = std::mem::take(&mut job.data);
    let row = insert_row(&job, data, names);
    if let Op::Insert(r) = &row {
      if !c.names.contains_key(&*r.name) {
        c.names.insert(r.name.clone(), job.name);
      }
    }
    self.pending.push(row);
  }

  /// Makes sure the file holds every cold job and no pruned one (waits for
  /// the writer if it has not committed them yet). False if it cannot.
  fn cold_readable(&mut self) -> bool {
    // After a failed write the file may lack cold jobs: nothing is read.
    self.failure.lock().is_none()
      && (self.committed() >= self.cold.mark.max(self.cold.pruned) || self.sync().is_ok())
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

  /// The cold jobs `f` selects, from the file: one range read on the key
  /// (the cursor and the time bounds narrow it), the other conditions in
  /// SQL, payloads read for the jobs returned only.
  fn cold_page(&mut self, f: &JobFilter, names: &Names) -> Result<Vec<Job>> {
    if self.cold.count == 0 || !f.admits(Status::Pending) || f.limit == 0 {
      return Ok(Vec::new());
    }
    let name = match f.name {
      Some(i) => match names.get(i) {
        Some(n) => Some(n.to_string()),
        None => return Ok(Vec::new()),
      },
      None => None,
    };
    if !self.cold_readable() {
      return Err(Error::Storage(self.failure().unwrap_or_else(|| {
        format!(
          "cannot read the pending jobs kept in '{}'",
          self.path.display()
        )
      })));
    }
    // Keys are the ids' upper 64 bits: the timestamp shifted by 16.
    let (lo_ts, hi_ts) = self.cold.skew.id_times(f);
    const MAX_TS: u64 = (i64::MAX as u64) >> 16;
    let mut lo = ((lo_ts.min(MAX_TS) << 16) as i64).max(self.cold.cursor.saturating_add(1));
    let mut hi = if hi_ts >= MAX_TS {
      i64::MAX
    } else {
      (((hi_ts + 1) << 16) - 1) as i64
    };
    match f.after {
      Some(c) if f.ascending => lo = lo.max(key(c)),
      Some(c) => hi = hi.min(key(c)),
      None => {}
    }
    if lo > hi {
      return Ok(Vec::new());
    }
    let columns = if f.include_data {
      JOB_COLUMNS.to_string()
    } else {
      JOB_COLUMNS
        .replacen("data,", "NULL,", 1)
        .replacen("result,", "NULL,", 1)
    };
    let sql = format!(
      "SELECT {columns} FROM jobwerk_jobs WHERE k BETWEEN ?1 AND ?2 AND status = {} \
       AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR created_at >= ?4) \
       AND (?5 IS NULL OR created_at < ?5) ORDER BY k {}",
      Status::Pending as u8,
      if f.ascending { "ASC" } else { "DESC" }
    );
    let as_sql = |t: Option<u64>| t.map(|t| t.min(i64::MAX as u64) as i64);
    let (mem, cold_names, path) = (&self.mem, &self.cold.names, &self.path);
    self.try_read(|reader| {
      let bad = |e: rusqlite::Error| sql_err(path, "cannot list the jobs of", e);
      let mut stmt = reader.prepare_cached(&sql).map_err(bad)?;
      let mut rows = stmt
        .query(params![lo, hi, name, as_sql(f.since), as_sql(f.until)])
        .map_err(bad)?;
      let mut out = Vec::new();
      while out.len() < f.limit {
        let Some(r) = rows.next().map_err(bad)? else {
          break;
        };
        let id = JobId(job_id(r.get(0).map_err(bad)?, r.get(1).map_err(bad)?));
        if mem.contains(id) || !f.after_cursor(id) {
          continue;
        }
        let mut job = read_job(r, path, cold_name(r, cold_names))?;
        if !f.include_data {
          job.data = Text::EMPTY;
        }
        out.push(job);
      }
      Ok(out)
    })
  }

  /// Brings the next cold jobs (at least `want`) into memory; returns how many.
  fn refill(&mut self, want: usize) -> usize {
    if self.cold.count == 0 || !self.cold_readable() {
      return 0;
    }
    let want = want.max(self.hot_pending / 2).max(1);
    let (mem, names, path) = (&self.mem, &self.cold.names, &self.path);
    let (cursor, capacity) = (self.cold.cursor, want.min(self.cold.count));
    let read = self.read(|reader| {
      let mut loaded = Vec::with_capacity(capacity);
      let mut next = None;
      let mut cursor = cursor;
      let bad = |e: rusqlite::Error| sql_err(path, "cannot read", e);
      let mut stmt = reader
        .prepare_cached(&format!(
          "SELECT {COLD_COLUMNS} FROM jobwerk_jobs WHERE k > ?1 ORDER BY k"
        ))
        .map_err(bad)?;
      let mut rows = stmt.query([cursor]).map_err(bad)?;
      let mut backoff = (String::new(), parse_backoff(""));
      while let Some(r) = rows.next().map_err(bad)? {
        let k: i64 = r.get(0).map_err(bad)?;
        let id = JobId(job_id(k, r.get(1).map_err(bad)?));
        if mem.contains(id) || r.get::<_, u8>(4).map_err(bad)? != Status::Pending as u8 {
          continue;
        }
        if loaded.len() == want {
          next = Some((r.get::<_, i64>(9).map_err(bad)? as u64, id.0));
          break;
        }
        loaded.push(read_cold_row(r, path, cold_name(r, names), &mut backoff)?);
        cursor = k;
      }
      Ok((loaded, next, cursor))
    });
    let Some((loaded, next, cursor)) = read else {
      return 0;
    };
    let n = loaded.len();
    for job in loaded {
      let at = job.run_at;
      self.cold.taken(job.name);
      self.mem.restore(job, at);
    }
    self.cold.cursor = cursor;
    self.cold.head = next;
    self.cold.stale = false;
    if next.is_some() {
      self.cold.count = self.cold.count.saturating_sub(n);
    } else {
      let missing = self.cold.count.saturating_sub(n);
      self.cold.clear();
      if missing > 0 {
        self.read_failed(format!(
          "{missing} pending jobs are not in the file (a write of them failed)"
        ));
      }
    }
    n
  }

  /// The cold job with this id: from its insert when that is not sent to
  /// the writer yet, else from the file once what was sent is committed.
  /// Sends nothing: an operation's writes (a schedule's fire and the job it
  /// adds) still reach the writer together.
  fn read_cold(&mut self, id: JobId) -> Option<Job> {
    let k = key(id);
    if self.cold.count == 0
      || k <= self.cold.cursor
      || id.0 > self.cold.last.1
      || self.mem.contains(id)
      || self.failure.lock().is_some()
    {
      return None;
    }
    for op in self.pending.iter().rev() {
      match op {
        Op::Insert(r) if r.k == k => {
          return (r.lo == id.0 as u64 as i64 && r.status == Status::Pending as u8)
            .then(|| self.job_of_row(id, r));
        }
        // Pruned since the last send: the file may still hold it.
        Op::Delete(keys) if keys.contains(&k) => return None,
        _ => {}
      }
    }
    if self.wait_for(self.sent).is_err() {
      return None;
    }
    let (names, path) = (&self.cold.names, &self.path);
    self
      .read(|reader| {
        let bad = |e: rusqlite::Error| sql_err(path, "cannot read", e);
        let mut stmt = reader
          .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobwerk_jobs WHERE k = ?1"
          ))
          .map_err(bad)?;
        let mut rows = stmt.query([k]).map_err(bad)?;
        let Some(r) = rows.next().map_err(bad)? else {
          return Ok(None);
        };
        let job = read_job(r, path, cold_name(r, names))?;
        Ok((job.id == id && job.status == Status::Pending).then_some(job))
      })
      .flatten()
  }

  /// A cold job as its (unsent) insert describes it.
  fn job_of_row(&self, id: JobId, r: &Row) -> Job {
    Job {
      priority: r.priority,
      attempts: r.attempts,
      max_retries: r.max_retries,
      timeout_ms: r.timeout_ms,
      backoff: r.backoff,
      extra: JobExtra::of(None, r.context.as_deref().unwrap_or("")),
      ..Job::new(
        id,
        self.cold.names.get(&*r.name).copied().unwrap_or(u32::MAX),
        r.created_at,
        r.run_at,
        r.data.clone(),
      )
    }
  }

  /// Brings the cold job with this id into memory (nothing if it is not cold).
  fn warm(&mut self, id: JobId) {
    let Some(job) = self.read_cold(id) else {
      return;
    };
    let at = job.run_at;
    self.cold.stale |= self.cold.head.is_some_and(|(_, h)| h == job.id.0);
    self.cold.taken(job.name);
    self.mem.restore(job, at);
    self.cold.count -= 1;
    if self.cold.count == 0 {
      self.cold.clear();
    }
  }

  /// Ids of cold jobs, oldest first, at most `limit`.
  fn cold_ids(&mut self, limit: usize) -> Vec<JobId> {
    if self.cold.count == 0 || !self.cold_readable() {
      return Vec::new();
    }
    let (mem, path, cursor) = (&self.mem, &self.path, self.cold.cursor);
    self
      .read(|reader| {
        let ids = (|| -> rusqlite::Result<Vec<JobId>> {
          let mut stmt = reader.prepare_cached(
            "SELECT k, lo FROM jobwerk_jobs WHERE k > ?1 AND status = 1 ORDER BY k",
          )?;
          let mut rows = stmt.query([cursor])?;
          let mut ids = Vec::new();
          while ids.len() < limit {
            let Some(r) = rows.next()? else {
              break;
            };
            let id = JobId(job_id(r.get(0)?, r.get(1)?));
            if !mem.contains(id) {
              ids.push(id);
            }
          }
          Ok(ids)
        })();
        ids.map_err(|e| sql_err(path, "cannot read", e))
      })
      .unwrap_or_default()
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

  fn insert(&mut self, jobs: Vec<Job>, names: &Names) {
    // What new jobs depend on is in memory (they are filed under it).
    let mut needed = Vec::new();
    for job in &jobs {
      for id in job.deps().map(|d| &d.ids[..]).unwrap_or(&[]) {
        self.warm(*id);
        needed.push(*id);
      }
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
    let pending = &mut self.pending;
    self.mem.insert_with(hot, &mut |job| {
      pending.push(insert_row(job, job.data.clone(), names));
    });
    self.journal_changed();
  }

  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, u32),
  ) -> usize {
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
        .claim_until(max - n, now, bound, runnable, &mut |job, hint| {
          pending.push(Op::Claim {
            k: key(job.id),
            attempts: job.attempts,
            started_at: job.started_at,
          });
          visit(job, hint)
        });
      if n >= max || !self.cold.runnable(runnable) || self.refill(max - n) == 0 {
        return n;
      }
    }
  }

  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.mem.has_due(now, runnable) || self.cold.runnable(runnable)
  }

  fn complete(&mut self, id: JobId, hint: u32, result: &str, now: u64) -> bool {
    let ok = self.mem.complete(id, hint, result, now);
    if ok {
      if let Some(job) = self.mem.get_hinted(id, hint) {
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
    ok
  }

  fn fail(
    &mut self,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Option<Failed> {
    let f = self.mem.fail(id, err, kind, now, rand)?;
    self.push_state(id, true);
    self.journal_changed();
    Some(f)
  }

  fn cancel(&mut self, id: JobId, now: u64) -> Option<Status> {
    self.warm(id);
    let was = self.mem.cancel(id, now)?;
    self.push_state(id, true);
    self.journal_changed();
    Some(was)
  }

  fn retry(&mut self, id: JobId, now: u64) -> bool {
    let ok = self.mem.retry(id, now);
    if ok {
      self.push_state(id, false);
      self.journal_changed();
    }
    ok
  }

  fn progress(&mut self, id: JobId, json: &str) -> bool {
    let ok = self.mem.progress(id, json);
    if ok {
      self.pending.push(Op::Progress {
        k: key(id),
        json: json.into(),
      });
    }
    ok
  }

  fn recover_interrupted(&mut self, now: u64) -> usize {
    let running = self.mem.ids_with(Status::Running);
    let n = self.mem.recover_interrupted(now);
    for id in running {
      self.push_state(id, true);
    }
    self.journal_changed();
    n
  }

  fn prune(&mut self, before: u64) -> usize {
    let keys: Vec<i64> = self
      .mem
      .finished_before(before)
      .into_iter()
      .map(key)
      .collect();
    let n = self.mem.prune(before);
    self.journal_changed();
    if !keys.is_empty() {
      self.pending.push(Op::Delete(keys));
      self.cold.pruned = self.write_mark();
    }
    n
  }

  fn get(&mut self, id: JobId) -> Option<&Job> {
    if self.mem.contains(id) {
      return self.mem.get(id);
    }
    self.peeked = self.read_cold(id).map(Box::new);
    self.peeked.as_deref()
  }

  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let mut ids = self.mem.list(status, limit);
    if self.cold.count > 0 && matches!(status, None | Some(Status::Pending)) {
      ids.extend(self.cold_ids(limit));
      ids.sort_unstable();
      ids.truncate(limit);
    }
    ids
  }

  fn list_jobs(&mut self, filter: &JobFilter, names: &Names) -> Result<Vec<Job>> {
    let hot = self.mem.list_jobs(filter, names)?;
    let cold = self.cold_page(filter, names)?;
    Ok(filter.merge(hot, cold))
  }

  fn counts(&self) -> [usize; 7] {
    let mut c = self.mem.counts();
    c[Status::Pending as usize] += self.cold.count;
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

  fn save_schedule(&mut self, id: &str, json: &str) {
    self.pending.push(Op::SaveSchedule {
      id: id.into(),
      json: json.into(),
    });
  }

  fn delete_schedule(&mut self, id: &str) {
    self.pending.push(Op::DeleteSchedule(id.into()));
  }

  fn schedules(&self) -> Vec<String> {
    self.schedules.clone()
  }

  fn max_id(&self) -> Option<JobId> {
    let cold = (self.cold.count > 0).then_some(JobId(self.cold.last.1));
    self.mem.max_id().max(cold)
  }

  fn set_weights(&mut self, weights: [i32; 3]) {
    self.mem.set_weights(weights)
  }

  fn end_batch(&mut self) {
    self.send();
  }

  fn write_mark(&self) -> u64 {
    self.sent + u64::from(!self.pending.is_empty())
  }

  fn committed(&self) -> u64 {
    self.commits.borrow().seq
  }

  fn sync(&mut self) -> Result<()> {
    let (mark, _) = self.flush_handle();
    self.wait_for(mark)
  }

  fn failure(&self) -> Option<String> {
    self.failure.lock().clone()
  }

  fn flush_watch(&mut self) -> Option<(u64, watch::Receiver<Commit>)> {
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
  }

  fn is_closed(&self) -> bool {
    self.tx.is_none()
  }

  fn is_durable(&self) -> bool {
    true
  }

  fn check_invariants(&self) -> std::result::Result<(), String> {
    if (self.cold.count > 0) != self.cold.head.is_some() {
      return Err(format!(
        "{} cold jobs, first {:?}",
        self.cold.count, self.cold.head
      ));
    }
    self.mem.check_invariants()
  }
}
