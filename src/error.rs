//! The crate's error type and every `ERR_*` code jobwerk uses, defined once.
//!
//! Two tables: [`ErrorCode`], the codes of errors thrown to JavaScript
//! (`err.code`, TypeScript's `JobwerkErrorCode`), and [`JobErrorCode`], the
//! codes jobwerk sets on a job's error (`JobError.code`, TypeScript's
//! `JobErrorCode`). Each table is a macro ([`api_codes!`],
//! [`job_codes!`]) so that the core's enum and the binding's `#[napi]` enum
//! (exported to JavaScript and typed in `binding.d.ts`) are expanded from
//! the same rows; `index.js` and `lib/` read the codes from the binding.

use std::fmt;

/// The API error codes, one row each: `Variant = "ERR_CODE", "doc"`.
/// Expands `$m! { Name, "enum doc", rows }`.
macro_rules! api_codes {
  ($m:ident) => {
    $m! {
      ErrorCode,
      "Codes of the errors jobwerk throws to JavaScript (`err.code`).",
      InvalidArgument = "ERR_INVALID_ARGUMENT",
        "A call's argument is malformed; the message (and `err.field`, where set) names it.";
      InvalidConfig = "ERR_INVALID_CONFIG",
        "The service configuration is invalid; the message names the key.";
      QueueFull = "ERR_QUEUE_FULL",
        "Adding the jobs would exceed `maxQueueSize` pending + waiting jobs; nothing was added.";
      Stopped = "ERR_STOPPED",
        "The service is stopping or stopped and takes no new jobs.";
      NotSerializable = "ERR_NOT_SERIALIZABLE",
        "A value (data, context, options, progress) cannot be stored as JSON.";
      PayloadTooLarge = "ERR_PAYLOAD_TOO_LARGE",
        "A job's data and context together exceed `maxPayloadBytes`.";
      InvalidCron = "ERR_INVALID_CRON",
        "A cron expression or its time zone is malformed; `err.field` names the field.";
      InvalidSchedule = "ERR_INVALID_SCHEDULE",
        "A schedule's field (a date, `intervalMs`, `maxRuns`, ...) is invalid; the message names it.";
      DependencyNotFound = "ERR_DEPENDENCY_NOT_FOUND",
        "A `dependsOn` id names no job; nothing was added.";
      Storage = "ERR_STORAGE",
        "The storage failed (the SQLite file cannot be opened, is locked or corrupt, or a write failed).";
      NativeAddon = "ERR_NATIVE_ADDON",
        "No native binary fits this system (thrown by `load-binding.js` before the binary is loaded, so it is a JavaScript literal there).";
    }
  };
}

/// The job error codes, one row each (see [`api_codes!`]).
macro_rules! job_codes {
  ($m:ident) => {
    $m! {
      JobErrorCode,
      "Codes jobwerk sets on a job's error (`JobError.code`) and on the reason of a handler's `job.signal`. A handler's own error keeps its own code.",
      JobTimeout = "ERR_JOB_TIMEOUT",
        "The attempt ran longer than its `timeout` (the signal's reason and the stored error).";
      JobCancelled = "ERR_JOB_CANCELLED",
        "The job was cancelled by `cancelJob` (the signal's reason and the stored error; files of 0.1.0 stored `ERR_CANCELLED`, read as this).";
      ServiceStopped = "ERR_SERVICE_STOPPED",
        "The service stopped while the attempt ran: `stop()`'s deadline passed (the signal's reason, and the error stored on the job, which goes back to pending).";
      Interrupted = "ERR_INTERRUPTED",
        "The process died while the job ran (found at the next start); stored when no attempts were left.";
      DependencyFailed = "ERR_DEPENDENCY_FAILED",
        "A dependency failed, timed out or was cancelled (with `onDependencyFailure: 'fail'`); on PostgreSQL also a `dependsOn` id that named no job (the insert checks them).";
      ThreadExited = "ERR_THREAD_EXITED",
        "The worker thread running the job exited.";
      WorkerOutOfMemory = "ERR_WORKER_OUT_OF_MEMORY",
        "The worker thread running the job ran out of memory under `threads.resourceLimits` (Node's own code, passed on).";
      ThreadTerminated = "ERR_THREAD_TERMINATED",
        "The worker thread running the job was terminated because another job in it ignored its abort.";
    }
  };
}

/// Defines a plain enum over a code table, with `ALL`, `as_str` and `parse`.
macro_rules! code_enum {
  ($name:ident, $doc:tt, $($variant:ident = $code:tt, $vdoc:tt;)*) => {
    #[doc = $doc]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum $name {
      $(#[doc = $vdoc] $variant,)*
    }

    impl $name {
      /// Every code, in table order.
      pub const ALL: &'static [$name] = &[$($name::$variant),*];

      /// The code as JavaScript sees it (`ERR_...`).
      pub const fn as_str(self) -> &'static str {
        match self {
          $($name::$variant => $code,)*
        }
      }

      /// The code named `s`, if it is one of this table's.
      pub fn parse(s: &str) -> Option<$name> {
        match s {
          $($code => Some($name::$variant),)*
          _ => None,
        }
      }
    }

    impl fmt::Display for $name {
      fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
      }
    }
  };
}

api_codes!(code_enum);
job_codes!(code_enum);

/// Job errors that files written by 0.1.0 hold under an old code, read back
/// with today's: `(old code, error name, message, today's code)`. Only the
/// system's own errors match (that name and message, no stack).
pub const LEGACY_JOB_CODES: &[(&str, &str, &str, JobErrorCode)] = &[
  (
    "ERR_CANCELLED",
    "CancelledError",
    "the job was cancelled",
    JobErrorCode::JobCancelled,
  ),
  (
    "ERR_INTERRUPTED",
    "InterruptedError",
    "the service stopped while the job ran",
    JobErrorCode::ServiceStopped,
  ),
];
#[allow(unused_imports)]
pub(crate) use {api_codes, job_codes};

