//! Tests of the monitor: statistics, series, health, alerts, exposition.

use serde_json::{json, Value};

use super::histogram::Histogram;
use super::*;

fn parse(s: &str) -> Value {
  serde_json::from_str(s).expect("valid JSON")
}

fn monitor() -> Monitor {
  Monitor::new(MonitorConfig::default(), 0)
}

fn fired(events: &[AlertEvent]) -> Vec<&str> {
  events
    .iter()
    .filter(|e| e.kind == AlertEventKind::Fired)
    .map(|e| e.alert.rule_id.as_str())
    .collect()
}

/// The exact nearest-rank percentile of sorted values.
fn exact(sorted: &[f64], p: f64) -> f64 {
  let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
  sorted[rank - 1]
}

#[test]
fn percentiles_stay_within_the_histograms_error() {
  let sets: Vec<Vec<f64>> = vec![
    (1..=1000).map(f64::from).collect(),
    (0..500).map(|i| 2.0 + f64::from(i % 7) * 13.0).collect(),
    (0..2000).map(|i| 1.05f64.powi(i % 300)).collect(),
    vec![42.0; 10],
  ];
  for mut set in sets {
    let mut h = Histogram::default();
    for v in &set {
      h.record(*v);
    }
    set.sort_by(f64::total_cmp);
    for p in [50.0, 95.0, 99.0] {
      let want = exact(&set, p);
      let got = h.percentile(p).expect("values");
      assert!(
        (got - want).abs() <= want * 0.05,
        "p{p}: got {got}, want {want}"
      );
    }
    assert_eq!(h.count(), set.len() as u64);
    assert_eq!(h.min(), Some(set[0]));
    assert_eq!(h.max(), set.last().copied());
  }
  assert_eq!(Histogram::default().percentile(50.0), None);
}

#[test]
fn performance_per_calculation() {
  let mut m = monitor();
  for i in 1..=100u64 {
    m.record_outcome("report", Outcome::Completed, 10, i * 10, 1_000 + i, None);
  }
  m.record_outcome("report", Outcome::Failed, 20, 5, 2_000, Some("boom"));
  m.record_outcome("report", Outcome::TimedOut, 30, 30_000, 2_001, Some("late"));
  m.record_outcome("report", Outcome::Cancelled, 0, 0, 2_002, None);
  m.record_outcome("other", Outcome::Completed, 0, 7, 2_003, None);
  let p = parse(&m.performance_json(3_000));
  let r = &p["calculations"]["report"];
  assert_eq!(r["count"], 103);
  assert_eq!(r["completed"], 100);
  assert_eq!(r["failed"], 1);
  assert_eq!(r["timedOut"], 1);
  assert_eq!(r["cancelled"], 1);
  let rate = r["successRate"].as_f64().expect("rate");
  assert!((rate - 100.0 * 100.0 / 102.0).abs() < 1e-9);
  let d = &r["durationMs"];
  assert_eq!(d["min"], 5.0);
  assert_eq!(d["max"], 30_000.0);
  let p50 = d["p50"].as_f64().expect("p50");
  assert!((p50 - 500.0).abs() <= 25.0, "{p50}");
  assert_eq!(r["lastRunAt"], 2_002);
  assert_eq!(r["lastOutcome"], "cancelled");
  let w = r["waitMs"]["avg"].as_f64().expect("wait");
  assert!((w - (1000.0 + 50.0) / 102.0).abs() < 1e-9, "{w}");
  assert_eq!(p["overall"]["count"], 104);
  let s = parse(&m.summary_json(3_000));
  assert_eq!(s["totals"]["completed"], 101);
  assert_eq!(s["byCalculation"]["other"]["count"], 1);
  assert_eq!(s["recentErrors"][0]["message"], "late");
  assert_eq!(s["recentErrors"][0]["outcome"], "timeout");
  assert_eq!(s["lastMinute"]["failed"], 1);
}

#[test]
fn calculations_beyond_the_cap_share_one_entry() {
  let mut m = monitor();
  for i in 0..MAX_CALCULATIONS + 5 {
    m.record_outcome(&format!("c{i}"), Outcome::Completed, 0, 1, 10, None);
  }
  assert_eq!(m.calcs.len(), MAX_CALCULATIONS + 1);
  let p = parse(&m.performance_json(10));
  assert_eq!(p["calculations"][OTHER]["count"], 5);
}

