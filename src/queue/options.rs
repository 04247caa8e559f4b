//! Validation of the queue's configuration and of per-job options, both given
//! as JSON (the binding serializes what JavaScript passed; non-finite numbers
//! arrive as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, so they are
//! reported, not silently turned into `null`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::job::{Backoff, BackoffKind, Job, JobId, Priority, Text};

/// Builds an error of the right kind from a message.
type Mk = fn(String) -> Error;

/// A short rendering of a bad value for a message.
pub(crate) fn describe(v: &Value) -> String {
  let s = v.to_string();
  if s.len() > 60 {
    format!(
      "{}...",
      &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())]
    )
  } else {
    s
  }
}

/// An integer in `min..=max`.
pub(crate) fn int(v: &Value, field: &str, min: i64, max: i64, mk: Mk) -> Result<i64> {
  match v.as_f64() {
    Some(f) if f.fract() == 0.0 && f >= min as f64 && f <= max as f64 => Ok(f as i64),
    _ => Err(mk(format!(
      "{field} must be an integer from {min} to {max}, got {}",
      describe(v)
    ))),
  }
}

/// A number in `min..=max`.
pub(crate) fn num(v: &Value, field: &str, min: f64, max: f64, mk: Mk) -> Result<f64> {
  match v.as_f64() {
    Some(f) if f.is_finite() && f >= min && f <= max => Ok(f),
    _ => Err(mk(format!(
      "{field} must be a number from {min} to {max}, got {}",
      describe(v)
    ))),
  }
}

/// An object (or `null`/absent, which is empty).
pub(crate) fn object<'a>(
  v: Option<&'a Value>,
  field: &str,
  mk: Mk,
) -> Result<Option<&'a Map<String, Value>>> {
  match v {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Object(m)) => Ok(Some(m)),
    Some(other) => Err(mk(format!(
      "{field} must be an object, got {}",
      describe(other)
    ))),
  }
}

/// Rejects keys not in `known`, naming the first unknown one.
pub(crate) fn known_keys(
  m: &Map<String, Value>,
  field: &str,
  known: &[&str],
  mk: Mk,
) -> Result<()> {
  for k in m.keys() {
    if !known.contains(&k.as_str()) {
      return Err(mk(format!(
        "{field}.{k} is not a known key (known: {})",
        known.join(", ")
      )));
    }
  }
  Ok(())
}

/// A priority: `'high' | 'medium' | 'low'` or an integer weight.
pub(crate) fn priority(v: &Value, field: &str, mk: Mk) -> Result<Priority> {
  if let Some(s) = v.as_str() {
    if let Some(p) = Priority::from_name(s) {
      return Ok(p);
    }
  } else if v.is_number() {
    return int(v, field, i32::MIN as i64, i32::MAX as i64, mk).map(|w| Priority::Weight(w as i32));
  }
  Err(mk(format!(
    "{field} must be 'high', 'medium', 'low' or an integer, got {}",
    describe(v)
  )))
}

/// Largest delay, timeout or interval in ms (about 24.8 days).
pub const MAX_MS: i64 = i32::MAX as i64;

/// A retry policy: a number (fixed delay in ms) or
/// `{ type: 'exponential' | 'fixed', delay | delayMs, maxDelay | maxDelayMs, jitter }`.
pub(crate) fn backoff(v: &Value, field: &str, base: Backoff, mk: Mk) -> Result<Backoff> {
  if v.is_number() {
    let d = int(v, field, 0, MAX_MS, mk)?;
    return Ok(Backoff {
      kind: BackoffKind::Fixed,
      delay_ms: d as u32,
      max_delay_ms: 0,
      jitter: 0.0,
    });
  }
  let Some(m) = object(Some(v), field, mk)? else {
    return Ok(base);
  };
  known_keys(
    m,
    field,
    &[
      "type",
      "delay",
      "delayMs",
      "maxDelay",
      "maxDelayMs",
      "jitter",
    ],
    mk,
  )?;
  let mut b = base;
  if let Some(t) = m.get("type") {
    b.kind = match t.as_str() {
      Some("exponential") => BackoffKind::Exponential,
      Some("fixed") => BackoffKind::Fixed,
      _ => {
        return Err(mk(format!(
          "{field}.type must be 'exponential' or 'fixed', got {}",
          describe(t)
        )))
      }
    };
  }
  for key in ["delay", "delayMs"] {
    if let Some(d) = m.get(key) {
      b.delay_ms = int(d, &format!("{field}.{key}"), 0, MAX_MS, mk)? as u32;
    }
  }
  for key in ["maxDelay", "maxDelayMs"] {
    if let Some(d) = m.get(key) {
      b.max_delay_ms = int(d, &format!("{field}.{key}"), 0, MAX_MS, mk)? as u32;
    }
  }
  if let Some(j) = m.get("jitter") {
    b.jitter = num(j, &format!("{field}.jitter"), 0.0, 1.0, mk)? as f32;
  }
  Ok(b)
}

