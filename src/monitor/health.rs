//! Health per dimension, rolled up to `healthy | warning | critical`.
//!
//! Every check compares one figure with a warning and a critical level and
//! is `warning` at or above the first, `critical` at or above the second; a
//! dimension is its worst check, the whole its worst dimension. A figure
//! with no data (no job finished in the window) is healthy. Levels, with
//! `t` the configured threshold:
//!
//! | dimension | check | figure | warning | critical |
//! |---|---|---|---|---|
//! | queue | `queueLength` | pending jobs, latest sample | `t` | `2t` |
//! | queue | `oldestWaitMs` | oldest pending job's wait, latest sample | `queueWaitThresholdMs` | `2t` |
//! | workers | `utilization` | busy / maxWorkers, mean of the last 60 s, % | `t` | `min(2t, (100+t)/2)` |
//! | workers | `availableWorkers` | idle workers, latest sample | none idle while jobs wait | `maxWorkers` is 0 while jobs wait |
//! | performance | `p95DurationMs` | p95 execution time, last 5 min | `slowJobThresholdMs` | `2t` |
//! | performance | `timeoutRate` | timed out / finished, last 5 min, % | `highErrorRatePercent` | `min(2t, (100+t)/2)` |
//! | errors | `errorRate` | (failed + timed out) / finished, last 5 min, % | `highErrorRatePercent` | `min(2t, (100+t)/2)` |
//! | storage | `storageHealth` | 0 healthy, 1 degraded, 2 unhealthy (the store's own word, `Store::health`) | degraded | unhealthy |
//!
//! Percentages use `min(2t, (100+t)/2)` so that the critical level stays
//! reachable (80 % utilization: critical at 90 %, 10 % errors: at 20 %).
//! The errors dimension also lists the recent error messages (figures only).

use serde::Serialize;

use crate::storage::StorageState;

/// A health level; ordered, so the worst is the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
  /// Below every warning level.
  Healthy,
  /// At or above a warning level.
  Warning,
  /// At or above a critical level.
  Critical,
}

impl Level {
  /// Its JSON name.
  pub fn as_str(self) -> &'static str {
    match self {
      Level::Healthy => "healthy",
      Level::Warning => "warning",
      Level::Critical => "critical",
    }
  }

  /// 0, 1, 2 (for Prometheus).
  pub fn as_number(self) -> u8 {
    self as u8
  }
}

/// One figure and the levels it was compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
  pub metric: &'static str,
  /// `None`: no data.
  pub value: Option<f64>,
  pub warning_at: Option<f64>,
  pub critical_at: Option<f64>,
  pub status: Level,
  /// The rule in words.
  pub rule: String,
}

/// Critical level of a percentage whose warning level is `t`.
pub(crate) fn percent_critical(t: f64) -> f64 {
  (2.0 * t).min((100.0 + t) / 2.0)
}

/// A check that is warning at `warn`, critical at `crit` (both inclusive).
pub(crate) fn check(metric: &'static str, value: Option<f64>, warn: f64, crit: f64) -> Check {
  let status = match value {
    Some(v) if v >= crit => Level::Critical,
    Some(v) if v >= warn => Level::Warning,
    _ => Level::Healthy,
  };
  Check {
    metric,
    value,
    warning_at: Some(warn),
    critical_at: Some(crit),
    status,
    rule: format!("warning at >= {warn}, critical at >= {crit}"),
  }
}

/// The idle-workers check from the latest sample.
pub(crate) fn availability(idle: Option<f64>, queued: u64, max_workers: u64) -> Check {
  let status = match idle {
    Some(_) if queued > 0 && max_workers == 0 => Level::Critical,
    Some(i) if queued > 0 && i < 1.0 => Level::Warning,
    _ => Level::Healthy,
  };
  Check {
    metric: "availableWorkers",
    value: idle,
    warning_at: None,
    critical_at: None,
    status,
    rule: "warning when no worker is idle while jobs wait, critical when maxWorkers is 0 while jobs wait"
      .into(),
  }
}

/// The storage check: degraded (PostgreSQL unreachable or a write being
/// retried) is a warning, unhealthy (down past its limit, or a write
/// failed for good) critical.
pub(crate) fn storage(s: &crate::storage::StorageHealth) -> Check {
  let status = match s.state {
    StorageState::Healthy => Level::Healthy,
    StorageState::Degraded => Level::Warning,
    StorageState::Unhealthy => Level::Critical,
  };
  Check {
    metric: "storageHealth",
    value: Some(f64::from(s.state.as_number())),
    warning_at: Some(1.0),
    critical_at: Some(2.0),
    status,
    rule: "warning when degraded (unreachable or retrying writes), critical when unhealthy (down past its limit or failed)".into(),
  }
}

/// One dimension: its checks and their worst level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dimension {
  pub status: Level,
  pub checks: Vec<Check>,
}

impl Dimension {
  /// The worst of `checks`.
  pub(crate) fn of(checks: Vec<Check>) -> Dimension {
    Dimension {
      status: checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Level::Healthy),
      checks,
    }
  }
}
