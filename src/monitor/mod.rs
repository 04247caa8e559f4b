//! The monitor: per-calculation statistics, queue and worker time series,
//! health, alert rules and Prometheus text, as plain data driven by the
//! caller. No I/O, no threads, no clock: every method takes `now` (epoch ms).
//!
//! The caller (the queue's engine) does three things:
//!
//! - [`Monitor::record_outcome`] once per finished attempt (completed,
//!   failed, timed out, cancelled) with its wait and run times: O(1), a few
//!   counter and bucket increments, no allocation except the first time a
//!   calculation name is seen;
//! - [`Monitor::sample`] about once a second with the queue length, the
//!   oldest pending job's wait and the busy and maximum workers;
//! - [`Monitor::evaluate`] after sampling, emitting the returned
//!   [`AlertEvent`]s and sending fired ones to their channels;
//! - [`Monitor::set_storage`] with the storage's state (the health's
//!   `storage` dimension and the `storageDegraded` alert), at each sample
//!   and before each health read, evaluating at once when it changed.
//!
//! Everything is fixed-size (see [`Monitor`] for the bounds): log-scale
//! `histogram`s (0.1 ms to ~1 h, percentiles within 4.9 %), rings of time
//! slots ([`series`]), a bounded alert history ([`alert`]). Health rules are
//! in [`health`], alert rules in [`alert`], the exposition in [`prometheus`].
//!
//! Per calculation, durations (min/max/avg/p50/p95/p99) count completed,
//! failed and timed-out attempts (a timed-out attempt's duration is its run
//! time until the deadline); cancelled attempts are counted but have no
//! duration or wait. The success rate is completed over completed + failed +
//! timed out. The trend compares the mean duration of the last 5 minutes
//! with that of the 55 before: `slower` at >= 1.2x, `faster` at <= 1/1.2x,
//! else `stable`; `unknown` with fewer than 5 runs on either side.

pub mod alert;
pub mod channels;
pub mod config;
pub mod health;
mod histogram;
pub mod prometheus;
pub mod series;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

pub use alert::{
  Alert, AlertEvent, AlertEventKind, AlertStatus, Channel, HistoryFilter, Metric, Operator,
  Resolution, Rule, Severity,
};
pub use config::{MonitorConfig, Thresholds};
pub use health::{Check, Dimension, Level};
pub use prometheus::Gauge;

use crate::error::{Error, Result};
use crate::storage::{StorageHealth, StorageState};
use alert::Alerts;
use histogram::Histogram;
use series::{RecentHistograms, Ring, Slot};

/// Calculations tracked by name; attempts of further names are counted
/// under [`OTHER`].
pub const MAX_CALCULATIONS: usize = 1_000;
/// The name that collects calculations beyond [`MAX_CALCULATIONS`].
pub const OTHER: &str = "(other)";
/// Recent error messages kept.
const RECENT_ERRORS: usize = 20;
/// Longest error message kept (characters).
const ERROR_CHARS: usize = 500;
/// Minutes of per-calculation history (trend, calculation-scoped rules).
const CALC_MINUTES: usize = 60;
/// Minutes behind the recent percentiles and rates of the health check.
const RECENT_MINUTES: usize = 5;
/// Runs needed on each side of the trend comparison.
const TREND_MIN_RUNS: u32 = 5;
/// Ratio of recent to baseline mean duration that counts as a trend.
const TREND_RATIO: f64 = 1.2;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
  /// The handler returned.
  Completed,
  /// The handler threw (whether or not a retry follows).
  Failed,
  /// The attempt passed its deadline.
  TimedOut,
  /// `cancelJob` (or a stop) ended it.
  Cancelled,
}

impl Outcome {
  /// The job status string (`completed`, `failed`, `timeout`, `cancelled`).
  pub fn as_str(self) -> &'static str {
    match self {
      Outcome::Completed => "completed",
      Outcome::Failed => "failed",
      Outcome::TimedOut => "timeout",
      Outcome::Cancelled => "cancelled",
    }
  }

  /// All outcomes, in exposition order.
  pub const ALL: [Outcome; 4] = [
    Outcome::Completed,
    Outcome::Failed,
    Outcome::TimedOut,
    Outcome::Cancelled,
  ];
}

