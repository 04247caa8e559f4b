//! `getJobs`: the listing query as JavaScript sends it ([`JobQuery`]), and
//! jobs as JSON in the shape of `CalculationStatus` (shared with
//! `getJobStatus`).

use std::fmt::Write as _;

use serde_json::Value;

use super::options::{describe, int, known_keys, object};
use super::registry::Registry;
use super::Queue;
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
pub(super) fn write_job_json(registry: &Registry, job: &Job, include_data: bool, s: &mut String) {
  let name = registry.name_json(job.name);
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
  let registered = registry.is_registered(job.name);
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
  write_deps(job, s);
  if include_data {
    let _ = write!(s, "\"data\":{},", job.data);
  }
  let _ = write!(s, "\"context\":{},", job.context_json());
  let text = |t: Option<&str>| {
    t.and_then(|t| serde_json::to_string(t).ok())
      .unwrap_or_else(|| "null".into())
  };
  let _ = write!(
    s,
    "\"key\":{},\"concurrencyKey\":{},\"scheduleId\":{}}}",
    text(job.key()),
    text(job.concurrency_key()),
    text(job.schedule_id()),
  );
}

/// `"dependsOn":[ids],"onDependencyFailure":"fail"|"ignore",`: the jobs that
/// must complete first (`[]` for none) and what a failed one does to this job.
fn write_deps(job: &Job, s: &mut String) {
  let deps = job.deps();
  s.push_str("\"dependsOn\":[");
  for (i, id) in deps.map(|d| &d.ids[..]).unwrap_or(&[]).iter().enumerate() {
    if i > 0 {
      s.push(',');
    }
    s.push('"');
    id.write_to(s);
    s.push('"');
  }
  let ignore = deps.is_some_and(|d| d.ignore_failure);
  let _ = write!(
    s,
    "],\"onDependencyFailure\":\"{}\",",
    if ignore { "ignore" } else { "fail" }
  );
}

impl Queue {
  /// One page of jobs as `{"jobs":[...],"nextCursor":...}` JSON (see
  /// [`JobQuery`]); `nextCursor` is `null` on the last page.
  pub fn jobs_json(&mut self, q: &JobQuery) -> Result<String> {
    let Some(filter) = self.jobs_filter(q) else {
      return Ok(self.render_jobs(q, &[]));
    };
    let jobs = self.store.list_jobs(&filter, self.registry.names())?;
    Ok(self.render_jobs(q, &jobs))
  }

  /// The store's filter of a `getJobs` query; `None` when it names a
  /// calculation no job was ever added under (no job matches).
  pub fn jobs_filter(&self, q: &JobQuery) -> Option<JobFilter> {
    let name = match &q.name {
      Some(n) => Some(self.registry.names().find(n)?),
      None => None,
    };
    Some(JobFilter {
      statuses: q.statuses,
      name,
      since: q.since,
      until: q.until,
      after: q.cursor,
      ascending: q.ascending,
      // One more: whether there is a next page.
      limit: q.limit + 1,
      include_data: q.include_data,
    })
  }

