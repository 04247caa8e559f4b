//! The PostgreSQL backend: several processes share one queue.
//!
//! An async module on the engine's tokio runtime (tokio-postgres, a
//! deadpool pool, TLS through rustls), at the SQL level: the queue's
//! in-process ready buffer, outbox and insert buffer sit in front of it
//! (the JS thread never waits on PostgreSQL). Every function takes the
//! cluster time `now` (ms since the epoch) from its caller, so tests run on
//! a manual clock; [`PgStore::db_now`] reads the server's clock, which the
//! engine uses as the cluster's.
//!
//! # Tables (schema `jobwerk` by default, any name, quoted everywhere)
//!
//! * `job`: the hot table, live jobs only: `state` 0 waiting (for
//!   dependencies), 1 pending (due at `run_at`), 2 running (leased to
//!   `owner` until `lease_until`, attempt `attempts`). Index `job_ready
//!   (priority, run_at, id) WHERE state = 1` serves claims;
//!   `job_key (key) WHERE key IS NOT NULL AND state < 3` finds a key's
//!   holders (inserts of a key decide under its advisory lock: [`keys`]);
//!   `job_ckey_running` (unique, running jobs) and `job_ckey_pending` serve
//!   the claim's one-running-job-per-`concurrencyKey` rule;
//!   `job_fire (schedule_id, fire_at)` is the second guard of a schedule's
//!   fire.
//! * `alias (id, holder)`: the id an add returned for a duplicate, and the
//!   job holding its key ([`keys`]).
//! * `dep (dep_id, job_id)`: one row per unfinished dependency of a waiting
//!   job; `job.deps_left` counts them.
//! * `done`: finished jobs (completed, failed, timeout, cancelled) with
//!   their result; they leave `job` in the statement that finishes them, so
//!   the hot table stays small and its dead tuples few. Pruned by
//!   `finished_at` ([`PgStore::prune`]).
//! * `process (id, host, pid, started_at, last_seen)`: one row per running
//!   service; its id is the lease owner of the jobs it claims.
//! * `schedule (id, spec, last_fire)`: schedules shared by the cluster.
//! * `meta`: `schema_version` ([`schema`]).
//!
//! # Claim ([`claim`])
//!
//! One statement per wake-up: `FOR UPDATE SKIP LOCKED` over `job_ready` in
//! a `MATERIALIZED` CTE, ordered `(priority, run_at, id)`, `LIMIT` the
//! batch; the update sets `state = 2`, `owner`, `attempts + 1`,
//! `started_at` and `lease_until = now + timeout (or the default lease) +
//! grace`. Claimed jobs that were not started are handed back
//! ([`PgStore::hand_back`]) with the attempt uncounted.
//!
//! # Outcomes and fencing ([`complete`])
//!
//! Completions, retries and final failures of many jobs are applied by one
//! statement per group commit ([`PgStore::apply`], [`Committer`]): rows are
//! matched on `(id, state = 2, owner, attempts)`, so an outcome that arrives
//! after its job was rescued, cancelled or handed back changes nothing and
//! is reported as fenced. Finished jobs move to `done` in the same statement
//! and their dependants are released there too (pending once their last
//! dependency completed); a failed dependency fails its dependants
//! (`ERR_DEPENDENCY_FAILED`) in the same transaction.
//!
//! # Heartbeats and rescue ([`lease`])
//!
//! Each process updates its `process.last_seen`; [`PgStore::rescue`] (run
//! by any process, safely concurrently) removes processes silent for longer
//! than the limit and takes back running jobs whose owner is gone or whose
//! lease expired: pending again with the attempt counted, or failed with
//! `ERR_INTERRUPTED` when no attempts are left. Rescue goes through the same
//! fenced statement as outcomes, so a rescued job's late outcome is fenced.
//!
//! # Schedules ([`schedules`], [`cron`])
//!
//! A fire is one statement: a compare-and-set of `schedule.last_fire` from
//! an earlier time to the fire time, and the job inserted from the CAS's row
//! with `ON CONFLICT DO NOTHING` against `job_fire (schedule_id, fire_at)`:
//! however many processes evaluate a schedule, each fire time yields one
//! job. [`PgBackend`]'s schedule task ([`cron`]) runs the fires the queue
//! hands over, writes definition changes (NOTIFY `s:<id>`) and reads the
//! cluster's schedules back for the queue's scheduler.
//!
//! # NOTIFY ([`notify`])
//!
//! Inserts call `pg_notify(channel, payload)` in the inserting transaction
//! (never a trigger), so listeners hear of jobs once they are committed; a
//! cancel of a running job notifies its id. One LISTEN connection per
//! process ([`Listener`]); polling is the fallback (and what works behind a
//! transaction-mode PgBouncer).
//!
//! # Throughput
//!
//! `tests::throughput_probe` (ignored; `cargo test --release
//! --no-default-features --features sqlite,postgres throughput_probe --
//! --ignored --nocapture`) burns down 200,000 jobs with 2-4 "processes"
//! (own pool, owner and committer each): claims of 128-256, group commits
//! of <= 128 / 2 ms, fsync and `synchronous_commit` on. On the project's
//! 2-vCPU VM, shared with other work (load average 6-9), ten runs
//! measured 18,600-36,700 jobs/s: 2 processes claiming 128,
//! 18,600-25,000; claiming 256, 22,700-31,600; 4 processes,
//! 31,000-36,700 (inserts: 51,000-117,000 jobs/s in batches of 5,000). A process claims serially, so its rate is capped at
//! batch / claim latency (128 / ~10-15 ms, the claim's commit included):
//! more claim loops per process, or larger batches, lift it. A group
//! commit of 128 costs ~2 ms inside PostgreSQL (`EXPLAIN ANALYZE`) and
//! 8-15 ms end to end under that load; the rest is the two WAL flushes per
//! batch and CPU shared with PostgreSQL.
//!
//! # Not here yet
//!
//! The advisory-lock fast path for dead processes and history partitioning
//! (prune deletes in batches). (No leader lease:
//! schedules need none, see [`cron`].)
//!
//! # Behind the `Store` trait ([`store`])
//!
//! [`PgBackend`] puts the ready buffer (refilled by a claimer task), the
//! outbox (through [`Committer`]) and the insert buffer in front of this
//! core, so a `Queue` runs on it with no network wait on its thread; its
//! docs say how the lease maps, when a fence is known, and what is not
//! there yet. The binding (napi) does not use it yet.