/// One sample of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
  pub at: u64,
  pub queued: u64,
  pub oldest_wait_ms: u64,
  pub busy: u64,
  pub max_workers: u64,
}

/// A recent error message.
#[derive(Debug, Clone, PartialEq)]
struct RecentError {
  at: u64,
  calculation: String,
  outcome: Outcome,
  message: String,
}

/// Everything kept about one calculation: about 7 KiB, fixed.
#[derive(Debug, Clone)]
pub(crate) struct CalcStats {
  pub(crate) name: String,
  /// Attempts by outcome, in [`Outcome::ALL`] order.
  pub(crate) outcomes: [u64; 4],
  pub(crate) run: Histogram,
  pub(crate) wait: Histogram,
  /// Durations per Prometheus bucket (not cumulative; the last is +Inf).
  pub(crate) prom: [u64; prometheus::BUCKETS_MS.len() + 1],
  pub(crate) last_run_at: Option<u64>,
  pub(crate) last_outcome: Option<Outcome>,
  /// One slot per minute, the last hour.
  pub(crate) minutes: Ring,
}

impl CalcStats {
  fn new(name: &str) -> CalcStats {
    CalcStats {
      name: name.to_string(),
      outcomes: [0; 4],
      run: Histogram::default(),
      wait: Histogram::default(),
      prom: [0; prometheus::BUCKETS_MS.len() + 1],
      last_run_at: None,
      last_outcome: None,
      minutes: Ring::new(60_000, CALC_MINUTES),
    }
  }

  /// `rb`, `wb`: the histogram buckets of `run_ms` and `wait_ms`.
  fn record(
    &mut self,
    outcome: Outcome,
    wait_ms: u64,
    run_ms: u64,
    now: u64,
    rb: usize,
    wb: usize,
  ) {
    self.outcomes[outcome as usize] += 1;
    self.last_run_at = Some(now);
    self.last_outcome = Some(outcome);
    add_outcome(self.minutes.at(now), outcome, wait_ms, run_ms);
    if outcome != Outcome::Cancelled {
      self.run.record_in(rb, run_ms as f64);
      self.wait.record_in(wb, wait_ms as f64);
      let b = prometheus::BUCKETS_MS
        .iter()
        .position(|&le| run_ms <= le)
        .unwrap_or(prometheus::BUCKETS_MS.len());
      self.prom[b] += 1;
    }
  }

  fn count(&self) -> u64 {
    self.outcomes.iter().sum()
  }

  fn success_rate(&self) -> Option<f64> {
    let [c, f, t, _] = self.outcomes;
    let n = c + f + t;
    (n > 0).then(|| c as f64 * 100.0 / n as f64)
  }

  fn trend(&self, now: u64) -> Value {
    let recent = self
      .minutes
      .window(now, (RECENT_MINUTES as u64 - 1) * 60_000);
    let all = self.minutes.window(now, (CALC_MINUTES as u64 - 1) * 60_000);
    let base_runs = all.runs - recent.runs;
    let recent_avg = recent.avg_run_ms();
    let base_avg =
      (base_runs > 0).then(|| (all.run_ms_sum - recent.run_ms_sum) as f64 / f64::from(base_runs));
    let (direction, change) = match (recent_avg, base_avg) {
      (Some(r), Some(b)) if recent.runs >= TREND_MIN_RUNS && base_runs >= TREND_MIN_RUNS => {
        let ratio = if b > 0.0 {
          r / b
        } else if r > 0.0 {
          f64::INFINITY
        } else {
          1.0
        };
        let d = if ratio >= TREND_RATIO {
          "slower"
        } else if ratio <= 1.0 / TREND_RATIO {
          "faster"
        } else {
          "stable"
        };
        (d, (b > 0.0).then(|| (r - b) * 100.0 / b))
      }
      _ => ("unknown", None),
    };
    json!({
      "direction": direction,
      "recentAvgMs": recent_avg,
      "baselineAvgMs": base_avg,
      "changePercent": change,
      "recentRuns": recent.runs,
      "baselineRuns": base_runs,
    })
  }

