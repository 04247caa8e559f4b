//! Inserts in batches: one `INSERT ... SELECT FROM unnest(...)` per batch,
//! `ON CONFLICT DO NOTHING` (a resent batch adds nothing twice). A job with
//! a `key` is decided in the transaction against the key's holders, under
//! the key's advisory lock (`keys.rs`: skip, replace, debounce, a successor
//! behind a running holder), and a refused job's id is recorded as an alias
//! of its holder. The NOTIFY is sent in the inserting transaction, so
//! listeners hear of committed jobs only.
//! A `dependsOn` id is checked here, not by `add` (that would be a read
//! on the JavaScript thread): one naming no job fails its job
//! (`ERR_DEPENDENCY_FAILED`, "not found") and the batch goes in.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;

use super::complete::dependency_error;
use super::keys::{fold, plan, Change, Step};
use super::{backoff_kind, big, int, pg_err, priority_name, PgId, PgStore};
use crate::error::{Error, JobErrorCode, Result};
use crate::job::{Backoff, Dependencies, Job, JobError, JobId, OnDup, Priority, Status};
use crate::storage::StoreFailed;

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
  /// What the add does to a job holding `key` (see `keys.rs`).
  pub on_dup: OnDup,
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
      on_dup: OnDup::default(),
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
      on_dup: OnDup::default(),
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
pub(crate) const INSERT_COLS: &[(&str, &str)] = &[
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

/// The first job that depends on a keyed job before it in the batch.
fn split_at_keyed_dependency(jobs: &[NewJob]) -> Option<usize> {
  if !jobs.iter().any(|j| j.key.is_some()) {
    return None;
  }
  let mut keyed: HashSet<JobId> = HashSet::new();
  for (i, j) in jobs.iter().enumerate() {
    if let Some(d) = &j.deps {
      if d.ids.iter().any(|id| keyed.contains(id)) {
        return Some(i);
      }
    }
    if j.key.is_some() {
      keyed.insert(j.id);
    }
  }
  None
}

/// Where a batch's dependencies stand.
struct DepPlan {
  /// Per job: its open (live) dependencies.
  open: Vec<Vec<JobId>>,
  /// Per job: why it fails at once: a dependency that already failed (not
  /// ignored), or one that names no job.
  failed: Vec<Option<JobError>>,
}

impl PgStore {
  /// Adds `jobs` in one transaction (all or nothing): one insert
  /// statement, plus the dependency checks when a job has dependencies and
  /// a key lookup when a key was taken. Returns each job's id, in order.
  pub async fn insert(&self, jobs: &[NewJob], now: u64) -> Result<Vec<Inserted>> {
    Ok(self.insert_reporting(jobs, now).await?.0)
  }

  /// [`PgStore::insert`], saying also which jobs it failed at once (a
  /// dependency that failed, or named no job), for their `failed` events.
  pub async fn insert_reporting(
    &self,
    jobs: &[NewJob],
    now: u64,
  ) -> Result<(Vec<Inserted>, Vec<StoreFailed>)> {
    if jobs.is_empty() {
      return Ok((Vec::new(), Vec::new()));
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
  ) -> Result<(Vec<Inserted>, Vec<StoreFailed>)> {
    let s = &self.quoted;
    // A job depending on a keyed job of this batch: that job's fate (added,
    // or an alias of its key's holder) is decided first.
    if let Some(p) = split_at_keyed_dependency(jobs) {
      let (mut out, mut failed) = Box::pin(self.insert_in(tx, &jobs[..p], now)).await?;
      let (more, more_failed) = Box::pin(self.insert_in(tx, &jobs[p..], now)).await?;
      out.extend(more);
      failed.extend(more_failed);
      return Ok((out, failed));
    }
    // A dependency named by a refused duplicate's id is its holder.
    let resolved = self.resolve_deps(tx, jobs).await?;
    let jobs = resolved.as_deref().unwrap_or(jobs);
    let plan_d = self.plan_deps(tx, jobs).await?;
    let mut out: Vec<Option<Inserted>> = vec![None; jobs.len()];
    let mut todo: Vec<usize> = (0..jobs.len()).collect();
    let mut earliest = u64::MAX;
    let mut added_all: Vec<usize> = Vec::new();
    let mut aliases: Vec<(JobId, JobId)> = Vec::new();
    let keys: Vec<&str> = {
      let mut k: Vec<&str> = jobs.iter().filter_map(|j| j.key.as_deref()).collect();
      k.sort_unstable();
      k.dedup();
      k
    };
    // Keyed inserts decide one after the other (keys.rs).
    self.lock_keys(tx, &keys).await?;
    // An update that fails (its holder claimed since the lookup) is planned
    // again from a fresh lookup.
    for _round in 0..8 {
      if todo.is_empty() {
        break;
      }
      let wanted: Vec<&str> = {
        let mut k: Vec<&str> = todo
          .iter()
          .filter_map(|&i| jobs[i].key.as_deref())
          .collect();
        k.sort_unstable();
        k.dedup();
        k
      };
      let found = if wanted.is_empty() {
        HashMap::new()
      } else {
        self.holders(tx, &wanted).await?
      };
      let steps = plan(jobs, &todo, &found);
      // New rows (a copy only when later adds fold into it) and holders'
      // changes.
      let mut rows: Vec<(usize, Option<NewJob>)> = Vec::new();
      let mut at: HashMap<usize, usize> = HashMap::new();
      let mut folded: HashMap<usize, Vec<usize>> = HashMap::new();
      let mut changes: Vec<(JobId, Change)> = Vec::new();
      let mut changed_by: HashMap<JobId, Vec<usize>> = HashMap::new();
      for (&i, step) in todo.iter().zip(&steps) {
        match *step {
          Step::Insert => {
            at.insert(i, rows.len());
            rows.push((i, None));
          }
          Step::Into(j) => {
            if let Some(&r) = at.get(&j) {
              let row = rows[r].1.get_or_insert_with(|| jobs[j].clone());
              fold(row, &jobs[i]);
            }
            folded.entry(j).or_default().push(i);
          }
          Step::Update(h) => {
            match changes.iter_mut().find(|c| c.0 == h) {
              Some(c) => c.1.by(&jobs[i]),
              None => {
                let mut c = Change::default();
                c.by(&jobs[i]);
                changes.push((h, c));
              }
            }
            changed_by.entry(h).or_default().push(i);
          }
          Step::Existing(h) => {
            out[i] = Some(Inserted {
              id: h,
              added: false,
            });
          }
        }
      }
      let mut again: Vec<usize> = Vec::new();
      let updated = self.update_holders(tx, &changes).await?;
      for (h, c) in &changes {
        let by = changed_by.remove(h).unwrap_or_default();
        if updated.contains(h) {
          if let Some(t) = c.run_at {
            earliest = earliest.min(t);
          }
          for i in by {
            out[i] = Some(Inserted {
              id: *h,
              added: false,
            });
          }
        } else {
          again.extend(by);
        }
      }
      let added: HashSet<JobId> = if rows.is_empty() {
        HashSet::new()
      } else {
        let mut cols = Columns::default();
        for (i, row) in &rows {
          let open = plan_d.open[*i].len();
          let state = if open > 0 || plan_d.failed[*i].is_some() {
            Status::Waiting
          } else {
            Status::Pending
          };
          cols.push(row.as_ref().unwrap_or(&jobs[*i]), state, open);
        }
        let st = tx
          .prepare_cached(&self.sql.insert)
          .await
          .map_err(pg_err("insert"))?;
        tx.query(&st, &cols.params())
          .await
          .map_err(pg_err("insert"))?
          .iter()
          .map(|r| r.get::<_, PgId>(0).0)
          .collect()
      };
      for (i, row) in &rows {
        let id = jobs[*i].id;
        let by = folded.remove(i).unwrap_or_default();
        if added.contains(&id) {
          out[*i] = Some(Inserted { id, added: true });
          added_all.push(*i);
          if plan_d.open[*i].is_empty() && plan_d.failed[*i].is_none() {
            earliest = earliest.min(row.as_ref().unwrap_or(&jobs[*i]).run_at);
          }
          for j in by {
            out[j] = Some(Inserted { id, added: false });
          }
        } else {
          // The id itself was there: added before (a resent batch).
          out[*i] = Some(Inserted { id, added: false });
          for j in by {
            out[j] = Some(Inserted { id, added: false });
          }
        }
      }
      again.sort_unstable();
      todo = again;
    }
    if !todo.is_empty() {
      return Err(Error::Storage(
        "PostgreSQL: insert: a job's key kept changing hands; try again".into(),
      ));
    }
    for (i, o) in out.iter().enumerate() {
      if let Some(o) = o {
        if o.id != jobs[i].id {
          aliases.push((jobs[i].id, o.id));
        }
      }
    }
    self.record_aliases(tx, &aliases, now).await?;
    // Dependencies of the jobs added.
    let mut dep_ids = Vec::new();
    let mut job_ids = Vec::new();
    let mut failed_now = Vec::new();
    for &i in &added_all {
      for d in &plan_d.open[i] {
        dep_ids.push(PgId(*d));
        job_ids.push(PgId(jobs[i].id));
      }
      if let Some(e) = &plan_d.failed[i] {
        failed_now.push((jobs[i].id, e.clone()));
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
    let failed = if failed_now.is_empty() {
      Vec::new()
    } else {
      self.fail_waiting(tx, failed_now, now).await?
    };
    if earliest != u64::MAX {
      self.notify_in(tx, &format!("i:{earliest}")).await?;
    }
    Ok((out.into_iter().flatten().collect(), failed))
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
    for (i, j) in jobs.iter().enumerate() {
      if let Some(d) = &j.deps {
        for dep in &d.ids {
          if live.contains(dep) || earlier.contains(dep) {
            if !plan.open[i].contains(dep) {
              plan.open[i].push(*dep);
            }
          } else if let Some(st) = finished.get(dep) {
            if *st != Status::Completed && !d.ignore_failure && plan.failed[i].is_none() {
              plan.failed[i] = Some(dependency_error(*dep, *st));
            }
          } else if j.schedule.is_some() {
            // A fired job's dependency pruned since the schedule was made
            // counts as done, as on the other storages.
          } else if plan.failed[i].is_none() {
            // Named no job: `add` answered before this check (it would be
            // a network read on the JavaScript thread), so the job is
            // recorded failed, whatever `onDependencyFailure` says; the
            // rest of the batch goes in (a whole batch refused would fail
            // the store).
            plan.failed[i] = Some(missing_dependency(*dep));
          }
        }
      }
      earlier.insert(j.id);
    }
    Ok(plan)
  }
}

/// Why a job whose `dependsOn` names no job fails.
fn missing_dependency(dep: JobId) -> JobError {
  JobError::system(
    "DependencyError",
    JobErrorCode::DependencyFailed,
    format!("dependency {dep} not found (it never existed or was pruned)"),
    0,
  )
}
