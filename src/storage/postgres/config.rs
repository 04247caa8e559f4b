//! `storage: { type: 'postgres', ... }`: parsing and validating the options,
//! each error naming its key (`storage.port`, ...).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`).
pub const MAX_IDENT: usize = 63;

/// Where and how to connect, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConfig {
  /// A libpq-style URL or key=value string (`postgres://user@host/db`);
  /// exclusive with `host`, `port`, `database`, `user`.
  pub connection_string: Option<String>,
  pub host: String,
  pub port: u16,
  pub database: String,
  pub user: String,
  pub password: Option<String>,
  /// TLS on (required, or preferred with `sslmode=prefer`); how the
  /// server is verified is in `tls`. `false`: plain TCP.
  pub ssl: bool,
  /// `storage.ssl`'s object and the connection string's `sslmode` (tls.rs).
  pub tls: super::tls::TlsOptions,
  /// The schema holding jobwerk's tables (created if missing).
  pub schema: String,
  /// Connections in the pool.
  pub pool_size: usize,
  /// How long one connection attempt may take.
  pub connect_timeout: Duration,
  /// How often this process heartbeats and runs the cluster's rescuer
  /// (`heartbeatMs`, default 5 s).
  pub heartbeat: Duration,
  /// A process silent this long is dead and its running jobs are rescued
  /// (`deadAfterMs`, default 30 s; at least twice `heartbeatMs`).
  pub dead_after_ms: u64,
  /// How often the claimer looks for due jobs without a NOTIFY (the
  /// fallback behind PgBouncer, or while the LISTEN connection is down),
  /// and re-reads the counts and the schedules (`pollMs`, default 1 s).
  pub poll: Duration,
  /// How long one statement or transaction (a write, a claim, a read, the
  /// LISTEN connection's connect and `LISTEN`) may wait for the server's
  /// answer before it counts as failed (`statementTimeoutMs`, default
  /// 30 s): a server that keeps the connection open but does not answer
  /// cannot hold a write or a read forever (writes are retried, reads fail
  /// with `ERR_STORAGE`).
  pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgConfig {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("PgConfig")
      .field(
        "connection_string",
        &self.connection_string.as_ref().map(|_| "<set>"),
      )
      .field("host", &self.host)
      .field("port", &self.port)
      .field("database", &self.database)
      .field("user", &self.user)
      .field("password", &self.password.as_ref().map(|_| "<set>"))
      .field("ssl", &self.ssl)
      .field("tls", &self.tls)
      .field("schema", &self.schema)
      .field("pool_size", &self.pool_size)
      .field("connect_timeout", &self.connect_timeout)
      .field("heartbeat", &self.heartbeat)
      .field("dead_after_ms", &self.dead_after_ms)
      .field("poll", &self.poll)
      .field("statement_timeout", &self.statement_timeout)
      .finish()
  }
}

impl Default for PgConfig {
  fn default() -> Self {
    PgConfig {
      connection_string: None,
      host: "localhost".into(),
      port: 5432,
      database: "postgres".into(),
      user: "postgres".into(),
      password: None,
      ssl: false,
      tls: Default::default(),
      schema: "jobwerk".into(),
      pool_size: 10,
      connect_timeout: Duration::from_secs(5),
      heartbeat: Duration::from_secs(5),
      dead_after_ms: 30_000,
      poll: Duration::from_secs(1),
      statement_timeout: Duration::from_secs(30),
    }
  }
}

const KEYS: &[&str] = &[
  "type",
  "connectionString",
  "host",
  "port",
  "database",
  "user",
  "password",
  "ssl",
  "schema",
  "poolSize",
  "connectTimeoutMs",
  "heartbeatMs",
  "deadAfterMs",
  "pollMs",
  "statementTimeoutMs",
];

fn bad(key: &str, msg: impl std::fmt::Display) -> Error {
  Error::InvalidConfig(format!("storage.{key} {msg}"))
}