  fn json(&self, now: u64) -> Value {
    let [completed, failed, timed_out, cancelled] = self.outcomes;
    let r = &self.run;
    json!({
      "count": self.count(),
      "completed": completed,
      "failed": failed,
      "timedOut": timed_out,
      "cancelled": cancelled,
      "successRate": self.success_rate(),
      "durationMs": {
        "count": r.count(), "min": r.min(), "max": r.max(), "avg": r.avg(),
        "p50": r.percentile(50.0), "p95": r.percentile(95.0), "p99": r.percentile(99.0),
      },
      "waitMs": { "avg": self.wait.avg(), "p95": self.wait.percentile(95.0) },
      "lastRunAt": self.last_run_at,
      "lastOutcome": self.last_outcome.map(Outcome::as_str),
      "trend": self.trend(now),
    })
  }
}

fn add_outcome(s: &mut Slot, outcome: Outcome, wait_ms: u64, run_ms: u64) {
  match outcome {
    Outcome::Completed => s.completed += 1,
    Outcome::Failed => s.failed += 1,
    Outcome::TimedOut => s.timed_out += 1,
    Outcome::Cancelled => {
      s.cancelled += 1;
      return;
    }
  }
  s.runs += 1;
  s.run_ms_sum += run_ms;
  s.run_ms_max = s.run_ms_max.max(run_ms);
  s.wait_ms_sum += wait_ms;
}

fn add_sample(s: &mut Slot, x: &Sample) {
  s.samples += 1;
  s.queued_sum += x.queued;
  s.queued_max = s.queued_max.max(x.queued);
  s.oldest_wait_max = s.oldest_wait_max.max(x.oldest_wait_ms);
  s.busy_sum += x.busy.min(x.max_workers);
  s.capacity_sum += x.max_workers;
}

/// The monitor of one service.
///
/// Memory is fixed by the configuration: about 100 bytes per retained
/// second and minute (300 + 1440 by default: ~170 KiB), ~7 KiB per
/// calculation (at most [`MAX_CALCULATIONS`] + 1), ~9 KiB of recent
/// histograms, at most [`alert::MAX_RULES`] rules and alerts, and
/// `historySize` resolved alerts.
#[derive(Debug, Clone)]
pub struct Monitor {
  cfg: MonitorConfig,
  started_at: u64,
  names: HashMap<String, usize>,
  calcs: Vec<CalcStats>,
  total: CalcStats,
  seconds: Ring,
  minutes: Ring,
  recent: RecentHistograms,
  last: Option<Sample>,
  errors: VecDeque<RecentError>,
  alerts: Alerts,
  /// The storage's state as last told ([`Monitor::set_storage`]).
  storage: StorageHealth,
  /// Its state when the rules were last evaluated.
  storage_evaluated: StorageState,
}

/// Rounds for JSON (3 decimals), keeping `None` as `null`.
fn r3(v: Option<f64>) -> Option<f64> {
  v.map(|x| (x * 1000.0).round() / 1000.0)
}

impl Monitor {
  /// A monitor with the configured rules (and the seed's four, unless
  /// `alerting.defaultRules` is false), counting from `now`.
  pub fn new(cfg: MonitorConfig, now: u64) -> Monitor {
    Monitor {
      started_at: now,
      names: HashMap::new(),
      calcs: Vec::new(),
      total: CalcStats::new(""),
      seconds: Ring::new(1_000, cfg.seconds_retained),
      minutes: Ring::new(60_000, cfg.minutes_retained),
      recent: RecentHistograms::new(RECENT_MINUTES),
      last: None,
      errors: VecDeque::with_capacity(RECENT_ERRORS),
      alerts: Alerts::new(&cfg),
      storage: StorageHealth::healthy(),
      storage_evaluated: StorageState::Healthy,
      cfg,
    }
  }

  /// The configuration.
  pub fn config(&self) -> &MonitorConfig {
    &self.cfg
  }

  fn calc_index(&mut self, name: &str) -> usize {
    if let Some(&i) = self.names.get(name) {
      return i;
    }
    let key = if self.calcs.len() < MAX_CALCULATIONS {
      name
    } else {
      OTHER
    };
    if let Some(&i) = self.names.get(key) {
      return i;
    }
    self.calcs.push(CalcStats::new(key));
    let i = self.calcs.len() - 1;
    self.names.insert(key.to_string(), i);
    i
  }