#[test]
fn trend_detects_slower_and_faster() {
  let run = |before: u64, after: u64| {
    let mut m = monitor();
    let mut t = 0;
    for minute in 0..35u64 {
      for k in 0..10u64 {
        t = minute * 60_000 + k * 5_000;
        let d = if minute < 30 { before } else { after };
        m.record_outcome("calc", Outcome::Completed, 0, d, t, None);
      }
    }
    let p = parse(&m.performance_json(t));
    p["calculations"]["calc"]["trend"].clone()
  };
  assert_eq!(run(100, 300)["direction"], "slower");
  let f = run(300, 100);
  assert_eq!(f["direction"], "faster");
  assert_eq!(f["recentAvgMs"], 100.0);
  assert_eq!(f["baselineAvgMs"], 300.0);
  assert_eq!(run(100, 105)["direction"], "stable");
  let mut m = monitor();
  m.record_outcome("calc", Outcome::Completed, 0, 10, 0, None);
  let p = parse(&m.performance_json(1));
  assert_eq!(p["calculations"]["calc"]["trend"]["direction"], "unknown");
}

#[test]
fn series_are_bounded_and_roll() {
  let mut m = monitor();
  let mut now = 0;
  for s in 0..1_000u64 {
    now = s * 1000 + 500;
    m.sample(now, s as usize % 10, 0, 1, 4);
    m.record_outcome("a", Outcome::Completed, 0, 3, now, None);
  }
  let v = parse(&m.series_json(now));
  let sec = v["perSecond"]["points"].as_array().expect("points");
  assert_eq!(sec.len(), 300);
  assert_eq!(sec[0]["t"], 700_000);
  assert_eq!(sec[299]["t"], 999_000);
  assert_eq!(sec[299]["throughput"], 1.0);
  assert_eq!(sec[299]["utilization"], 25.0);
  let min = v["perMinute"]["points"].as_array().expect("points");
  assert_eq!(min.len(), 17, "seconds 0..1000 span minutes 0..=16");
  assert_eq!(min[0]["samples"], 60);
  assert_eq!(min[0]["completed"], 60);
  assert_eq!(min[0]["queueLengthMax"], 9);
  // A day and a half later, one sample a minute: the per-minute ring keeps 1440.
  for k in 0..2_200u64 {
    now = 1_000_000 + k * 60_000;
    m.sample(now, 1, 0, 0, 4);
  }
  let v = parse(&m.series_json(now));
  let min = v["perMinute"]["points"].as_array().expect("points");
  assert_eq!(min.len(), 1440);
  assert_eq!(min[1439]["t"], now / 60_000 * 60_000);
  assert_eq!(
    v["perSecond"]["points"].as_array().expect("points").len(),
    5,
    "one a minute"
  );
  // Slots left empty are skipped, not invented.
  let v = parse(&m.series_json(now + 10_000_000));
  assert_eq!(
    v["perSecond"]["points"].as_array().expect("points").len(),
    0
  );
}

#[test]
fn each_default_rule_fires_under_its_condition_only() {
  // highErrorRate: > 10 % of finished attempts failed or timed out.
  let mut m = monitor();
  for i in 0..20 {
    let o = if i == 0 {
      Outcome::Failed
    } else {
      Outcome::Completed
    };
    m.record_outcome("a", o, 0, 1, 1_000 + i, None);
  }
  m.record_outcome("a", Outcome::Cancelled, 0, 1, 1_100, None);
  assert!(fired(&m.evaluate(2_000)).is_empty(), "5 % is fine");
  m.record_outcome("a", Outcome::TimedOut, 0, 1, 2_100, None);
  m.record_outcome("a", Outcome::Failed, 0, 1, 2_200, None);
  assert_eq!(fired(&m.evaluate(3_000)), ["highErrorRate"], "3/22 > 10 %");

  // queueBacklog: > 50 pending at the latest sample.
  let mut m = monitor();
  m.sample(1_000, 50, 0, 0, 3);
  assert!(fired(&m.evaluate(1_000)).is_empty());
  m.sample(2_000, 51, 0, 0, 3);
  assert_eq!(fired(&m.evaluate(2_000)), ["queueBacklog"]);

  // slowJob: an attempt over 5 s in the last minute.
  let mut m = monitor();
  m.record_outcome("a", Outcome::Completed, 0, 5_000, 1_000, None);
  assert!(fired(&m.evaluate(1_000)).is_empty());
  m.record_outcome("a", Outcome::Completed, 0, 5_001, 2_000, None);
  let ev = m.evaluate(2_000);
  assert_eq!(fired(&ev), ["slowJob"]);
  assert_eq!(ev[0].alert.value, 5_001.0);
  assert!(
    ev[0]
      .alert
      .message
      .contains("maxDurationMs is 5001 (> 5000)"),
    "{}",
    ev[0].alert.message
  );

  // highWorkerUtilization: > 80 % busy over the last minute.
  let mut m = monitor();
  for s in 0..60 {
    m.sample(s * 1000, 0, 0, 2, 3);
  }
  assert!(fired(&m.evaluate(59_000)).is_empty(), "67 %");
  let mut m = monitor();
  for s in 0..60 {
    m.sample(s * 1000, 0, 0, 3, 3);
  }
  assert_eq!(fired(&m.evaluate(59_000)), ["highWorkerUtilization"]);
}

