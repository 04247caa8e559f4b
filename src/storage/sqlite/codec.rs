//! The row codec: how a job is written to a row of `jobwerk_jobs` and read
//! back. Columns are named by the constants of [`col`], which are also their
//! indices in a row selected with [`JOB_COLUMNS`].
//!
//! Stored forms (schema version 5):
//!
//! | column     | form |
//! |------------|------|
//! | `k`, `lo`  | the id's upper and lower 64 bits (`k`: time + counter, unique and ordered in one file) |
//! | `status`   | the status as TypeScript names it: `'waiting'`, `'pending'`, `'running'`, `'completed'`, `'failed'`, `'timeout'`, `'cancelled'` |
//! | `priority` | `'high'`, `'medium'`, `'low'`, or an explicit weight as a decimal integer (`'7'`, `'-3'`) |
//! | `backoff`  | `<type>,<delayMs>,<maxDelayMs>,<jitter>`: type `e` (exponential) or `f` (fixed), delays as unsigned 32-bit integers (max delay 0: none), jitter a decimal in [0, 1] (`'e,1000,60000,0'`; short: every row has one) |
//! | `deps`     | `f|<id>,<id>...` (a failed dependency fails the job) or `i|...` (it runs anyway); NULL without dependencies |
//! | `errors`   | a JSON array of the failed attempts; NULL when none |
//! | `job_key`, `concurrency_key` | `options.key`, `options.concurrencyKey` as given (1 to 512 bytes); NULL when none |
//! | `schedule_id` | the id of the schedule whose fire added the job; NULL otherwise |
//! | `data`, `context`, `result`, `progress` | JSON text as it came from JavaScript (`context` `'{}'` when none; `result`, `progress` NULL when none) |
//! | times      | milliseconds since the epoch; 0 for "not yet" (`started_at`, `finished_at`) |
//!
//! A value in none of these forms is an `ERR_STORAGE` naming the job and the
//! column, never a default. (`data` is handed to JavaScript as stored and
//! not checked on read: it is the one large column.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use serde::de::IgnoredAny;

use super::sql_err;
use crate::error::{Error, Result};
use crate::job::{
  Backoff, BackoffKind, Dependencies, Job, JobError, JobExtra, JobId, JobKeys, Priority, Status,
};

/// The columns of a job, in the order of [`JOB_COLUMNS`]: each constant is
/// the column's index in a row selected with it.
pub(super) mod col {
  pub(in crate::storage::sqlite) const K: usize = 0;
  pub(in crate::storage::sqlite) const LO: usize = 1;
  pub(in crate::storage::sqlite) const NAME: usize = 2;
  pub(in crate::storage::sqlite) const PRIORITY: usize = 3;
  pub(in crate::storage::sqlite) const STATUS: usize = 4;
  pub(in crate::storage::sqlite) const ATTEMPTS: usize = 5;
  pub(in crate::storage::sqlite) const MAX_RETRIES: usize = 6;
  pub(in crate::storage::sqlite) const TIMEOUT_MS: usize = 7;
  pub(in crate::storage::sqlite) const BACKOFF: usize = 8;
  pub(in crate::storage::sqlite) const CREATED_AT: usize = 9;
  pub(in crate::storage::sqlite) const RUN_AT: usize = 10;
  pub(in crate::storage::sqlite) const STARTED_AT: usize = 11;
  pub(in crate::storage::sqlite) const FINISHED_AT: usize = 12;
  pub(in crate::storage::sqlite) const DATA: usize = 13;
  pub(in crate::storage::sqlite) const CONTEXT: usize = 14;
  pub(in crate::storage::sqlite) const RESULT: usize = 15;
  pub(in crate::storage::sqlite) const PROGRESS: usize = 16;
  pub(in crate::storage::sqlite) const ERRORS: usize = 17;
  pub(in crate::storage::sqlite) const DEPS: usize = 18;
  pub(in crate::storage::sqlite) const JOB_KEY: usize = 19;
  pub(in crate::storage::sqlite) const CONCURRENCY_KEY: usize = 20;
  pub(in crate::storage::sqlite) const SCHEDULE_ID: usize = 21;
}

/// The names of the columns of [`col`], in its order.
pub(super) const COLUMN_NAMES: [&str; 22] = [
  "k",
  "lo",
  "name",
  "priority",
  "status",
  "attempts",
  "max_retries",
  "timeout_ms",
  "backoff",
  "created_at",
  "run_at",
  "started_at",
  "finished_at",
  "data",
  "context",
  "result",
  "progress",
  "errors",
  "deps",
  "job_key",
  "concurrency_key",
  "schedule_id",
];

