//! Alert rules and the alerts they raise.
//!
//! A rule compares one metric (see [`Metric`]) over a window with a
//! threshold. [`Monitor::evaluate`](super::Monitor::evaluate) checks every rule:
//!
//! - breached, no active alert for the rule, and the rule's cooldown has
//!   passed since it last fired: a new alert fires (one [`AlertEvent`]);
//! - breached, in cooldown: nothing fires (the breach is not reported again
//!   until the cooldown ends, if it still holds then);
//! - breached, alert already active: the alert's `value`/`peakValue` are
//!   updated, nothing fires (one alert per breach);
//! - not breached (or no data: a rate over an empty window) with an active
//!   alert: the alert resolves itself (`resolution: "auto"`, `resolvedAt`).
//!
//! `resolve` ends an alert by hand (`resolution: "manual"`); if the breach
//! still holds, the rule fires again once its cooldown (counted from the
//! last firing) has passed. `acknowledge` records who and when, once.
//! Resolved alerts go to a bounded history (oldest dropped first).
//!
//! The default rules (ids below; removable like any other): the seed's
//! four from `performanceThresholds`, and `storageDegraded` (the storage's
//! state: fires when it stops being healthy, resolves when it recovers;
//! its message says why; no cooldown, one alert per outage), all with the
//! operator `>`:
//!
//! | id | metric | window | severity |
//! |---|---|---|---|
//! | `highErrorRate` | `errorRate` > `highErrorRatePercent` | 5 min | critical |
//! | `queueBacklog` | `queueLength` > `queueBacklogThreshold` | latest sample | warning |
//! | `slowJob` | `maxDurationMs` > `slowJobThresholdMs` | 1 min | warning |
//! | `highWorkerUtilization` | `workerUtilization` > `workerUtilizationThreshold` | 1 min mean | warning |
//! | `storageDegraded` | `storageHealth` > 0 (1 degraded, 2 unhealthy) | latest | critical |
//!
//! A window covers the slots from the one holding `now - window` to the
//! current one: per second for the whole queue (per minute past the
//! per-second retention), per minute for a calculation-scoped rule.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::{Map, Value};

use super::config::{self, describe, int, num, Mk, MonitorConfig};
use crate::error::{Error, Result};

/// Rules kept at most (defaults included).
pub const MAX_RULES: usize = 100;
/// Longest rule window (ms): one day.
const MAX_WINDOW_MS: u64 = 86_400_000;
/// Longest window of a calculation-scoped rule (ms): the per-calculation
/// history keeps one hour.
pub(crate) const MAX_CALC_WINDOW_MS: u64 = 3_600_000;

/// What a rule measures. Counts, rates and durations are over the rule's
/// window; gauges are the latest sample (`window: 0`) or the window's mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
  /// Failed + timed-out attempts over finished (completed, failed, timed
  /// out) attempts, in percent; no finished attempt: no value.
  ErrorRate,
  /// Timed-out over finished attempts, in percent.
  TimeoutRate,
  /// Failed attempts.
  FailedCount,
  /// Timed-out attempts.
  TimeoutCount,
  /// Completed attempts.
  CompletedCount,
  /// Finished attempts per second.
  Throughput,
  /// Mean execution time (ms).
  AvgDurationMs,
  /// Longest execution time (ms).
  MaxDurationMs,
  /// Mean wait from due to start (ms).
  AvgWaitMs,
  /// Pending jobs (gauge).
  QueueLength,
  /// Wait of the oldest pending job (gauge, ms; the window's largest).
  OldestWaitMs,
  /// Busy workers over `maxWorkers`, percent (gauge).
  WorkerUtilization,
  /// Busy workers (gauge).
  BusyWorkers,
  /// Idle workers (gauge).
  AvailableWorkers,
  /// The storage's state: 0 healthy, 1 degraded, 2 unhealthy (the latest,
  /// whatever the window).
  StorageHealth,
}