  /// Counts one finished attempt of calculation `calc`: waited `wait_ms`
  /// from due to start, ran `run_ms`; `error` is the message of a failed or
  /// timed-out attempt (kept among the recent errors). O(1).
  pub fn record_outcome(
    &mut self,
    calc: &str,
    outcome: Outcome,
    wait_ms: u64,
    run_ms: u64,
    now: u64,
    error: Option<&str>,
  ) {
    let i = self.calc_index(calc);
    let (rb, wb) = if outcome == Outcome::Cancelled {
      (0, 0)
    } else {
      (
        histogram::bucket(run_ms as f64),
        histogram::bucket(wait_ms as f64),
      )
    };
    self.calcs[i].record(outcome, wait_ms, run_ms, now, rb, wb);
    self.total.record(outcome, wait_ms, run_ms, now, rb, wb);
    add_outcome(self.seconds.at(now), outcome, wait_ms, run_ms);
    add_outcome(self.minutes.at(now), outcome, wait_ms, run_ms);
    if outcome != Outcome::Cancelled {
      self.recent.record_in(now, rb, run_ms as f64);
    }
    if let (Some(msg), Outcome::Failed | Outcome::TimedOut) = (error, outcome) {
      if self.errors.len() >= RECENT_ERRORS {
        self.errors.pop_front();
      }
      self.errors.push_back(RecentError {
        at: now,
        calculation: self.calcs[i].name.clone(),
        outcome,
        message: msg.chars().take(ERROR_CHARS).collect(),
      });
    }
  }

  /// Records one sample of the queue (call about once a second).
  pub fn sample(
    &mut self,
    now: u64,
    queued: usize,
    oldest_wait_ms: u64,
    busy: usize,
    max_workers: usize,
  ) {
    let s = Sample {
      at: now,
      queued: queued as u64,
      oldest_wait_ms,
      busy: busy as u64,
      max_workers: max_workers as u64,
    };
    add_sample(self.seconds.at(now), &s);
    add_sample(self.minutes.at(now), &s);
    self.last = Some(s);
  }

  /// Records the storage's state (the `storage` dimension and the
  /// `storageHealth` metric). True when its state differs from the one
  /// the rules last saw (the caller then evaluates them at once, so the
  /// storage alert does not wait for the next health check).
  pub fn set_storage(&mut self, h: StorageHealth) -> bool {
    self.storage = h;
    self.storage.state != self.storage_evaluated
  }

  /// The storage's state as last told.
  pub fn storage(&self) -> &StorageHealth {
    &self.storage
  }

  /// The latest sample.
  pub fn last_sample(&self) -> Option<Sample> {
    self.last
  }

  /// The whole queue's slots over `window_ms` (per-second ring when it
  /// covers the window, else per-minute).
  fn global_window(&self, now: u64, window_ms: u64) -> Slot {
    if window_ms < self.seconds.len() as u64 * self.seconds.slot_ms() {
      self.seconds.window(now, window_ms)
    } else {
      self.minutes.window(now, window_ms)
    }
  }

  /// A rule's metric now; `None` when there is no data.
  fn metric_value(&self, rule: &Rule, now: u64) -> Option<f64> {
    let m = rule.metric;
    if m == Metric::StorageHealth {
      // A state, not a sampled figure: the latest, whatever the window.
      return Some(f64::from(self.storage.state.as_number()));
    }
    if m.is_gauge() && rule.window == 0 {
      let s = self.last?;
      return Some(match m {
        Metric::QueueLength => s.queued as f64,
        Metric::OldestWaitMs => s.oldest_wait_ms as f64,
        Metric::WorkerUtilization => {
          if s.max_workers == 0 {
            return None;
          }
          s.busy.min(s.max_workers) as f64 * 100.0 / s.max_workers as f64
        }
        Metric::BusyWorkers => s.busy as f64,
        _ => s.max_workers.saturating_sub(s.busy) as f64,
      });
    }
    let slot = match &rule.calculation {
      Some(c) => self.calcs[*self.names.get(c.as_str())?]
        .minutes
        .window(now, rule.window),
      None => self.global_window(now, rule.window),
    };
    match m {
      Metric::ErrorRate => slot.error_rate(),
      Metric::TimeoutRate => slot.timeout_rate(),
      Metric::FailedCount => Some(f64::from(slot.failed)),
      Metric::TimeoutCount => Some(f64::from(slot.timed_out)),
      Metric::CompletedCount => Some(f64::from(slot.completed)),
      Metric::Throughput => Some(f64::from(slot.finished()) * 1000.0 / rule.window.max(1) as f64),
      Metric::AvgDurationMs => slot.avg_run_ms(),
      Metric::MaxDurationMs => slot.max_run_ms(),
      Metric::AvgWaitMs => slot.avg_wait_ms(),
      Metric::QueueLength => slot.avg_queued(),
      Metric::OldestWaitMs => (slot.samples > 0).then_some(slot.oldest_wait_max as f64),
      Metric::WorkerUtilization => slot.utilization(),
      Metric::BusyWorkers => slot.avg_busy(),
      Metric::AvailableWorkers => slot.avg_available(),
      Metric::StorageHealth => Some(f64::from(self.storage.state.as_number())),
    }
  }