/// The columns of a job, for `SELECT`: [`COLUMN_NAMES`] joined.
pub(super) const JOB_COLUMNS: &str =
  "k, lo, name, priority, status, attempts, max_retries, timeout_ms, backoff, created_at, \
  run_at, started_at, finished_at, data, context, result, progress, errors, deps, job_key, \
  concurrency_key, schedule_id";

/// The key of a job's row: its id's upper 64 bits.
pub(super) fn key(id: JobId) -> i64 {
  (id.0 >> 64) as i64
}

/// The id of the row with key `k` and lower bits `lo`.
pub(super) fn job_id(k: i64, lo: i64) -> u128 {
  ((k as u64 as u128) << 64) | lo as u64 as u128
}

/// The stored form of a priority (see the module docs).
pub(super) fn priority_text(p: Priority) -> Cow<'static, str> {
  match p {
    Priority::High => Cow::Borrowed("high"),
    Priority::Medium => Cow::Borrowed("medium"),
    Priority::Low => Cow::Borrowed("low"),
    Priority::Weight(w) => Cow::Owned(w.to_string()),
  }
}

/// A priority from its stored form.
pub(super) fn parse_priority(s: &str) -> Option<Priority> {
  Priority::from_name(s).or_else(|| {
    // Digits with an optional minus only (no `+7`, no spaces).
    let digits = s.strip_prefix('-').unwrap_or(s);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
      .then(|| s.parse().ok().map(Priority::Weight))
      .flatten()
  })
}

/// The stored form of a backoff (see the module docs).
pub(super) fn backoff_text(b: &Backoff) -> String {
  let kind = match b.kind {
    BackoffKind::Exponential => "e",
    BackoffKind::Fixed => "f",
  };
  format!("{kind},{},{},{}", b.delay_ms, b.max_delay_ms, b.jitter)
}

/// A backoff from its stored form.
pub(super) fn parse_backoff(s: &str) -> Option<Backoff> {
  let mut p = s.split(',');
  let kind = match p.next()? {
    "e" => BackoffKind::Exponential,
    "f" => BackoffKind::Fixed,
    _ => return None,
  };
  let delay_ms = p.next()?.parse::<u32>().ok()?;
  let max_delay_ms = p.next()?.parse::<u32>().ok()?;
  let jitter = p.next()?.parse::<f32>().ok()?;
  if p.next().is_some() || !(0.0..=1.0).contains(&jitter) {
    return None;
  }
  Some(Backoff {
    kind,
    delay_ms,
    max_delay_ms,
    jitter,
  })
}

/// Dependencies as text: `i|` (ignore failures) or `f|`, then the ids.
pub(super) fn deps_text(d: &Dependencies) -> String {
  let mut s = String::from(if d.ignore_failure { "i|" } else { "f|" });
  for (i, id) in d.ids.iter().enumerate() {
    if i > 0 {
      s.push(',');
    }
    id.write_to(&mut s);
  }
  s
}

/// Dependencies from their stored form: a policy and at least one id.
pub(super) fn parse_deps(s: &str) -> Option<Dependencies> {
  let (policy, ids) = s.split_once('|')?;
  let ignore_failure = match policy {
    "i" => true,
    "f" => false,
    _ => return None,
  };
  Some(Dependencies {
    ids: ids
      .split(',')
      .map(JobId::parse)
      .collect::<Option<Vec<JobId>>>()?,
    ignore_failure,
  })
}

/// The error for job `id`'s `column` holding `value`, in the file at `path`.
pub(super) fn corrupt(path: &Path, id: JobId, column: usize, value: &str) -> Error {
  const SHOWN: usize = 80;
  let shown: String = value.chars().take(SHOWN).collect();
  let more = if shown.len() < value.len() { "..." } else { "" };
  Error::Storage(format!(
    "'{}' holds job {id} with a corrupt {}: {shown:?}{more} is not a value jobwerk writes \
     (was the file edited by hand?)",
    path.display(),
    COLUMN_NAMES[column]
  ))
}

/// Reads the columns of one row, naming its job in errors.
pub(super) struct RowReader<'a, 'r> {
  pub(super) row: &'a rusqlite::Row<'r>,
  pub(super) path: &'a Path,
  pub(super) id: JobId,
}

