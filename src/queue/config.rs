//! The queue's configuration (the seed's `queue` section).

use serde_json::Value;

use super::options::{self, JobOptions, MAX_MS};
use crate::error::{Error, Result};
use crate::job::Backoff;

/// Settings of one queue. Defaults are the seed's.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
  /// Handlers in flight at most.
  pub max_workers: u32,
  /// Waiting + pending jobs at most; adding more is `ERR_QUEUE_FULL`.
  pub max_queue_size: usize,
  /// Per-attempt timeout when a job sets none (ms; 0 = none).
  pub default_timeout_ms: u32,
  /// Retries when a job sets none.
  pub default_retries: u32,
  /// Retry delays when a job sets none.
  pub default_backoff: Backoff,
  /// How often finished jobs are pruned (ms).
  pub cleanup_interval_ms: u64,
  /// Finished jobs older than this are pruned (ms).
  pub max_job_age_ms: u64,
  /// Weights of `high`, `medium`, `low`: lower runs first.
  pub priority_weights: [i32; 3],
  /// Largest data + context of one job, in bytes of JSON.
  pub max_payload_bytes: usize,
}

impl Default for QueueConfig {
  fn default() -> Self {
    QueueConfig {
      max_workers: 3,
      max_queue_size: 100,
      default_timeout_ms: 30_000,
      default_retries: 2,
      default_backoff: Backoff::default(),
      cleanup_interval_ms: 300_000,
      max_job_age_ms: 3_600_000,
      priority_weights: [1, 2, 3],
      max_payload_bytes: 1 << 20,
    }
  }
}

const KEYS: &[&str] = &[
  "maxWorkers",
  "maxQueueSize",
  "defaultTimeout",
  "defaultRetries",
  "defaultBackoff",
  "cleanupInterval",
  "maxJobAge",
  "priorityWeights",
  "maxPayloadBytes",
];

impl QueueConfig {
  /// Reads the `queue` section (`null` or absent: all defaults). Errors are
  /// `ERR_INVALID_CONFIG` naming the key.
  pub fn from_json(v: Option<&Value>) -> Result<QueueConfig> {
    let mk = Error::InvalidConfig;
    let mut c = QueueConfig::default();
    let Some(m) = options::object(v, "queue", mk)? else {
      return Ok(c);
    };
    options::known_keys(m, "queue", KEYS, mk)?;
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    if let Some(v) = get("maxWorkers") {
      c.max_workers = options::int(v, "queue.maxWorkers", 1, 10_000, mk)? as u32;
    }
    if let Some(v) = get("maxQueueSize") {
      c.max_queue_size = options::int(v, "queue.maxQueueSize", 1, 1 << 40, mk)? as usize;
    }
    if let Some(v) = get("defaultTimeout") {
      c.default_timeout_ms = options::int(v, "queue.defaultTimeout", 0, MAX_MS, mk)? as u32;
    }
    if let Some(v) = get("defaultRetries") {
      c.default_retries = options::int(v, "queue.defaultRetries", 0, 1_000, mk)? as u32;
    }
    if let Some(v) = get("defaultBackoff") {
      c.default_backoff = options::backoff(v, "queue.defaultBackoff", c.default_backoff, mk)?;
    }
    if let Some(v) = get("cleanupInterval") {
      c.cleanup_interval_ms = options::int(v, "queue.cleanupInterval", 1, MAX_MS, mk)? as u64;
    }
    if let Some(v) = get("maxJobAge") {
      c.max_job_age_ms = options::int(v, "queue.maxJobAge", 0, i64::MAX >> 12, mk)? as u64;
    }
    if let Some(v) = get("maxPayloadBytes") {
      c.max_payload_bytes = options::int(v, "queue.maxPayloadBytes", 2, 1 << 30, mk)? as usize;
    }
    if let Some(v) = get("priorityWeights") {
      let w = options::object(Some(v), "queue.priorityWeights", mk)?.unwrap_or(m);
      options::known_keys(w, "queue.priorityWeights", &["high", "medium", "low"], mk)?;
      for (i, k) in ["high", "medium", "low"].iter().enumerate() {
        if let Some(x) = w.get(*k) {
          let f = format!("queue.priorityWeights.{k}");
          c.priority_weights[i] = options::int(x, &f, -1_000_000, 1_000_000, mk)? as i32;
        }
      }
    }
    Ok(c)
  }