#[test]
fn alert_fires_once_per_breach_cools_down_and_resolves_itself() {
  let mut m = monitor();
  m.sample(1_000, 60, 0, 0, 3);
  let ev = m.evaluate(1_000);
  assert_eq!(fired(&ev), ["queueBacklog"]);
  let id = ev[0].alert.id.clone();
  m.sample(2_000, 70, 0, 0, 3);
  assert!(m.evaluate(2_000).is_empty(), "still the same breach");
  let a = &m.active_alerts()[0];
  assert_eq!((a.value, a.last_value, a.peak_value), (60.0, 70.0, 70.0));
  m.sample(3_000, 10, 0, 0, 3);
  let ev = m.evaluate(3_000);
  assert_eq!(ev.len(), 1);
  assert_eq!(ev[0].kind, AlertEventKind::Resolved);
  assert_eq!(ev[0].alert.id, id);
  assert_eq!(ev[0].alert.resolved_at, Some(3_000));
  assert_eq!(ev[0].alert.resolution, Some(Resolution::Auto));
  assert!(m.active_alerts().is_empty());
  // A new breach inside the cooldown (5 min from firing) stays quiet.
  m.sample(4_000, 60, 0, 0, 3);
  assert!(m.evaluate(4_000).is_empty());
  m.sample(300_999, 60, 0, 0, 3);
  assert!(m.evaluate(300_999).is_empty());
  m.sample(301_000, 60, 0, 0, 3);
  let ev = m.evaluate(301_000);
  assert_eq!(fired(&ev), ["queueBacklog"]);
  assert_ne!(ev[0].alert.id, id);
  let h = parse(
    &m.history_json(&json!({"ruleId": "queueBacklog"}))
      .expect("filter"),
  );
  assert_eq!(h.as_array().expect("array").len(), 2);
  assert_eq!(h[0]["status"], "active");
  assert_eq!(h[1]["status"], "resolved");
  assert_eq!(h[1]["resolvedAt"], 3_000);
  assert_eq!(h[1]["resolution"], "auto");
}

#[test]
fn acknowledge_and_resolve_by_hand() {
  let mut m = monitor();
  m.sample(1_000, 60, 0, 0, 3);
  let id = m.evaluate(1_000)[0].alert.id.clone();
  assert!(!m.acknowledge("nope", "ann", 1_500));
  assert!(m.acknowledge(&id, "ann", 1_500));
  assert!(m.acknowledge(&id, "bob", 1_600), "known id");
  let a = parse(&m.active_alerts_json());
  assert_eq!(a[0]["acknowledged"], true);
  assert_eq!(a[0]["acknowledgedBy"], "ann");
  assert_eq!(a[0]["acknowledgedAt"], 1_500);
  assert_eq!(a[0]["ruleId"], "queueBacklog");
  assert!(!m.resolve("nope", 2_000));
  assert!(m.resolve(&id, 2_000));
  assert!(!m.resolve(&id, 2_001), "already resolved");
  assert!(m.active_alerts().is_empty());
  let h = m.history(&HistoryFilter::default());
  assert_eq!(h[0].resolution, Some(Resolution::Manual));
  assert_eq!(h[0].resolved_at, Some(2_000));
  // The breach still holds: no refire until the cooldown has passed.
  assert!(m.evaluate(3_000).is_empty());
  assert_eq!(fired(&m.evaluate(301_000)), ["queueBacklog"]);
}