impl<'a, 'r> RowReader<'a, 'r> {
  /// The reader of `row`, whose id it reads first.
  pub(super) fn new(row: &'a rusqlite::Row<'r>, path: &'a Path) -> Result<Self> {
    let bad = |e: rusqlite::Error| sql_err(path, "cannot read a job from", e);
    let k: i64 = row.get(col::K).map_err(bad)?;
    let lo: i64 = row.get(col::LO).map_err(bad)?;
    Ok(RowReader {
      row,
      path,
      id: JobId(job_id(k, lo)),
    })
  }

  fn bad(&self, column: usize, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!(
      "'{}' holds job {} whose {} cannot be read: {e}",
      self.path.display(),
      self.id,
      COLUMN_NAMES[column]
    ))
  }

  /// A text column read in place; `None` for NULL.
  pub(super) fn text(&self, column: usize) -> Result<Option<&'a str>> {
    match self.row.get_ref(column).map_err(|e| self.bad(column, e))? {
      ValueRef::Null => Ok(None),
      v => v.as_str().map(Some).map_err(|e| self.bad(column, e)),
    }
  }

  /// A text column that is never NULL.
  pub(super) fn required(&self, column: usize) -> Result<&'a str> {
    self
      .text(column)?
      .ok_or_else(|| corrupt(self.path, self.id, column, "NULL"))
  }

  /// A JSON text column (NULL: `None`).
  pub(super) fn json(&self, column: usize) -> Result<Option<&'a str>> {
    let text = self.text(column)?;
    if let Some(t) = text {
      if serde_json::from_str::<IgnoredAny>(t).is_err() {
        return Err(corrupt(self.path, self.id, column, t));
      }
    }
    Ok(text)
  }

  /// An integer column.
  pub(super) fn int<T: rusqlite::types::FromSql>(&self, column: usize) -> Result<T> {
    self.row.get(column).map_err(|e| self.bad(column, e))
  }

  /// A time column (milliseconds; never negative).
  pub(super) fn time(&self, column: usize) -> Result<u64> {
    let t: i64 = self.int(column)?;
    u64::try_from(t).map_err(|_| corrupt(self.path, self.id, column, &t.to_string()))
  }

  pub(super) fn status(&self) -> Result<Status> {
    let s = self.status_text()?;
    Status::parse(s).ok_or_else(|| corrupt(self.path, self.id, col::STATUS, s))
  }

  /// The status as stored (an integer of an older schema reads as corrupt).
  pub(super) fn status_text(&self) -> Result<&'a str> {
    match self
      .row
      .get_ref(col::STATUS)
      .map_err(|e| self.bad(col::STATUS, e))?
    {
      ValueRef::Text(t) => {
        std::str::from_utf8(t).map_err(|_| corrupt(self.path, self.id, col::STATUS, "(not UTF-8)"))
      }
      ValueRef::Integer(i) => Err(corrupt(self.path, self.id, col::STATUS, &i.to_string())),
      _ => Err(corrupt(self.path, self.id, col::STATUS, "(not text)")),
    }
  }

  pub(super) fn priority(&self) -> Result<Priority> {
    let s = self.required(col::PRIORITY)?;
    parse_priority(s).ok_or_else(|| corrupt(self.path, self.id, col::PRIORITY, s))
  }

  /// The backoff; `last` is the last row's text and value (rows of one
  /// calculation share it: parsed once).
  pub(super) fn backoff(&self, last: &mut Option<(String, Backoff)>) -> Result<Backoff> {
    let s = self.required(col::BACKOFF)?;
    if let Some((text, b)) = last {
      if text == s {
        return Ok(*b);
      }
    }
    let b = parse_backoff(s).ok_or_else(|| corrupt(self.path, self.id, col::BACKOFF, s))?;
    *last = Some((s.to_string(), b));
    Ok(b)
  }

  pub(super) fn deps(&self) -> Result<Option<Dependencies>> {
    match self.text(col::DEPS)? {
      None => Ok(None),
      Some(s) => parse_deps(s)
        .map(Some)
        .ok_or_else(|| corrupt(self.path, self.id, col::DEPS, s)),
    }
  }

  pub(super) fn errors(&self) -> Result<Vec<JobError>> {
    match self.text(col::ERRORS)? {
      None => Ok(Vec::new()),
      Some(s) => serde_json::from_str(s).map_err(|_| corrupt(self.path, self.id, col::ERRORS, s)),
    }
  }

  /// The unique key, concurrency key and schedule id (`None`: all NULL).
  pub(super) fn keys(&self) -> Result<Option<Box<JobKeys>>> {
    let key = |c: usize| -> Result<Option<&'a str>> {
      match self.text(c)? {
        Some("") => Err(corrupt(self.path, self.id, c, "")),
        t => Ok(t),
      }
    };
    Ok(JobKeys::of(
      key(col::JOB_KEY)?,
      key(col::CONCURRENCY_KEY)?,
      key(col::SCHEDULE_ID)?,
    ))
  }

  /// The context: JSON, `'{}'` when none.
  pub(super) fn context(&self) -> Result<&'a str> {
    let s = self.required(col::CONTEXT)?;
    if s != "{}" && serde_json::from_str::<IgnoredAny>(s).is_err() {
      return Err(corrupt(self.path, self.id, col::CONTEXT, s));
    }
    Ok(s)
  }
}