  /// One page as `{"jobs":[...],"nextCursor":...}` JSON from the jobs the
  /// filter of [`Queue::jobs_filter`] selected.
  pub fn render_jobs(&self, q: &JobQuery, jobs: &[Job]) -> String {
    let mut out = String::from("{\"jobs\":[");
    let shown = &jobs[..jobs.len().min(q.limit)];
    for (i, job) in shown.iter().enumerate() {
      if i > 0 {
        out.push(',');
      }
      write_job_json(&self.registry, job, q.include_data, &mut out);
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
    out
  }

  /// A job's status as JSON (`CalculationStatus`).
  pub fn render_job(&self, job: &Job) -> String {
    let mut s = String::new();
    write_job_json(&self.registry, job, true, &mut s);
    s
  }

  /// The calculation names, copied (a backend that reads on another
  /// thread resolves names with them).
  pub fn names_snapshot(&self) -> crate::storage::Names {
    self.registry.names().clone()
  }

  /// The calculation names, to resolve names of jobs read elsewhere.
  pub fn names_for_read(&mut self) -> &mut crate::storage::Names {
    self.registry.names_mut()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::queue::{JobOptions, NewJob, QueueConfig};
  use serde_json::json;

  fn err(v: Value) -> String {
    match JobQuery::parse(&v) {
      Err(Error::InvalidArgument(m)) => m,
      other => panic!("{v}: expected ERR_INVALID_ARGUMENT, got {other:?}"),
    }
  }

  #[test]
  fn a_query_reads_each_field_and_names_the_bad_one() {
    assert_eq!(JobQuery::parse(&Value::Null), Ok(JobQuery::default()));
    let q = JobQuery::parse(&json!({
      "status": ["failed", "timeout"], "name": "a", "since": 5, "until": 9,
      "limit": 1000, "order": "asc", "includeData": false,
      "cursor": "0190a000-0000-7000-8000-000000000001"
    }))
    .expect("query");
    assert_eq!(
      q.statuses,
      1 << Status::Failed as u8 | 1 << Status::Timeout as u8
    );
    assert_eq!((q.since, q.until, q.limit), (Some(5), Some(9), 1000));
    assert!(q.ascending && !q.include_data && q.cursor.is_some());
    assert_eq!(
      JobQuery::parse(&json!({"status": "running"})).map(|q| q.statuses),
      Ok(4)
    );
    for (v, field) in [
      (json!([]), "filter must be an object"),
      (json!({"nope": 1}), "filter.nope"),
      (json!({"status": "done"}), "filter.status"),
      (json!({"status": []}), "filter.status"),
      (json!({"name": 1}), "filter.name"),
      (json!({"since": -1}), "filter.since"),
      (json!({"until": 1.5}), "filter.until"),
      (json!({"since": 9, "until": 5}), "filter.until"),
      (json!({"limit": 0}), "filter.limit"),
      (json!({"limit": 1001}), "filter.limit"),
      (json!({"cursor": "x"}), "filter.cursor"),
      (json!({"order": "up"}), "filter.order"),
      (json!({"includeData": 1}), "filter.includeData"),
    ] {
      assert!(err(v.clone()).contains(field), "{v}: {}", err(v.clone()));
    }
  }

  #[test]
  fn pages_end_with_a_null_cursor_and_leave_data_out_when_asked() {
    let mut q = Queue::new(QueueConfig::default(), 0);
    let calc = q.register("calc", &Value::Null).expect("register");
    let opts = JobOptions::default();
    let ids = q
      .add(
        &(0..5)
          .map(|_| NewJob {
            calc,
            data: "{\"big\":1}",
            context: "{}",
            options: opts.clone(),
          })
          .collect::<Vec<_>>(),
        0,
      )
      .expect("add");
    let page = |q: &mut Queue, query: JobQuery| -> Value {
      serde_json::from_str(&q.jobs_json(&query).expect("jobs")).expect("json")
    };
    let p = page(
      &mut q,
      JobQuery {
        limit: 3,
        ..JobQuery::default()
      },
    );
    let got: Vec<&str> = p["jobs"]
      .as_array()
      .expect("jobs")
      .iter()
      .map(|j| j["jobId"].as_str().unwrap_or(""))
      .collect();
    let want: Vec<String> = ids.iter().rev().take(3).map(|id| id.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(p["nextCursor"], json!(want[2]));
    assert_eq!(p["jobs"][0]["data"], json!({"big": 1}));
    let p = page(
      &mut q,
      JobQuery {
        limit: 3,
        cursor: Some(ids[2]),
        include_data: false,
        ..JobQuery::default()
      },
    );
    assert_eq!(p["jobs"].as_array().map(Vec::len), Some(2));
    assert_eq!(p["nextCursor"], Value::Null);
    assert!(p["jobs"][0].get("data").is_none() && p["jobs"][0].get("result").is_none());
    let status: Value =
      serde_json::from_str(&q.status_json(ids[1]).expect("read").expect("status")).expect("json");
    let mut listed = p["jobs"][0].clone();
    listed["data"] = status["data"].clone();
    listed["result"] = status["result"].clone();
    assert_eq!(listed, status);
    let none = JobQuery {
      name: Some("other".into()),
      ..JobQuery::default()
    };
    assert_eq!(
      q.jobs_json(&none).expect("jobs"),
      "{\"jobs\":[],\"nextCursor\":null}"
    );
  }

  #[test]
  fn a_job_lists_its_dependencies_and_what_a_failed_one_does() {
    let mut q = Queue::new(QueueConfig::default(), 0);
    let calc = q.register("calc", &Value::Null).expect("register");
    let job = |options: JobOptions| NewJob {
      calc,
      data: "1",
      context: "{}",
      options,
    };
    let a = q.add(&[job(JobOptions::default())], 0).expect("add")[0];
    let b = q.add(&[job(JobOptions::default())], 0).expect("add")[0];
    let waits = q
      .add(
        &[job(JobOptions {
          depends_on: vec![a.to_string(), b.to_string()],
          ..JobOptions::default()
        })],
        0,
      )
      .expect("add")[0];
    let ignores = q
      .add(
        &[job(JobOptions {
          depends_on: vec![b.to_string()],
          ignore_dependency_failure: true,
          ..JobOptions::default()
        })],
        0,
      )
      .expect("add")[0];
    let status = |q: &mut Queue, id: JobId| -> Value {
      serde_json::from_str(&q.status_json(id).expect("read").expect("status")).expect("json")
    };
    let s = status(&mut q, waits);
    assert_eq!(s["status"], json!("waiting"));
    assert_eq!(s["dependsOn"], json!([a.to_string(), b.to_string()]));
    assert_eq!(s["onDependencyFailure"], json!("fail"));
    let s = status(&mut q, ignores);
    assert_eq!(s["dependsOn"], json!([b.to_string()]));
    assert_eq!(s["onDependencyFailure"], json!("ignore"));
    let s = status(&mut q, a);
    assert_eq!(s["dependsOn"], json!([]));
    assert_eq!(s["onDependencyFailure"], json!("fail"));
    // getJobs lists them too, with or without the payloads.
    let page: Value = serde_json::from_str(
      &q.jobs_json(&JobQuery {
        include_data: false,
        ..JobQuery::default()
      })
      .expect("jobs"),
    )
    .expect("json");
    assert_eq!(page["jobs"][0]["jobId"], json!(ignores.to_string()));
    assert_eq!(page["jobs"][0]["dependsOn"], json!([b.to_string()]));
    assert_eq!(
      page["jobs"][1]["dependsOn"],
      json!([a.to_string(), b.to_string()])
    );
  }
}
