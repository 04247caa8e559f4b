//! The monitor's configuration (the seed's `monitoring` section) and the
//! small JSON readers the rule parser shares.
//!
//! ```text
//! monitoring: {
//!   enabled: true,
//!   performanceThresholds: {
//!     slowJobThresholdMs: 5000, highErrorRatePercent: 10,
//!     queueBacklogThreshold: 50, workerUtilizationThreshold: 80,
//!     queueWaitThresholdMs: 60000,            // ours: oldest pending job's wait
//!   },
//!   alerting: {
//!     enabled: true, defaultRules: true, channels: ['log'],
//!     cooldownMs: 300000, historySize: 500, rules: [ /* custom rules */ ],
//!   },
//!   retention: { seconds: 300, minutes: 1440 },
//! }
//! ```

use serde_json::{Map, Value};

use super::alert::{parse_rule, Channel, Rule};
use crate::error::{Error, Result};

/// Builds an error of the right kind from a message.
pub(crate) type Mk = fn(String) -> Error;

/// Health and default-alert thresholds (warning level; see the module docs
/// for the critical level).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
  /// `slowJobThresholdMs`: execution time (ms).
  pub slow_job_ms: f64,
  /// `highErrorRatePercent`: failed + timed-out attempts, in percent.
  pub error_rate_percent: f64,
  /// `queueBacklogThreshold`: pending jobs.
  pub queue_backlog: f64,
  /// `workerUtilizationThreshold`: busy workers over `maxWorkers`, percent.
  pub worker_utilization_percent: f64,
  /// `queueWaitThresholdMs`: wait of the oldest pending job (ms).
  pub queue_wait_ms: f64,
}

impl Default for Thresholds {
  fn default() -> Self {
    Thresholds {
      slow_job_ms: 5_000.0,
      error_rate_percent: 10.0,
      queue_backlog: 50.0,
      worker_utilization_percent: 80.0,
      queue_wait_ms: 60_000.0,
    }
  }
}

/// Everything the monitor reads from `monitoring`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
  /// `enabled`: whether the service records metrics at all (the monitor
  /// itself does not check it; the caller skips calls when it is false).
  pub enabled: bool,
  /// `healthCheckInterval` (ms, default 30000): how often alert rules are
  /// evaluated (and, with a manual clock, how often the queue is sampled).
  pub health_check_interval_ms: u64,
  /// `performanceThresholds`.
  pub thresholds: Thresholds,
  /// `alerting.enabled`: when false, [`super::Monitor::evaluate`] fires nothing.
  pub alerting_enabled: bool,
  /// `alerting.defaultRules`: install the seed's four rules.
  pub default_rules: bool,
  /// `alerting.channels`: channels of rules that name none.
  pub channels: Vec<Channel>,
  /// `alerting.cooldownMs`: cooldown of rules that set none.
  pub cooldown_ms: u64,
  /// `alerting.historySize`: resolved alerts kept.
  pub history_size: usize,
  /// `alerting.rules`: custom rules installed at start.
  pub rules: Vec<Rule>,
  /// `retention.seconds`: per-second points kept.
  pub seconds_retained: usize,
  /// `retention.minutes`: per-minute points kept.
  pub minutes_retained: usize,
}

impl Default for MonitorConfig {
  fn default() -> Self {
    MonitorConfig {
      enabled: true,
      health_check_interval_ms: 30_000,
      thresholds: Thresholds::default(),
      alerting_enabled: true,
      default_rules: true,
      channels: vec![Channel::Log],
      cooldown_ms: 300_000,
      history_size: 500,
      rules: Vec::new(),
      seconds_retained: 300,
      minutes_retained: 1440,
    }
  }
}

// The same readers as the queue's options, so messages read alike.
pub(crate) use crate::queue::options::{describe, known_keys, num, object};

/// A number above 0 and at most `max`.
fn positive(v: &Value, field: &str, max: f64, mk: Mk) -> Result<f64> {
  match v.as_f64() {
    Some(f) if f.is_finite() && f > 0.0 && f <= max => Ok(f),
    _ => Err(mk(format!(
      "{field} must be a number above 0 and at most {max}, got {}",
      describe(v)
    ))),
  }
}

/// An integer in `min..=max`.
pub(crate) fn int(v: &Value, field: &str, min: u64, max: u64, mk: Mk) -> Result<u64> {
  match v.as_f64() {
    Some(f) if f.fract() == 0.0 && f >= min as f64 && f <= max as f64 => Ok(f as u64),
    _ => Err(mk(format!(
      "{field} must be an integer from {min} to {max}, got {}",
      describe(v)
    ))),
  }
}

/// `true` or `false`.
pub(crate) fn boolean(v: &Value, field: &str, mk: Mk) -> Result<bool> {
  v.as_bool().ok_or_else(|| {
    mk(format!(
      "{field} must be true or false, got {}",
      describe(v)
    ))
  })
}

/// A list of channel names.
pub(crate) fn channels(v: &Value, field: &str, mk: Mk) -> Result<Vec<Channel>> {
  let Some(a) = v.as_array() else {
    return Err(mk(format!(
      "{field} must be an array of 'log', 'webhook', 'email', got {}",
      describe(v)
    )));
  };
  let mut out = Vec::with_capacity(a.len());
  for (i, c) in a.iter().enumerate() {
    let ch = c.as_str().and_then(Channel::parse).ok_or_else(|| {
      mk(format!(
        "{field}[{i}] must be 'log', 'webhook' or 'email', got {}",
        describe(c)
      ))
    })?;
    if !out.contains(&ch) {
      out.push(ch);
    }
  }
  Ok(out)
}

