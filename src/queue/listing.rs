//! `getJobs`: the listing query as JavaScript sends it ([`JobQuery`]), and
//! jobs as JSON in the shape of `CalculationStatus` (shared with
//! `getJobStatus`).

use std::fmt::Write as _;

use serde_json::Value;

use super::options::{describe, int, known_keys, object};
use super::{Calc, Queue};
use crate::error::{Error, Result};
use crate::job::{Job, JobId, Status};
use crate::storage::{JobFilter, ANY_STATUS};

/// Jobs per page by default.
pub const DEFAULT_LIMIT: usize = 50;
/// The most jobs one page holds.
pub const MAX_LIMIT: usize = 1_000;
/// The latest time a filter may name (as JavaScript's `Date`: 8.64e15 ms).
const MAX_TIME: i64 = 8_640_000_000_000_000;

/// A listing as `getJobs` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
  /// Bit `1 << status` per status wanted.
  pub statuses: u8,
  /// The calculation's name.
  pub name: Option<String>,
  /// `createdAt >= since` (epoch ms).
  pub since: Option<u64>,
  /// `createdAt < until` (epoch ms).
  pub until: Option<u64>,
  /// The previous page's `nextCursor`.
  pub cursor: Option<JobId>,
  pub ascending: bool,
  pub limit: usize,
  pub include_data: bool,
}

impl Default for JobQuery {
  fn default() -> Self {
    JobQuery {
      statuses: ANY_STATUS,
      name: None,
      since: None,
      until: None,
      cursor: None,
      ascending: false,
      limit: DEFAULT_LIMIT,
      include_data: true,
    }
  }
}

const KEYS: &[&str] = &[
  "status",
  "name",
  "since",
  "until",
  "limit",
  "cursor",
  "order",
  "includeData",
];

impl JobQuery {
  /// Reads `{ status, name, since, until, limit, cursor, order, includeData }`
  /// (`null` or absent: the defaults); a bad value is `ERR_INVALID_ARGUMENT`
  /// naming its field.
  pub fn parse(v: &Value) -> Result<JobQuery> {
    let mk = Error::InvalidArgument;
    let mut q = JobQuery::default();
    let Some(m) = object(Some(v), "getJobs(filter): filter", mk)? else {
      return Ok(q);
    };
    known_keys(m, "getJobs(filter): filter", KEYS, mk)?;
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    if let Some(s) = get("status") {
      let one = |v: &Value| {
        v.as_str().and_then(Status::parse).ok_or_else(|| {
          mk(format!(
            "getJobs(filter): filter.status must be a status ({}) or an array of them, got {}",
            Status::ALL.map(|s| s.as_str()).join(", "),
            describe(v)
          ))
        })
      };
      q.statuses = match s {
        Value::Array(a) if a.is_empty() => {
          return Err(mk(
            "getJobs(filter): filter.status must name at least one status, got []".into(),
          ))
        }
        Value::Array(a) => a
          .iter()
          .try_fold(0u8, |bits, v| Ok::<u8, Error>(bits | 1 << one(v)? as u8))?,
        v => 1 << one(v)? as u8,
      };
    }
    if let Some(n) = get("name") {
      q.name = Some(
        n.as_str()
          .ok_or_else(|| {
            mk(format!(
              "getJobs(filter): filter.name must be a calculation's name (a string), got {}",
              describe(n)
            ))
          })?
          .to_string(),
      );
    }
    let time = |k: &str| -> Result<Option<u64>> {
      get(k)
        .map(|v| {
          int(
            v,
            &format!("getJobs(filter): filter.{k} (epoch ms)"),
            0,
            MAX_TIME,
            mk,
          )
        })
        .transpose()
        .map(|t| t.map(|t| t as u64))
    };
    q.since = time("since")?;
    q.until = time("until")?;
    if let (Some(a), Some(b)) = (q.since, q.until) {
      if b < a {
        return Err(mk(format!(
          "getJobs(filter): filter.until ({b}) is before filter.since ({a})"
        )));
      }
    }
    if let Some(l) = get("limit") {
      q.limit = int(l, "getJobs(filter): filter.limit", 1, MAX_LIMIT as i64, mk)? as usize;
    }
    if let Some(c) = get("cursor") {
      q.cursor = Some(c.as_str().and_then(JobId::parse).ok_or_else(|| {
        mk(format!(
          "getJobs(filter): filter.cursor must be a nextCursor returned by getJobs, got {}",
          describe(c)
        ))
      })?);
    }
    if let Some(o) = get("order") {
      q.ascending = match o.as_str() {
        Some("asc") => true,
        Some("desc") => false,
        _ => {
          return Err(mk(format!(
            "getJobs(filter): filter.order must be 'desc' or 'asc', got {}",
            describe(o)
          )))
        }
      };
    }
    if let Some(d) = get("includeData") {
      q.include_data = d.as_bool().ok_or_else(|| {
        mk(format!(
          "getJobs(filter): filter.includeData must be true or false, got {}",
          describe(d)
        ))
      })?;
    }
    Ok(q)
  }
}