pub mod claim;
pub mod complete;
pub mod config;
pub mod conn;
pub mod cron;
pub mod fast;
pub mod insert;
pub mod keys;
mod known;
pub mod lease;
pub mod notify;
mod progress;
pub mod read;
pub mod schedules;
pub mod schema;
pub mod store;
pub mod tls;

#[cfg(test)]
mod conn_tests;
#[cfg(test)]
mod cron_tests;
#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
pub(crate) mod test_env;
#[cfg(test)]
mod tests;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

pub use claim::{ClaimOptions, ClaimSizer};
pub use complete::{Applied, Cancelled, CommitStats, Committer, Outcome, OutcomeKind};
pub use config::{quote_ident, PgConfig};
pub use conn::{ConnHealth, RetryBackoff, RetryPolicy};
pub use insert::{Inserted, NewJob};
pub use lease::Rescued;
pub use notify::{sleep_until_due, DueTimes, Listener, Notice};
pub use schedules::{Fire, StoredSchedule};
pub use schema::SCHEMA_VERSION;
pub use store::{BackendOptions, CancelHook, ClusterClock, PgBackend, PgReader};

use crate::error::{Error, Result};
use crate::job::{
  Backoff, BackoffKind, Dependencies, Job, JobError, JobExtra, JobId, JobKeys, Priority, Status,
};

/// A job id as PostgreSQL's `uuid` (16 bytes, big-endian: the same order
/// as [`JobId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgId(pub JobId);

impl ToSql for PgId {
  fn to_sql(
    &self,
    _ty: &Type,
    out: &mut bytes_mut::BytesMut,
  ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    out.extend_from_slice(&self.0 .0.to_be_bytes());
    Ok(IsNull::No)
  }

  fn accepts(ty: &Type) -> bool {
    *ty == Type::UUID
  }

  to_sql_checked!();
}

impl<'a> FromSql<'a> for PgId {
  fn from_sql(
    _ty: &Type,
    raw: &'a [u8],
  ) -> std::result::Result<PgId, Box<dyn std::error::Error + Sync + Send>> {
    let b: [u8; 16] = raw.try_into().map_err(|_| "a uuid is 16 bytes")?;
    Ok(PgId(JobId(u128::from_be_bytes(b))))
  }