#[test]
fn custom_rules_are_added_scoped_and_removed() {
  let mut m = monitor();
  let id = m
    .add_rule(&json!({
      "id": "aErrors", "metric": "errorRate", "operator": ">=", "threshold": 50,
      "window": 60_000, "severity": "critical", "cooldownMs": 0,
      "channels": ["webhook", "email"], "calculation": "a",
    }))
    .expect("valid rule");
  assert_eq!(id, "aErrors");
  let auto = m
    .add_rule(&json!({"metric": "failedCount", "threshold": 100}))
    .expect("valid rule");
  assert_eq!(auto, "rule-7");
  assert_eq!(m.rules().len(), 7);
  for i in 0..10 {
    m.record_outcome("b", Outcome::Failed, 0, 1, 1_000 + i, Some("b broke"));
    m.record_outcome("a", Outcome::Completed, 0, 1, 1_000 + i, None);
  }
  let ev = m.evaluate(2_000);
  assert_eq!(fired(&ev), ["highErrorRate"], "b's failures are not a's");
  for i in 0..10 {
    m.record_outcome("a", Outcome::Failed, 0, 1, 3_000 + i, Some("a broke"));
  }
  let ev = m.evaluate(4_000);
  assert_eq!(fired(&ev), ["aErrors"]);
  let a = &ev[0].alert;
  assert_eq!(a.calculation.as_deref(), Some("a"));
  assert_eq!(a.severity, Severity::Critical);
  assert_eq!(a.channels, [Channel::Webhook, Channel::Email]);
  assert_eq!(a.value, 50.0);
  assert!(m.remove_rule("aErrors", 5_000));
  assert!(!m.remove_rule("aErrors", 5_000));
  assert!(m.active_alerts().iter().all(|a| a.rule_id != "aErrors"));
  let h = m.history(&HistoryFilter {
    calculation: Some("a".into()),
    ..HistoryFilter::default()
  });
  assert_eq!(h.len(), 1);
  assert_eq!(h[0].resolution, Some(Resolution::RuleRemoved));
  assert!(m.remove_rule("queueBacklog", 5_000), "defaults can go too");
  m.sample(6_000, 1_000, 0, 0, 3);
  assert!(fired(&m.evaluate(6_000)).is_empty());
  let err = m.add_rule(&json!({"id": "rule-7", "metric": "queueLength", "threshold": 1}));
  assert!(matches!(err, Err(Error::InvalidArgument(ref s)) if s.contains("rule.id")));
}

#[test]
fn invalid_rules_name_the_field() {
  let mut m = monitor();
  let cases = [
    (json!({"metric": "cpu", "threshold": 1}), "rule.metric"),
    (json!({"threshold": 1}), "rule.metric"),
    (
      json!({"metric": "errorRate", "threshold": "NaN"}),
      "rule.threshold",
    ),
    (
      json!({"metric": "errorRate", "threshold": "Infinity"}),
      "rule.threshold",
    ),
    (json!({"metric": "errorRate"}), "rule.threshold"),
    (
      json!({"metric": "errorRate", "threshold": 1, "operator": "~"}),
      "rule.operator",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "severity": "fatal"}),
      "rule.severity",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "channels": ["log", "sms"]}),
      "rule.channels[1]",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "channels": "log"}),
      "rule.channels",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "window": -5}),
      "rule.window",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "window": 0}),
      "rule.window",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "calculation": "a", "window": 7_200_000}),
      "rule.window",
    ),
    (
      json!({"metric": "queueLength", "threshold": 1, "calculation": "a"}),
      "rule.calculation",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "cooldownMs": 1.5}),
      "rule.cooldownMs",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "id": ""}),
      "rule.id",
    ),
    (
      json!({"metric": "errorRate", "threshold": 1, "colour": "red"}),
      "rule.colour",
    ),
    (json!("errorRate > 1"), "rule"),
  ];
  for (rule, field) in cases {
    match m.add_rule(&rule) {
      Err(e) => {
        assert_eq!(e.code(), "ERR_INVALID_ARGUMENT");
        assert!(
          e.to_string().contains(field),
          "{rule}: {e} should name {field}"
        );
      }
      Ok(id) => panic!("{rule} was accepted as {id}"),
    }
  }
  assert_eq!(m.rules().len(), 5, "nothing half-added");
  let e = m
    .history_json(&json!({"status": "open"}))
    .expect_err("bad filter");
  assert!(e.to_string().contains("filter.status"), "{e}");
}

