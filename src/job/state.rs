//! The job lifecycle: one enum of states and the one function that says
//! which transitions are legal.
//!
//! ```text
//! waiting --deps done--> pending --claimed--> running --ok--> completed
//!    |                     ^  |                  |--error, attempts left--> pending (runAt = now + backoff)
//!    |                     |  |                  |--error, none left / unrecoverable--> failed
//!    |                     |  |                  |--deadline--> timeout (or pending, if attempts left)
//!    +--dep failed--> failed  +--cancel--> cancelled <--cancel (signal fired)--+
//! retry: failed | timeout | cancelled --> pending (attempts reset)
//! ```

/// Where a job is in its life. The strings are the same in Rust, SQL and
/// TypeScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
  /// Waits for its dependencies.
  Waiting = 0,
  /// Queued: runs when due and a worker is free.
  Pending = 1,
  /// A handler is running it.
  Running = 2,
  /// Finished with a result.
  Completed = 3,
  /// Finished with an error and no attempts left.
  Failed = 4,
  /// Its last attempt ran past its timeout.
  Timeout = 5,
  /// Cancelled before it finished.
  Cancelled = 6,
}

impl Status {
  /// Every status, in `repr` order.
  pub const ALL: [Status; 7] = [
    Status::Waiting,
    Status::Pending,
    Status::Running,
    Status::Completed,
    Status::Failed,
    Status::Timeout,
    Status::Cancelled,
  ];

  /// The status's name.
  pub fn as_str(self) -> &'static str {
    match self {
      Status::Waiting => "waiting",
      Status::Pending => "pending",
      Status::Running => "running",
      Status::Completed => "completed",
      Status::Failed => "failed",
      Status::Timeout => "timeout",
      Status::Cancelled => "cancelled",
    }
  }

  /// Parses a status name.
  pub fn parse(s: &str) -> Option<Status> {
    Status::ALL.into_iter().find(|st| st.as_str() == s)
  }

  /// True once the job will not run again by itself.
  pub fn is_finished(self) -> bool {
    matches!(
      self,
      Status::Completed | Status::Failed | Status::Timeout | Status::Cancelled
    )
  }

  /// The next status after `t`, or `None` when `t` is illegal here.
  pub fn next(self, t: Transition) -> Option<Status> {
    use Status::*;
    use Transition::*;
    Some(match (self, t) {
      (Waiting, DependenciesDone) => Pending,
      (Waiting, DependencyFailed) => Failed,
      (Pending, Claim) => Running,
      (Running, Succeed) => Completed,
      (Running, FailRetry) | (Running, TimeoutRetry) | (Running, Interrupt) => Pending,
      (Running, FailFinal) => Failed,
      (Running, TimeoutFinal) => Timeout,
      (Waiting | Pending | Running, Cancel) => Cancelled,
      (Failed | Timeout | Cancelled, Retry) => Pending,
      (Failed | Timeout | Cancelled, RetryWaiting) => Waiting,
      _ => return None,
    })
  }
}

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
  /// All dependencies completed.
  DependenciesDone,
  /// A dependency failed, timed out or was cancelled.
  DependencyFailed,
  /// A worker took it.
  Claim,
  /// The handler returned.
  Succeed,
  /// The handler threw and attempts are left.
  FailRetry,
  /// The handler threw with no attempts left, or threw an unrecoverable error.
  FailFinal,
  /// The attempt passed its deadline and attempts are left.
  TimeoutRetry,
  /// The attempt passed its deadline with no attempts left.
  TimeoutFinal,
  /// The service stopped (or died) while it ran: it runs again later.
  Interrupt,
  /// `cancelJob`.
  Cancel,
  /// `retryJob`.
  Retry,
  /// `retryJob` of a job with dependencies: it waits for them again.
  RetryWaiting,
}

impl Transition {
  /// Every transition.
  pub const ALL: [Transition; 12] = [
    Transition::DependenciesDone,
    Transition::DependencyFailed,
    Transition::Claim,
    Transition::Succeed,
    Transition::FailRetry,
    Transition::FailFinal,
    Transition::TimeoutRetry,
    Transition::TimeoutFinal,
    Transition::Interrupt,
    Transition::Cancel,
    Transition::Retry,
    Transition::RetryWaiting,
  ];
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn names_round_trip() {
    for s in Status::ALL {
      assert_eq!(Status::parse(s.as_str()), Some(s));
    }
    assert_eq!(Status::parse("nope"), None);
  }

  #[test]
  fn finished_states_only_leave_by_retry() {
    for s in Status::ALL.into_iter().filter(|s| s.is_finished()) {
      for t in Transition::ALL {
        let n = s.next(t);
        if t == Transition::Retry && s != Status::Completed {
          assert_eq!(n, Some(Status::Pending));
        } else if t == Transition::RetryWaiting && s != Status::Completed {
          assert_eq!(n, Some(Status::Waiting));
        } else {
          assert_eq!(n, None, "{s:?} {t:?}");
        }
      }
    }
  }

  #[test]
  fn running_is_reached_only_by_claim() {
    for s in Status::ALL {
      for t in Transition::ALL {
        if s.next(t) == Some(Status::Running) {
          assert_eq!((s, t), (Status::Pending, Transition::Claim));
        }
      }
    }
  }
}