  /// The defaults a job gets when neither it nor its calculation sets them.
  pub fn job_defaults(&self) -> JobOptions {
    JobOptions {
      priority: Some(crate::job::Priority::Medium),
      timeout_ms: Some(self.default_timeout_ms),
      retries: Some(self.default_retries),
      backoff: Some(self.default_backoff),
      ..JobOptions::default()
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn defaults_are_the_seeds() {
    let c = QueueConfig::from_json(None).expect("defaults");
    assert_eq!(c.max_workers, 3);
    assert_eq!(c.max_queue_size, 100);
    assert_eq!(c.default_timeout_ms, 30_000);
    assert_eq!(c.default_retries, 2);
    assert_eq!(c.cleanup_interval_ms, 300_000);
    assert_eq!(c.max_job_age_ms, 3_600_000);
    assert_eq!(c.priority_weights, [1, 2, 3]);
  }

  #[test]
  fn bad_values_name_their_key() {
    for (v, key) in [
      (json!({"maxWorkers": 0}), "queue.maxWorkers"),
      (json!({"maxWorkers": "NaN"}), "queue.maxWorkers"),
      (json!({"maxQueueSize": -5}), "queue.maxQueueSize"),
      (json!({"defaultTimeout": 1.5}), "queue.defaultTimeout"),
      (
        json!({"priorityWeights": {"high": "x"}}),
        "queue.priorityWeights.high",
      ),
      (
        json!({"priorityWeights": {"urgent": 1}}),
        "queue.priorityWeights.urgent",
      ),
      (json!({"maxWorker": 3}), "queue.maxWorker"),
      (json!("fast"), "queue"),
    ] {
      let e = QueueConfig::from_json(Some(&v)).expect_err("invalid");
      assert_eq!(e.code(), "ERR_INVALID_CONFIG");
      assert!(e.to_string().contains(key), "{e} should name {key}");
    }
  }
}

/// The whole service's configuration as far as the core reads it.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
  pub queue: QueueConfig,
  /// `Some(start)` for a manual clock starting at `start` (epoch ms).
  pub manual_clock: Option<u64>,
  pub storage: StorageConfig,
  /// `scheduler.enabled` (default true).
  pub schedules_on: bool,
  /// `scheduler.checkInterval`: the longest the timer sleeps (ms).
  pub check_interval_ms: u64,
  /// The `monitoring` section.
  pub monitoring: crate::monitor::MonitorConfig,
  /// `monitoring.alerting.webhook` and `.email`.
  pub alert_channels: crate::monitor::channels::ChannelsConfig,
}

/// Where jobs are kept (`config.storage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
  /// `{ type: 'memory' }`: nothing survives the process.
  Memory,
  /// `{ type: 'sqlite', path, durability }` (the default).
  Sqlite {
    /// The database file (default `.tmp/jobwerk.db` under the working directory).
    path: String,
    /// `durability: 'full'` (`synchronous=FULL`); `'normal'` otherwise.
    full: bool,
  },
  /// `{ type: 'postgres', connectionString | host, port, ... }` (preview).
  #[cfg(feature = "postgres")]
  Postgres(Box<crate::storage::postgres::PgConfig>),
}

impl Default for StorageConfig {
  fn default() -> Self {
    StorageConfig::Sqlite {
      path: ".tmp/jobwerk.db".into(),
      full: false,
    }
  }
}

impl StorageConfig {
  /// Reads `config.storage`; `None` when absent.
  pub fn from_json(v: Option<&Value>) -> Result<Option<StorageConfig>> {
    let mk = Error::InvalidConfig;
    let Some(st) = options::object(v, "config.storage", mk)? else {
      return Ok(None);
    };
    let kind = match st.get("type") {
      None | Some(Value::Null) => "sqlite",
      Some(Value::String(t)) => t.as_str(),
      Some(other) => {
        return Err(mk(format!(
          "config.storage.type must be 'sqlite', 'memory' or 'postgres', got {other}"
        )))
      }
    };
    match kind {
      "memory" => {
        options::known_keys(st, "config.storage", &["type"], mk)?;
        Ok(Some(StorageConfig::Memory))
      }
      "sqlite" => {
        options::known_keys(st, "config.storage", &["type", "path", "durability"], mk)?;
        let path = match st.get("path") {
          None | Some(Value::Null) => ".tmp/jobwerk.db".to_string(),
          Some(Value::String(p)) if !p.trim().is_empty() && !p.contains('\0') => p.clone(),
          Some(other) => {
            return Err(mk(format!(
              "config.storage.path must be a non-empty file path, got {other}"
            )))
          }
        };
        let full = match st.get("durability") {
          None | Some(Value::Null) => false,
          Some(Value::String(d)) if d == "normal" => false,
          Some(Value::String(d)) if d == "full" => true,
          Some(other) => {
            return Err(mk(format!(
              "config.storage.durability must be 'normal' or 'full', got {other}"
            )))
          }
        };
        Ok(Some(StorageConfig::Sqlite { path, full }))
      }
      #[cfg(feature = "postgres")]
      "postgres" => {
        // The names in its errors are `storage.<key>`: say `config.storage.<key>`.
        let c = crate::storage::postgres::PgConfig::from_json(v.unwrap_or(&Value::Null)).map_err(
          |e| match e {
            Error::InvalidConfig(m) if !m.starts_with("config.") => mk(format!("config.{m}")),
            other => other,
          },
        )?;
        Ok(Some(StorageConfig::Postgres(Box::new(c))))
      }
      #[cfg(not(feature = "postgres"))]
      "postgres" => Err(mk(
        "config.storage.type 'postgres' is not available in this build (use 'sqlite' or 'memory')"
          .into(),
      )),
      other => Err(mk(format!(
        "config.storage.type must be 'sqlite', 'memory' or 'postgres', got '{other}'"
      ))),
    }
  }
}

