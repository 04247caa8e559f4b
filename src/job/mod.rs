//! The job model: ids, priorities, statuses, errors and the job record.
//!
//! [`Job`] is what the queue keeps per job; [`Status`] with its transitions in
//! [`state`] is the lifecycle; [`backoff`] computes retry delays.

pub mod backoff;
pub mod id;
pub mod state;
pub mod text;

pub use backoff::{Backoff, BackoffKind};
pub use id::{IdGen, JobId};
pub use state::{Status, Transition};
pub use text::Text;

use serde::{Deserialize, Serialize};

pub use crate::error::JobErrorCode;
use crate::error::LEGACY_JOB_CODES;

/// A job's priority: one of the three named levels, weighted by the
/// configured `priorityWeights`, or an explicit weight (lower runs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
  /// `'high'`
  High,
  /// `'medium'` (the default)
  Medium,
  /// `'low'`
  Low,
  /// An explicit integer weight.
  Weight(i32),
}

impl Priority {
  /// Parses `'high' | 'medium' | 'low'`.
  pub fn from_name(s: &str) -> Option<Priority> {
    match s {
      "high" => Some(Priority::High),
      "medium" => Some(Priority::Medium),
      "low" => Some(Priority::Low),
      _ => None,
    }
  }

  /// The ordering weight under `weights` (`[high, medium, low]`).
  pub fn weight(self, weights: &[i32; 3]) -> i32 {
    match self {
      Priority::High => weights[0],
      Priority::Medium => weights[1],
      Priority::Low => weights[2],
      Priority::Weight(w) => w,
    }
  }

  /// The priority as JSON: its name, or its number.
  pub fn to_json(self) -> String {
    match self {
      Priority::High => "\"high\"".into(),
      Priority::Medium => "\"medium\"".into(),
      Priority::Low => "\"low\"".into(),
      Priority::Weight(w) => w.to_string(),
    }
  }
}

/// A failed attempt as recorded on the job: what the handler threw (or the
/// system decided: timeout, cancel, interruption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "StoredJobError")]
pub struct JobError {
  /// The error's class name (`Error`, `TypeError`, `TimeoutError`, ...).
  #[serde(default)]
  pub name: String,
  /// The error's message.
  #[serde(default)]
  pub message: String,
  /// The JavaScript stack, when there was one.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub stack: Option<String>,
  /// A code such as `ERR_JOB_TIMEOUT` (see [`JobErrorCode`]), or the
  /// handler's own error's code, when there was one.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub code: Option<String>,
  /// The attempt (1-based) that failed.
  #[serde(default)]
  pub attempt: u32,
}

impl JobError {
  /// An error the system decided (not thrown by the handler).
  pub fn system(name: &str, code: JobErrorCode, message: String, attempt: u32) -> JobError {
    JobError {
      name: name.into(),
      message,
      stack: None,
      code: Some(code.as_str().into()),
      attempt,
    }
  }
}

/// A [`JobError`] as stored (JSON), before the codes of files written by
/// 0.1.0 are read as today's ([`LEGACY_JOB_CODES`]): a cancel stored
/// `ERR_CANCELLED` (now `ERR_JOB_CANCELLED`) and a stop `ERR_INTERRUPTED`
/// (now `ERR_SERVICE_STOPPED`, as the handler's signal said). Only the
/// system's own errors (their exact name and message) are renamed, never a
/// handler's.
#[derive(Deserialize)]
struct StoredJobError {
  #[serde(default)]
  name: String,
  #[serde(default)]
  message: String,
  #[serde(default)]
  stack: Option<String>,
  #[serde(default)]
  code: Option<String>,
  #[serde(default)]
  attempt: u32,
}

impl From<StoredJobError> for JobError {
  fn from(e: StoredJobError) -> JobError {
    let mut code = e.code;
    if e.stack.is_none() {
      let old = code.as_deref();
      let renamed = LEGACY_JOB_CODES
        .iter()
        .find(|(c, name, message, _)| old == Some(*c) && e.name == *name && e.message == *message);
      if let Some((_, _, _, today)) = renamed {
        code = Some(today.as_str().into());
      }
    }
    JobError {
      name: e.name,
      message: e.message,
      stack: e.stack,
      code,
      attempt: e.attempt,
    }
  }
}