const METRICS: &[(&str, Metric)] = &[
  ("errorRate", Metric::ErrorRate),
  ("timeoutRate", Metric::TimeoutRate),
  ("failedCount", Metric::FailedCount),
  ("timeoutCount", Metric::TimeoutCount),
  ("completedCount", Metric::CompletedCount),
  ("throughput", Metric::Throughput),
  ("avgDurationMs", Metric::AvgDurationMs),
  ("maxDurationMs", Metric::MaxDurationMs),
  ("avgWaitMs", Metric::AvgWaitMs),
  ("queueLength", Metric::QueueLength),
  ("oldestWaitMs", Metric::OldestWaitMs),
  ("workerUtilization", Metric::WorkerUtilization),
  ("busyWorkers", Metric::BusyWorkers),
  ("availableWorkers", Metric::AvailableWorkers),
  ("storageHealth", Metric::StorageHealth),
];

impl Metric {
  /// The metric named `s`.
  pub fn parse(s: &str) -> Option<Metric> {
    METRICS.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
  }

  /// Its JSON name.
  pub fn as_str(self) -> &'static str {
    METRICS
      .iter()
      .find(|(_, m)| *m == self)
      .map_or("", |(n, _)| n)
  }

  /// A sampled gauge of the whole queue (not per calculation).
  pub fn is_gauge(self) -> bool {
    matches!(
      self,
      Metric::QueueLength
        | Metric::OldestWaitMs
        | Metric::WorkerUtilization
        | Metric::BusyWorkers
        | Metric::AvailableWorkers
        | Metric::StorageHealth
    )
  }
}

/// How a metric is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operator {
  /// `>` (also `gt`).
  #[serde(rename = ">")]
  Gt,
  /// `>=` (also `gte`).
  #[serde(rename = ">=")]
  Gte,
  /// `<` (also `lt`).
  #[serde(rename = "<")]
  Lt,
  /// `<=` (also `lte`).
  #[serde(rename = "<=")]
  Lte,
  /// `==` (also `eq`).
  #[serde(rename = "==")]
  Eq,
  /// `!=` (also `ne`).
  #[serde(rename = "!=")]
  Ne,
}

impl Operator {
  fn parse(s: &str) -> Option<Operator> {
    Some(match s {
      ">" | "gt" => Operator::Gt,
      ">=" | "gte" => Operator::Gte,
      "<" | "lt" => Operator::Lt,
      "<=" | "lte" => Operator::Lte,
      "==" | "===" | "eq" => Operator::Eq,
      "!=" | "!==" | "ne" => Operator::Ne,
      _ => return None,
    })
  }

  fn symbol(self) -> &'static str {
    match self {
      Operator::Gt => ">",
      Operator::Gte => ">=",
      Operator::Lt => "<",
      Operator::Lte => "<=",
      Operator::Eq => "==",
      Operator::Ne => "!=",
    }
  }

  /// Whether `v op threshold` holds.
  pub fn holds(self, v: f64, t: f64) -> bool {
    match self {
      Operator::Gt => v > t,
      Operator::Gte => v >= t,
      Operator::Lt => v < t,
      Operator::Lte => v <= t,
      Operator::Eq => v == t,
      Operator::Ne => v != t,
    }
  }

  /// The worse of two values for this comparison (for `peakValue`).
  fn worse(self, a: f64, b: f64) -> f64 {
    match self {
      Operator::Gt | Operator::Gte => a.max(b),
      Operator::Lt | Operator::Lte => a.min(b),
      Operator::Eq | Operator::Ne => b,
    }
  }
}

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
  /// For information.
  Info,
  /// Needs a look.
  Warning,
  /// Needs action.
  Critical,
}

impl Severity {
  fn parse(s: &str) -> Option<Severity> {
    match s {
      "info" => Some(Severity::Info),
      "warning" => Some(Severity::Warning),
      "critical" => Some(Severity::Critical),
      _ => None,
    }
  }

  /// Its JSON name.
  pub fn as_str(self) -> &'static str {
    match self {
      Severity::Info => "info",
      Severity::Warning => "warning",
      Severity::Critical => "critical",
    }
  }
}

/// Where an alert is sent (the sending is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
  /// The service's logger.
  Log,
  /// An HTTP POST.
  Webhook,
  /// An e-mail.
  Email,
}

