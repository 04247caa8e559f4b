//! The writer thread: every transition is queued to it as an [`Op`]; it
//! commits whatever queued up while the previous commit ran in one
//! transaction (group commit) and reports progress as a [`Commit`].

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection};
use tokio::sync::watch;

use super::codec::{backoff_text, deps_text, key, priority_text};
use crate::job::{Backoff, Job, JobKeys, Priority, Status, Text};
use crate::storage::{Commit, Names};

/// One write, as the writer thread applies it.
#[derive(Debug)]
pub(super) enum Op {
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
  /// A job not started took new data, context or due time (a duplicate
  /// add: `onDuplicate: 'replace'`, `debounceMs`).
  Update(Box<UpdateRow>),
  /// Deletes the finished jobs that finished at or before `before`, adding
  /// how many of each status to [`Pruned`]. They were all created by then,
  /// so their keys are at most `last_key` (see [`SqliteStore::prune`]): the
  /// delete reads the rows up to it only, which a previous prune left few
  /// of besides those it deletes.
  ///
  /// [`SqliteStore::prune`]: super::SqliteStore
  Prune {
    before: u64,
    last_key: i64,
  },
  SaveSchedule {
    id: Box<str>,
    json: Box<str>,
  },
  DeleteSchedule(Box<str>),
}

#[derive(Debug)]
/// A new job's row: one allocation (the box) for the common job, its text
/// shared or inline; the writer thread turns it into SQL values.
pub(super) struct Row {
  pub(super) k: i64,
  pub(super) lo: i64,
  pub(super) name: Arc<str>,
  pub(super) priority: Priority,
  pub(super) status: Status,
  pub(super) attempts: u32,
  pub(super) max_retries: u32,
  pub(super) timeout_ms: u32,
  pub(super) backoff: Backoff,
  pub(super) created_at: u64,
  pub(super) run_at: u64,
  pub(super) data: Text,
  /// `None`: `{}`.
  pub(super) context: Option<Box<str>>,
  pub(super) deps: Option<String>,
  /// Unique key, concurrency key, schedule id.
  pub(super) keys: Option<Box<JobKeys>>,
}

#[derive(Debug)]
pub(super) struct UpdateRow {
  pub(super) k: i64,
  pub(super) data: Option<Text>,
  /// `Some("{}")` for none.
  pub(super) context: Option<Box<str>>,
  pub(super) run_at: Option<u64>,
}

#[derive(Debug)]
pub(super) struct StateRow {
  pub(super) k: i64,
  pub(super) status: Status,
  pub(super) attempts: u32,
  pub(super) run_at: u64,
  pub(super) started_at: u64,
  pub(super) finished_at: u64,
  pub(super) errors: Option<String>,
}

