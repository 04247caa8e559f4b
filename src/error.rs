//! The crate's error type. Every variant maps to a stable `code` string that
//! JavaScript sees as `err.code`.

use std::fmt;

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
  /// The operation needs a started service.
  NotStarted,
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
  /// `dependsOn` would make a cycle.
  DependencyCycle(String),
  /// A storage backend failed.
  Storage(String),
}

impl Error {
  /// The stable code JavaScript sees as `err.code`.
  pub fn code(&self) -> &'static str {
    match self {
      Error::InvalidArgument(_) => "ERR_INVALID_ARGUMENT",
      Error::InvalidConfig(_) => "ERR_INVALID_CONFIG",
      Error::QueueFull { .. } => "ERR_QUEUE_FULL",
      Error::NotStarted => "ERR_NOT_STARTED",
      Error::Stopped => "ERR_STOPPED",
      Error::NotSerializable(_) => "ERR_NOT_SERIALIZABLE",
      Error::PayloadTooLarge { .. } => "ERR_PAYLOAD_TOO_LARGE",
      Error::InvalidCron { .. } => "ERR_INVALID_CRON",
      Error::InvalidSchedule(_) => "ERR_INVALID_SCHEDULE",
      Error::DependencyNotFound(_) => "ERR_DEPENDENCY_NOT_FOUND",
      Error::DependencyCycle(_) => "ERR_DEPENDENCY_CYCLE",
      Error::Storage(_) => "ERR_STORAGE",
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
      Error::NotStarted => write!(f, "the service is not started: call start() first"),
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
      Error::DependencyCycle(m) => write!(f, "dependency cycle: {m}"),
      Error::Storage(m) => write!(f, "storage error: {m}"),
    }
  }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