  fn accepts(ty: &Type) -> bool {
    *ty == Type::UUID
  }
}

mod bytes_mut {
  pub use bytes::BytesMut;
}

/// The PostgreSQL backend: a pool and the schema's statements.
#[derive(Clone)]
pub struct PgStore {
  pool: Pool,
  cfg: PgConfig,
  /// The schema's name as given.
  schema: String,
  /// The schema's name quoted as an identifier.
  quoted: String,
  /// The NOTIFY channel.
  channel: String,
  /// Statements with the schema spliced in, built once.
  sql: std::sync::Arc<Sql>,
  /// Which writes are failing, since when ([`conn`]).
  conn: std::sync::Arc<ConnHealth>,
}

/// The statements with the schema spliced in.
struct Sql {
  insert: String,
  claim: String,
  apply: String,
}

impl std::fmt::Debug for PgStore {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("PgStore")
      .field("cfg", &self.cfg)
      .finish_non_exhaustive()
  }
}

/// Maps a driver error met while doing `what` to `ERR_STORAGE`.
pub(crate) fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
  move |e| {
    let detail = match e.as_db_error() {
      Some(db) => format!("{} ({})", db.message(), db.code().code()),
      None => e.to_string(),
    };
    Error::Storage(format!("PostgreSQL: {what}: {detail}"))
  }
}

/// True for errors worth retrying the transaction for (deadlock,
/// serialization failure).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
  matches!(
    e.code(),
    Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
  )
}

/// The NOTIFY channel of a schema: `jobwerk:<schema>`, shortened with a
/// hash to PostgreSQL's 63-byte limit.
pub(crate) fn channel_of(schema: &str) -> String {
  let full = format!("jobwerk:{schema}");
  if full.len() <= config::MAX_IDENT {
    return full;
  }
  let mut h: u64 = 0xcbf2_9ce4_8422_2325;
  for b in schema.bytes() {
    h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
  }
  let mut cut = 38;
  while !full.is_char_boundary(cut) {
    cut -= 1;
  }
  format!("{}#{h:016x}", &full[..cut])
}

impl PgStore {
  /// Connects (one connection first, within the connect timeout, so a bad
  /// config fails here with a message saying which), then migrates.
  pub async fn connect(cfg: &PgConfig) -> Result<PgStore> {
    let pc = cfg.driver_config()?;
    let mgr_cfg = ManagerConfig {
      recycling_method: RecyclingMethod::Fast,
    };
    let mgr = match tls::connector(cfg)? {
      Some(tls) => Manager::from_config(pc, tls, mgr_cfg),
      None => Manager::from_config(pc, tokio_postgres::NoTls, mgr_cfg),
    };
    let wait = cfg.connect_timeout + Duration::from_millis(100);
    let pool = Pool::builder(mgr)
      .max_size(cfg.pool_size)
      .runtime(Runtime::Tokio1)
      .create_timeout(Some(wait))
      .wait_timeout(Some(wait.saturating_mul(4)))
      .build()
      .map_err(|e| Error::Storage(format!("PostgreSQL pool: {e}")))?;
    let quoted = quote_ident(&cfg.schema);
    let store = PgStore {
      pool,
      cfg: cfg.clone(),
      schema: cfg.schema.clone(),
      channel: channel_of(&cfg.schema),
      sql: std::sync::Arc::new(Sql {
        insert: insert::insert_sql(&quoted),
        claim: claim::claim_sql(&quoted),
        apply: complete::apply_sql(&quoted),
      }),
      conn: Default::default(),
      quoted,
    };
    // The first connection says what is wrong, bounded by the timeout.
    match tokio::time::timeout(wait, store.pool.get()).await {
      Ok(Ok(_)) => {}
      Ok(Err(e)) => return Err(connect_error(cfg, e)),
      Err(_) => {
        return Err(Error::Storage(format!(
          "PostgreSQL at {} did not answer within {} ms (storage.connectTimeoutMs)",
          cfg.target(),
          cfg.connect_timeout.as_millis()
        )))
      }
    }
    store.migrate().await?;
    Ok(store)
  }

  /// The config it was opened with.
  pub fn config(&self) -> &PgConfig {
    &self.cfg
  }

  /// The schema's name.
  pub fn schema(&self) -> &str {
    &self.schema
  }

  /// The NOTIFY channel.
  pub fn channel(&self) -> &str {
    &self.channel
  }