impl Channel {
  /// The channel named `s`.
  pub fn parse(s: &str) -> Option<Channel> {
    match s {
      "log" => Some(Channel::Log),
      "webhook" => Some(Channel::Webhook),
      "email" => Some(Channel::Email),
      _ => None,
    }
  }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
  /// Unique among the rules.
  pub id: String,
  /// A human name (the id when none was given).
  pub name: String,
  pub metric: Metric,
  pub operator: Operator,
  pub threshold: f64,
  /// Window in ms (0: latest sample, gauges only).
  pub window: u64,
  pub severity: Severity,
  pub cooldown_ms: u64,
  pub channels: Vec<Channel>,
  /// Only this calculation's attempts (event metrics only).
  pub calculation: Option<String>,
  /// One of the seed's four default rules.
  pub builtin: bool,
}

/// The seed's four rules, from the thresholds.
pub(crate) fn default_rules(cfg: &MonitorConfig) -> Vec<Rule> {
  let t = &cfg.thresholds;
  let mk = |id: &str, name: &str, metric, threshold, window, severity| Rule {
    id: id.into(),
    name: name.into(),
    metric,
    operator: Operator::Gt,
    threshold,
    window,
    severity,
    cooldown_ms: cfg.cooldown_ms,
    channels: cfg.channels.clone(),
    calculation: None,
    builtin: true,
  };
  vec![
    mk(
      "highErrorRate",
      "High error rate",
      Metric::ErrorRate,
      t.error_rate_percent,
      300_000,
      Severity::Critical,
    ),
    mk(
      "queueBacklog",
      "Queue backlog",
      Metric::QueueLength,
      t.queue_backlog,
      0,
      Severity::Warning,
    ),
    mk(
      "slowJob",
      "Slow job",
      Metric::MaxDurationMs,
      t.slow_job_ms,
      60_000,
      Severity::Warning,
    ),
    mk(
      "highWorkerUtilization",
      "High worker utilization",
      Metric::WorkerUtilization,
      t.worker_utilization_percent,
      60_000,
      Severity::Warning,
    ),
    // A state, not a rate: one alert per outage, so no cooldown.
    Rule {
      cooldown_ms: 0,
      ..mk(
        "storageDegraded",
        "Storage degraded",
        Metric::StorageHealth,
        0.0,
        0,
        Severity::Critical,
      )
    },
  ]
}

const RULE_KEYS: &[&str] = &[
  "id",
  "name",
  "metric",
  "operator",
  "threshold",
  "window",
  "severity",
  "cooldownMs",
  "channels",
  "calculation",
];

/// A non-empty string of at most 200 characters.
fn text(v: &Value, field: &str, mk: Mk) -> Result<String> {
  match v.as_str() {
    Some(s) if !s.is_empty() && s.chars().count() <= 200 => Ok(s.to_string()),
    _ => Err(mk(format!(
      "{field} must be a non-empty string of at most 200 characters, got {}",
      describe(v)
    ))),
  }
}

