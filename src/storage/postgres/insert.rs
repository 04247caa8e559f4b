//! Inserts in batches: one `INSERT ... SELECT FROM unnest(...)` per batch,
//! `ON CONFLICT DO NOTHING` so that a job whose `key` a live job holds (the
//! partial unique index `job_key`) is not added and its caller gets the
//! live job's id: no race across processes, the index decides. The NOTIFY
//! is sent in the inserting transaction, so listeners hear of committed
//! jobs only.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;

use super::{backoff_kind, big, int, pg_err, priority_name, PgId, PgStore};
use crate::error::{Error, Result};
use crate::job::{Backoff, Dependencies, Job, JobId, Priority, Status};

/// A job to add.
#[derive(Debug, Clone)]
pub struct NewJob {
  pub id: JobId,
  /// The calculation's name.
  pub name: String,
  pub priority: Priority,
  /// The ordering weight of `priority` (lower first).
  pub weight: i32,
  pub created_at: u64,
  pub run_at: u64,
  pub max_retries: u32,
  pub timeout_ms: u32,
  pub backoff: Backoff,
  /// Data and context, JSON text (context `None`: `{}`).
  pub data: String,
  pub context: Option<String>,
  pub deps: Option<Dependencies>,
  /// While a live (waiting, pending, running) job has this key, adding
  /// another returns that job's id and adds nothing.
  pub key: Option<String>,
  pub concurrency_key: Option<String>,
  /// The schedule that fired it and the fire time (set by
  /// [`PgStore::fire`]).
  pub schedule: Option<(String, u64)>,
}

impl NewJob {
  /// A job of `name` with `data`, due at `now`, with the defaults (medium
  /// priority, weight 0, no retries, no timeout, the default backoff).
  pub fn new(id: JobId, name: &str, data: &str, now: u64) -> NewJob {
    NewJob {
      id,
      name: name.into(),
      priority: Priority::Medium,
      weight: 0,
      created_at: now,
      run_at: now,
      max_retries: 0,
      timeout_ms: 0,
      backoff: Backoff::default(),
      data: data.into(),
      context: None,
      deps: None,
      key: None,
      concurrency_key: None,
      schedule: None,
    }
  }

  /// The crate's pending job as a new row, named `name`, ordered by
  /// `weights` (`[high, medium, low]`).
  pub fn from_job(job: &Job, name: &str, weights: &[i32; 3]) -> NewJob {
    NewJob {
      id: job.id,
      name: name.into(),
      priority: job.priority,
      weight: job.priority.weight(weights),
      created_at: job.created_at,
      run_at: job.run_at,
      max_retries: job.max_retries,
      timeout_ms: job.timeout_ms,
      backoff: job.backoff,
      data: job.data.to_string(),
      context: job
        .extra
        .as_ref()
        .and_then(|e| e.context.as_deref())
        .map(str::to_string),
      deps: job.deps().cloned(),
      key: None,
      concurrency_key: None,
      schedule: None,
    }
  }
}

/// What became of one job of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
  /// The job's id: its own, or the live job's that holds its key.
  pub id: JobId,
  /// False when a live job with its key was there (nothing added), or the
  /// same id was added before.
  pub added: bool,
}

/// `job`'s insert columns and their array types.
const INSERT_COLS: &[(&str, &str)] = &[
  ("id", "uuid"),
  ("name", "text"),
  ("state", "smallint"),
  ("priority", "int"),
  ("priority_name", "smallint"),
  ("run_at", "bigint"),
  ("created_at", "bigint"),
  ("max_retries", "int"),
  ("timeout_ms", "int"),
  ("backoff_kind", "smallint"),
  ("backoff_delay_ms", "int"),
  ("backoff_max_ms", "int"),
  ("backoff_jitter", "real"),
  ("data", "text"),
  ("context", "text"),
  ("deps", "text"),
  ("deps_ignore_failure", "bool"),
  ("deps_left", "int"),
  ("key", "text"),
  ("concurrency_key", "text"),
  ("schedule_id", "text"),
  ("fire_at", "bigint"),
];

/// `INSERT INTO job (...) SELECT * FROM unnest($1..$22) ... ` with `from`
/// before the `unnest` (a schedule's CAS, or nothing).
pub(crate) fn insert_from(s: &str, from: &str) -> String {
  let cols: Vec<&str> = INSERT_COLS.iter().map(|c| c.0).collect();
  let arrays: Vec<String> = INSERT_COLS
    .iter()
    .enumerate()
    .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
    .collect();
  format!(
    "INSERT INTO {s}.job ({}) SELECT u.* FROM {from}unnest({}) AS u ON CONFLICT DO NOTHING RETURNING id",
    cols.join(", "),
    arrays.join(", ")
  )
}

pub(crate) fn insert_sql(s: &str) -> String {
  insert_from(s, "")
}