#[test]
fn config_reads_the_monitoring_section() {
  let c = MonitorConfig::from_json(None).expect("defaults");
  assert_eq!(c, MonitorConfig::default());
  let c = MonitorConfig::from_json(Some(&json!({
    "performanceThresholds": { "slowJobThresholdMs": 1000, "queueBacklogThreshold": 5 },
    "alerting": {
      "channels": ["webhook"], "cooldownMs": 0, "historySize": 2,
      "rules": [{ "metric": "throughput", "operator": "<", "threshold": 1 }],
    },
    "retention": { "seconds": 60, "minutes": 60 },
  })))
  .expect("valid");
  assert_eq!(c.thresholds.slow_job_ms, 1000.0);
  assert_eq!(c.rules.len(), 1);
  assert_eq!(c.rules[0].id, "rule-1");
  assert_eq!(c.rules[0].channels, [Channel::Webhook]);
  assert_eq!(c.rules[0].cooldown_ms, 0);
  let m = Monitor::new(c, 0);
  let ids: Vec<&str> = m.rules().iter().map(|r| r.id.as_str()).collect();
  assert_eq!(
    ids,
    [
      "highErrorRate",
      "queueBacklog",
      "slowJob",
      "highWorkerUtilization",
      "storageDegraded",
      "rule-1"
    ]
  );
  assert_eq!(m.rules()[1].threshold, 5.0);
  for (v, key) in [
    (json!("on"), "monitoring"),
    (json!({"nope": 1}), "monitoring.nope"),
    (
      json!({"performanceThresholds": {"highErrorRatePercent": 0}}),
      "monitoring.performanceThresholds.highErrorRatePercent",
    ),
    (
      json!({"performanceThresholds": {"workerUtilizationThreshold": 120}}),
      "monitoring.performanceThresholds.workerUtilizationThreshold",
    ),
    (
      json!({"performanceThresholds": {"slowJobThresholdMs": "NaN"}}),
      "monitoring.performanceThresholds.slowJobThresholdMs",
    ),
    (
      json!({"alerting": {"channels": ["pager"]}}),
      "monitoring.alerting.channels[0]",
    ),
    (
      json!({"alerting": {"rules": [{"metric": "x", "threshold": 1}]}}),
      "monitoring.alerting.rules[0].metric",
    ),
    (
      json!({"retention": {"seconds": 5}}),
      "monitoring.retention.seconds",
    ),
  ] {
    let e = MonitorConfig::from_json(Some(&v)).expect_err("invalid");
    assert_eq!(e.code(), "ERR_INVALID_CONFIG");
    assert!(e.to_string().contains(key), "{v}: {e} should name {key}");
  }
}

#[test]
fn alert_history_is_bounded() {
  let cfg = MonitorConfig {
    history_size: 3,
    cooldown_ms: 0,
    ..MonitorConfig::default()
  };
  let mut m = Monitor::new(cfg, 0);
  for k in 0..10u64 {
    m.sample(k * 2_000, 100, 0, 0, 3);
    assert_eq!(fired(&m.evaluate(k * 2_000)), ["queueBacklog"]);
    m.sample(k * 2_000 + 1_000, 0, 0, 0, 3);
    assert_eq!(m.evaluate(k * 2_000 + 1_000).len(), 1);
  }
  let h = m.history(&HistoryFilter::default());
  assert_eq!(h.len(), 3);
  assert_eq!(h[0].fired_at, 18_000, "newest first");
  let f = HistoryFilter::from_json(&json!({"since": 16_000, "limit": 1})).expect("filter");
  assert_eq!(m.history(&f).len(), 1);
}

#[test]
fn alerting_disabled_fires_nothing() {
  let cfg = MonitorConfig {
    alerting_enabled: false,
    ..MonitorConfig::default()
  };
  let mut m = Monitor::new(cfg, 0);
  m.sample(1_000, 1_000, 0, 3, 3);
  assert!(m.evaluate(1_000).is_empty());
  assert!(m.active_alerts().is_empty());
}

fn status(m: &Monitor, now: u64) -> (String, Value) {
  let h = parse(&m.health_json(now));
  (h["status"].as_str().unwrap_or("").to_string(), h)
}