/// Reads one rule; `field` prefixes messages (`rule`, `monitoring.alerting.rules[0]`).
/// A rule without `id` gets `default_id`.
pub(crate) fn parse_rule_with_id(
  v: &Value,
  field: &str,
  cfg: &MonitorConfig,
  default_id: String,
  mk: Mk,
) -> Result<Rule> {
  let Some(m) = config::object(Some(v), field, mk)? else {
    return Err(mk(format!("{field} must be an object, got null")));
  };
  config::known_keys(m, field, RULE_KEYS, mk)?;
  let get = |k: &str| m.get(k).filter(|v| !v.is_null());
  let id = match get("id") {
    Some(v) => text(v, &format!("{field}.id"), mk)?,
    None => default_id,
  };
  let name = match get("name") {
    Some(v) => text(v, &format!("{field}.name"), mk)?,
    None => id.clone(),
  };
  let metric = match get("metric") {
    Some(v) => v.as_str().and_then(Metric::parse).ok_or_else(|| {
      let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
      mk(format!(
        "{field}.metric must be one of {}, got {}",
        names.join(", "),
        describe(v)
      ))
    })?,
    None => return Err(mk(format!("{field}.metric is required"))),
  };
  let operator = match get("operator") {
    Some(v) => v.as_str().and_then(Operator::parse).ok_or_else(|| {
      mk(format!(
        "{field}.operator must be one of >, >=, <, <=, ==, != (or gt, gte, lt, lte, eq, ne), got {}",
        describe(v)
      ))
    })?,
    None => Operator::Gt,
  };
  let threshold = match m.get("threshold") {
    Some(v) => num(v, &format!("{field}.threshold"), -1e15, 1e15, mk)?,
    None => return Err(mk(format!("{field}.threshold is required"))),
  };
  let severity = match get("severity") {
    Some(v) => v.as_str().and_then(Severity::parse).ok_or_else(|| {
      mk(format!(
        "{field}.severity must be 'info', 'warning' or 'critical', got {}",
        describe(v)
      ))
    })?,
    None => Severity::Warning,
  };
  let cooldown_ms = match get("cooldownMs") {
    Some(v) => int(v, &format!("{field}.cooldownMs"), 0, 7 * MAX_WINDOW_MS, mk)?,
    None => cfg.cooldown_ms,
  };
  let channels = match get("channels") {
    Some(v) => config::channels(v, &format!("{field}.channels"), mk)?,
    None => cfg.channels.clone(),
  };
  let calculation = match get("calculation") {
    Some(v) => Some(text(v, &format!("{field}.calculation"), mk)?),
    None => None,
  };
  if calculation.is_some() && metric.is_gauge() {
    return Err(mk(format!(
      "{field}.calculation cannot scope '{}', a gauge of the whole queue",
      metric.as_str()
    )));
  }
  let (min_w, max_w) = match (metric.is_gauge(), calculation.is_some()) {
    (true, _) => (0, MAX_WINDOW_MS),
    (false, false) => (1_000, MAX_WINDOW_MS),
    (false, true) => (1_000, MAX_CALC_WINDOW_MS),
  };
  let window = match get("window") {
    Some(v) => int(v, &format!("{field}.window"), min_w, max_w, mk)?,
    None => 60_000,
  };
  Ok(Rule {
    id,
    name,
    metric,
    operator,
    threshold,
    window,
    severity,
    cooldown_ms,
    channels,
    calculation,
    builtin: false,
  })
}

/// [`parse_rule_with_id`] for a configured rule (ids default to `rule-N`).
pub(crate) fn parse_rule(v: &Value, field: &str, cfg: &MonitorConfig, mk: Mk) -> Result<Rule> {
  let n = cfg.rules.len() + 1;
  parse_rule_with_id(v, field, cfg, format!("rule-{n}"), mk)
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
  /// The breach holds (or has not been seen to end).
  Active,
  /// Ended.
  Resolved,
}

/// How an alert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Resolution {
  /// The metric recovered.
  Auto,
  /// `resolveAlert`.
  Manual,
  /// Its rule was removed.
  RuleRemoved,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
  pub id: String,
  pub rule_id: String,
  /// The rule's name.
  pub name: String,
  /// What a person reads first: the rule's name (`"High error rate"`).
  pub title: String,
  pub metric: Metric,
  pub operator: Operator,
  pub threshold: f64,
  pub window: u64,
  pub severity: Severity,
  pub calculation: Option<String>,
  pub channels: Vec<Channel>,
  /// What was measured, without the title (`"errorRate is 25 (> 10) over 300s"`).
  pub message: String,
  /// The metric when fired.
  pub value: f64,
  /// The metric at the last check while active.
  pub last_value: f64,
  /// The worst value while active.
  pub peak_value: f64,
  pub status: AlertStatus,
  pub fired_at: u64,
  pub acknowledged: bool,
  pub acknowledged_at: Option<u64>,
  pub acknowledged_by: Option<String>,
  pub resolved_at: Option<u64>,
  pub resolution: Option<Resolution>,
}

impl Alert {
  /// A new active alert of `rule` (its `seq`-th), measured `v` at `now`.
  fn active(rule: &Rule, seq: u64, v: f64, now: u64, message: String) -> Alert {
    Alert {
      id: format!("{}-{seq}", rule.id),
      rule_id: rule.id.clone(),
      name: rule.name.clone(),
      title: rule.name.clone(),
      metric: rule.metric,
      operator: rule.operator,
      threshold: rule.threshold,
      window: rule.window,
      severity: rule.severity,
      calculation: rule.calculation.clone(),
      channels: rule.channels.clone(),
      message,
      value: v,
      last_value: v,
      peak_value: v,
      status: AlertStatus::Active,
      fired_at: now,
      acknowledged: false,
      acknowledged_at: None,
      acknowledged_by: None,
      resolved_at: None,
      resolution: None,
    }
  }
}