/// A present, non-null key.
fn get<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
  m.get(k).filter(|v| !v.is_null())
}

impl MonitorConfig {
  /// Reads the `monitoring` section (`null` or absent: all defaults). Errors
  /// are `ERR_INVALID_CONFIG` naming the key (`monitoring.alerting.rules[2].metric`).
  pub fn from_json(v: Option<&Value>) -> Result<MonitorConfig> {
    let mk: Mk = Error::InvalidConfig;
    let mut c = MonitorConfig::default();
    let Some(m) = object(v, "monitoring", mk)? else {
      return Ok(c);
    };
    known_keys(
      m,
      "monitoring",
      &[
        "enabled",
        "healthCheckInterval",
        "performanceThresholds",
        "alerting",
        "retention",
      ],
      mk,
    )?;
    if let Some(e) = get(m, "enabled") {
      c.enabled = boolean(e, "monitoring.enabled", mk)?;
    }
    if let Some(h) = get(m, "healthCheckInterval") {
      c.health_check_interval_ms = crate::queue::options::int(
        h,
        "monitoring.healthCheckInterval",
        100,
        i32::MAX as i64,
        mk,
      )? as u64;
    }
    if let Some(t) = object(
      m.get("performanceThresholds"),
      "monitoring.performanceThresholds",
      mk,
    )? {
      let f = "monitoring.performanceThresholds";
      known_keys(
        t,
        f,
        &[
          "slowJobThresholdMs",
          "highErrorRatePercent",
          "queueBacklogThreshold",
          "workerUtilizationThreshold",
          "queueWaitThresholdMs",
        ],
        mk,
      )?;
      let th = &mut c.thresholds;
      if let Some(v) = get(t, "slowJobThresholdMs") {
        th.slow_job_ms = positive(v, &format!("{f}.slowJobThresholdMs"), 86_400_000.0, mk)?;
      }
      if let Some(v) = get(t, "highErrorRatePercent") {
        th.error_rate_percent = positive(v, &format!("{f}.highErrorRatePercent"), 100.0, mk)?;
      }
      if let Some(v) = get(t, "queueBacklogThreshold") {
        th.queue_backlog = int(v, &format!("{f}.queueBacklogThreshold"), 1, 1 << 40, mk)? as f64;
      }
      if let Some(v) = get(t, "workerUtilizationThreshold") {
        th.worker_utilization_percent =
          positive(v, &format!("{f}.workerUtilizationThreshold"), 100.0, mk)?;
      }
      if let Some(v) = get(t, "queueWaitThresholdMs") {
        th.queue_wait_ms = positive(v, &format!("{f}.queueWaitThresholdMs"), 86_400_000.0, mk)?;
      }
    }
    if let Some(r) = object(m.get("retention"), "monitoring.retention", mk)? {
      known_keys(r, "monitoring.retention", &["seconds", "minutes"], mk)?;
      if let Some(v) = get(r, "seconds") {
        c.seconds_retained = int(v, "monitoring.retention.seconds", 60, 3_600, mk)? as usize;
      }
      if let Some(v) = get(r, "minutes") {
        c.minutes_retained = int(v, "monitoring.retention.minutes", 60, 10_080, mk)? as usize;
      }
    }
    if let Some(a) = object(m.get("alerting"), "monitoring.alerting", mk)? {
      let f = "monitoring.alerting";
      known_keys(
        a,
        f,
        &[
          "enabled",
          "defaultRules",
          "channels",
          "cooldownMs",
          "historySize",
          "rules",
          "webhook",
          "email",
        ],
        mk,
      )?;
      if let Some(v) = get(a, "enabled") {
        c.alerting_enabled = boolean(v, &format!("{f}.enabled"), mk)?;
      }
      if let Some(v) = get(a, "defaultRules") {
        c.default_rules = boolean(v, &format!("{f}.defaultRules"), mk)?;
      }
      if let Some(v) = get(a, "channels") {
        c.channels = channels(v, &format!("{f}.channels"), mk)?;
      }
      if let Some(v) = get(a, "cooldownMs") {
        c.cooldown_ms = int(v, &format!("{f}.cooldownMs"), 0, 7 * 86_400_000, mk)?;
      }
      if let Some(v) = get(a, "historySize") {
        c.history_size = int(v, &format!("{f}.historySize"), 1, 10_000, mk)? as usize;
      }
      if let Some(v) = get(a, "rules") {
        let Some(list) = v.as_array() else {
          return Err(mk(format!(
            "{f}.rules must be an array, got {}",
            describe(v)
          )));
        };
        for (i, r) in list.iter().enumerate() {
          let rule = parse_rule(r, &format!("{f}.rules[{i}]"), &c, mk)?;
          if c.rules.iter().any(|x| x.id == rule.id) {
            return Err(mk(format!("{f}.rules[{i}].id '{}' is used twice", rule.id)));
          }
          c.rules.push(rule);
        }
      }
    }
    Ok(c)
  }
}