#[test]
fn health_moves_with_load_and_failures() {
  let mut m = monitor();
  let (s, h) = status(&m, 0);
  assert_eq!(s, "healthy", "{h}");
  // Light load.
  let mut now = 0;
  for i in 0..60u64 {
    now = i * 1000;
    m.sample(now, 5, 100, 1, 3);
    m.record_outcome("a", Outcome::Completed, 10, 200, now, None);
  }
  assert_eq!(status(&m, now).0, "healthy");
  // Backlog over the threshold: warning, and the figures say why.
  m.sample(now + 1000, 60, 1_000, 2, 3);
  let (s, h) = status(&m, now + 1000);
  assert_eq!(s, "warning");
  let q = &h["dimensions"]["queue"];
  assert_eq!(q["status"], "warning");
  assert_eq!(q["checks"][0]["metric"], "queueLength");
  assert_eq!(q["checks"][0]["value"], 60.0);
  assert_eq!(q["checks"][0]["warningAt"], 50.0);
  assert_eq!(q["checks"][0]["criticalAt"], 100.0);
  assert_eq!(h["dimensions"]["errors"]["status"], "healthy");
  // Failures: 20 of 80 recent attempts fail (25 % >= 20 %): critical.
  now += 2000;
  for i in 0..20 {
    m.record_outcome("a", Outcome::Failed, 10, 200, now + i, Some("db down"));
  }
  m.sample(now + 100, 60, 1_000, 3, 3);
  let (s, h) = status(&m, now + 100);
  assert_eq!(s, "critical");
  let e = &h["dimensions"]["errors"];
  assert_eq!(e["status"], "critical");
  assert_eq!(e["checks"][0]["value"], 25.0);
  assert_eq!(e["checks"][0]["criticalAt"], 20.0);
  assert_eq!(e["recentErrors"][0]["message"], "db down");
  assert_eq!(e["failuresLast5m"], 20);
  assert_eq!(h["dimensions"]["workers"]["checks"][1]["status"], "warning");
  // Saturated workers and slow jobs.
  for i in 0..60u64 {
    m.sample(now + 200 + i * 1000, 10, 0, 3, 3);
    m.record_outcome(
      "a",
      Outcome::Completed,
      10,
      12_000,
      now + 200 + i * 1000,
      None,
    );
  }
  now += 200 + 59_000;
  let (_, h) = status(&m, now);
  let u = h["dimensions"]["workers"]["checks"][0]["value"]
    .as_f64()
    .expect("utilization");
  assert!(u >= 90.0, "{u}");
  assert_eq!(h["dimensions"]["workers"]["status"], "critical");
  assert_eq!(h["dimensions"]["performance"]["status"], "critical");
  // Ten quiet minutes later with an empty queue: healthy again.
  now += 600_000;
  for i in 0..60u64 {
    m.sample(now + i * 1000, 0, 0, 0, 3);
  }
  now += 59_000;
  let (s, h) = status(&m, now);
  assert_eq!(s, "healthy", "{h}");
  // No workers at all while jobs wait: critical.
  m.sample(now + 1000, 1, 10, 0, 0);
  let (s, h) = status(&m, now + 1000);
  assert_eq!(s, "critical");
  assert_eq!(
    h["dimensions"]["workers"]["checks"][1]["status"],
    "critical"
  );
}