/// What [`Monitor::evaluate`](super::Monitor::evaluate) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
  /// A new alert.
  Fired,
  /// An alert resolved itself.
  Resolved,
}

/// An alert that fired or resolved during one evaluation: to emit as an
/// event and, when fired, to send to its channels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
  #[serde(rename = "type")]
  pub kind: AlertEventKind,
  pub alert: Alert,
}

/// `getAlertHistory`'s filter: `{ ruleId, severity, calculation, status,
/// since, until, limit }`, all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFilter {
  pub rule_id: Option<String>,
  pub severity: Option<Severity>,
  pub calculation: Option<String>,
  pub status: Option<AlertStatus>,
  /// Fired at or after (epoch ms).
  pub since: Option<u64>,
  /// Fired at or before (epoch ms).
  pub until: Option<u64>,
  /// At most this many, newest first (default 100).
  pub limit: Option<usize>,
}

impl HistoryFilter {
  /// Reads a filter (`null`: everything). Errors are `ERR_INVALID_ARGUMENT`
  /// naming the key.
  pub fn from_json(v: &Value) -> Result<HistoryFilter> {
    let mk: Mk = Error::InvalidArgument;
    let empty = Map::new();
    let m = config::object(Some(v), "filter", mk)?.unwrap_or(&empty);
    config::known_keys(
      m,
      "filter",
      &[
        "ruleId",
        "severity",
        "calculation",
        "status",
        "since",
        "until",
        "limit",
      ],
      mk,
    )?;
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    let mut f = HistoryFilter::default();
    if let Some(v) = get("ruleId") {
      f.rule_id = Some(text(v, "filter.ruleId", mk)?);
    }
    if let Some(v) = get("calculation") {
      f.calculation = Some(text(v, "filter.calculation", mk)?);
    }
    if let Some(v) = get("severity") {
      f.severity = Some(v.as_str().and_then(Severity::parse).ok_or_else(|| {
        mk(format!(
          "filter.severity must be 'info', 'warning' or 'critical', got {}",
          describe(v)
        ))
      })?);
    }
    if let Some(v) = get("status") {
      f.status = Some(match v.as_str() {
        Some("active") => AlertStatus::Active,
        Some("resolved") => AlertStatus::Resolved,
        _ => {
          return Err(mk(format!(
            "filter.status must be 'active' or 'resolved', got {}",
            describe(v)
          )))
        }
      });
    }
    let ms = 253_402_300_799_999;
    if let Some(v) = get("since") {
      f.since = Some(int(v, "filter.since", 0, ms, mk)?);
    }
    if let Some(v) = get("until") {
      f.until = Some(int(v, "filter.until", 0, ms, mk)?);
    }
    if let Some(v) = get("limit") {
      f.limit = Some(int(v, "filter.limit", 1, 10_000, mk)? as usize);
    }
    Ok(f)
  }

  fn matches(&self, a: &Alert) -> bool {
    self.rule_id.as_ref().is_none_or(|r| *r == a.rule_id)
      && self.severity.is_none_or(|s| s == a.severity)
      && self
        .calculation
        .as_ref()
        .is_none_or(|c| a.calculation.as_ref() == Some(c))
      && self.status.is_none_or(|s| s == a.status)
      && self.since.is_none_or(|t| a.fired_at >= t)
      && self.until.is_none_or(|t| a.fired_at <= t)
  }
}

/// A rule and when it last fired.
#[derive(Debug, Clone)]
struct RuleState {
  rule: Rule,
  last_fired: Option<u64>,
}

/// The rules, the active alerts (at most one per rule) and the history.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
  rules: Vec<RuleState>,
  active: Vec<Alert>,
  history: VecDeque<Alert>,
  history_size: usize,
  seq: u64,
}