/// What a finished or running job carries beyond its inputs; boxed so a
/// pending job pays one pointer for it.
/// What a pending job usually does not have, boxed so that the common job
/// stays small: its outcome so far and its dependencies.
#[derive(Debug, Clone, Default)]
pub struct JobExtra {
  /// The last result, as JSON text.
  pub result: Option<std::sync::Arc<str>>,
  /// The last progress, as JSON text.
  pub progress: Option<Box<str>>,
  /// Every failed attempt, oldest first; the last is the job's `error`.
  pub errors: Vec<JobError>,
  /// Jobs that must complete first.
  pub deps: Option<Dependencies>,
  /// The job's context as JSON text (`None`: `{}`).
  pub context: Option<Box<str>>,
  /// Its unique key, concurrency key and schedule, when it has any.
  pub keys: Option<Box<JobKeys>>,
}

/// The names a job may carry beyond its calculation: `options.key` (at most
/// one unfinished job holds it, see [`crate::storage::keys`]),
/// `options.concurrencyKey` (at most one running job holds it) and the id of
/// the schedule whose fire added it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobKeys {
  pub key: Option<Box<str>>,
  pub concurrency_key: Option<Box<str>>,
  pub schedule_id: Option<Box<str>>,
  /// What the add that made it does to a job holding its `key`, when the
  /// store decides at insert time (PostgreSQL); not stored.
  pub on_dup: OnDup,
}

/// An add's duplicate policy, for a store that finds a key's holder only
/// when it writes (PostgreSQL: the database decides, see
/// `storage/postgres/keys.rs`). Memory and SQLite decide in the queue,
/// before the insert, and ignore it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDup {
  /// `onDuplicate: 'replace'`: an unstarted holder takes the new data and
  /// context; a running one gets this job as its successor.
  pub replace: bool,
  /// `debounceMs`: an unstarted holder becomes due at this job's `run_at`.
  pub debounce: bool,
}

impl JobKeys {
  /// `None` when all three are absent.
  pub fn of(
    key: Option<&str>,
    concurrency_key: Option<&str>,
    schedule_id: Option<&str>,
  ) -> Option<Box<JobKeys>> {
    if key.is_none() && concurrency_key.is_none() && schedule_id.is_none() {
      return None;
    }
    Some(Box::new(JobKeys {
      key: key.map(Into::into),
      concurrency_key: concurrency_key.map(Into::into),
      schedule_id: schedule_id.map(Into::into),
      on_dup: OnDup::default(),
    }))
  }
}

impl JobExtra {
  /// The extra record of a new job with these dependencies and context
  /// (JSON; `{}` or empty for none): `None` when it has neither.
  pub fn of(deps: Option<Dependencies>, context: &str) -> Option<Box<JobExtra>> {
    let context = (!context.is_empty() && context != "{}").then(|| Box::from(context));
    if deps.is_none() && context.is_none() {
      return None;
    }
    Some(Box::new(JobExtra {
      deps,
      context,
      ..JobExtra::default()
    }))
  }
}

/// One job as the queue keeps it.
#[derive(Debug, Clone)]
pub struct Job {
  /// UUID v7.
  pub id: JobId,
  /// Index of the calculation name in the queue's name table.
  pub name: u32,
  pub priority: Priority,
  pub status: Status,
  /// Attempts started so far.
  pub attempts: u32,
  /// Retries allowed after the first attempt.
  pub max_retries: u32,
  /// Per-attempt timeout in ms (0: none).
  pub timeout_ms: u32,
  pub backoff: Backoff,
  /// Bumped each time the job is queued, so stale heap entries are skipped.
  pub gen: u32,
  pub created_at: u64,
  pub run_at: u64,
  /// 0 until the first attempt starts.
  pub started_at: u64,
  /// 0 until the job finishes.
  pub finished_at: u64,
  /// The job's data as JSON text (inline up to 15 bytes).
  pub data: Text,
  /// Outcome and dependencies; `None` for most pending jobs.
  pub extra: Option<Box<JobExtra>>,
}

/// A job's dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
  /// The jobs that must complete first.
  pub ids: Vec<JobId>,
  /// Run even if one of them failed, timed out or was cancelled.
  pub ignore_failure: bool,
}

impl Job {
  /// A pending job of calculation `name` due at `run_at`, not tried yet,
  /// with the defaults (medium priority, no retries, no timeout, the default
  /// backoff) for its caller to override.
  pub fn new(id: JobId, name: u32, created_at: u64, run_at: u64, data: Text) -> Job {
    Job {
      id,
      name,
      priority: Priority::Medium,
      status: Status::Pending,
      attempts: 0,
      max_retries: 0,
      timeout_ms: 0,
      backoff: Backoff::default(),
      gen: 0,
      created_at,
      run_at,
      started_at: 0,
      finished_at: 0,
      data,
      extra: None,
    }
  }

