//! Reads a schedule as JavaScript sends it (JSON) into a
//! [`ScheduleSpec`], naming the field of anything invalid
//! (`ERR_INVALID_SCHEDULE`, `ERR_INVALID_CRON`, or `ERR_INVALID_ARGUMENT`
//! for the job options).

use serde_json::Value;

use super::options::{self, JobOptions};
use crate::error::{Error, Result};
use crate::job::Backoff;
use crate::scheduler::{Misfire, Overlap, ScheduleSpec, Trigger, MAX_CATCH_UP_LIMIT, MAX_DATE_MS};

const KEYS: &[&str] = &[
  "id",
  "kind",
  "scheduledAt",
  "intervalMs",
  "expression",
  "tz",
  "startAt",
  "endAt",
  "maxRuns",
  "misfire",
  "maxCatchUp",
  "overlap",
  "enabled",
  "data",
  "context",
  "jobOptions",
];

fn date(v: &Value, field: &str) -> Result<u64> {
  options::int(v, field, 0, MAX_DATE_MS as i64, Error::InvalidSchedule)
    .map(|t| t as u64)
    .map_err(|_| Error::InvalidSchedule(format!("{field} must be a valid date, got {v}")))
}

fn opt<'a>(m: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a Value> {
  m.get(k).filter(|v| !v.is_null())
}

/// Parses a schedule for calculation `calc`; `fallback_id` when none is given.
pub fn parse_schedule(
  v: &Value,
  calc: &str,
  fallback_id: String,
  backoff: Backoff,
) -> Result<ScheduleSpec> {
  let mk = Error::InvalidSchedule;
  let m = options::object(Some(v), "schedule", mk)?
    .ok_or_else(|| Error::InvalidSchedule("schedule must be an object".into()))?;
  options::known_keys(m, "options", KEYS, mk)?;
  let id = match opt(m, "id") {
    None => fallback_id,
    Some(Value::String(s)) => s.clone(),
    Some(other) => return Err(mk(format!("id must be a string, got {other}"))),
  };
  let trigger = match m.get("kind").and_then(Value::as_str) {
    Some("once") => {
      let at =
        opt(m, "scheduledAt").ok_or_else(|| mk("scheduledAt must be a valid date".into()))?;
      Trigger::Once {
        scheduled_at: date(at, "scheduledAt")?,
      }
    }
    Some("interval") => {
      let iv = opt(m, "intervalMs").ok_or_else(|| mk("intervalMs must be a number > 0".into()))?;
      let ms = options::int(iv, "intervalMs", 1, MAX_DATE_MS as i64, mk)
        .map_err(|_| mk(format!("intervalMs must be a finite number > 0, got {iv}")))?;
      Trigger::Interval {
        interval_ms: ms as u64,
      }
    }
    Some("cron") => {
      let expr = match opt(m, "expression") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
          return Err(Error::InvalidCron {
            field: "expression".into(),
            message: "the cron expression must be a string".into(),
          })
        }
      };
      let tz = match opt(m, "tz") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
          return Err(Error::InvalidCron {
            field: "tz".into(),
            message: format!("tz must be an IANA time zone name, got {other}"),
          })
        }
      };
      Trigger::cron(expr, tz)?
    }
    _ => return Err(mk("kind must be 'once', 'interval' or 'cron'".into())),
  };
  let mut spec = ScheduleSpec::new(id, calc, trigger);
  if let Some(d) = opt(m, "startAt") {
    spec.start_at = Some(date(d, "startAt")?);
  }
  if let Some(d) = opt(m, "endAt") {
    spec.end_at = Some(date(d, "endAt")?);
  }
  if let Some(n) = opt(m, "maxRuns") {
    spec.max_runs = Some(
      options::int(n, "maxRuns", 1, u32::MAX as i64, mk)
        .map_err(|_| mk(format!("maxRuns must be an integer >= 1, got {n}")))? as u32,
    );
  }
  if let Some(n) = opt(m, "maxCatchUp") {
    spec.max_catch_up = options::int(n, "maxCatchUp", 1, MAX_CATCH_UP_LIMIT as i64, mk)? as u32;
  }
  if let Some(p) = opt(m, "misfire") {
    spec.misfire = match p.as_str() {
      Some("runOnce") => Misfire::RunOnce,
      Some("skip") => Misfire::Skip,
      Some("catchUp") => Misfire::CatchUp,
      _ => {
        return Err(mk(format!(
          "misfire must be 'runOnce', 'skip' or 'catchUp', got {p}"
        )))
      }
    };
  }
  if let Some(p) = opt(m, "overlap") {
    spec.overlap = match p.as_str() {
      Some("skip") => Overlap::Skip,
      Some("queue") => Overlap::Queue,
      _ => return Err(mk(format!("overlap must be 'skip' or 'queue', got {p}"))),
    };
  }
  if let Some(e) = opt(m, "enabled") {
    spec.enabled = e
      .as_bool()
      .ok_or_else(|| mk(format!("enabled must be true or false, got {e}")))?;
  }
  spec.data = m
    .get("data")
    .map(Value::to_string)
    .unwrap_or_else(|| "null".into());
  spec.context = match opt(m, "context") {
    Some(c) => c.to_string(),
    None => "{}".into(),
  };
  if let Some(o) = opt(m, "jobOptions") {
    let parsed = JobOptions::parse(o, "options", backoff)?;
    if parsed.run_at.is_some() || parsed.delay_ms.is_some() || parsed.debounce_ms.is_some() {
      return Err(Error::arg(
        "options.runAt, options.delay and options.debounceMs do not apply to scheduled jobs: the schedule sets their time",
      ));
    }
    spec.job_options = o.to_string();
  }
  spec.validate()?;
  Ok(spec)
}