fn fmt_value(v: f64) -> String {
  if v.fract() == 0.0 && v.abs() < 1e15 {
    format!("{}", v as i64)
  } else {
    format!("{v:.2}")
  }
}

impl Alerts {
  /// The configured rules (the seed's four first, when enabled).
  pub(crate) fn new(cfg: &MonitorConfig) -> Alerts {
    let mut rules: Vec<RuleState> = Vec::new();
    if cfg.default_rules {
      rules.extend(default_rules(cfg).into_iter().map(|rule| RuleState {
        rule,
        last_fired: None,
      }));
    }
    for r in &cfg.rules {
      if rules.len() < MAX_RULES && !rules.iter().any(|s| s.rule.id == r.id) {
        rules.push(RuleState {
          rule: r.clone(),
          last_fired: None,
        });
      }
    }
    Alerts {
      rules,
      active: Vec::new(),
      history: VecDeque::new(),
      history_size: cfg.history_size.max(1),
      seq: 0,
    }
  }

  /// The rules, in the order added.
  pub fn rules(&self) -> impl Iterator<Item = &Rule> + '_ {
    self.rules.iter().map(|s| &s.rule)
  }

  /// Adds a rule; errors if its id is taken or `MAX_RULES` are kept.
  pub(crate) fn add(&mut self, rule: Rule) -> Result<String> {
    if self.rules.iter().any(|s| s.rule.id == rule.id) {
      return Err(Error::arg(format!(
        "rule.id '{}' is already used (remove that rule first)",
        rule.id
      )));
    }
    if self.rules.len() >= MAX_RULES {
      return Err(Error::arg(format!(
        "rule: at most {MAX_RULES} rules are kept"
      )));
    }
    let id = rule.id.clone();
    self.rules.push(RuleState {
      rule,
      last_fired: None,
    });
    Ok(id)
  }

  /// An id no rule uses yet.
  pub(crate) fn fresh_rule_id(&self) -> String {
    (self.rules.len() + 1..)
      .map(|n| format!("rule-{n}"))
      .find(|id| !self.rules.iter().any(|s| s.rule.id == *id))
      .unwrap_or_default()
  }

  /// Removes a rule; its active alert resolves (`ruleRemoved`).
  pub(crate) fn remove(&mut self, id: &str, now: u64) -> bool {
    let Some(i) = self.rules.iter().position(|s| s.rule.id == id) else {
      return false;
    };
    self.rules.remove(i);
    if let Some(a) = self.active.iter().position(|a| a.rule_id == id) {
      self.close(a, now, Resolution::RuleRemoved);
    }
    true
  }

  fn close(&mut self, i: usize, now: u64, how: Resolution) -> Alert {
    let mut a = self.active.remove(i);
    a.status = AlertStatus::Resolved;
    a.resolved_at = Some(now);
    a.resolution = Some(how);
    if self.history.len() >= self.history_size {
      self.history.pop_front();
    }
    self.history.push_back(a.clone());
    a
  }

  /// Checks every rule against `value_of(rule)` (the metric over its
  /// window; `None`: no data); see the module docs.
  pub(crate) fn evaluate(
    &mut self,
    now: u64,
    mut value_of: impl FnMut(&Rule) -> Option<f64>,
  ) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for r in 0..self.rules.len() {
      let rule = &self.rules[r].rule;
      let value = value_of(rule).filter(|v| v.is_finite());
      let breached = value.is_some_and(|v| rule.operator.holds(v, rule.threshold));
      let active = self.active.iter().position(|a| a.rule_id == rule.id);
      match (active, breached, value) {
        (Some(i), true, Some(v)) => {
          let a = &mut self.active[i];
          a.last_value = v;
          a.peak_value = a.operator.worse(a.peak_value, v);
        }
        (Some(i), false, _) => {
          if let Some(v) = value {
            self.active[i].last_value = v;
          }
          let alert = self.close(i, now, Resolution::Auto);
          events.push(AlertEvent {
            kind: AlertEventKind::Resolved,
            alert,
          });
        }
        (None, true, Some(v)) => {
          let st = &self.rules[r];
          let cooled = st
            .last_fired
            .is_none_or(|t| now.saturating_sub(t) >= st.rule.cooldown_ms);
          if cooled {
            self.seq += 1;
            let alert = self.fire(r, v, now);
            self.rules[r].last_fired = Some(now);
            self.active.push(alert.clone());
            events.push(AlertEvent {
              kind: AlertEventKind::Fired,
              alert,
            });
          }
        }
        _ => {}
      }
    }
    events
  }

  fn fire(&self, r: usize, v: f64, now: u64) -> Alert {
    let rule = &self.rules[r].rule;
    let scope = match &rule.calculation {
      Some(c) => format!(" for calculation '{c}'"),
      None => String::new(),
    };
    let over = if rule.window == 0 {
      String::new()
    } else {
      format!(" over {}s", fmt_value(rule.window as f64 / 1000.0))
    };
    let message = format!(
      "{} is {} ({} {}){over}{scope}",
      rule.metric.as_str(),
      fmt_value(v),
      rule.operator.symbol(),
      fmt_value(rule.threshold)
    );
    Alert::active(rule, self.seq, v, now, message)
  }

  /// A schedule's fire was skipped because the queue held `maxQueueSize`
  /// jobs: an alert (rule id `schedule-skipped:<schedule id>`, warning, log
  /// channel) unless one for that schedule is still active, which is updated
  /// instead. It resolves through `resolveAlert`. Returns the new alert.
  pub(crate) fn schedule_skipped(
    &mut self,
    schedule_id: &str,
    queued: usize,
    max: usize,
    now: u64,
  ) -> Option<Alert> {
    let rule_id = format!("schedule-skipped:{schedule_id}");
    let v = queued as f64;
    if let Some(a) = self.active.iter_mut().find(|a| a.rule_id == rule_id) {
      a.last_value = v;
      a.peak_value = a.peak_value.max(v);
      return None;
    }
    self.seq += 1;
    let rule = Rule {
      id: rule_id,
      name: "Schedule fire skipped".into(),
      metric: Metric::QueueLength,
      operator: Operator::Gte,
      threshold: max as f64,
      window: 0,
      severity: Severity::Warning,
      cooldown_ms: 0,
      channels: vec![Channel::Log],
      calculation: None,
      builtin: false,
    };
    let message = format!(
      "schedule '{schedule_id}' skipped a fire: the queue holds {queued} jobs (maxQueueSize {max})"
    );
    let alert = Alert::active(&rule, self.seq, v, now, message);
    self.active.push(alert.clone());
    Some(alert)
  }

  /// Replaces an active alert's message (the storage alert says why).
  pub(crate) fn set_message(&mut self, id: &str, message: &str) {
    if let Some(a) = self.active.iter_mut().find(|a| a.id == id) {
      a.message = message.to_string();
    }
  }

  /// Active alerts, oldest first.
  pub fn active(&self) -> &[Alert] {
    &self.active
  }

  /// Records who acknowledged an alert (active or in the history) and
  /// when; the first acknowledgement is kept. Unknown id: false.
  pub(crate) fn acknowledge(&mut self, id: &str, by: &str, now: u64) -> bool {
    let Some(a) = self
      .active
      .iter_mut()
      .chain(self.history.iter_mut())
      .find(|a| a.id == id)
    else {
      return false;
    };
    if !a.acknowledged {
      a.acknowledged = true;
      a.acknowledged_at = Some(now);
      a.acknowledged_by = Some(by.chars().take(200).collect());
    }
    true
  }

  /// Resolves an active alert by hand. Unknown or already resolved: false.
  pub(crate) fn resolve(&mut self, id: &str, now: u64) -> bool {
    match self.active.iter().position(|a| a.id == id) {
      Some(i) => {
        self.close(i, now, Resolution::Manual);
        true
      }
      None => false,
    }
  }

  /// Active and resolved alerts matching `f`, newest first.
  pub fn history(&self, f: &HistoryFilter) -> Vec<&Alert> {
    let mut out: Vec<&Alert> = self
      .active
      .iter()
      .chain(self.history.iter())
      .filter(|a| f.matches(a))
      .collect();
    out.sort_by(|a, b| b.fired_at.cmp(&a.fired_at).then_with(|| b.id.cmp(&a.id)));
    out.truncate(f.limit.unwrap_or(100));
    out
  }
}
