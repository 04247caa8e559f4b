//! Versioned migrations: applied in one transaction under an advisory lock
//! (so processes starting together migrate once), each version once; a
//! schema written by a newer jobwerk is refused, naming both versions.
//!
//! Every statement is built with the schema quoted as an identifier
//! ([`quote_ident`](super::config::quote_ident)), so any schema name works.

use super::{pg_err, PgStore};
use crate::error::{Error, Result};

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// The statements of each version, `{s}` standing for the quoted schema.
pub(super) const MIGRATIONS: &[&str] = &[
  // 1: the hot table, dependencies, history, processes, schedules.
  r#"
CREATE TABLE {s}.job (
  id                  uuid     PRIMARY KEY,
  name                text     NOT NULL,
  state               smallint NOT NULL,
  priority            int      NOT NULL,
  priority_name       smallint,
  run_at              bigint   NOT NULL,
  created_at          bigint   NOT NULL,
  started_at          bigint   NOT NULL DEFAULT 0,
  attempts            int      NOT NULL DEFAULT 0,
  max_retries         int      NOT NULL,
  timeout_ms          int      NOT NULL,
  backoff_kind        smallint NOT NULL,
  backoff_delay_ms    int      NOT NULL,
  backoff_max_ms      int      NOT NULL,
  backoff_jitter      real     NOT NULL,
  data                text     NOT NULL,
  context             text,
  errors              jsonb,
  progress            text,
  deps                text,
  deps_ignore_failure boolean  NOT NULL DEFAULT false,
  key                 text,
  concurrency_key     text,
  schedule_id         text,
  fire_at             bigint,
  deps_left           int      NOT NULL DEFAULT 0,
  owner               bigint,
  lease_until         bigint
) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 1000);
CREATE INDEX job_ready ON {s}.job (priority, run_at, id) WHERE state = 1;
CREATE INDEX job_owner ON {s}.job (owner) WHERE state = 2;
CREATE INDEX job_lease ON {s}.job (lease_until) WHERE state = 2;
CREATE UNIQUE INDEX job_key ON {s}.job (key) WHERE key IS NOT NULL AND state < 3;
CREATE UNIQUE INDEX job_fire ON {s}.job (schedule_id, fire_at) WHERE schedule_id IS NOT NULL;

CREATE TABLE {s}.dep (
  dep_id uuid NOT NULL,
  job_id uuid NOT NULL,
  PRIMARY KEY (dep_id, job_id)
);
CREATE INDEX dep_job ON {s}.dep (job_id);

CREATE TABLE {s}.done (
  id                  uuid     PRIMARY KEY,
  name                text     NOT NULL,
  priority            int      NOT NULL,
  priority_name       smallint,
  run_at              bigint   NOT NULL,
  created_at          bigint   NOT NULL,
  started_at          bigint   NOT NULL,
  attempts            int      NOT NULL,
  max_retries         int      NOT NULL,
  timeout_ms          int      NOT NULL,
  backoff_kind        smallint NOT NULL,
  backoff_delay_ms    int      NOT NULL,
  backoff_max_ms      int      NOT NULL,
  backoff_jitter      real     NOT NULL,
  data                text     NOT NULL,
  context             text,
  errors              jsonb,
  progress            text,
  deps                text,
  deps_ignore_failure boolean  NOT NULL,
  key                 text,
  concurrency_key     text,
  schedule_id         text,
  fire_at             bigint,
  status              smallint NOT NULL,
  finished_at         bigint   NOT NULL,
  result              text
);
CREATE INDEX done_finished ON {s}.done (finished_at);

CREATE TABLE {s}.process (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  host       text   NOT NULL,
  pid        int    NOT NULL,
  started_at bigint NOT NULL,
  last_seen  bigint NOT NULL
);

CREATE TABLE {s}.schedule (
  id         text   PRIMARY KEY,
  spec       text   NOT NULL,
  last_fire  bigint,
  updated_at bigint NOT NULL
);
"#,
  // 2: unique keys and concurrency keys (keys.rs). A key's holders found
  // by key (not unique: a running holder may have a successor, and a
  // retried failure joins it, as on memory and SQLite; inserts of a key
  // decide one after the other under its advisory lock); at most one
  // running job per concurrency key, the claims' arbiter; the ids of
  // refused duplicates, each naming its holder.
  r#"
DROP INDEX {s}.job_key;
CREATE INDEX job_key ON {s}.job (key) WHERE key IS NOT NULL AND state < 3;
CREATE UNIQUE INDEX job_ckey_running ON {s}.job (concurrency_key)
  WHERE concurrency_key IS NOT NULL AND state = 2;
CREATE INDEX job_ckey_pending ON {s}.job (concurrency_key, priority, run_at, id)
  WHERE concurrency_key IS NOT NULL AND state = 1;

CREATE TABLE {s}.alias (
  id         uuid   PRIMARY KEY,
  holder     uuid   NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX alias_created ON {s}.alias (created_at);
"#,
  // 3: no index of running jobs by owner. Every claim paid for its entry;
  // the rescue reads all running jobs through `job_lease` anyway, and
  // releasing lost claims is rare.
  r#"
DROP INDEX {s}.job_owner;
"#,
];

/// `{s}` of `sql` replaced by the quoted schema.
pub(super) fn expand(sql: &str, quoted: &str) -> String {
  sql.replace("{s}", quoted)
}

impl PgStore {
  /// Creates or upgrades the schema; returns the version found before.
  pub(super) async fn migrate(&self) -> Result<i64> {
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("migrate"))?;
    // One migrator per schema at a time, across processes; released at commit.
    tx.execute(
      "SELECT pg_advisory_xact_lock(hashtextextended('jobwerk:' || $1, 0))",
      &[&self.schema],
    )
    .await
    .map_err(pg_err("migrate: advisory lock"))?;
    let s = &self.quoted;
    let exists = tx
      .query_opt(
        "SELECT 1 FROM pg_namespace WHERE nspname = $1",
        &[&self.schema],
      )
      .await
      .map_err(pg_err("migrate"))?
      .is_some();
    if !exists {
      tx.batch_execute(&format!("CREATE SCHEMA {s}"))
        .await
        .map_err(pg_err(&format!(
          "migrate: creating schema {s} (the user needs CREATE on the database)"
        )))?;
    }
    tx.batch_execute(&format!(
      "CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value bigint NOT NULL)"
    ))
    .await
    .map_err(pg_err("migrate"))?;
    let found: i64 = tx
      .query_opt(
        &format!("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
        &[],
      )
      .await
      .map_err(pg_err("migrate"))?
      .map(|r| r.get(0))
      .unwrap_or(0);
    if found > SCHEMA_VERSION {
      // Ended here, not when dropped: the lock goes now.
      let _ = tx.rollback().await;
      return Err(Error::Storage(format!(
        "the PostgreSQL schema {s} was written by a newer jobwerk (schema version {found}); \
         this jobwerk knows schema version {SCHEMA_VERSION}: upgrade jobwerk or use another schema"
      )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
      let v = i as i64 + 1;
      if v <= found {
        continue;
      }
      tx.batch_execute(&expand(sql, s))
        .await
        .map_err(pg_err(&format!("migrate: schema version {v}")))?;
    }
    if found < SCHEMA_VERSION {
      tx.execute(
        &format!(
          "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ),
        &[&SCHEMA_VERSION],
      )
      .await
      .map_err(pg_err("migrate"))?;
    }
    tx.commit().await.map_err(pg_err("migrate: commit"))?;
    Ok(found)
  }
}

// One migration per version.
const _: () = assert!(SCHEMA_VERSION as usize == MIGRATIONS.len());