fn string(o: &Map<String, Value>, key: &str) -> Result<Option<String>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(s)) if s.is_empty() => Err(bad(key, "must not be empty")),
    Some(Value::String(s)) if s.contains('\0') => Err(bad(key, "must not contain NUL")),
    Some(Value::String(s)) => Ok(Some(s.clone())),
    Some(v) => Err(bad(key, format!("must be a string, got {}", kind(v)))),
  }
}

fn int(o: &Map<String, Value>, key: &str, lo: u64, hi: u64) -> Result<Option<u64>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Number(n)) => match n.as_u64() {
      Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
      _ => Err(bad(
        key,
        format!("must be an integer from {lo} to {hi}, got {n}"),
      )),
    },
    Some(v) => Err(bad(key, format!("must be an integer, got {}", kind(v)))),
  }
}

fn kind(v: &Value) -> &'static str {
  match v {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

impl PgConfig {
  /// Parses the `storage` object of the service config.
  pub fn from_json(v: &Value) -> Result<PgConfig> {
    let Value::Object(o) = v else {
      return Err(Error::InvalidConfig(format!(
        "storage must be an object, got {}",
        kind(v)
      )));
    };
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
      return Err(bad(
        k,
        format!(
          "is not a PostgreSQL storage option (known: {})",
          KEYS.join(", ")
        ),
      ));
    }
    match o.get("type") {
      None => {}
      Some(Value::String(t)) if t == "postgres" => {}
      Some(t) => return Err(bad("type", format!("must be 'postgres', got {t}"))),
    }
    // `sslmode` is ours to read (the driver knows only three of its
    // values): taken out of the string, which is kept without it.
    let (connection_string, sslmode) = match string(o, "connectionString")? {
      Some(s) => {
        let (s, m) = super::tls::take_sslmode(&s)?;
        (Some(s), m)
      }
      None => (None, None),
    };
    let mut c = PgConfig {
      connection_string,
      ..PgConfig::default()
    };
    if c.connection_string.is_some() {
      if let Some(k) = ["host", "port", "database", "user"]
        .into_iter()
        .find(|k| o.get(*k).is_some_and(|v| !v.is_null()))
      {
        return Err(bad(
          k,
          "cannot be given with storage.connectionString (put it in the connection string)",
        ));
      }
    }
    if let Some(h) = string(o, "host")? {
      c.host = h;
    }
    if let Some(p) = int(o, "port", 1, 65_535)? {
      c.port = p as u16;
    }
    if let Some(u) = string(o, "user")? {
      c.database = u.clone();
      c.user = u;
    }
    if let Some(d) = string(o, "database")? {
      c.database = d;
    }
    c.password = match o.get("password") {
      None | Some(Value::Null) => None,
      Some(Value::String(s)) if s.contains('\0') => {
        return Err(bad("password", "must not contain NUL"))
      }
      Some(Value::String(s)) => Some(s.clone()),
      Some(v) => {
        return Err(bad(
          "password",
          format!("must be a string, got {}", kind(v)),
        ))
      }
    };
    (c.ssl, c.tls) = super::tls::parse(o.get("ssl"), sslmode.as_deref())?;
    if let Some(s) = string(o, "schema")? {
      if s.len() > MAX_IDENT {
        return Err(bad(
          "schema",
          format!(
            "is {} bytes; PostgreSQL names hold at most {MAX_IDENT}",
            s.len()
          ),
        ));
      }
      c.schema = s;
    }
    if let Some(n) = int(o, "poolSize", 1, 100)? {
      c.pool_size = n as usize;
    }
    if let Some(ms) = int(o, "connectTimeoutMs", 1, 600_000)? {
      c.connect_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = int(o, "heartbeatMs", 100, 600_000)? {
      c.heartbeat = Duration::from_millis(ms);
    }
    if let Some(ms) = int(o, "deadAfterMs", 1_000, 3_600_000)? {
      c.dead_after_ms = ms;
    }
    if let Some(ms) = int(o, "pollMs", 100, 600_000)? {
      c.poll = Duration::from_millis(ms);
    }
    if let Some(ms) = int(o, "statementTimeoutMs", 100, 3_600_000)? {
      c.statement_timeout = Duration::from_millis(ms);
    }
    let beat = c.heartbeat.as_millis() as u64;
    if c.dead_after_ms < beat.saturating_mul(2) {
      return Err(bad(
        "deadAfterMs",
        format!(
          "must be at least twice storage.heartbeatMs ({beat}), got {}",
          c.dead_after_ms
        ),
      ));
    }
    // A connection string that does not parse is a config error, named
    // without echoing it (it may hold a password).
    c.driver_config()?;
    Ok(c)
  }

  /// The driver's config.
  pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config> {
    let mut pc = match &self.connection_string {
      Some(s) => s.parse::<tokio_postgres::Config>().map_err(|e| {
        bad(
          "connectionString",
          format!("is not a PostgreSQL connection string ({e})"),
        )
      })?,
      None => {
        let mut pc = tokio_postgres::Config::new();
        pc.host(&self.host)
          .port(self.port)
          .dbname(&self.database)
          .user(&self.user);
        pc
      }
    };
    if pc.get_user().is_none() {
      pc.user(&self.user);
    }
    if let Some(p) = &self.password {
      pc.password(p);
    }
    pc.connect_timeout(self.connect_timeout);
    // A silently dropped network (no reset) is noticed in about a minute,
    // not after the kernel's two hours: the writes waiting on it are then
    // retried on a new connection (conn.rs).
    pc.keepalives_idle(Duration::from_secs(30))
      .keepalives_interval(Duration::from_secs(10))
      .keepalives_retries(3);
    pc.ssl_mode(if self.ssl && self.tls.prefer {
      tokio_postgres::config::SslMode::Prefer
    } else if self.ssl {
      tokio_postgres::config::SslMode::Require
    } else {
      tokio_postgres::config::SslMode::Disable
    });
    pc.application_name("jobwerk");
    Ok(pc)
  }

  /// Where the server is, for messages (`host:port/database`).
  pub fn target(&self) -> String {
    match self.driver_config() {
      Ok(pc) => {
        let host = pc
          .get_hosts()
          .first()
          .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
          })
          .unwrap_or_else(|| "localhost".into());
        let port = pc.get_ports().first().copied().unwrap_or(5432);
        let db = pc
          .get_dbname()
          .or(pc.get_user())
          .unwrap_or("postgres")
          .to_string();
        format!("{host}:{port}/{db}")
      }
      Err(_) => format!("{}:{}/{}", self.host, self.port, self.database),
    }
  }

  /// The user name, for messages.
  pub fn user_name(&self) -> String {
    self
      .driver_config()
      .ok()
      .and_then(|pc| pc.get_user().map(str::to_string))
      .unwrap_or_else(|| self.user.clone())
  }

  /// The database name, for messages.
  pub fn database_name(&self) -> String {
    self
      .driver_config()
      .ok()
      .and_then(|pc| pc.get_dbname().or(pc.get_user()).map(str::to_string))
      .unwrap_or_else(|| self.database.clone())
  }
}