  /// The extra record, created on first use.
  pub fn extra_mut(&mut self) -> &mut JobExtra {
    self.extra.get_or_insert_with(Default::default)
  }

  /// The last error, if any.
  pub fn last_error(&self) -> Option<&JobError> {
    self.extra.as_ref().and_then(|o| o.errors.last())
  }

  /// The jobs that must complete first, if any.
  pub fn deps(&self) -> Option<&Dependencies> {
    self.extra.as_ref().and_then(|o| o.deps.as_ref())
  }

  /// Takes new data, context (JSON text; `{}` or empty: none) and due
  /// time, each when given (a duplicate add; the store keeps its lines).
  pub fn change(&mut self, data: Option<&str>, context: Option<&str>, run_at: Option<u64>) {
    if let Some(d) = data {
      self.data = Text::from(d);
    }
    if let Some(c) = context {
      let c = (!c.is_empty() && c != "{}").then(|| Box::from(c));
      if c.is_some() || self.extra.is_some() {
        self.extra_mut().context = c;
      }
    }
    if let Some(t) = run_at {
      self.run_at = t;
    }
  }

  /// The names it carries (key, concurrency key, schedule), if any.
  pub fn keys(&self) -> Option<&JobKeys> {
    self.extra.as_ref().and_then(|e| e.keys.as_deref())
  }

  /// Its unique key (`options.key`).
  pub fn key(&self) -> Option<&str> {
    self.keys().and_then(|k| k.key.as_deref())
  }

  /// Its concurrency key (`options.concurrencyKey`).
  pub fn concurrency_key(&self) -> Option<&str> {
    self.keys().and_then(|k| k.concurrency_key.as_deref())
  }

  /// The schedule whose fire added it.
  pub fn schedule_id(&self) -> Option<&str> {
    self.keys().and_then(|k| k.schedule_id.as_deref())
  }

  /// Sets the names it carries (none: `None`).
  pub fn set_keys(&mut self, keys: Option<Box<JobKeys>>) {
    if keys.is_some() || self.extra.is_some() {
      self.extra_mut().keys = keys;
    }
  }

  /// The context as JSON text.
  pub fn context_json(&self) -> &str {
    self
      .extra
      .as_ref()
      .and_then(|e| e.context.as_deref())
      .unwrap_or("{}")
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn read(json: &str) -> JobError {
    serde_json::from_str(json).expect("a stored error")
  }

  /// Files written by 0.1.0 stored a cancel as `ERR_CANCELLED` and a stop as
  /// `ERR_INTERRUPTED`; they read back with today's codes.
  #[test]
  fn errors_stored_by_0_1_0_read_with_todays_codes() {
    let cancelled = read(
      r#"{"name":"CancelledError","message":"the job was cancelled","code":"ERR_CANCELLED","attempt":2}"#,
    );
    assert_eq!(cancelled.code.as_deref(), Some("ERR_JOB_CANCELLED"));
    assert_eq!(cancelled.attempt, 2);
    let stopped = read(
      r#"{"name":"InterruptedError","message":"the service stopped while the job ran","code":"ERR_INTERRUPTED","attempt":1}"#,
    );
    assert_eq!(stopped.code.as_deref(), Some("ERR_SERVICE_STOPPED"));
    // A crash found at start stays ERR_INTERRUPTED.
    let crashed = read(
      r#"{"name":"InterruptedError","message":"the process stopped while the job ran","code":"ERR_INTERRUPTED","attempt":0}"#,
    );
    assert_eq!(crashed.code.as_deref(), Some("ERR_INTERRUPTED"));
  }

  /// A handler's own error keeps its code, even one named like an old code.
  #[test]
  fn a_handlers_own_code_is_kept() {
    let own = read(
      r#"{"name":"CancelledError","message":"the job was cancelled","stack":"at x","code":"ERR_CANCELLED","attempt":1}"#,
    );
    assert_eq!(own.code.as_deref(), Some("ERR_CANCELLED"));
    let other = read(r#"{"name":"Error","message":"boom","code":"ERR_CANCELLED","attempt":1}"#);
    assert_eq!(other.code.as_deref(), Some("ERR_CANCELLED"));
    // What is written reads back the same.
    let e = JobError::system(
      "CancelledError",
      JobErrorCode::JobCancelled,
      "the job was cancelled".into(),
      1,
    );
    assert_eq!(read(&serde_json::to_string(&e).unwrap()), e);
  }
}