/// Writes `job` as `CalculationStatus` JSON; without `data` and `result`
/// unless `include_data`.
pub(super) fn write_job_json(
  names_json: &[Box<str>],
  calcs: &[Option<Calc>],
  job: &Job,
  include_data: bool,
  s: &mut String,
) {
  let name = names_json
    .get(job.name as usize)
    .map(|s| &**s)
    .unwrap_or("null");
  let opt_ms = |t: u64| {
    if t == 0 {
      "null".to_string()
    } else {
      t.to_string()
    }
  };
  let o = job.extra.as_deref();
  let result = o.and_then(|o| o.result.as_deref()).unwrap_or("null");
  let progress = o.and_then(|o| o.progress.as_deref()).unwrap_or("null");
  let error = job
    .last_error()
    .and_then(|e| serde_json::to_string(e).ok())
    .unwrap_or_else(|| "null".into());
  let errors = o
    .and_then(|o| serde_json::to_string(&o.errors).ok())
    .unwrap_or_else(|| "[]".into());
  let registered = matches!(calcs.get(job.name as usize), Some(Some(_)));
  s.reserve(256 + job.data.len() + result.len());
  s.push_str("{\"jobId\":\"");
  job.id.write_to(s);
  let _ = write!(
    s,
    "\",\"name\":{name},\"status\":\"{}\",\"registered\":{registered},\"priority\":{},\"attempts\":{},\"maxRetries\":{},\"timeout\":{},\"progress\":{progress},",
    job.status.as_str(),
    job.priority.to_json(),
    job.attempts,
    job.max_retries,
    job.timeout_ms,
  );
  if include_data {
    let _ = write!(s, "\"result\":{result},");
  }
  let _ = write!(
    s,
    "\"error\":{error},\"errors\":{errors},\"createdAt\":{},\"runAt\":{},\"startedAt\":{},\"finishedAt\":{},",
    job.created_at,
    job.run_at,
    opt_ms(job.started_at),
    opt_ms(job.finished_at),
  );
  if include_data {
    let _ = write!(s, "\"data\":{},", job.data);
  }
  let _ = write!(s, "\"context\":{}}}", job.context_json());
}

impl Queue {
  /// One page of jobs as `{"jobs":[...],"nextCursor":...}` JSON (see
  /// [`JobQuery`]); `nextCursor` is `null` on the last page.
  pub fn jobs_json(&mut self, q: &JobQuery) -> Result<String> {
    let mut out = String::from("{\"jobs\":[");
    let name = match &q.name {
      Some(n) => match self.names.find(n) {
        Some(i) => Some(i),
        // No job was ever added under this name.
        None => {
          out.push_str("],\"nextCursor\":null}");
          return Ok(out);
        }
      },
      None => None,
    };
    let filter = JobFilter {
      statuses: q.statuses,
      name,
      since: q.since,
      until: q.until,
      after: q.cursor,
      ascending: q.ascending,
      // One more: whether there is a next page.
      limit: q.limit + 1,
      include_data: q.include_data,
    };
    let jobs = self.store.list_jobs(&filter, &self.names)?;
    let shown = &jobs[..jobs.len().min(q.limit)];
    for (i, job) in shown.iter().enumerate() {
      if i > 0 {
        out.push(',');
      }
      write_job_json(&self.names_json, &self.calcs, job, q.include_data, &mut out);
    }
    out.push_str("],\"nextCursor\":");
    match shown.last().filter(|_| jobs.len() > q.limit) {
      Some(last) => {
        out.push('"');
        last.id.write_to(&mut out);
        out.push('"');
      }
      None => out.push_str("null"),
    }
    out.push('}');
    Ok(out)
  }
}