/// The columns of a batch, one array each.
#[derive(Default)]
pub(crate) struct Columns {
  id: Vec<PgId>,
  name: Vec<String>,
  state: Vec<i16>,
  priority: Vec<i32>,
  priority_name: Vec<Option<i16>>,
  run_at: Vec<i64>,
  created_at: Vec<i64>,
  max_retries: Vec<i32>,
  timeout_ms: Vec<i32>,
  backoff_kind: Vec<i16>,
  backoff_delay_ms: Vec<i32>,
  backoff_max_ms: Vec<i32>,
  backoff_jitter: Vec<f32>,
  data: Vec<String>,
  context: Vec<Option<String>>,
  deps: Vec<Option<String>>,
  deps_ignore_failure: Vec<bool>,
  deps_left: Vec<i32>,
  key: Vec<Option<String>>,
  concurrency_key: Vec<Option<String>>,
  schedule_id: Vec<Option<String>>,
  fire_at: Vec<Option<i64>>,
}

impl Columns {
  pub(crate) fn push(&mut self, j: &NewJob, state: Status, deps_left: usize) {
    self.id.push(PgId(j.id));
    self.name.push(j.name.clone());
    self.state.push(state as i16);
    self.priority.push(j.weight);
    self.priority_name.push(priority_name(j.priority));
    self.run_at.push(big(j.run_at));
    self.created_at.push(big(j.created_at));
    self.max_retries.push(int(j.max_retries));
    self.timeout_ms.push(int(j.timeout_ms));
    self.backoff_kind.push(backoff_kind(j.backoff.kind));
    self.backoff_delay_ms.push(int(j.backoff.delay_ms));
    self.backoff_max_ms.push(int(j.backoff.max_delay_ms));
    self.backoff_jitter.push(j.backoff.jitter);
    self.data.push(j.data.clone());
    self.context.push(j.context.clone().filter(|c| c != "{}"));
    self.deps.push(j.deps.as_ref().map(|d| {
      d.ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
    }));
    self
      .deps_ignore_failure
      .push(j.deps.as_ref().is_some_and(|d| d.ignore_failure));
    self.deps_left.push(deps_left as i32);
    self.key.push(j.key.clone());
    self.concurrency_key.push(j.concurrency_key.clone());
    self
      .schedule_id
      .push(j.schedule.as_ref().map(|s| s.0.clone()));
    self.fire_at.push(j.schedule.as_ref().map(|s| big(s.1)));
  }

  pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 22] {
    [
      &self.id,
      &self.name,
      &self.state,
      &self.priority,
      &self.priority_name,
      &self.run_at,
      &self.created_at,
      &self.max_retries,
      &self.timeout_ms,
      &self.backoff_kind,
      &self.backoff_delay_ms,
      &self.backoff_max_ms,
      &self.backoff_jitter,
      &self.data,
      &self.context,
      &self.deps,
      &self.deps_ignore_failure,
      &self.deps_left,
      &self.key,
      &self.concurrency_key,
      &self.schedule_id,
      &self.fire_at,
    ]
  }
}

/// Where a batch's dependencies stand.
struct DepPlan {
  /// Per job: its open (live) dependencies.
  open: Vec<Vec<JobId>>,
  /// Per job: a dependency that already failed (not ignored).
  failed: Vec<Option<(JobId, Status)>>,
}