  /// A schedule's fire was skipped over `maxQueueSize`: the alert to send,
  /// if a new one fired (see `Alerts::schedule_skipped`). Nothing when
  /// `alerting.enabled` is false.
  pub fn schedule_skipped(
    &mut self,
    schedule_id: &str,
    queued: usize,
    max: usize,
    now: u64,
  ) -> Option<AlertEvent> {
    if !self.cfg.alerting_enabled {
      return None;
    }
    let alert = self
      .alerts
      .schedule_skipped(schedule_id, queued, max, now)?;
    Some(AlertEvent {
      kind: AlertEventKind::Fired,
      alert,
    })
  }

  /// Checks every rule (see [`alert`]); returns the alerts that fired or
  /// resolved themselves. Nothing when `alerting.enabled` is false.
  pub fn evaluate(&mut self, now: u64) -> Vec<AlertEvent> {
    if !self.cfg.alerting_enabled {
      return Vec::new();
    }
    self.storage_evaluated = self.storage.state;
    let mut alerts = std::mem::take(&mut self.alerts);
    let mut events = alerts.evaluate(now, |r| self.metric_value(r, now));
    // A storage alert says what is wrong, not just the figure.
    for e in &mut events {
      if e.kind == AlertEventKind::Fired && e.alert.metric == Metric::StorageHealth {
        let s = &self.storage;
        let msg = format!(
          "storage is {}: {}",
          s.state.as_str(),
          s.message.as_deref().unwrap_or("no detail")
        );
        alerts.set_message(&e.alert.id, &msg);
        e.alert.message = msg;
      }
    }
    self.alerts = alerts;
    events
  }

  /// Adds a custom rule given as JSON (`{ id?, name?, metric, operator?,
  /// threshold, window?, severity?, cooldownMs?, channels?, calculation? }`);
  /// returns its id. Errors are `ERR_INVALID_ARGUMENT` naming the field.
  pub fn add_rule(&mut self, rule: &Value) -> Result<String> {
    let id = self.alerts.fresh_rule_id();
    let r = alert::parse_rule_with_id(rule, "rule", &self.cfg, id, Error::InvalidArgument)?;
    self.alerts.add(r)
  }

  /// Removes a rule (a default one too); its active alert resolves as
  /// `ruleRemoved`. Unknown id: false.
  pub fn remove_rule(&mut self, id: &str, now: u64) -> bool {
    self.alerts.remove(id, now)
  }

  /// The rules, in the order added.
  pub fn rules(&self) -> Vec<&Rule> {
    self.alerts.rules().collect()
  }

  /// The rules as a JSON array.
  pub fn rules_json(&self) -> String {
    serde_json::to_string(&self.rules()).unwrap_or_else(|_| "[]".into())
  }

  /// Active alerts, oldest first.
  pub fn active_alerts(&self) -> &[Alert] {
    self.alerts.active()
  }

  /// `getActiveAlerts()`: a JSON array.
  pub fn active_alerts_json(&self) -> String {
    serde_json::to_string(self.alerts.active()).unwrap_or_else(|_| "[]".into())
  }

  /// `acknowledgeAlert(id, by)`: false if no alert has that id.
  pub fn acknowledge(&mut self, id: &str, by: &str, now: u64) -> bool {
    self.alerts.acknowledge(id, by, now)
  }

  /// `resolveAlert(id)`: false if no active alert has that id.
  pub fn resolve(&mut self, id: &str, now: u64) -> bool {
    self.alerts.resolve(id, now)
  }