/// A system or input error (never a job's own failure: that is an outcome,
/// stored on the job as [`crate::job::JobError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
  /// A call's argument is malformed; the message names it.
  InvalidArgument(String),
  /// The service configuration is invalid; the message names the key.
  InvalidConfig(String),
  /// Adding `adding` jobs to the `queued` (pending + waiting) ones would
  /// exceed `maxQueueSize` (`max`).
  QueueFull {
    max: usize,
    queued: usize,
    adding: usize,
  },
  /// The service is stopping or stopped and takes no new jobs.
  Stopped,
  /// A value cannot be stored as JSON.
  NotSerializable(String),
  /// A job's data and context together exceed `maxPayloadBytes`; `job` is
  /// its index in a batch of several.
  PayloadTooLarge {
    size: usize,
    max: usize,
    job: Option<usize>,
  },
  /// A cron expression is malformed; `field` names the offending field.
  InvalidCron { field: String, message: String },
  /// A schedule's field is invalid.
  InvalidSchedule(String),
  /// A `dependsOn` id names no job.
  DependencyNotFound(String),
  /// A storage backend failed.
  Storage(String),
}

impl Error {
  /// The stable code JavaScript sees as `err.code`.
  pub fn code(&self) -> &'static str {
    self.error_code().as_str()
  }

  /// The field a cron error names (`err.field` in JavaScript).
  pub fn field(&self) -> Option<&str> {
    match self {
      Error::InvalidCron { field, .. } => Some(field),
      _ => None,
    }
  }

  /// This error's row of [`ErrorCode`].
  pub fn error_code(&self) -> ErrorCode {
    match self {
      Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
      Error::InvalidConfig(_) => ErrorCode::InvalidConfig,
      Error::QueueFull { .. } => ErrorCode::QueueFull,
      Error::Stopped => ErrorCode::Stopped,
      Error::NotSerializable(_) => ErrorCode::NotSerializable,
      Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
      Error::InvalidCron { .. } => ErrorCode::InvalidCron,
      Error::InvalidSchedule(_) => ErrorCode::InvalidSchedule,
      Error::DependencyNotFound(_) => ErrorCode::DependencyNotFound,
      Error::Storage(_) => ErrorCode::Storage,
    }
  }

  pub(crate) fn arg(msg: impl Into<String>) -> Self {
    Error::InvalidArgument(msg.into())
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
      Error::InvalidConfig(m) => write!(f, "invalid config: {m}"),
      Error::QueueFull {
        max,
        queued,
        adding,
      } => {
        let room = max.saturating_sub(*queued);
        if *adding <= 1 || room == 0 {
          write!(
            f,
            "queue is full: {queued} jobs are waiting (maxQueueSize {max})"
          )
        } else {
          write!(
            f,
            "queue is full: a batch of {adding} jobs does not fit, there is room for {room} \
             ({queued} jobs are waiting, maxQueueSize {max}); nothing was added"
          )
        }
      }
      Error::Stopped => write!(f, "the service is stopped and takes no new jobs"),
      Error::NotSerializable(m) => write!(f, "not JSON-serializable: {m}"),
      Error::PayloadTooLarge { size, max, job } => {
        if let Some(i) = job {
          write!(f, "jobs[{i}]: ")?;
        }
        write!(
          f,
          "payload is {size} bytes, more than maxPayloadBytes ({max})"
        )
      }
      Error::InvalidCron { field, message } => {
        write!(f, "invalid cron expression ({field}): {message}")
      }
      Error::InvalidSchedule(m) => write!(f, "invalid schedule: {m}"),
      Error::DependencyNotFound(m) => write!(f, "dependency not found: {m}"),
      Error::Storage(m) => write!(f, "storage error: {m}"),
    }
  }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
  use super::*;
  use std::collections::HashSet;

  #[test]
  fn every_code_is_unique_and_named_err() {
    let api = ErrorCode::ALL.iter().map(|c| c.as_str());
    let job = JobErrorCode::ALL.iter().map(|c| c.as_str());
    let all: Vec<&str> = api.chain(job).collect();
    let unique: HashSet<&str> = all.iter().copied().collect();
    assert_eq!(
      unique.len(),
      all.len(),
      "a code is in both tables or twice: {all:?}"
    );
    for c in &all {
      assert!(
        c.starts_with("ERR_")
          && c[4..]
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch == '_'),
        "{c}"
      );
    }
  }

  #[test]
  fn parse_reads_back_each_code() {
    for c in ErrorCode::ALL {
      assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
      assert_eq!(JobErrorCode::parse(c.as_str()), None);
    }
    for c in JobErrorCode::ALL {
      assert_eq!(JobErrorCode::parse(c.as_str()), Some(*c));
    }
    // Codes that existed once and are gone (never produced).
    for gone in [
      "ERR_NOT_STARTED",
      "ERR_DEPENDENCY_CYCLE",
      "ERR_CANCELLED",
      "ERR_INTERNAL",
    ] {
      assert_eq!(ErrorCode::parse(gone), None, "{gone}");
      assert_eq!(JobErrorCode::parse(gone), None, "{gone}");
    }
  }

  #[test]
  fn a_cron_error_names_its_field() {
    let e = Error::InvalidCron {
      field: "minute".into(),
      message: "61 is out of range".into(),
    };
    assert_eq!(e.code(), "ERR_INVALID_CRON");
    assert_eq!(e.field(), Some("minute"));
    assert_eq!(Error::arg("x").field(), None);
  }
}