/// Per-job settings given on a calculation or on one `add` call; `None`
/// fields fall back to the calculation's, then to the queue's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOptions {
  pub priority: Option<Priority>,
  pub timeout_ms: Option<u32>,
  pub retries: Option<u32>,
  pub backoff: Option<Backoff>,
  /// Absolute due time (epoch ms).
  pub run_at: Option<u64>,
  /// Due time relative to now (ms).
  pub delay_ms: Option<u64>,
  /// Jobs that must complete first (`dependsOn`), as given (ids checked by the queue).
  pub depends_on: Vec<String>,
  /// `onDependencyFailure: 'ignore'`: run even if a dependency failed.
  pub ignore_dependency_failure: bool,
  /// `key`: while a job with this key is waiting, pending or running, adding
  /// another adds nothing (see [`OnDuplicate`]).
  pub key: Option<String>,
  /// `onDuplicate`, as given (`None`: [`JobOptions::on_duplicate`] decides).
  pub on_duplicate: Option<OnDuplicate>,
  /// `debounceMs`: the job runs this long after the last add with its key.
  pub debounce_ms: Option<u64>,
  /// `concurrencyKey`: at most one running job per concurrency key.
  pub concurrency_key: Option<String>,
}

/// What adding a job whose `key` an unfinished job holds does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
  /// Nothing: the existing job's id is returned (the default).
  Skip,
  /// The existing job takes the new data and context if it has not started;
  /// if it is running, the new job is added behind it (its successor).
  Replace,
}

/// The longest `key` or `concurrencyKey`, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// A key: a non-empty string of at most [`MAX_KEY_BYTES`] bytes.
fn key_string(v: &Value, field: &str, mk: Mk) -> Result<String> {
  match v.as_str() {
    // No NUL: PostgreSQL's text cannot hold one (the same rule everywhere).
    Some(s) if s.contains('\0') => Err(mk(format!(
      "{field} must not contain a NUL character (\\u0000)"
    ))),
    Some(s) if !s.is_empty() && s.len() <= MAX_KEY_BYTES => Ok(s.to_string()),
    Some(s) if !s.is_empty() => Err(mk(format!(
      "{field} must be at most {MAX_KEY_BYTES} bytes long, got {} bytes",
      s.len()
    ))),
    _ => Err(mk(format!(
      "{field} must be a non-empty string (at most {MAX_KEY_BYTES} bytes), got {}",
      describe(v)
    ))),
  }
}

impl JobOptions {
  /// A new pending job with these (resolved) options.
  pub fn pending_job(&self, id: JobId, name: u32, now: u64, run_at: u64, data: Text) -> Job {
    Job {
      priority: self.priority.unwrap_or(Priority::Medium),
      max_retries: self.retries.unwrap_or(0),
      timeout_ms: self.timeout_ms.unwrap_or(0),
      backoff: self.backoff.unwrap_or_default(),
      ..Job::new(id, name, now, run_at, data)
    }
  }