  /// Alerts matching a filter, newest first.
  pub fn history(&self, filter: &HistoryFilter) -> Vec<&Alert> {
    self.alerts.history(filter)
  }

  /// `getAlertHistory(filter)`: a JSON array; errors name the filter key.
  pub fn history_json(&self, filter: &Value) -> Result<String> {
    let f = HistoryFilter::from_json(filter)?;
    Ok(serde_json::to_string(&self.history(&f)).unwrap_or_else(|_| "[]".into()))
  }

  /// The health dimensions and the overall level (see [`health`]).
  pub fn health(&self, now: u64) -> (Level, Vec<(&'static str, Dimension)>) {
    let t = &self.cfg.thresholds;
    let last = self.last;
    let queue = Dimension::of(vec![
      health::check(
        "queueLength",
        last.map(|s| s.queued as f64),
        t.queue_backlog,
        2.0 * t.queue_backlog,
      ),
      health::check(
        "oldestWaitMs",
        last.map(|s| s.oldest_wait_ms as f64),
        t.queue_wait_ms,
        2.0 * t.queue_wait_ms,
      ),
    ]);
    let minute = self.seconds.window(now, 59_999);
    let u = t.worker_utilization_percent;
    let workers = Dimension::of(vec![
      health::check(
        "utilization",
        r3(minute.utilization()),
        u,
        health::percent_critical(u),
      ),
      health::availability(
        last.map(|s| s.max_workers.saturating_sub(s.busy) as f64),
        last.map_or(0, |s| s.queued),
        last.map_or(0, |s| s.max_workers),
      ),
    ]);
    let span = (RECENT_MINUTES as u64 - 1) * 60_000;
    let recent = self.minutes.window(now, span);
    let e = t.error_rate_percent;
    let performance = Dimension::of(vec![
      health::check(
        "p95DurationMs",
        r3(self.recent.merged(now).percentile(95.0)),
        t.slow_job_ms,
        2.0 * t.slow_job_ms,
      ),
      health::check(
        "timeoutRate",
        r3(recent.timeout_rate()),
        e,
        health::percent_critical(e),
      ),
    ]);
    let errors = Dimension::of(vec![health::check(
      "errorRate",
      r3(recent.error_rate()),
      e,
      health::percent_critical(e),
    )]);
    let storage = Dimension::of(vec![health::storage(&self.storage)]);
    let dims = vec![
      ("queue", queue),
      ("workers", workers),
      ("performance", performance),
      ("errors", errors),
      ("storage", storage),
    ];
    let overall = dims
      .iter()
      .map(|(_, d)| d.status)
      .max()
      .unwrap_or(Level::Healthy);
    (overall, dims)
  }

  fn recent_errors_json(&self) -> Value {
    Value::Array(
      self
        .errors
        .iter()
        .rev()
        .map(|e| {
          json!({
            "at": e.at, "calculation": e.calculation,
            "outcome": e.outcome.as_str(), "message": e.message,
          })
        })
        .collect(),
    )
  }

  /// `getSystemHealth()`: `{ status, checkedAt, dimensions: { queue,
  /// workers, performance, errors: { status, checks: [{ metric, value,
  /// warningAt, criticalAt, status, rule }] } }, activeAlerts }`; `errors`
  /// also has `failuresLast5m` and `recentErrors` (newest first).
  pub fn health_json(&self, now: u64) -> String {
    let (overall, dims) = self.health(now);
    let mut d = Map::new();
    for (name, dim) in dims {
      d.insert(
        name.into(),
        serde_json::to_value(dim).unwrap_or(Value::Null),
      );
    }
    let recent = self
      .minutes
      .window(now, (RECENT_MINUTES as u64 - 1) * 60_000);
    if let Some(Value::Object(e)) = d.get_mut("errors") {
      e.insert(
        "failuresLast5m".into(),
        json!(recent.failed + recent.timed_out),
      );
      e.insert("recentErrors".into(), self.recent_errors_json());
    }
    if let Some(Value::Object(st)) = d.get_mut("storage") {
      let s = &self.storage;
      st.insert("state".into(), json!(s.state.as_str()));
      st.insert("message".into(), json!(s.message));
      st.insert("downMs".into(), json!(s.down_ms));
    }
    json!({
      "status": overall.as_str(),
      "checkedAt": now,
      "dimensions": d,
      "activeAlerts": self.alerts.active().len(),
    })
    .to_string()
  }

  /// `getPerformanceMetrics()`: `{ since, overall: {...}, calculations:
  /// { [name]: { count, completed, failed, timedOut, cancelled,
  /// successRate, durationMs: { min, max, avg, p50, p95, p99 }, waitMs: {
  /// avg, p95 }, lastRunAt, lastOutcome, trend } } }`.
  pub fn performance_json(&self, now: u64) -> String {
    let mut calcs = Map::new();
    for c in &self.calcs {
      calcs.insert(c.name.clone(), c.json(now));
    }
    json!({
      "since": self.started_at,
      "overall": self.total.json(now),
      "calculations": calcs,
    })
    .to_string()
  }

  /// `getJobExecutionSummary()`: totals, the last minute and hour, per
  /// calculation counts and recent errors.
  pub fn summary_json(&self, now: u64) -> String {
    let window = |s: Slot, ms: u64| {
      json!({
        "completed": s.completed, "failed": s.failed, "timedOut": s.timed_out,
        "cancelled": s.cancelled,
        "throughput": r3(Some(f64::from(s.finished()) * 1000.0 / ms as f64)),
        "errorRate": r3(s.error_rate()), "avgDurationMs": r3(s.avg_run_ms()),
        "avgWaitMs": r3(s.avg_wait_ms()),
      })
    };
    let mut by = Map::new();
    for c in &self.calcs {
      let [completed, failed, timed_out, cancelled] = c.outcomes;
      by.insert(
        c.name.clone(),
        json!({
          "count": c.count(), "completed": completed, "failed": failed,
          "timedOut": timed_out, "cancelled": cancelled,
          "successRate": r3(c.success_rate()), "avgDurationMs": r3(c.run.avg()),
          "lastRunAt": c.last_run_at,
        }),
      );
    }
    let [completed, failed, timed_out, cancelled] = self.total.outcomes;
    json!({
      "since": self.started_at,
      "uptimeMs": now.saturating_sub(self.started_at),
      "totals": {
        "count": self.total.count(), "completed": completed, "failed": failed,
        "timedOut": timed_out, "cancelled": cancelled,
        "successRate": r3(self.total.success_rate()), "avgDurationMs": r3(self.total.run.avg()),
      },
      "lastMinute": window(self.seconds.window(now, 59_999), 60_000),
      "lastHour": window(self.minutes.window(now, 3_599_999), 3_600_000),
      "byCalculation": by,
      "recentErrors": self.recent_errors_json(),
    })
    .to_string()
  }

  fn points(ring: &Ring, now: u64) -> Value {
    let ms = ring.slot_ms();
    Value::Array(
      ring
        .points(now)
        .map(|s| {
          json!({
            "t": s.t * ms,
            "samples": s.samples,
            "queueLength": r3(s.avg_queued()),
            "queueLengthMax": s.queued_max,
            "oldestWaitMs": s.oldest_wait_max,
            "busyWorkers": r3(s.avg_busy()),
            "utilization": r3(s.utilization()),
            "throughput": r3(Some(f64::from(s.finished()) * 1000.0 / ms as f64)),
            "completed": s.completed, "failed": s.failed, "timedOut": s.timed_out,
            "cancelled": s.cancelled,
            "avgDurationMs": r3(s.avg_run_ms()), "maxDurationMs": s.max_run_ms(),
          })
        })
        .collect(),
    )
  }

  /// The time series: `{ perSecond: { intervalMs: 1000, points }, perMinute:
  /// { intervalMs: 60000, points } }`, oldest first; slots with nothing
  /// recorded are left out; `t` is the slot's start (epoch ms).
  pub fn series_json(&self, now: u64) -> String {
    json!({
      "perSecond": { "intervalMs": 1000, "points": Self::points(&self.seconds, now) },
      "perMinute": { "intervalMs": 60_000, "points": Self::points(&self.minutes, now) },
    })
    .to_string()
  }

  /// `getPrometheusMetrics()`: the text exposition (see [`prometheus`]),
  /// with the caller's own gauges appended.
  pub fn prometheus(&self, now: u64, extra: &[Gauge<'_>]) -> String {
    prometheus::render(self, now, extra)
  }
}
