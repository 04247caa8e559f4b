//! The row codec: how a job is written to a row and read back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::sql_err;
use crate::error::{Error, Result};
use crate::job::{
  Backoff, BackoffKind, Dependencies, Job, JobError, JobExtra, JobId, Priority, Status,
};

pub(super) fn key(id: JobId) -> i64 {
  (id.0 >> 64) as i64
}

pub(super) fn backoff_text(b: &Backoff) -> String {
  let kind = match b.kind {
    BackoffKind::Exponential => "e",
    BackoffKind::Fixed => "f",
  };
  format!("{kind},{},{},{}", b.delay_ms, b.max_delay_ms, b.jitter)
}

pub(super) fn parse_backoff(s: &str) -> Backoff {
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

pub(super) fn parse_deps(s: &str) -> Option<Dependencies> {
  let (policy, ids) = s.split_once('|')?;
  Some(Dependencies {
    ids: ids.split(',').filter_map(JobId::parse).collect(),
    ignore_failure: policy == "i",
  })
}

pub(super) fn parse_priority(s: &str) -> Priority {
  match s {
    "\"high\"" => Priority::High,
    "\"low\"" => Priority::Low,
    "\"medium\"" => Priority::Medium,
    n => n.parse().map(Priority::Weight).unwrap_or(Priority::Medium),
  }
}

/// The columns of a job, in the order [`read_job`] reads them.
pub(super) const JOB_COLUMNS: &str =
  "k, lo, name, priority, status, attempts, max_retries, timeout_ms, backoff, created_at, \
  run_at, started_at, finished_at, data, context, result, progress, errors, deps";

/// A job from a row of [`JOB_COLUMNS`]; `name` is its calculation's index.
pub(super) fn read_job(r: &rusqlite::Row<'_>, path: &Path, name: u32) -> Result<Job> {
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
pub(super) const COLD_COLUMNS: &str =
  "k, lo, name, priority, status, max_retries, timeout_ms, backoff, created_at, run_at, data, context";

/// A cold job from a row of [`COLD_COLUMNS`]; `backoff` is the last row's
/// backoff text and value (rows of one calculation share it).
pub(super) fn read_cold_row(
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

pub(super) fn job_id(k: i64, lo: i64) -> u128 {
  ((k as u64 as u128) << 64) | lo as u64 as u128
}

/// The calculation index of a cold job's row (names of cold jobs are known:
/// they were added or loaded by this store); unknown: an index no
/// calculation has, so the job waits rather than runs the wrong handler.
pub(super) fn cold_name(r: &rusqlite::Row<'_>, names: &HashMap<Arc<str>, u32>) -> u32 {
  r.get_ref(2)
    .ok()
    .and_then(|n| n.as_str().ok())
    .and_then(|n| names.get(n).copied())
    .unwrap_or(u32::MAX)
}