  /// Parses options from JSON (`null` is empty). `field` prefixes messages.
  pub fn parse(v: &Value, field: &str, base_backoff: Backoff) -> Result<JobOptions> {
    let mk: Mk = Error::InvalidArgument;
    let Some(m) = object(Some(v), field, mk)? else {
      return Ok(JobOptions::default());
    };
    known_keys(
      m,
      field,
      &[
        "priority",
        "timeout",
        "retries",
        "backoff",
        "runAt",
        "delay",
        "dependsOn",
        "onDependencyFailure",
        "key",
        "onDuplicate",
        "debounceMs",
        "concurrencyKey",
      ],
      mk,
    )?;
    let mut o = JobOptions::default();
    if let Some(p) = m.get("priority").filter(|v| !v.is_null()) {
      o.priority = Some(priority(p, &format!("{field}.priority"), mk)?);
    }
    if let Some(t) = m.get("timeout").filter(|v| !v.is_null()) {
      o.timeout_ms = Some(int(t, &format!("{field}.timeout"), 0, MAX_MS, mk)? as u32);
    }
    if let Some(r) = m.get("retries").filter(|v| !v.is_null()) {
      o.retries = Some(int(r, &format!("{field}.retries"), 0, 1_000, mk)? as u32);
    }
    if let Some(b) = m.get("backoff").filter(|v| !v.is_null()) {
      o.backoff = Some(backoff(b, &format!("{field}.backoff"), base_backoff, mk)?);
    }
    if let Some(r) = m.get("runAt").filter(|v| !v.is_null()) {
      // Up to the year 9999.
      o.run_at = Some(int(r, &format!("{field}.runAt"), 0, 253_402_300_799_999, mk)? as u64);
    }
    if let Some(d) = m.get("delay").filter(|v| !v.is_null()) {
      o.delay_ms = Some(int(d, &format!("{field}.delay"), 0, MAX_MS, mk)? as u64);
    }
    if let Some(d) = m.get("dependsOn").filter(|v| !v.is_null()) {
      let bad = || {
        mk(format!(
          "{field}.dependsOn must be an array of job ids (strings), got {}",
          describe(d)
        ))
      };
      let list = d.as_array().ok_or_else(bad)?;
      if list.len() > 1_000 {
        return Err(mk(format!("{field}.dependsOn may list at most 1000 jobs")));
      }
      for id in list {
        o.depends_on.push(id.as_str().ok_or_else(bad)?.to_string());
      }
    }
    if let Some(p) = m.get("onDependencyFailure").filter(|v| !v.is_null()) {
      o.ignore_dependency_failure = match p.as_str() {
        Some("fail") => false,
        Some("ignore") => true,
        _ => {
          return Err(mk(format!(
            "{field}.onDependencyFailure must be 'fail' or 'ignore', got {}",
            describe(p)
          )))
        }
      };
    }
    if let Some(k) = m.get("key").filter(|v| !v.is_null()) {
      o.key = Some(key_string(k, &format!("{field}.key"), mk)?);
    }
    if let Some(k) = m.get("concurrencyKey").filter(|v| !v.is_null()) {
      o.concurrency_key = Some(key_string(k, &format!("{field}.concurrencyKey"), mk)?);
    }
    if let Some(p) = m.get("onDuplicate").filter(|v| !v.is_null()) {
      o.on_duplicate = Some(match p.as_str() {
        Some("skip") => OnDuplicate::Skip,
        Some("replace") => OnDuplicate::Replace,
        _ => {
          return Err(mk(format!(
            "{field}.onDuplicate must be 'skip' or 'replace', got {}",
            describe(p)
          )))
        }
      });
      if o.key.is_none() {
        return Err(mk(format!(
          "{field}.onDuplicate needs {field}.key (the key that makes a job a duplicate)"
        )));
      }
    }
    if let Some(d) = m.get("debounceMs").filter(|v| !v.is_null()) {
      o.debounce_ms = Some(int(d, &format!("{field}.debounceMs"), 0, MAX_MS, mk)? as u64);
      if o.key.is_none() {
        return Err(mk(format!(
          "{field}.debounceMs needs {field}.key (the jobs it debounces share a key)"
        )));
      }
      if o.run_at.is_some() || o.delay_ms.is_some() {
        return Err(mk(format!(
          "{field}.debounceMs sets the job's due time: it cannot be combined with {field}.runAt or {field}.delay"
        )));
      }
    }
    Ok(o)
  }

  /// What a duplicate add does: as given, else `replace` with `debounceMs`
  /// (the job runs with the last add's data), else `skip`.
  pub fn on_duplicate(&self) -> OnDuplicate {
    self.on_duplicate.unwrap_or(if self.debounce_ms.is_some() {
      OnDuplicate::Replace
    } else {
      OnDuplicate::Skip
    })
  }

