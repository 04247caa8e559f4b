//! Prometheus text exposition (format 0.0.4).
//!
//! ```text
//! jobwerk_jobs_total{calculation,outcome}            counter   completed|failed|timeout|cancelled
//! jobwerk_job_duration_seconds{calculation}          histogram le = BUCKETS_MS / 1000, +Inf
//! jobwerk_queue_length                               gauge     latest sample
//! jobwerk_queue_oldest_wait_seconds                  gauge     latest sample
//! jobwerk_workers_busy, jobwerk_workers_max          gauge     latest sample
//! jobwerk_alerts_active{severity}                    gauge
//! jobwerk_health_status                              gauge     0 healthy, 1 warning, 2 critical
//! jobwerk_health_dimension_status{dimension}         gauge     the same per dimension (queue, workers, performance, errors, storage)
//! jobwerk_storage_health                             gauge     0 healthy, 1 degraded, 2 unhealthy
//! ```
//!
//! Every metric has `# HELP` and `# TYPE` before its samples; label values
//! escape `\`, `"` and newline. Durations of cancelled attempts are not in
//! the histogram (see the module docs of [`super`]).

use std::fmt::Write as _;

use super::{Monitor, Outcome, Severity};

/// Upper bounds of the duration buckets (ms); `+Inf` follows.
pub const BUCKETS_MS: [u64; 13] = [
  5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// The metric names written before the caller's gauges.
const BUILTIN: [&str; 10] = [
  "jobwerk_jobs_total",
  "jobwerk_job_duration_seconds",
  "jobwerk_queue_length",
  "jobwerk_queue_oldest_wait_seconds",
  "jobwerk_workers_busy",
  "jobwerk_workers_max",
  "jobwerk_alerts_active",
  "jobwerk_health_status",
  "jobwerk_health_dimension_status",
  "jobwerk_storage_health",
];

/// A gauge the caller adds (for example pending and waiting jobs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge<'a> {
  /// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); invalid names, and names
  /// already written, are skipped.
  pub name: &'a str,
  pub help: &'a str,
  pub value: f64,
}

/// Escapes a label value.
pub fn escape_label(s: &str) -> String {
  let mut o = String::with_capacity(s.len());
  for c in s.chars() {
    match c {
      '\\' => o.push_str("\\\\"),
      '"' => o.push_str("\\\""),
      '\n' => o.push_str("\\n"),
      c => o.push(c),
    }
  }
  o
}

/// Escapes help text (`\` and newline).
fn escape_help(s: &str) -> String {
  s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value (`+Inf`, `-Inf`, `NaN` spelled as Prometheus reads them).
fn value(v: f64) -> String {
  if v.is_nan() {
    "NaN".into()
  } else if v == f64::INFINITY {
    "+Inf".into()
  } else if v == f64::NEG_INFINITY {
    "-Inf".into()
  } else {
    format!("{v}")
  }
}

fn valid_name(n: &str) -> bool {
  let mut cs = n.chars();
  cs.next()
    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
    && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
  let _ = writeln!(o, "# HELP {name} {}", escape_help(help));
  let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// The exposition of `m` at `now`, then `extra`.
pub(crate) fn render(m: &Monitor, now: u64, extra: &[Gauge<'_>]) -> String {
  let mut o = String::with_capacity(1024 + m.calcs.len() * 1500);
  header(
    &mut o,
    "jobwerk_jobs_total",
    "counter",
    "Finished job attempts by calculation and outcome.",
  );
  for c in &m.calcs {
    let name = escape_label(&c.name);
    for out in Outcome::ALL {
      let _ = writeln!(
        o,
        "jobwerk_jobs_total{{calculation=\"{name}\",outcome=\"{}\"}} {}",
        out.as_str(),
        c.outcomes[out as usize]
      );
    }
  }
  header(
    &mut o,
    "jobwerk_job_duration_seconds",
    "histogram",
    "Execution time of completed, failed and timed-out attempts.",
  );
  for c in &m.calcs {
    let name = escape_label(&c.name);
    let mut cum = 0u64;
    for (i, le) in BUCKETS_MS.iter().enumerate() {
      cum += c.prom[i];
      let _ = writeln!(
        o,
        "jobwerk_job_duration_seconds_bucket{{calculation=\"{name}\",le=\"{}\"}} {cum}",
        value(*le as f64 / 1000.0)
      );
    }
    cum += c.prom[BUCKETS_MS.len()];
    let _ = writeln!(
      o,
      "jobwerk_job_duration_seconds_bucket{{calculation=\"{name}\",le=\"+Inf\"}} {cum}"
    );
    let _ = writeln!(
      o,
      "jobwerk_job_duration_seconds_sum{{calculation=\"{name}\"}} {}",
      value(c.run.sum() / 1000.0)
    );
    let _ = writeln!(
      o,
      "jobwerk_job_duration_seconds_count{{calculation=\"{name}\"}} {cum}"
    );
  }
  let last = m.last_sample();
  let gauges = [
    (
      "jobwerk_queue_length",
      "Pending jobs at the latest sample.",
      last.map(|s| s.queued as f64),
    ),
    (
      "jobwerk_queue_oldest_wait_seconds",
      "Wait of the oldest pending job at the latest sample.",
      last.map(|s| s.oldest_wait_ms as f64 / 1000.0),
    ),
    (
      "jobwerk_workers_busy",
      "Busy workers at the latest sample.",
      last.map(|s| s.busy as f64),
    ),
    (
      "jobwerk_workers_max",
      "Worker capacity (maxWorkers) at the latest sample.",
      last.map(|s| s.max_workers as f64),
    ),
  ];
  for (name, help, v) in gauges {
    header(&mut o, name, "gauge", help);
    let _ = writeln!(o, "{name} {}", value(v.unwrap_or(0.0)));
  }
  header(
    &mut o,
    "jobwerk_alerts_active",
    "gauge",
    "Active alerts by severity.",
  );
  for sev in [Severity::Info, Severity::Warning, Severity::Critical] {
    let n = m
      .active_alerts()
      .iter()
      .filter(|a| a.severity == sev)
      .count();
    let _ = writeln!(
      o,
      "jobwerk_alerts_active{{severity=\"{}\"}} {n}",
      sev.as_str()
    );
  }
  header(
    &mut o,
    "jobwerk_health_status",
    "gauge",
    "Overall health: 0 healthy, 1 warning, 2 critical.",
  );
  let (overall, dims) = m.health(now);
  let _ = writeln!(o, "jobwerk_health_status {}", overall.as_number());
  header(
    &mut o,
    "jobwerk_health_dimension_status",
    "gauge",
    "Health per dimension: 0 healthy, 1 warning, 2 critical.",
  );
  for (name, d) in &dims {
    let _ = writeln!(
      o,
      "jobwerk_health_dimension_status{{dimension=\"{name}\"}} {}",
      d.status.as_number()
    );
  }
  header(
    &mut o,
    "jobwerk_storage_health",
    "gauge",
    "Storage: 0 healthy, 1 degraded (unreachable or retrying writes), 2 unhealthy.",
  );
  let _ = writeln!(
    o,
    "jobwerk_storage_health {}",
    m.storage().state.as_number()
  );
  let mut seen: Vec<&str> = BUILTIN.to_vec();
  for g in extra {
    if !valid_name(g.name) || seen.contains(&g.name) {
      continue;
    }
    seen.push(g.name);
    header(&mut o, g.name, "gauge", g.help);
    let _ = writeln!(o, "{} {}", g.name, value(g.value));
  }
  o
}
