//! The cold tier: pending jobs kept in the file only (see the module docs
//! of [`super`]), and how they and finished jobs are read back.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::params;

use super::codec::{
  col, cold_name, job_id, key, read_cold_row, read_job, RowReader, COLD_COLUMNS, JOB_COLUMNS,
};
use super::writer::{insert_row, Op, Row};
use super::{sql_err, SqliteStore};
use crate::error::{Error, Result};
use crate::job::{Job, JobExtra, JobId, Priority, Status, Text};
use crate::storage::{JobFilter, Names, Store};

/// Pending jobs kept in the file only (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Cold {
  /// How many.
  pub(super) count: usize,
  /// (due time, id) at or before the first of them: a claim takes nothing
  /// from memory that ranks at or after it without a refill first.
  pub(super) head: Option<(u64, u128)>,
  /// The head was the job `warm` brought into memory: a claim looks the
  /// next one up first (until then it ranks before every cold job still).
  pub(super) stale: bool,
  /// (due time, id) of the newest: a new job ranking before it stays in memory.
  pub(super) last: (u64, u128),
  /// Every cold job's key is above this.
  pub(super) cursor: i64,
  /// The write mark after the newest cold job's insert: the file holds
  /// every cold job once the writer has committed it.
  pub(super) mark: u64,
  /// Calculation name -> index, for reading rows back (every name in the
  /// file or added since it opened).
  pub(super) names: HashMap<Arc<str>, u32>,
  /// Cold jobs per calculation index.
  pub(super) per_calc: HashMap<u32, usize>,
}

impl Cold {
  /// One more cold job, `(due time, id)`, of calculation `name`.
  pub(super) fn push(&mut self, run_at: u64, id: u128, name: u32) {
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
  pub(super) fn taken(&mut self, name: u32) {
    if let Some(c) = self.per_calc.get_mut(&name) {
      *c = c.saturating_sub(1);
    }
  }

  /// True when a cold job's calculation can run.
  pub(super) fn runnable(&self, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.count > 0 && self.per_calc.iter().any(|(&n, &c)| c > 0 && runnable(n))
  }

  /// None left (after a refill found the last, or a write was lost).
  pub(super) fn clear(&mut self) {
    self.count = 0;
    self.head = None;
    self.stale = false;
    self.per_calc.clear();
  }
}

impl SqliteStore {
  /// True when `job`, being added with `hot_pending` pending jobs in
  /// memory, stays in the file only (see [`Cold`]).
  pub(super) fn goes_cold(&self, job: &Job, hot_pending: usize) -> bool {
    let c = &self.cold;
    job.status == Status::Pending
      && job.priority == Priority::Medium
      && job.attempts == 0
      && job.run_at <= job.created_at
      // Keyed jobs stay in memory: the key index and the concurrency gate
      // are there (and a fired job's schedule id is not a cold row's).
      && job.extra.as_deref().is_none_or(|e| {
        e.deps.is_none()
          && e.result.is_none()
          && e.progress.is_none()
          && e.errors.is_empty()
          && e.keys.is_none()
      })
      && (c.count == 0 || (job.run_at, job.id.0) >= c.last)
      && (c.count > 0 || hot_pending >= self.hot_pending)
  }

  /// Journals a new job that stays in the file only.
  pub(super) fn push_cold(&mut self, mut job: Job, names: &Names) {
    let c = &mut self.cold;
    c.push(job.run_at, job.id.0, job.name);
    let data = std::mem::take(&mut job.data);
    let row = insert_row(&job, data, names);
    if let Op::Insert(r) = &row {
      if !c.names.contains_key(&*r.name) {
        c.names.insert(r.name.clone(), job.name);
      }
    }
    self.pending.push(row);
  }

  /// Makes sure the file holds every cold job (waits for the writer if it
  /// has not committed them yet). False if it cannot.
  pub(super) fn cold_readable(&mut self) -> bool {
    // After a failed write the file may lack cold jobs: nothing is read.
    self.failure.lock().is_none() && (self.committed() >= self.cold.mark || self.sync().is_ok())
  }