  /// A pooled connection.
  pub(crate) async fn client(&self) -> Result<Object> {
    self
      .pool
      .get()
      .await
      .map_err(|e| connect_error(&self.cfg, e))
  }

  /// The server's clock, in ms since the epoch.
  pub async fn db_now(&self) -> Result<u64> {
    let r = self
      .bounded("read the clock", async {
        let c = self.client().await?;
        c.query_one(
          "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
          &[],
        )
        .await
        .map_err(pg_err("reading the clock"))
      })
      .await?;
    Ok(r.get::<_, i64>(0).max(0) as u64)
  }

  /// Closes the pool.
  pub fn close(&self) {
    self.pool.close();
  }

  /// Closes the pool's idle connections (the pool stays usable: a later
  /// read opens one again). A stopped service keeps none open.
  pub fn release_idle(&self) {
    self.pool.retain(|_, _| false);
  }
}

/// Says why connecting failed: unreachable, refused password, no such
/// database, or the server's own message.
fn connect_error(cfg: &PgConfig, e: deadpool_postgres::PoolError) -> Error {
  use deadpool_postgres::PoolError;
  let target = cfg.target();
  match e {
    PoolError::Backend(e) => {
      if let Some(m) = tls::failure(&e) {
        return Error::Storage(format!("PostgreSQL at {target}: {m} (storage.ssl)"));
      }
      if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD {
          return Error::Storage(format!(
            "PostgreSQL at {target} refused the password of user '{}' (storage.password): {}",
            cfg.user_name(),
            db.message()
          ));
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
          return Error::Storage(format!(
            "PostgreSQL at {target} has no database '{}' (storage.database): {}",
            cfg.database_name(),
            db.message()
          ));
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
          return Error::Storage(format!(
            "PostgreSQL at {target} refused user '{}' (storage.user): {}",
            cfg.user_name(),
            db.message()
          ));
        }
        return Error::Storage(format!(
          "PostgreSQL at {target} refused the connection: {} ({})",
          db.message(),
          code.code()
        ));
      }
      let io = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(|io| io.kind());
      match io {
        Some(std::io::ErrorKind::TimedOut) => Error::Storage(format!(
          "PostgreSQL at {target} did not answer within {} ms (storage.connectTimeoutMs)",
          cfg.connect_timeout.as_millis()
        )),
        Some(_) => Error::Storage(format!(
          "PostgreSQL at {target} is unreachable (storage.host, storage.port): {e}"
        )),
        None => Error::Storage(format!("PostgreSQL at {target}: {e}")),
      }
    }
    PoolError::Timeout(_) => Error::Storage(format!(
      "PostgreSQL at {target} did not answer within {} ms (storage.connectTimeoutMs)",
      cfg.connect_timeout.as_millis()
    )),
    other => Error::Storage(format!("PostgreSQL at {target}: {other}")),
  }
}

/// The level of a named priority (`NULL`: an explicit weight).
pub(crate) fn priority_name(p: Priority) -> Option<i16> {
  match p {
    Priority::High => Some(0),
    Priority::Medium => Some(1),
    Priority::Low => Some(2),
    Priority::Weight(_) => None,
  }
}

fn priority_of(name: Option<i16>, weight: i32) -> Priority {
  match name {
    Some(0) => Priority::High,
    Some(1) => Priority::Medium,
    Some(2) => Priority::Low,
    _ => Priority::Weight(weight),
  }
}

pub(crate) fn backoff_kind(k: BackoffKind) -> i16 {
  match k {
    BackoffKind::Exponential => 0,
    BackoffKind::Fixed => 1,
  }
}

/// A job as PostgreSQL holds it: the crate's [`Job`] (its `name` index 0:
/// the name is in `name`, see [`PgJob::into_job`]) and what only the shared
/// backend knows.
#[derive(Debug, Clone)]
pub struct PgJob {
  pub job: Job,
  /// The calculation's name.
  pub name: String,
  /// The ordering weight it was stored with (lower first).
  pub weight: i32,
  pub key: Option<String>,
  pub concurrency_key: Option<String>,
  pub schedule_id: Option<String>,
  pub fire_at: Option<u64>,
  /// The process running it (running jobs).
  pub owner: Option<i64>,
  pub lease_until: Option<u64>,
}

/// What fences an outcome: the job, the process that claimed it and the
/// attempt it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
  pub id: JobId,
  pub owner: i64,
  pub attempt: u32,
}