/// A small validating parser of the text exposition.
fn validate_exposition(text: &str) -> std::collections::HashMap<String, f64> {
  use std::collections::{HashMap, HashSet};
  let mut helped = HashSet::new();
  let mut typed: HashMap<String, String> = HashMap::new();
  let mut samples = HashMap::new();
  // Per histogram series (name + labels without le): last bucket count.
  let mut buckets: HashMap<String, (f64, bool)> = HashMap::new();
  for line in text.lines() {
    assert!(!line.is_empty(), "no blank lines");
    if let Some(rest) = line.strip_prefix("# HELP ") {
      let name = rest.split(' ').next().expect("name");
      assert!(helped.insert(name.to_string()), "one HELP for {name}");
      continue;
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
      let mut it = rest.split(' ');
      let name = it.next().expect("name");
      let kind = it.next().expect("type");
      assert!(["counter", "gauge", "histogram"].contains(&kind));
      assert!(helped.contains(name), "HELP before TYPE for {name}");
      assert!(typed.insert(name.into(), kind.into()).is_none());
      continue;
    }
    assert!(!line.starts_with('#'), "unknown comment {line}");
    // name{labels} value
    let (series, value) = line.rsplit_once(' ').expect("name value");
    let v: f64 = match value {
      "+Inf" => f64::INFINITY,
      "-Inf" => f64::NEG_INFINITY,
      v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    let (name, labels) = match series.find('{') {
      Some(i) => {
        assert!(series.ends_with('}'), "{line}");
        (&series[..i], &series[i + 1..series.len() - 1])
      }
      None => (series, ""),
    };
    assert!(
      name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
      "{name}"
    );
    // Labels: k="v" with escapes only \\ \" \n.
    let mut pairs = Vec::new();
    let mut chars = labels.chars().peekable();
    while chars.peek().is_some() {
      let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
      assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
      assert_eq!(chars.next(), Some('"'), "{line}");
      let mut val = String::new();
      loop {
        match chars.next().expect("closing quote") {
          '"' => break,
          '\\' => match chars.next() {
            Some('\\') => val.push('\\'),
            Some('"') => val.push('"'),
            Some('n') => val.push('\n'),
            other => panic!("bad escape {other:?} in {line}"),
          },
          '\n' => panic!("raw newline"),
          c => val.push(c),
        }
      }
      pairs.push((key, val));
      match chars.next() {
        None => break,
        Some(',') => {}
        Some(c) => panic!("unexpected {c} in {line}"),
      }
    }
    let base = ["_bucket", "_sum", "_count"]
      .iter()
      .find_map(|s| {
        name
          .strip_suffix(s)
          .filter(|b| typed.get(*b).is_some_and(|t| t == "histogram"))
      })
      .unwrap_or(name);
    assert!(typed.contains_key(base), "TYPE before samples of {name}");
    let others: Vec<String> = pairs
      .iter()
      .filter(|(k, _)| k != "le")
      .map(|(k, v)| format!("{k}={v:?}"))
      .collect();
    let key = format!("{base}{{{}}}", others.join(","));
    if name.ends_with("_bucket") && base != name {
      let le = &pairs.iter().find(|(k, _)| k == "le").expect("le").1;
      let (last, done) = buckets.get(&key).copied().unwrap_or((0.0, false));
      assert!(!done, "bucket after +Inf in {key}");
      assert!(v >= last, "cumulative buckets in {key}");
      buckets.insert(key.clone(), (v, le == "+Inf"));
    }
    if name.ends_with("_count") && base != name {
      let (inf, done) = buckets.get(&key).copied().expect("buckets before _count");
      assert!(done, "+Inf bucket last in {key}");
      assert_eq!(inf, v, "+Inf equals _count in {key}");
    }
    let full = format!(
      "{name}{{{}}}",
      pairs
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
    );
    assert!(samples.insert(full, v).is_none(), "duplicate {line}");
  }
  assert!(
    buckets.values().all(|(_, done)| *done),
    "every histogram ends with +Inf"
  );
  samples
}

#[test]
fn prometheus_exposition_is_valid() {
  let mut m = monitor();
  let odd = "we\"ird\\name\nx";
  for (i, d) in [1u64, 7, 30, 120, 900, 4_000, 70_000].iter().enumerate() {
    m.record_outcome("report", Outcome::Completed, 0, *d, 1_000 + i as u64, None);
  }
  m.record_outcome("report", Outcome::Failed, 0, 5, 2_000, Some("x"));
  m.record_outcome("report", Outcome::Cancelled, 0, 5, 2_000, None);
  m.record_outcome(odd, Outcome::TimedOut, 0, 30_000, 2_000, None);
  m.sample(3_000, 60, 2_500, 2, 3);
  m.evaluate(3_000);
  let text = m.prometheus(
    3_000,
    &[
      Gauge {
        name: "jobwerk_jobs_waiting",
        help: "Jobs waiting on dependencies.",
        value: 4.0,
      },
      Gauge {
        name: "bad name",
        help: "skipped",
        value: 1.0,
      },
      Gauge {
        name: "jobwerk_queue_length",
        help: "duplicate",
        value: 1.0,
      },
    ],
  );
  let s = validate_exposition(&text);
  let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
  assert_eq!(
    get(r#"jobwerk_jobs_total{calculation="report",outcome="completed"}"#),
    7.0
  );
  assert_eq!(
    get(r#"jobwerk_jobs_total{calculation="report",outcome="cancelled"}"#),
    1.0
  );
  assert_eq!(
    get(r#"jobwerk_job_duration_seconds_count{calculation="report"}"#),
    8.0
  );
  assert_eq!(
    get(r#"jobwerk_job_duration_seconds_bucket{calculation="report",le="0.005"}"#),
    2.0
  );
  assert_eq!(
    get(r#"jobwerk_job_duration_seconds_bucket{calculation="report",le="1"}"#),
    6.0
  );
  assert_eq!(
    get(r#"jobwerk_job_duration_seconds_bucket{calculation="report",le="60"}"#),
    7.0
  );
  let sum = get(r#"jobwerk_job_duration_seconds_sum{calculation="report"}"#);
  assert!((sum - 75.063).abs() < 1e-9, "{sum}");
  let odd_key = format!("jobwerk_jobs_total{{calculation={odd:?},outcome=\"timeout\"}}");
  assert_eq!(get(&odd_key), 1.0);
  assert!(text.contains(r#"calculation="we\"ird\\name\nx""#));
  assert_eq!(get("jobwerk_queue_length{}"), 60.0);
  assert_eq!(get("jobwerk_queue_oldest_wait_seconds{}"), 2.5);
  assert_eq!(get("jobwerk_workers_busy{}"), 2.0);
  assert_eq!(
    get(r#"jobwerk_alerts_active{severity="warning"}"#),
    2.0,
    "backlog, slow job"
  );
  assert_eq!(
    get(r#"jobwerk_alerts_active{severity="critical"}"#),
    1.0,
    "error rate"
  );
  assert_eq!(get("jobwerk_health_status{}"), 2.0, "timeouts are critical");
  assert_eq!(get("jobwerk_jobs_waiting{}"), 4.0);
  assert!(!text.contains("skipped") && !text.contains("duplicate"));
  // An empty monitor is valid too.
  validate_exposition(&monitor().prometheus(0, &[]));
}

/// The fifth dimension: the storage's state. Degraded is a warning and
/// fires `storageDegraded` (its message saying why), unhealthy is
/// critical; healthy again resolves the alert. Prometheus exports it with
/// the other dimensions.
#[test]
fn storage_dimension_and_its_alert() {
  use crate::storage::{StorageHealth, StorageState};
  let mut m = monitor();
  m.sample(1_000, 0, 0, 0, 4);
  let h = parse(&m.health_json(1_000));
  assert_eq!(h["dimensions"]["storage"]["status"], "healthy");
  assert_eq!(h["dimensions"]["storage"]["state"], "healthy");
  assert!(fired(&m.evaluate(1_000)).is_empty());

  let down = StorageHealth {
    state: StorageState::Degraded,
    down_ms: Some(1_500),
    message: Some("PostgreSQL has been failing for 1 s; retrying (commit): refused".into()),
  };
  assert!(m.set_storage(down.clone()), "a change");
  assert!(
    m.set_storage(down.clone()),
    "the rules have not seen it yet"
  );
  let h = parse(&m.health_json(2_000));
  let st = &h["dimensions"]["storage"];
  assert_eq!(st["status"], "warning");
  assert_eq!(st["state"], "degraded");
  assert_eq!(st["downMs"], 1_500);
  assert!(
    st["message"].as_str().unwrap_or("").contains("refused"),
    "{st}"
  );
  assert_eq!(st["checks"][0]["metric"], "storageHealth");
  assert_eq!(h["status"], "warning");
  let events = m.evaluate(2_000);
  assert_eq!(fired(&events), ["storageDegraded"]);
  assert!(!m.set_storage(down), "the rules saw it");
  let alert = &events[0].alert;
  assert_eq!(alert.severity, Severity::Critical);
  assert!(
    alert.message.starts_with("storage is degraded: "),
    "{}",
    alert.message
  );
  assert_eq!(m.active_alerts()[0].message, alert.message, "kept as sent");
  let text = m.prometheus(2_000, &[]);
  assert!(text.contains("jobwerk_storage_health 1\n"), "{text}");
  assert!(
    text.contains("jobwerk_health_dimension_status{dimension=\"storage\"} 1\n"),
    "{text}"
  );
  assert!(text.contains("jobwerk_health_dimension_status{dimension=\"queue\"} 0\n"));
  validate_exposition(&text);

  m.set_storage(StorageHealth {
    state: StorageState::Unhealthy,
    down_ms: Some(31_000),
    message: Some("down".into()),
  });
  assert_eq!(parse(&m.health_json(3_000))["status"], "critical");
  assert!(m.evaluate(3_000).is_empty(), "one alert per outage");

  assert!(m.set_storage(StorageHealth::healthy()));
  let events = m.evaluate(4_000);
  assert_eq!(events.len(), 1);
  assert_eq!(events[0].kind, AlertEventKind::Resolved);
  assert_eq!(events[0].alert.rule_id, "storageDegraded");
  assert_eq!(
    parse(&m.health_json(4_000))["dimensions"]["storage"]["status"],
    "healthy"
  );
  // A second outage alerts again at once (no cooldown).
  m.set_storage(StorageHealth::of_failure(Some("disk full".into())));
  assert_eq!(fired(&m.evaluate(5_000)), ["storageDegraded"]);
}
