//! The cold tier: pending jobs kept in the file only (see the module docs
//! of [`super`]), and how they are read back.

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
use crate::storage::{JobFilter, Names, Skew, Store};

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
  /// The write mark after the newest prune: until it is committed, the file
  /// may still hold pruned jobs as pending, which a read would take for cold.
  pub(super) pruned: u64,
  /// Calculation name -> index, for reading rows back.
  pub(super) names: HashMap<Arc<str>, u32>,
  /// Cold jobs per calculation index.
  pub(super) per_calc: HashMap<u32, usize>,
  /// How cold jobs' creation times stray from their ids' (for listing).
  pub(super) skew: Skew,
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
  pub(super) fn cold_readable(&mut self) -> bool {
    // After a failed write the file may lack cold jobs: nothing is read.
    self.failure.lock().is_none()
      && (self.committed() >= self.cold.mark.max(self.cold.pruned) || self.sync().is_ok())
  }

  /// The cold jobs `f` selects, from the file: one range read on the key
  /// (the cursor and the time bounds narrow it), the other conditions in
  /// SQL, payloads read for the jobs returned only.
  pub(super) fn cold_page(&mut self, f: &JobFilter, names: &Names) -> Result<Vec<Job>> {
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
      "SELECT {columns} FROM jobwerk_jobs WHERE k BETWEEN ?1 AND ?2 AND status = 'pending' \
       AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR created_at >= ?4) \
       AND (?5 IS NULL OR created_at < ?5) ORDER BY k {}",
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
        let id = JobId(job_id(
          r.get(col::K).map_err(bad)?,
          r.get(col::LO).map_err(bad)?,
        ));
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

  /// The cold job with this id: from its insert when that is not sent to
  /// the writer yet, else from the file once what was sent is committed.
  /// Sends nothing: an operation's writes (a schedule's fire and the job it
  /// adds) still reach the writer together.
  pub(super) fn read_cold(&mut self, id: JobId) -> Option<Job> {
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
          return (r.lo == id.0 as u64 as i64 && r.status == Status::Pending)
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

  /// Ids of cold jobs, oldest first, at most `limit`.
  pub(super) fn cold_ids(&mut self, limit: usize) -> Vec<JobId> {
    if self.cold.count == 0 || !self.cold_readable() {
      return Vec::new();
    }
    let (mem, path, cursor) = (&self.mem, &self.path, self.cold.cursor);
    self
      .read(|reader| {
        let ids = (|| -> rusqlite::Result<Vec<JobId>> {
          let mut stmt = reader.prepare_cached(
            "SELECT k, lo FROM jobwerk_jobs WHERE k > ?1 AND status = 'pending' ORDER BY k",
          )?;
          let mut rows = stmt.query([cursor])?;
          let mut ids = Vec::new();
          while ids.len() < limit {
            let Some(r) = rows.next()? else {
              break;
            };
            let id = JobId(job_id(r.get(col::K)?, r.get(col::LO)?));
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
}