impl ServiceConfig {
  /// Reads `{ queue, scheduler, monitoring, storage, clock, unref }`;
  /// sections other issues own are accepted as objects and not read yet.
  pub fn from_json(v: &Value, now: u64) -> Result<ServiceConfig> {
    let mk = Error::InvalidConfig;
    let m = options::object(Some(v), "config", mk)?;
    let empty = serde_json::Map::new();
    let m = m.unwrap_or(&empty);
    options::known_keys(
      m,
      "config",
      &[
        "queue",
        "scheduler",
        "monitoring",
        "storage",
        "clock",
        "unref",
      ],
      mk,
    )?;
    let monitoring = crate::monitor::MonitorConfig::from_json(m.get("monitoring"))?;
    let alert_channels = crate::monitor::channels::ChannelsConfig::from_json(m.get("monitoring"))?;
    let mut schedules_on = true;
    let mut check_interval_ms = super::engine::MAX_SLEEP_MS;
    if let Some(sc) = options::object(m.get("scheduler"), "config.scheduler", mk)? {
      options::known_keys(sc, "scheduler", &["enabled", "checkInterval"], mk)?;
      if let Some(e) = sc.get("enabled").filter(|v| !v.is_null()) {
        schedules_on = e
          .as_bool()
          .ok_or_else(|| mk(format!("scheduler.enabled must be true or false, got {e}")))?;
      }
      if let Some(c) = sc.get("checkInterval").filter(|v| !v.is_null()) {
        check_interval_ms = options::int(c, "scheduler.checkInterval", 1, MAX_MS, mk)? as u64;
      }
    }
    let storage = StorageConfig::from_json(m.get("storage"))?;
    let manual_clock = match m.get("clock") {
      None | Some(Value::Null) => None,
      Some(Value::String(s)) if s == "system" => None,
      Some(Value::String(s)) if s == "manual" => Some(now),
      Some(Value::Object(c)) => {
        options::known_keys(c, "config.clock", &["type", "now"], mk)?;
        match c.get("type").and_then(Value::as_str) {
          Some("manual") => match c.get("now") {
            None | Some(Value::Null) => Some(now),
            Some(t) => {
              Some(options::int(t, "config.clock.now", 0, 253_402_300_799_999, mk)? as u64)
            }
          },
          Some("system") => None,
          _ => return Err(mk("config.clock.type must be 'manual' or 'system'".into())),
        }
      }
      Some(other) => {
        return Err(mk(format!(
          "config.clock must be 'system', 'manual' or {{ type: 'manual', now }}, got {other}"
        )))
      }
    };
    // Tests with a manual clock default to memory: parallel test files would
    // otherwise share (and lock) one file.
    let storage = match storage {
      Some(s) => s,
      None if manual_clock.is_some() => StorageConfig::Memory,
      None => StorageConfig::default(),
    };
    Ok(ServiceConfig {
      queue: QueueConfig::from_json(m.get("queue"))?,
      manual_clock,
      storage,
      schedules_on,
      check_interval_ms,
      monitoring,
      alert_channels,
    })
  }
}

#[cfg(test)]
mod service_tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn reads_clock_and_rejects_unknown_sections() {
    let c = ServiceConfig::from_json(&json!({"clock": "manual"}), 7).expect("valid");
    assert_eq!(c.manual_clock, Some(7));
    let c =
      ServiceConfig::from_json(&json!({"clock": {"type": "manual", "now": 5}}), 7).expect("valid");
    assert_eq!(c.manual_clock, Some(5));
    let c = ServiceConfig::from_json(&json!(null), 7).expect("valid");
    assert_eq!(c.manual_clock, None);
    for bad in [
      json!({"queues": {}}),
      json!({"clock": "fast"}),
      json!({"storage": {"type": "redis"}}),
      json!([]),
    ] {
      let e = ServiceConfig::from_json(&bad, 0).expect_err("invalid");
      assert_eq!(e.code(), "ERR_INVALID_CONFIG");
    }
  }

  #[cfg(feature = "postgres")]
  #[test]
  fn reads_postgres_storage_and_names_bad_keys() {
    let c = ServiceConfig::from_json(
      &json!({"storage": {"type": "postgres", "host": "db", "port": 6543, "schema": "q"}}),
      0,
    )
    .expect("valid");
    match c.storage {
      StorageConfig::Postgres(p) => {
        assert_eq!(
          (p.host.as_str(), p.port, p.schema.as_str()),
          ("db", 6543, "q")
        );
      }
      other => panic!("not postgres: {other:?}"),
    }
    for (bad, key) in [
      (
        json!({"type": "postgres", "port": "x"}),
        "config.storage.port",
      ),
      (
        json!({"type": "postgres", "poolSize": 0}),
        "config.storage.poolSize",
      ),
      (
        json!({"type": "postgres", "path": "a.db"}),
        "config.storage.path",
      ),
    ] {
      let e = ServiceConfig::from_json(&json!({ "storage": bad }), 0).expect_err("invalid");
      assert_eq!(e.code(), "ERR_INVALID_CONFIG");
      assert!(e.to_string().contains(key), "{e} should name {key}");
    }
  }
}