/// A job's new state (not after a completion: see [`Op::Completed`]), with
/// its errors when `errors`.
pub(super) fn state_row(job: &Job, errors: bool) -> Op {
  let o = job.extra.as_deref();
  Op::State(Box::new(StateRow {
    k: key(job.id),
    status: job.status,
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
pub(super) fn insert_row(job: &Job, data: Text, names: &Names) -> Op {
  Op::Insert(Box::new(Row {
    k: key(job.id),
    lo: job.id.0 as u64 as i64,
    name: names.get_shared(job.name).unwrap_or_else(|| Arc::from("")),
    priority: job.priority,
    status: job.status,
    attempts: job.attempts,
    max_retries: job.max_retries,
    timeout_ms: job.timeout_ms,
    backoff: job.backoff,
    created_at: job.created_at,
    run_at: job.run_at,
    data,
    context: job.extra.as_ref().and_then(|e| e.context.clone()),
    deps: job.deps().map(deps_text),
    keys: job.keys().map(|k| Box::new(k.clone())),
  }))
}

/// Jobs deleted by [`Op::Prune`] so far, per status (`Status as usize`),
/// shared with the store, which reads it once the prune is committed.
pub(super) type Pruned = Arc<Mutex<[u64; 7]>>;

/// The finished statuses as stored, for SQL: `'completed', ...`.
pub(super) const FINISHED_SQL: &str = "'completed', 'failed', 'timeout', 'cancelled'";

fn apply(conn: &Connection, op: &Op, pruned: &mut [u64; 7]) -> rusqlite::Result<()> {
  match op {
    Op::Insert(r) => {
      conn
        .prepare_cached(
          "INSERT INTO jobwerk_jobs (k, lo, name, priority, status, attempts, max_retries, timeout_ms, backoff,
             created_at, run_at, started_at, finished_at, data, context, deps, job_key, concurrency_key, schedule_id)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?
        .execute(params![
          r.k,
          r.lo,
          &*r.name,
          &*priority_text(r.priority),
          r.status.as_str(),
          r.attempts,
          r.max_retries,
          r.timeout_ms,
          backoff_text(&r.backoff),
          r.created_at as i64,
          r.run_at as i64,
          &*r.data,
          r.context.as_deref().unwrap_or("{}"),
          r.deps.as_deref(),
          r.keys.as_ref().and_then(|k| k.key.as_deref()),
          r.keys.as_ref().and_then(|k| k.concurrency_key.as_deref()),
          r.keys.as_ref().and_then(|k| k.schedule_id.as_deref()),
        ])?;
    }
    Op::Update(u) => {
      conn
        .prepare_cached(
          "UPDATE jobwerk_jobs SET data = coalesce(?2, data), context = coalesce(?3, context),
             run_at = coalesce(?4, run_at) WHERE k = ?1",
        )?
        .execute(params![
          u.k,
          u.data.as_deref(),
          u.context.as_deref(),
          u.run_at.map(|t| t as i64),
        ])?;
    }
    Op::Claim {
      k,
      attempts,
      started_at,
    } => {
      conn
        .prepare_cached(
          "UPDATE jobwerk_jobs SET status = 'running', attempts = ?2, started_at = ?3 WHERE k = ?1",
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
          s.status.as_str(),
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
          "UPDATE jobwerk_jobs SET status = 'completed', attempts = ?2, started_at = ?3, finished_at = ?4, result = ?5
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
    Op::Prune { before, last_key } => {
      let mut stmt = conn.prepare_cached(&format!(
        "DELETE FROM jobwerk_jobs WHERE k <= ?2 AND status IN ({FINISHED_SQL}) AND finished_at <= ?1 \
         RETURNING status"
      ))?;
      let mut rows = stmt.query(params![(*before).min(i64::MAX as u64) as i64, last_key])?;
      while let Some(r) = rows.next()? {
        if let Some(s) = r.get_ref(0)?.as_str().ok().and_then(Status::parse) {
          pruned[s as usize] += 1;
        }
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
pub(super) fn writer(
  conn: Connection,
  rx: Receiver<(u64, Vec<Op>)>,
  commits: watch::Sender<Commit>,
  failure: Arc<Mutex<Option<String>>>,
  pruned_total: Pruned,
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
    let mut pruned = [0u64; 7];
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
        vacuum |= matches!(op, Op::Prune { .. });
        apply(&conn, op, &mut pruned)?;
      }
      conn.execute_batch("COMMIT")
    })();
    let error = match res {
      Ok(()) => {
        if pruned.iter().any(|&n| n > 0) {
          let mut total = pruned_total.lock();
          for (t, n) in total.iter_mut().zip(pruned) {
            *t += n;
          }
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
    let vacuum = vacuum && error.is_none();
    commits.send_modify(|c| {
      c.seq = last;
      if c.error.is_none() {
        c.error = error;
      }
    });
    if vacuum {
      // After saying the prune is committed (a prune waits for that, not
      // for this): each step of the pragma frees one page; run it to the
      // end.
      let _ = conn
        .prepare("PRAGMA incremental_vacuum")
        .and_then(|mut st| {
          let mut rows = st.query([])?;
          while rows.next()?.is_some() {}
          Ok(())
        });
    }
  }
  let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}