  /// True when the file may hold jobs that are not in memory: cold ones
  /// with `pending`, finished ones with `finished`.
  fn has_stored(&self, pending: bool, finished: bool) -> bool {
    (pending && self.cold.count > 0) || (finished && self.stored.iter().any(|&n| n > 0))
  }

  /// The jobs `f` selects that are in the file only (cold and finished
  /// ones): one range read on the key (the cursor and the time bounds narrow
  /// it), the other conditions in SQL, payloads read for the jobs returned
  /// only. (A row of a job in memory is skipped: memory has its state.)
  pub(super) fn file_page(&mut self, f: &JobFilter, names: &Names) -> Result<Vec<Job>> {
    let pending = self.cold.count > 0 && f.admits(Status::Pending);
    let finished: Vec<&str> = Status::ALL
      .iter()
      .filter(|s| s.is_finished() && f.admits(**s) && self.stored[**s as usize] > 0)
      .map(|s| s.as_str())
      .collect();
    if (!pending && finished.is_empty()) || f.limit == 0 {
      return Ok(Vec::new());
    }
    let name = match f.name {
      Some(i) => match names.get(i) {
        Some(n) => Some(n.to_string()),
        None => return Ok(Vec::new()),
      },
      None => None,
    };
    if pending && !self.cold_readable() {
      return Err(Error::Storage(self.failure().unwrap_or_else(|| {
        format!(
          "cannot read the pending jobs kept in '{}'",
          self.path.display()
        )
      })));
    }
    // Keys are the ids' upper 64 bits: the timestamp shifted by 16.
    let (lo_ts, hi_ts) = self.skew.id_times(f);
    const MAX_TS: u64 = (i64::MAX as u64) >> 16;
    let mut lo = (lo_ts.min(MAX_TS) << 16) as i64;
    if finished.is_empty() {
      lo = lo.max(self.cold.cursor.saturating_add(1));
    }
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
    let mut statuses: Vec<String> = finished.iter().map(|s| format!("'{s}'")).collect();
    if pending {
      statuses.push("'pending'".into());
    }
    let sql = format!(
      "SELECT {columns} FROM jobwerk_jobs WHERE k BETWEEN ?1 AND ?2 AND status IN ({}) \
       AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR created_at >= ?4) \
       AND (?5 IS NULL OR created_at < ?5) ORDER BY k {}",
      statuses.join(", "),
      if f.ascending { "ASC" } else { "DESC" }
    );
    let as_sql = |t: Option<u64>| t.map(|t| t.min(i64::MAX as u64) as i64);
    let (mem, known, path, cursor) = (&self.mem, &self.cold.names, &self.path, self.cold.cursor);
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
        let k: i64 = r.get(col::K).map_err(bad)?;
        let id = JobId(job_id(k, r.get(col::LO).map_err(bad)?));
        if mem.contains(id) || !f.after_cursor(id) {
          continue;
        }
        let mut job = read_job(r, path, cold_name(r, known))?;
        if job.status == Status::Pending && k <= cursor {
          continue;
        }
        if !f.include_data {
          job.data = Text::EMPTY;
        }
        out.push(job);
      }
      Ok(out)
    })
  }

  /// Brings the next cold jobs (at least `want`) into memory; returns how many.
  pub(super) fn refill(&mut self, want: usize) -> usize {
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
      let mut backoff = None;
      while let Some(r) = rows.next().map_err(bad)? {
        let row = RowReader::new(r, path)?;
        if mem.contains(row.id) || row.status_text()? != Status::Pending.as_str() {
          continue;
        }
        if loaded.len() == want {
          next = Some((row.time(col::RUN_AT)?, row.id.0));
          break;
        }
        loaded.push(read_cold_row(&row, cold_name(r, names), &mut backoff)?);
        cursor = key(row.id);
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

  /// The job with this id kept in the file only (cold or finished): a cold
  /// one from its insert when that is not sent to the writer yet, else from
  /// the file once the cold jobs sent are committed. Sends nothing: an
  /// operation's writes (a schedule's fire and the job it adds) still reach
  /// the writer together. `None` for a job in memory or none at all.
  pub(super) fn read_stored(&mut self, id: JobId) -> Result<Option<Job>> {
    if self.top.is_none_or(|t| id > t) || self.mem.contains(id) {
      return Ok(None);
    }
    let k = key(id);
    let cold = self.cold.count > 0 && k > self.cold.cursor && id.0 <= self.cold.last.1;
    if cold {
      for op in self.pending.iter().rev() {
        if let Op::Insert(r) = op {
          if r.k == k {
            return Ok(
              (r.lo == id.0 as u64 as i64 && r.status == Status::Pending)
                .then(|| self.job_of_row(id, r)),
            );
          }
        }
      }
    }
    if !self.has_stored(cold, true) {
      return Ok(None);
    }
    // A cold job sent but not committed yet: wait for it. (A finished job
    // in the file only is committed: it left memory after that.)
    let cold = cold && self.cold_readable();
    let (names, path) = (&self.cold.names, &self.path);
    self.try_read(|reader| {
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
      let row = RowReader::new(r, path)?;
      if row.id != id {
        return Ok(None);
      }
      let status = row.status()?;
      if !(status.is_finished() || (cold && status == Status::Pending)) {
        return Ok(None);
      }
      read_job(r, path, cold_name(r, names)).map(Some)
    })
  }

  /// The cold job with this id (see [`SqliteStore::read_stored`]); a read
  /// error is the store's failure.
  pub(super) fn read_cold(&mut self, id: JobId) -> Option<Job> {
    if self.cold.count == 0 || self.failure.lock().is_some() {
      return None;
    }
    match self.read_stored(id) {
      Ok(job) => job.filter(|j| j.status == Status::Pending),
      Err(e) => {
        self.read_failed(e);
        None
      }
    }
  }

  /// A cold job as its (unsent) insert describes it.
  pub(super) fn job_of_row(&self, id: JobId, r: &Row) -> Job {
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
  pub(super) fn warm(&mut self, id: JobId) {
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

  /// Ids of jobs in the file only (cold or finished) with this status (any
  /// if `None`), oldest first, at most `limit`.
  pub(super) fn stored_ids(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let pending = status.is_none_or(|s| s == Status::Pending);
    let finished: Vec<String> = Status::ALL
      .iter()
      .filter(|s| s.is_finished() && status.is_none_or(|w| w == **s))
      .map(|s| format!("'{}'", s.as_str()))
      .collect();
    if !self.has_stored(pending, !finished.is_empty()) || (pending && !self.cold_readable()) {
      return Vec::new();
    }
    let mut statuses = finished;
    if pending && self.cold.count > 0 {
      statuses.push("'pending'".into());
    }
    let (mem, path, cursor) = (&self.mem, &self.path, self.cold.cursor);
    let sql = format!(
      "SELECT k, lo, status FROM jobwerk_jobs WHERE status IN ({}) ORDER BY k",
      statuses.join(", ")
    );
    self
      .read(|reader| {
        let ids = (|| -> rusqlite::Result<Vec<JobId>> {
          let mut stmt = reader.prepare_cached(&sql)?;
          let mut rows = stmt.query([])?;
          let mut ids = Vec::new();
          while ids.len() < limit {
            let Some(r) = rows.next()? else {
              break;
            };
            let k: i64 = r.get(0)?;
            let id = JobId(job_id(k, r.get(1)?));
            // A pending row at or before the cursor is a job in memory.
            let refilled = k <= cursor && r.get_ref(2)?.as_str().ok() == Some("pending");
            if !refilled && !mem.contains(id) {
              ids.push(id);
            }
          }
          Ok(ids)
        })();
        ids.map_err(|e| sql_err(path, "cannot read", e))
      })
      .unwrap_or_default()
  }
}