impl PgStore {
  /// Adds `jobs` in one transaction (all or nothing): one insert
  /// statement, plus the dependency checks when a job has dependencies and
  /// a key lookup when a key was taken. Returns each job's id, in order.
  pub async fn insert(&self, jobs: &[NewJob], now: u64) -> Result<Vec<Inserted>> {
    if jobs.is_empty() {
      return Ok(Vec::new());
    }
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("insert"))?;
    let out = self.insert_in(&tx, jobs, now).await?;
    tx.commit().await.map_err(pg_err("insert: commit"))?;
    Ok(out)
  }

  pub(crate) async fn insert_in(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[NewJob],
    now: u64,
  ) -> Result<Vec<Inserted>> {
    let s = &self.quoted;
    let plan = self.plan_deps(tx, jobs).await?;
    let mut out: Vec<Option<Inserted>> = vec![None; jobs.len()];
    let mut todo: Vec<usize> = (0..jobs.len()).collect();
    let mut earliest = u64::MAX;
    let mut added_all: Vec<usize> = Vec::new();
    // A key's holder may finish between our conflict and our lookup: then
    // the job is inserted again (a few rounds at most).
    for _round in 0..8 {
      if todo.is_empty() {
        break;
      }
      let mut cols = Columns::default();
      for &i in &todo {
        let open = plan.open[i].len();
        let state = if open > 0 || plan.failed[i].is_some() {
          Status::Waiting
        } else {
          Status::Pending
        };
        cols.push(&jobs[i], state, open);
      }
      let st = tx
        .prepare_cached(&self.sql.insert)
        .await
        .map_err(pg_err("insert"))?;
      let rows = tx
        .query(&st, &cols.params())
        .await
        .map_err(pg_err("insert"))?;
      let added: HashSet<JobId> = rows.iter().map(|r| r.get::<_, PgId>(0).0).collect();
      let mut keyed = Vec::new();
      for &i in &todo {
        let j = &jobs[i];
        if added.contains(&j.id) {
          out[i] = Some(Inserted {
            id: j.id,
            added: true,
          });
          added_all.push(i);
          if plan.open[i].is_empty() && plan.failed[i].is_none() {
            earliest = earliest.min(j.run_at);
          }
        } else if let Some(k) = &j.key {
          keyed.push((i, k.clone()));
        } else {
          // The id itself was there: added before (a resent batch).
          out[i] = Some(Inserted {
            id: j.id,
            added: false,
          });
        }
      }
      todo.clear();
      if keyed.is_empty() {
        break;
      }
      let keys: Vec<&str> = keyed.iter().map(|(_, k)| k.as_str()).collect();
      let rows = tx
        .query(
          &format!("SELECT key, id FROM {s}.job WHERE key = ANY($1) AND state < 3"),
          &[&keys],
        )
        .await
        .map_err(pg_err("insert: key lookup"))?;
      let holders: HashMap<String, JobId> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, PgId>(1).0))
        .collect();
      for (i, k) in keyed {
        match holders.get(&k) {
          Some(id) => {
            out[i] = Some(Inserted {
              id: *id,
              added: false,
            })
          }
          None => todo.push(i),
        }
      }
    }
    if !todo.is_empty() {
      return Err(Error::Storage(
        "PostgreSQL: insert: a job's key kept changing hands; try again".into(),
      ));
    }
    // Dependencies of the jobs added.
    let mut dep_ids = Vec::new();
    let mut job_ids = Vec::new();
    let mut failed_now = Vec::new();
    for &i in &added_all {
      for d in &plan.open[i] {
        dep_ids.push(PgId(*d));
        job_ids.push(PgId(jobs[i].id));
      }
      if let Some((dep, status)) = plan.failed[i] {
        failed_now.push((jobs[i].id, dep, status));
      }
    }
    if !dep_ids.is_empty() {
      tx.execute(
        &format!(
          "INSERT INTO {s}.dep (dep_id, job_id) SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
           ON CONFLICT DO NOTHING"
        ),
        &[&dep_ids, &job_ids],
      )
      .await
      .map_err(pg_err("insert: dependencies"))?;
    }
    if !failed_now.is_empty() {
      self.fail_waiting(tx, failed_now, now).await?;
    }
    if earliest != u64::MAX {
      self.notify_in(tx, &format!("i:{earliest}")).await?;
    }
    Ok(out.into_iter().flatten().collect())
  }

  /// Checks the dependencies of a batch: each must name a live job, a
  /// finished one, or an earlier job of the batch. Live ones are locked
  /// (`FOR KEY SHARE`) so that none finishes unseen before our `dep` rows
  /// are in.
  async fn plan_deps(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[NewJob],
  ) -> Result<DepPlan> {
    let mut plan = DepPlan {
      open: vec![Vec::new(); jobs.len()],
      failed: vec![None; jobs.len()],
    };
    let wanted: Vec<PgId> = jobs
      .iter()
      .flat_map(|j| j.deps.iter().flat_map(|d| d.ids.iter().map(|i| PgId(*i))))
      .collect();
    if wanted.is_empty() {
      return Ok(plan);
    }
    let s = &self.quoted;
    let live: HashSet<JobId> = tx
      .query(
        &format!("SELECT id FROM {s}.job WHERE id = ANY($1) FOR KEY SHARE"),
        &[&wanted],
      )
      .await
      .map_err(pg_err("insert: dependencies"))?
      .iter()
      .map(|r| r.get::<_, PgId>(0).0)
      .collect();
    let finished: HashMap<JobId, Status> = tx
      .query(
        &format!("SELECT id, status FROM {s}.done WHERE id = ANY($1)"),
        &[&wanted],
      )
      .await
      .map_err(pg_err("insert: dependencies"))?
      .iter()
      .map(|r| {
        let st: i16 = r.get(1);
        (
          r.get::<_, PgId>(0).0,
          Status::ALL
            .get(st as usize)
            .copied()
            .unwrap_or(Status::Failed),
        )
      })
      .collect();
    let mut earlier: HashSet<JobId> = HashSet::new();
    let many = jobs.len() > 1;
    for (i, j) in jobs.iter().enumerate() {
      if let Some(d) = &j.deps {
        for dep in &d.ids {
          if live.contains(dep) || earlier.contains(dep) {
            if !plan.open[i].contains(dep) {
              plan.open[i].push(*dep);
            }
          } else if let Some(st) = finished.get(dep) {
            if *st != Status::Completed && !d.ignore_failure && plan.failed[i].is_none() {
              plan.failed[i] = Some((*dep, *st));
            }
          } else {
            let at = if many {
              format!("jobs[{i}].")
            } else {
              String::new()
            };
            return Err(Error::DependencyNotFound(format!(
              "{at}options.dependsOn: no job '{dep}' (it never existed or was pruned)"
            )));
          }
        }
      }
      earlier.insert(j.id);
    }
    Ok(plan)
  }
}