/// `"name"` with inner quotes doubled: safe to splice into SQL as an
/// identifier, whatever the name holds.
pub fn quote_ident(s: &str) -> String {
  let mut out = String::with_capacity(s.len() + 2);
  out.push('"');
  for ch in s.chars() {
    if ch == '"' {
      out.push('"');
    }
    out.push(ch);
  }
  out.push('"');
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn err(v: Value) -> String {
    match PgConfig::from_json(&v) {
      Err(Error::InvalidConfig(m)) => m,
      other => panic!("expected a config error for {v}, got {other:?}"),
    }
  }

  #[test]
  fn defaults_and_fields() {
    let c = PgConfig::from_json(&json!({ "type": "postgres" })).unwrap();
    assert_eq!(c, PgConfig::default());
    let c = PgConfig::from_json(&json!({
      "host": "db", "port": 6543, "user": "app", "password": "pw",
      "schema": "q\"s", "poolSize": 4, "ssl": true, "connectTimeoutMs": 250
    }))
    .unwrap();
    assert_eq!(
      (
        c.host.as_str(),
        c.port,
        c.database.as_str(),
        c.user.as_str()
      ),
      ("db", 6543, "app", "app")
    );
    assert_eq!((c.schema.as_str(), c.pool_size, c.ssl), ("q\"s", 4, true));
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.target(), "db:6543/app");
    assert!(
      !format!("{c:?}").contains("pw"),
      "the password is not printed"
    );
    let c = PgConfig::from_json(&json!({ "connectionString": "postgres://u@h:7/d" })).unwrap();
    assert_eq!(c.target(), "h:7/d");
    assert_eq!(c.user_name(), "u");
  }

  #[test]
  fn each_error_names_its_key() {
    assert!(err(json!(3)).starts_with("storage must be an object"));
    assert!(
      err(json!({ "hots": "x" })).starts_with("storage.hots is not a PostgreSQL storage option")
    );
    assert!(err(json!({ "type": "mysql" })).starts_with("storage.type must be 'postgres'"));
    assert!(
      err(json!({ "port": 0 })).starts_with("storage.port must be an integer from 1 to 65535")
    );
    assert!(
      err(json!({ "port": "5432" })).starts_with("storage.port must be an integer, got a string")
    );
    assert!(err(json!({ "host": "" })).starts_with("storage.host must not be empty"));
    assert!(err(json!({ "database": 5 })).starts_with("storage.database must be a string"));
    assert!(err(json!({ "password": 5 })).starts_with("storage.password must be a string"));
    assert!(err(json!({ "ssl": "yes" })).starts_with("storage.ssl must be a boolean or an object"));
    assert!(err(json!({ "poolSize": 0 }))
      .starts_with("storage.poolSize must be an integer from 1 to 100"));
    assert!(err(json!({ "poolSize": 2.5 })).starts_with("storage.poolSize must be an integer"));
    assert!(err(json!({ "connectTimeoutMs": -1 })).starts_with("storage.connectTimeoutMs"));
    assert!(err(json!({ "schema": "x".repeat(64) })).starts_with("storage.schema is 64 bytes"));
    assert!(err(json!({ "schema": "a\u{0}b" })).starts_with("storage.schema must not contain NUL"));
    assert!(
      err(json!({ "connectionString": "postgres://h", "host": "h" }))
        .starts_with("storage.host cannot be given with storage.connectionString")
    );
    let m = err(json!({ "connectionString": "postgres://u:secret@h:notaport/d" }));
    assert!(
      m.starts_with("storage.connectionString is not a PostgreSQL connection string"),
      "{m}"
    );
    assert!(!m.contains("secret"), "{m}");
  }

  #[test]
  fn heartbeat_and_dead_after() {
    let c = PgConfig::from_json(&json!({ "heartbeatMs": 500, "deadAfterMs": 3000 })).unwrap();
    assert_eq!(
      (c.heartbeat, c.dead_after_ms),
      (Duration::from_millis(500), 3000)
    );
    assert!(err(json!({ "heartbeatMs": 50 }))
      .starts_with("storage.heartbeatMs must be an integer from 100 to 600000"));
    assert_eq!(
      PgConfig::from_json(&json!({ "pollMs": 30000 }))
        .unwrap()
        .poll,
      Duration::from_secs(30)
    );
    assert_eq!(
      PgConfig::from_json(&json!({ "statementTimeoutMs": 500 }))
        .unwrap()
        .statement_timeout,
      Duration::from_millis(500)
    );
    assert!(err(json!({ "statementTimeoutMs": 0 }))
      .starts_with("storage.statementTimeoutMs must be an integer from 100"));
    assert!(err(json!({ "pollMs": 99 })).starts_with("storage.pollMs must be an integer from 100"));
    assert!(err(json!({ "deadAfterMs": 10 }))
      .starts_with("storage.deadAfterMs must be an integer from 1000"));
    let m = err(json!({ "heartbeatMs": 2000, "deadAfterMs": 3000 }));
    assert!(
      m.starts_with("storage.deadAfterMs must be at least twice storage.heartbeatMs (2000)"),
      "{m}"
    );
  }

  #[test]
  fn identifiers_are_quoted() {
    assert_eq!(quote_ident("jobwerk"), "\"jobwerk\"");
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(
      quote_ident("x\"; DROP TABLE t; --"),
      "\"x\"\"; DROP TABLE t; --\""
    );
  }
}