  /// These options over `base`: each field set here wins (dependencies,
  /// `key`, `onDuplicate` and `debounceMs` are per job: they come from
  /// `self` only; a `concurrencyKey` may come from the calculation).
  pub fn over(&self, base: &JobOptions) -> JobOptions {
    JobOptions {
      priority: self.priority.or(base.priority),
      timeout_ms: self.timeout_ms.or(base.timeout_ms),
      retries: self.retries.or(base.retries),
      backoff: self.backoff.or(base.backoff),
      run_at: self.run_at.or(base.run_at),
      delay_ms: self.delay_ms.or(base.delay_ms),
      depends_on: self.depends_on.clone(),
      ignore_dependency_failure: self.ignore_dependency_failure,
      key: self.key.clone(),
      on_duplicate: self.on_duplicate,
      debounce_ms: self.debounce_ms,
      concurrency_key: self
        .concurrency_key
        .clone()
        .or_else(|| base.concurrency_key.clone()),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn parses_full_options() {
    let o = JobOptions::parse(
      &json!({"priority": "high", "timeout": 500, "retries": 3, "backoff": {"type": "fixed", "delay": 20}, "runAt": 1000, "delay": 5}),
      "options",
      Backoff::default(),
    )
    .expect("valid");
    assert_eq!(o.priority, Some(Priority::High));
    assert_eq!(o.timeout_ms, Some(500));
    assert_eq!(o.retries, Some(3));
    assert_eq!(
      o.backoff.map(|b| (b.kind, b.delay_ms)),
      Some((BackoffKind::Fixed, 20))
    );
    assert_eq!(o.run_at, Some(1000));
    assert_eq!(o.delay_ms, Some(5));
  }

  #[test]
  fn parses_keys_and_picks_what_a_duplicate_does() {
    let parse = |v| JobOptions::parse(&v, "options", Backoff::default()).expect("valid");
    let o = parse(json!({"key": "table:1", "concurrencyKey": "table"}));
    assert_eq!(o.key.as_deref(), Some("table:1"));
    assert_eq!(o.concurrency_key.as_deref(), Some("table"));
    assert_eq!(o.on_duplicate(), OnDuplicate::Skip);
    let o = parse(json!({"key": "k", "debounceMs": 250}));
    assert_eq!(
      (o.debounce_ms, o.on_duplicate()),
      (Some(250), OnDuplicate::Replace)
    );
    let o = parse(json!({"key": "k", "debounceMs": 250, "onDuplicate": "skip"}));
    assert_eq!(o.on_duplicate(), OnDuplicate::Skip);
    let o = parse(json!({"key": "k", "onDuplicate": "replace"}));
    assert_eq!(o.on_duplicate(), OnDuplicate::Replace);
    // A concurrency key may come from the calculation; a key may not.
    let base = parse(json!({"concurrencyKey": "c"}));
    assert_eq!(
      parse(json!({})).over(&base).concurrency_key.as_deref(),
      Some("c")
    );
    let base = parse(json!({"key": "k"}));
    assert_eq!(parse(json!({})).over(&base).key, None);
  }

  #[test]
  fn names_the_bad_field() {
    let cases = [
      (json!({"timeout": "NaN"}), "options.timeout"),
      (json!({"timeout": -1}), "options.timeout"),
      (json!({"retries": 1.5}), "options.retries"),
      (json!({"priority": "urgent"}), "options.priority"),
      (
        json!({"backoff": {"type": "linear"}}),
        "options.backoff.type",
      ),
      (json!({"backoff": {"jitter": 2}}), "options.backoff.jitter"),
      (json!({"runAt": "Infinity"}), "options.runAt"),
      (json!({"attempts": 3}), "options.attempts"),
      (json!(5), "options"),
      (json!({"key": ""}), "options.key"),
      (json!({"key": 7}), "options.key"),
      (json!({"key": "k".repeat(513)}), "options.key"),
      (json!({"concurrencyKey": ""}), "options.concurrencyKey"),
      (json!({"concurrencyKey": ["a"]}), "options.concurrencyKey"),
      (
        json!({"concurrencyKey": "a\u{0}b"}),
        "options.concurrencyKey",
      ),
      (json!({"key": "\u{0}"}), "options.key"),
      (
        json!({"key": "k", "onDuplicate": "merge"}),
        "options.onDuplicate",
      ),
      (json!({"onDuplicate": "skip"}), "options.onDuplicate"),
      (json!({"debounceMs": 100}), "options.debounceMs"),
      (json!({"key": "k", "debounceMs": -1}), "options.debounceMs"),
      (
        json!({"key": "k", "debounceMs": 5, "delay": 5}),
        "options.debounceMs",
      ),
    ];
    for (v, field) in cases {
      let e = JobOptions::parse(&v, "options", Backoff::default()).expect_err("invalid");
      assert_eq!(e.code(), "ERR_INVALID_ARGUMENT");
      assert!(e.to_string().contains(field), "{e} should name {field}");
    }
  }
}