/// A job from a row of [`JOB_COLUMNS`]; `name` is its calculation's index.
/// `data` and `result` may be selected as NULL (a listing without payloads):
/// `data` then reads as `null`.
pub(super) fn read_job(r: &rusqlite::Row<'_>, path: &Path, name: u32) -> Result<Job> {
  let r = RowReader::new(r, path)?;
  let result = r.json(col::RESULT)?;
  let progress = r.json(col::PROGRESS)?;
  let errors = r.errors()?;
  let extra = JobExtra::of(r.deps()?, r.context()?);
  let keys = r.keys()?;
  let extra = if result.is_some() || progress.is_some() || !errors.is_empty() || keys.is_some() {
    let mut e = extra.unwrap_or_default();
    e.keys = keys;
    e.result = result.map(Into::into);
    e.progress = progress.map(Into::into);
    e.errors = errors;
    Some(e)
  } else {
    extra
  };
  Ok(Job {
    id: r.id,
    name,
    priority: r.priority()?,
    status: r.status()?,
    attempts: r.int(col::ATTEMPTS)?,
    max_retries: r.int(col::MAX_RETRIES)?,
    timeout_ms: r.int(col::TIMEOUT_MS)?,
    backoff: r.backoff(&mut None)?,
    gen: 0,
    created_at: r.time(col::CREATED_AT)?,
    run_at: r.time(col::RUN_AT)?,
    started_at: r.time(col::STARTED_AT)?,
    finished_at: r.time(col::FINISHED_AT)?,
    data: r.text(col::DATA)?.unwrap_or("null").into(),
    extra,
  })
}

/// The columns a refill reads, at the places of [`JOB_COLUMNS`]: those a
/// cold job (pending, never attempted, no outcome, no dependencies) does not
/// need are NULL, so SQLite does not decode them.
pub(super) const COLD_COLUMNS: &str =
  "k, lo, name, priority, status, NULL, max_retries, timeout_ms, backoff, created_at, \
  run_at, NULL, NULL, data, context, NULL, NULL, NULL, NULL, NULL, NULL, NULL";

/// A cold job from a row of [`COLD_COLUMNS`]; `backoff` is the last row's
/// (see [`RowReader::backoff`]).
pub(super) fn read_cold_row(
  r: &RowReader<'_, '_>,
  name: u32,
  backoff: &mut Option<(String, Backoff)>,
) -> Result<Job> {
  Ok(Job {
    priority: r.priority()?,
    max_retries: r.int(col::MAX_RETRIES)?,
    timeout_ms: r.int(col::TIMEOUT_MS)?,
    backoff: r.backoff(backoff)?,
    extra: JobExtra::of(None, r.context()?),
    ..Job::new(
      r.id,
      name,
      r.time(col::CREATED_AT)?,
      r.time(col::RUN_AT)?,
      r.required(col::DATA)?.into(),
    )
  })
}

/// The calculation index of a cold job's row (names of cold jobs are known:
/// they were added or loaded by this store); unknown: an index no
/// calculation has, so the job waits rather than runs the wrong handler.
pub(super) fn cold_name(r: &rusqlite::Row<'_>, names: &HashMap<Arc<str>, u32>) -> u32 {
  r.get_ref(col::NAME)
    .ok()
    .and_then(|n| n.as_str().ok())
    .and_then(|n| names.get(n).copied())
    .unwrap_or(u32::MAX)
}
