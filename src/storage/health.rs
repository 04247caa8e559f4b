//! How the storage is doing, as the fifth dimension of `getSystemHealth()`
//! (`storage`) and the `storageDegraded` alert.
//!
//! Memory is always healthy; SQLite is healthy until a write fails (then
//! unhealthy for good: the store refuses `add`). PostgreSQL is degraded
//! while its connection is down or a write is being retried (the backend
//! reconnects with backoff, see `postgres::conn`), and unhealthy once that
//! has lasted longer than its limit (30 s) or a write failed for good.

use serde::Serialize;

/// The storage's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageState {
  /// Writes go through.
  Healthy,
  /// Unreachable, or a write is being retried: jobs are buffered, nothing
  /// is lost yet.
  Degraded,
  /// Down for longer than the limit, or failed for good.
  Unhealthy,
}

impl StorageState {
  /// Its JSON name.
  pub fn as_str(self) -> &'static str {
    match self {
      StorageState::Healthy => "healthy",
      StorageState::Degraded => "degraded",
      StorageState::Unhealthy => "unhealthy",
    }
  }

  /// 0, 1, 2 (the alert metric `storageHealth` and Prometheus).
  pub fn as_number(self) -> u8 {
    self as u8
  }
}

/// The storage's state with why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageHealth {
  pub state: StorageState,
  /// How long it has not been healthy (ms).
  pub down_ms: Option<u64>,
  /// Why it is not healthy.
  pub message: Option<String>,
}

impl StorageHealth {
  /// All is well.
  pub fn healthy() -> StorageHealth {
    StorageHealth {
      state: StorageState::Healthy,
      down_ms: None,
      message: None,
    }
  }

  /// The default of a store: unhealthy once it failed (`failure`).
  pub fn of_failure(failure: Option<String>) -> StorageHealth {
    match failure {
      None => StorageHealth::healthy(),
      Some(m) => StorageHealth {
        state: StorageState::Unhealthy,
        down_ms: None,
        message: Some(m),
      },
    }
  }
}