impl PgJob {
  /// The lease of a running job.
  pub fn lease(&self) -> Option<Lease> {
    Some(Lease {
      id: self.job.id,
      owner: self.owner?,
      attempt: self.job.attempts,
    })
  }

  /// The crate's job, its name interned in `names`.
  pub fn into_job(mut self, names: &mut crate::storage::Names) -> Job {
    self.job.name = names.intern(&self.name);
    self.job
  }
}

fn u64_of(v: i64) -> u64 {
  v.max(0) as u64
}

/// Decodes a row of [`read::COLS`] (plus `state`, `finished_at`, `result`,
/// `owner`, `lease_until` where selected).
pub(crate) fn decode(r: &tokio_postgres::Row) -> Result<PgJob> {
  let id: PgId = r.get("id");
  let status: i16 = r.get("state");
  let status = Status::ALL
    .get(status as usize)
    .copied()
    .ok_or_else(|| Error::Storage(format!("job {}: unknown state {status}", id.0)))?;
  let errors: Option<String> = r.get("errors");
  let errors: Vec<JobError> = match errors {
    Some(e) => {
      serde_json::from_str(&e).map_err(|e| Error::Storage(format!("job {}: errors: {e}", id.0)))?
    }
    None => Vec::new(),
  };
  let deps: Option<String> = r.get("deps");
  let deps = deps.map(|d| Dependencies {
    ids: d.split(',').filter_map(JobId::parse).collect(),
    ignore_failure: r.get("deps_ignore_failure"),
  });
  let result: Option<String> = r.get("result");
  let progress: Option<String> = r.get("progress");
  let context: Option<String> = r.get("context");
  let extra = if result.is_some() || progress.is_some() || !errors.is_empty() || deps.is_some() {
    Some(Box::new(JobExtra {
      result: result.map(|s| s.into()),
      progress: progress.map(|s| s.into()),
      errors,
      deps,
      context: context.map(|s| s.into()),
      keys: None,
    }))
  } else {
    JobExtra::of(None, context.as_deref().unwrap_or(""))
  };
  let data: String = r.get("data");
  let mut job = Job {
    id: id.0,
    name: 0,
    priority: priority_of(r.get("priority_name"), r.get("priority")),
    status,
    attempts: r.get::<_, i32>("attempts").max(0) as u32,
    max_retries: r.get::<_, i32>("max_retries").max(0) as u32,
    timeout_ms: r.get::<_, i32>("timeout_ms").max(0) as u32,
    backoff: Backoff {
      kind: if r.get::<_, i16>("backoff_kind") == 1 {
        BackoffKind::Fixed
      } else {
        BackoffKind::Exponential
      },
      delay_ms: r.get::<_, i32>("backoff_delay_ms").max(0) as u32,
      max_delay_ms: r.get::<_, i32>("backoff_max_ms").max(0) as u32,
      jitter: r.get("backoff_jitter"),
    },
    gen: 0,
    created_at: u64_of(r.get("created_at")),
    run_at: u64_of(r.get("run_at")),
    started_at: u64_of(r.get("started_at")),
    finished_at: u64_of(r.get("finished_at")),
    data: data.into(),
    extra,
  };
  let key: Option<String> = r.get("key");
  let concurrency_key: Option<String> = r.get("concurrency_key");
  let schedule_id: Option<String> = r.get("schedule_id");
  job.set_keys(JobKeys::of(
    key.as_deref(),
    concurrency_key.as_deref(),
    schedule_id.as_deref(),
  ));
  Ok(PgJob {
    job,
    name: r.get("name"),
    weight: r.get("priority"),
    key,
    concurrency_key,
    schedule_id,
    fire_at: r.get::<_, Option<i64>>("fire_at").map(u64_of),
    owner: r.get("owner"),
    lease_until: r.get::<_, Option<i64>>("lease_until").map(u64_of),
  })
}

/// A system error as stored on a job (JSON).
pub(crate) fn error_json(e: &JobError) -> String {
  serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
}

/// `u32` to `int`, saturating.
pub(crate) fn int(v: u32) -> i32 {
  i32::try_from(v).unwrap_or(i32::MAX)
}

/// `u64` ms to `bigint`, saturating.
pub(crate) fn big(v: u64) -> i64 {
  i64::try_from(v).unwrap_or(i64::MAX)
}
