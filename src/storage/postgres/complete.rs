//! Outcomes in group commits: one statement applies the completions,
//! retries and final failures of many jobs, each fenced by its lease
//! `(id, owner, attempt)`; finished jobs move to `done` and the dependants
//! of completed jobs are released in the same statement. Final failures
//! fail their dependants (unless they ignore failures) in the same
//! transaction. [`Committer`] is the process's group-commit task.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::claim::{planned, JOIN_PLAN};
use super::read::{shared_cols, shared_names};
use super::{error_json, int, is_transient, pg_err, Lease, PgId, PgJob, PgStore};
use crate::error::{Error, JobErrorCode, Result};
use crate::job::{JobError, JobId, Status, Transition};
use crate::storage::{FailKind, StoreFailed};

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeKind {
  /// The handler returned this result (JSON).
  Completed { result: String },
  /// Pending again at `run_at` with `error` recorded; `uncount`: the
  /// attempt does not count (the service stopped it).
  Retry {
    error: JobError,
    run_at: u64,
    uncount: bool,
  },
  /// Finished: `status` is `failed` or `timeout`.
  Failed { error: JobError, status: Status },
}

/// An attempt's outcome under its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
  pub lease: Lease,
  pub kind: OutcomeKind,
}

impl Outcome {
  /// The attempt returned `result` (JSON).
  pub fn completed(lease: Lease, result: &str) -> Outcome {
    Outcome {
      lease,
      kind: OutcomeKind::Completed {
        result: result.into(),
      },
    }
  }

  /// The attempt of `job` (as claimed) failed with `error`: a retry after
  /// its backoff when attempts are left and `kind` allows it, else final
  /// (the same decision as the other backends).
  pub fn failed(job: &PgJob, mut error: JobError, kind: FailKind, now: u64, rand: f64) -> Outcome {
    let lease = Lease {
      id: job.job.id,
      owner: job.owner.unwrap_or(0),
      attempt: job.job.attempts,
    };
    error.attempt = job.job.attempts;
    let (t, delay) = crate::storage::memory::decide_failure(&job.job, kind, rand);
    let kind = match (t, delay) {
      (_, Some(d)) => OutcomeKind::Retry {
        error,
        run_at: now.saturating_add(d),
        uncount: kind == FailKind::Stop,
      },
      (Transition::TimeoutFinal, None) => OutcomeKind::Failed {
        error,
        status: Status::Timeout,
      },
      _ => OutcomeKind::Failed {
        error,
        status: Status::Failed,
      },
    };
    Outcome { lease, kind }
  }
}

/// A job [`PgStore::cancel_job`] cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
  /// The status it had.
  pub was: Status,
  /// Its calculation's name.
  pub name: String,
  /// Its attempts so far.
  pub attempt: u32,
  /// Its dependants failed with it (`ERR_DEPENDENCY_FAILED`), and so on
  /// down.
  pub dependants_failed: Vec<StoreFailed>,
}

/// What a group commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
  pub completed: Vec<JobId>,
  pub retried: Vec<JobId>,
  /// Finished as failed or timeout.
  pub failed: Vec<JobId>,
  /// Outcomes that changed nothing: their job was no longer running under
  /// that lease (rescued, cancelled, handed back, or already settled).
  pub fenced: Vec<JobId>,
  /// Waiting jobs that became pending (their last dependency completed).
  pub released: Vec<JobId>,
  /// Waiting jobs failed with `ERR_DEPENDENCY_FAILED` (with their name,
  /// attempts and error, for their `failed` events).
  pub dependency_failed: Vec<StoreFailed>,
}

/// The fence is written `state::int = 2`, which the partial indexes on
/// running jobs (`WHERE state = 2`) do not match: with stale statistics
/// (no running jobs when last analysed) the planner would otherwise walk a
/// partial index of every running job for each outcome, instead of one
/// primary-key lookup per outcome (85 ms instead of ~1 ms per commit of
/// 128 with 1,000 jobs running). Each statement on `job` also has the
/// batch's ids as an index condition (`id = ANY($1)`): with statistics
/// saying the table was empty (as a `VACUUM` while jobs ran left them) the
/// planner walked the whole primary key and, for each row, every outcome
/// of the batch (a commit took minutes, and no job finished meanwhile).
pub(crate) fn apply_sql(s: &str) -> String {
  let names = shared_names();
  let errors = "CASE WHEN i.error IS NULL THEN j.errors \
     ELSE coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(i.error::jsonb) END AS errors";
  format!(
    "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::smallint[], \
                  $5::text[], $6::text[], $7::bigint[]) \
                AS t(id, owner, attempt, st, result, error, run_at)), \
     r AS (UPDATE {s}.job j SET state = 1, owner = NULL, lease_until = NULL, run_at = i.run_at, \
             attempts = j.attempts - (i.st = 2)::int, \
             errors = coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(i.error::jsonb) \
           FROM i WHERE i.st IN (1, 2) AND j.id = i.id AND j.id = ANY($1::uuid[]) \
             AND j.state::int = 2 \
             AND j.owner = i.owner AND j.attempts = i.attempt \
           RETURNING j.id), \
     d AS (DELETE FROM {s}.job j USING i \
           WHERE i.st >= 3 AND j.id = i.id AND j.id = ANY($1::uuid[]) AND j.state::int = 2 \
             AND j.owner = i.owner AND j.attempts = i.attempt \
           RETURNING {}, i.st, i.result), \
     h AS (INSERT INTO {s}.done ({names}, status, finished_at, result) \
           SELECT {names}, st, $8::bigint, result FROM d RETURNING id, status), \
     gone AS (DELETE FROM {s}.dep p USING h WHERE h.status = 3 AND p.dep_id = h.id \
                AND p.dep_id = ANY($1::uuid[]) \
              RETURNING p.job_id), \
     n AS (SELECT job_id, count(*)::int AS c FROM gone GROUP BY job_id), \
     rel AS (UPDATE {s}.job w SET deps_left = w.deps_left - n.c, \
               state = CASE WHEN w.deps_left - n.c <= 0 THEN 1 ELSE w.state END, \
               run_at = CASE WHEN w.deps_left - n.c <= 0 THEN greatest(w.run_at, $8::bigint) \
                        ELSE w.run_at END \
             FROM n WHERE w.id = n.job_id AND w.id = ANY(ARRAY(SELECT job_id FROM n)) \
               AND w.state = 0 RETURNING w.id, w.state) \
     SELECT id, 1::smallint FROM r \
     UNION ALL SELECT id, status FROM h \
     UNION ALL SELECT id, (100 + state)::smallint FROM rel",
    // A job claimed ahead of its due time (store.rs, `lookahead`) started
    // here at its due time, not at the claim's: the history says so.
    shared_cols("j.", errors).replace(
      "j.started_at",
      "greatest(j.started_at, j.run_at) AS started_at"
    )
  )
}

impl PgStore {
  /// Applies many outcomes in one transaction (one statement, plus one
  /// per round of dependency failures when a job failed for good).
  /// Retried on deadlock or serialization failure.
  pub async fn apply(&self, outcomes: &[Outcome], now: u64) -> Result<Applied> {
    let mut tries = 0;
    loop {
      match self.apply_once(outcomes, now).await {
        Err(Retry::Transient(_)) if tries < 5 => tries += 1,
        Err(Retry::Transient(e)) => return Err(pg_err("apply outcomes")(e)),
        Err(Retry::Fatal(e)) => return Err(e),
        Ok(a) => return Ok(a),
      }
    }
  }

  async fn apply_once(&self, outcomes: &[Outcome], now: u64) -> Result<Applied, Retry> {
    let mut seen = HashSet::with_capacity(outcomes.len());
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut owners = Vec::with_capacity(outcomes.len());
    let mut attempts = Vec::with_capacity(outcomes.len());
    let mut sts: Vec<i16> = Vec::with_capacity(outcomes.len());
    let mut results: Vec<Option<&str>> = Vec::with_capacity(outcomes.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
    let mut run_ats: Vec<Option<i64>> = Vec::with_capacity(outcomes.len());
    let mut applied = Applied::default();
    for o in outcomes {
      if !seen.insert(o.lease.id) {
        // A second outcome for one job in one batch: only the first counts.
        applied.fenced.push(o.lease.id);
        continue;
      }
      ids.push(PgId(o.lease.id));
      owners.push(o.lease.owner);
      attempts.push(int(o.lease.attempt));
      match &o.kind {
        OutcomeKind::Completed { result } => {
          sts.push(Status::Completed as i16);
          results.push(Some(result));
          errors.push(None);
          run_ats.push(None);
        }
        OutcomeKind::Retry {
          error,
          run_at,
          uncount,
        } => {
          sts.push(if *uncount { 2 } else { 1 });
          results.push(None);
          errors.push(Some(error_json(error)));
          run_ats.push(Some(super::big(*run_at)));
        }
        OutcomeKind::Failed { error, status } => {
          sts.push(*status as i16);
          results.push(None);
          errors.push(Some(error_json(error)));
          run_ats.push(None);
        }
      }
    }
    let mut client = self.client().await.map_err(Retry::Fatal)?;
    let tx = client.transaction().await.map_err(Retry::of("apply"))?;
    let st = tx
      .prepare_cached(&self.sql.apply)
      .await
      .map_err(Retry::of("apply"))?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
      &ids,
      &owners,
      &attempts,
      &sts,
      &results,
      &errors,
      &run_ats,
      &super::big(now),
    ];
    let (set, rows) = planned(&tx, JOIN_PLAN, tx.query(&st, &params)).await;
    set.map_err(Retry::of("apply: planner settings"))?;
    let rows = rows.map_err(Retry::of("apply"))?;
    let mut done: HashMap<JobId, i16> = HashMap::with_capacity(rows.len());
    let mut finals = Vec::new();
    for r in &rows {
      let id = r.get::<_, PgId>(0).0;
      let st: i16 = r.get(1);
      match st {
        1 => applied.retried.push(id),
        3 => applied.completed.push(id),
        4 | 5 => {
          applied.failed.push(id);
          finals.push((
            id,
            if st == 4 {
              Status::Failed
            } else {
              Status::Timeout
            },
          ));
        }
        101 => {
          applied.released.push(id);
          continue;
        }
        _ => continue,
      }
      done.insert(id, st);
    }
    for id in &ids {
      if !done.contains_key(&id.0) {
        applied.fenced.push(id.0);
      }
    }
    if !finals.is_empty() {
      let (released, failed) = self
        .fail_dependants(&tx, finals, now)
        .await
        .map_err(Retry::Fatal)?;
      applied.released.extend(released);
      applied.dependency_failed.extend(failed);
    }
    // Idle processes hear of jobs that became due (released) or will be
    // (retried, at their backoff).
    let mut earliest = if applied.released.is_empty() {
      u64::MAX
    } else {
      now
    };
    if !applied.retried.is_empty() {
      let retried: HashSet<JobId> = applied.retried.iter().copied().collect();
      for o in outcomes {
        if let OutcomeKind::Retry { run_at, .. } = &o.kind {
          if retried.contains(&o.lease.id) {
            earliest = earliest.min(*run_at);
          }
        }
      }
    }
    if earliest != u64::MAX {
      self
        .notify_in(&tx, &format!("i:{earliest}"))
        .await
        .map_err(Retry::Fatal)?;
    }
    tx.commit().await.map_err(Retry::of("apply: commit"))?;
    Ok(applied)
  }

  /// Dependants of jobs that finished without completing: those ignoring
  /// failures count the dependency as done (pending after their last);
  /// the others fail with `ERR_DEPENDENCY_FAILED`, and so on down.
  /// Returns (released, failed).
  pub(crate) async fn fail_dependants(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    finished: Vec<(JobId, Status)>,
    now: u64,
  ) -> Result<(Vec<JobId>, Vec<StoreFailed>)> {
    let (released, to_fail) = self.dependants_of(tx, finished, now).await?;
    let (more, failed) = self.fail_waiting_all(tx, to_fail, now).await?;
    Ok(([released, more].concat(), failed))
  }

  /// Waiting jobs with a failed dependency (`(job, dependency, its
  /// status)`) fail, and their dependants after them.
  pub(crate) async fn fail_waiting(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    list: Vec<(JobId, JobError)>,
    now: u64,
  ) -> Result<Vec<StoreFailed>> {
    Ok(self.fail_waiting_all(tx, list, now).await?.1)
  }

  async fn fail_waiting_all(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    mut list: Vec<(JobId, JobError)>,
    now: u64,
  ) -> Result<(Vec<JobId>, Vec<StoreFailed>)> {
    let s = &self.quoted;
    let names = shared_names();
    let sql = format!(
      "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS t(id, error)), \
       d AS (DELETE FROM {s}.job j USING i \
             WHERE j.id = i.id AND j.id = ANY($1::uuid[]) AND j.state = 0 RETURNING {}), \
       h AS (INSERT INTO {s}.done ({names}, status, finished_at, result) \
             SELECT {names}, 4, $3::bigint, NULL FROM d \
             RETURNING id, name, attempts, (errors -> -1)::text) \
       SELECT * FROM h",
      shared_cols(
        "j.",
        "coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(i.error::jsonb) AS errors"
      )
    );
    let mut released = Vec::new();
    let mut failed = Vec::new();
    while !list.is_empty() {
      let ids: Vec<PgId> = list.iter().map(|l| PgId(l.0)).collect();
      let errs: Vec<String> = list.iter().map(|(_, e)| error_json(e)).collect();
      let rows = tx
        .query(&sql, &[&ids, &errs, &super::big(now)])
        .await
        .map_err(pg_err("failing dependants"))?;
      let gone: Vec<PgId> = rows.iter().map(|r| r.get::<_, PgId>(0)).collect();
      tx.execute(
        &format!("DELETE FROM {s}.dep WHERE job_id = ANY($1)"),
        &[&gone],
      )
      .await
      .map_err(pg_err("failing dependants"))?;
      failed.extend(rows.iter().map(|r| {
        StoreFailed {
          id: r.get::<_, PgId>(0).0,
          name: r.get(1),
          attempt: r.get::<_, i32>(2).max(0) as u32,
          error: r
            .get::<_, Option<String>>(3)
            .unwrap_or_else(|| "null".into()),
        }
      }));
      let next: Vec<(JobId, Status)> = gone.iter().map(|g| (g.0, Status::Failed)).collect();
      let (rel, to_fail) = self.dependants_of(tx, next, now).await?;
      released.extend(rel);
      list = to_fail;
    }
    Ok((released, failed))
  }

  /// Takes the `dep` rows of finished (not completed) jobs: dependants
  /// that ignore failures are counted down (released when at zero); the
  /// others are returned to fail, with the dependency that failed them.
  async fn dependants_of(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    finished: Vec<(JobId, Status)>,
    now: u64,
  ) -> Result<(Vec<JobId>, Vec<(JobId, JobError)>)> {
    if finished.is_empty() {
      return Ok((Vec::new(), Vec::new()));
    }
    let s = &self.quoted;
    let status: HashMap<JobId, Status> = finished.iter().copied().collect();
    let ids: Vec<PgId> = finished.iter().map(|f| PgId(f.0)).collect();
    let rows = tx
      .query(
        &format!(
          "WITH g AS (DELETE FROM {s}.dep WHERE dep_id = ANY($1) RETURNING dep_id, job_id) \
           SELECT g.dep_id, g.job_id, w.deps_ignore_failure FROM g \
           JOIN {s}.job w ON w.id = g.job_id AND w.state = 0"
        ),
        &[&ids],
      )
      .await
      .map_err(pg_err("dependants"))?;
    let mut counts: HashMap<JobId, i32> = HashMap::new();
    let mut fail: HashMap<JobId, (JobId, Status)> = HashMap::new();
    for r in &rows {
      let dep = r.get::<_, PgId>(0).0;
      let job = r.get::<_, PgId>(1).0;
      let ignore: bool = r.get(2);
      if ignore {
        *counts.entry(job).or_default() += 1;
      } else {
        fail
          .entry(job)
          .or_insert((dep, status.get(&dep).copied().unwrap_or(Status::Failed)));
      }
    }
    let mut released = Vec::new();
    counts.retain(|j, _| !fail.contains_key(j));
    if !counts.is_empty() {
      let jobs: Vec<PgId> = counts.keys().map(|j| PgId(*j)).collect();
      let cs: Vec<i32> = counts.values().copied().collect();
      let rows = tx
        .query(
          &format!(
            "UPDATE {s}.job w SET deps_left = w.deps_left - n.c, \
               state = CASE WHEN w.deps_left - n.c <= 0 THEN 1 ELSE w.state END, \
               run_at = CASE WHEN w.deps_left - n.c <= 0 THEN greatest(w.run_at, $3::bigint) \
                        ELSE w.run_at END \
             FROM unnest($1::uuid[], $2::int[]) AS n(job_id, c) \
             WHERE w.id = n.job_id AND w.state = 0 RETURNING w.id, w.state"
          ),
          &[&jobs, &cs, &super::big(now)],
        )
        .await
        .map_err(pg_err("dependants"))?;
      released = rows
        .iter()
        .filter(|r| r.get::<_, i16>(1) == 1)
        .map(|r| r.get::<_, PgId>(0).0)
        .collect();
    }
    Ok((
      released,
      fail
        .into_iter()
        .map(|(j, (d, s))| (j, dependency_error(d, s)))
        .collect(),
    ))
  }

  /// Cancels a waiting, pending or running job: it moves to `done` as
  /// cancelled at once (a running job's late outcome is then fenced, and
  /// its process hears `c:<id>` to abort the handler); its dependants fail
  /// unless they ignore failures. Returns the status it had.
  pub async fn cancel(&self, id: JobId, now: u64) -> Result<Option<Status>> {
    Ok(self.cancel_job(id, now).await?.map(|c| c.was))
  }

  /// [`PgStore::cancel`], saying also the job's calculation and attempt
  /// (for the `cancelled` event). Bounded by `statementTimeoutMs` (a cancel
  /// that committed although its answer did not come is found done when
  /// tried again).
  pub async fn cancel_job(&self, id: JobId, now: u64) -> Result<Option<Cancelled>> {
    self
      .bounded("cancel a job", self.cancel_job_in_tx(id, now))
      .await
  }

  async fn cancel_job_in_tx(&self, id: JobId, now: u64) -> Result<Option<Cancelled>> {
    let s = &self.quoted;
    let names = shared_names();
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("cancel"))?;
    let errors = "coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(\
       'name', 'CancelledError', 'message', 'the job was cancelled', \
       'code', 'ERR_JOB_CANCELLED', 'attempt', j.attempts)) AS errors";
    let row = tx
      .query_opt(
        &format!(
          "WITH d AS (DELETE FROM {s}.job j WHERE j.id = $1 RETURNING {}, j.state), \
           h AS (INSERT INTO {s}.done ({names}, status, finished_at, result) \
                 SELECT {names}, 6, $2::bigint, NULL FROM d) \
           SELECT state, name, attempts FROM d",
          shared_cols("j.", errors)
        ),
        &[&PgId(id), &super::big(now)],
      )
      .await
      .map_err(pg_err("cancel"))?;
    let Some(row) = row else {
      drop(tx);
      drop(client);
      return self.cancel_alias(id, now).await;
    };
    let was: i16 = row.get(0);
    let was = Status::ALL
      .get(was as usize)
      .copied()
      .unwrap_or(Status::Pending);
    tx.execute(
      &format!("DELETE FROM {s}.dep WHERE job_id = $1"),
      &[&PgId(id)],
    )
    .await
    .map_err(pg_err("cancel"))?;
    let name: String = row.get(1);
    let attempt: i32 = row.get(2);
    if was == Status::Running {
      self.notify_in(&tx, &format!("c:{id}")).await?;
    }
    let (_, dependants_failed) = self
      .fail_dependants(&tx, vec![(id, Status::Cancelled)], now)
      .await?;
    tx.commit().await.map_err(pg_err("cancel: commit"))?;
    Ok(Some(Cancelled {
      was,
      name,
      attempt: attempt.max(0) as u32,
      dependants_failed,
    }))
  }

  /// Puts a failed, timed-out or cancelled job (in `done`) back in `job`
  /// with its attempts reset, in one transaction: pending at `now`, or
  /// waiting when it has dependencies not completed yet (a failed one is
  /// waited for: it may be retried too, as on the other storages). False
  /// for an unknown job, one not finished that way, or one whose unique key
  /// another unfinished job holds (checked under the key's lock,
  /// `keys.rs`). The id of a refused duplicate retries its key's holder.
  /// Bounded by `statementTimeoutMs`.
  pub async fn retry(&self, id: JobId, now: u64) -> Result<bool> {
    self.bounded("retry a job", self.retry_in_tx(id, now)).await
  }

  async fn retry_in_tx(&self, id: JobId, now: u64) -> Result<bool> {
    let s = &self.quoted;
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("retry"))?;
    let row = tx
      .query_opt(
        &format!(
          "SELECT deps, deps_ignore_failure, key FROM {s}.done \
           WHERE id = $1 AND status IN (4, 5, 6) FOR UPDATE"
        ),
        &[&PgId(id)],
      )
      .await
      .map_err(pg_err("retry"))?;
    let Some(row) = row else {
      drop(tx);
      drop(client);
      return self.retry_alias(id, now).await;
    };
    let ignore_failure: bool = row.get(1);
    if self.key_held(&tx, row.get(2)).await? {
      return Ok(false);
    }
    // The dependencies, from the job as decoded (the stored format's one
    // reader).
    let deps: Vec<JobId> = match self.get(id).await? {
      Some(j) => j.job.deps().map(|d| d.ids.clone()).unwrap_or_default(),
      None => return Ok(false),
    };
    let mut open: Vec<PgId> = Vec::new();
    if !deps.is_empty() {
      let wanted: Vec<PgId> = deps.iter().map(|d| PgId(*d)).collect();
      // Live ones are locked so that none finishes unseen before our `dep`
      // rows are in; finished ones not completed are waited for (unless
      // failures are ignored); pruned ones count as done.
      let live = tx
        .query(
          &format!("SELECT id FROM {s}.job WHERE id = ANY($1) FOR KEY SHARE"),
          &[&wanted],
        )
        .await
        .map_err(pg_err("retry: dependencies"))?;
      open.extend(live.iter().map(|r| r.get::<_, PgId>(0)));
      if !ignore_failure {
        let failed = tx
          .query(
            &format!("SELECT id FROM {s}.done WHERE id = ANY($1) AND status <> 3"),
            &[&wanted],
          )
          .await
          .map_err(pg_err("retry: dependencies"))?;
        open.extend(failed.iter().map(|r| r.get::<_, PgId>(0)));
      }
    }
    let state: i16 = if open.is_empty() { 1 } else { 0 };
    let names = shared_names();
    let cols = shared_cols("d.", "d.errors")
      .replace("d.attempts", "0")
      .replace("d.run_at", "$2::bigint AS run_at");
    let moved = tx
      .execute(
        &format!(
          "WITH d AS (DELETE FROM {s}.done WHERE id = $1 RETURNING *) \
           INSERT INTO {s}.job ({names}, state, deps_left) \
           SELECT {cols}, $3::smallint, $4::int FROM d"
        ),
        &[&PgId(id), &super::big(now), &state, &(open.len() as i32)],
      )
      .await;
    match moved {
      Ok(1) => {}
      Ok(_) => return Ok(false),
      // Another unfinished job holds its key.
      Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
        return Ok(false)
      }
      Err(e) => return Err(pg_err("retry")(e)),
    }
    if !open.is_empty() {
      let jobs: Vec<PgId> = open.iter().map(|_| PgId(id)).collect();
      tx.execute(
        &format!(
          "INSERT INTO {s}.dep (dep_id, job_id) SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
           ON CONFLICT DO NOTHING"
        ),
        &[&open, &jobs],
      )
      .await
      .map_err(pg_err("retry: dependencies"))?;
    } else {
      self.notify_in(&tx, &format!("i:{now}")).await?;
    }
    // Waiting jobs that ignore its failure counted it as done: they wait
    // for it again (it runs again; its outcome is what they get).
    tx.execute(
      &format!(
        "WITH w AS (SELECT j.id FROM {s}.job j WHERE j.state = 0 AND j.deps_ignore_failure            AND $2::text = ANY(string_to_array(j.deps, ','))            AND NOT EXISTS (SELECT 1 FROM {s}.dep d WHERE d.dep_id = $1 AND d.job_id = j.id)            FOR UPDATE),          i AS (INSERT INTO {s}.dep (dep_id, job_id) SELECT $1, id FROM w)          UPDATE {s}.job j SET deps_left = j.deps_left + 1 FROM w WHERE j.id = w.id"
      ),
      &[&PgId(id), &id.to_string()],
    )
    .await
    .map_err(pg_err("retry: dependants"))?;
    tx.commit().await.map_err(pg_err("retry: commit"))?;
    Ok(true)
  }
}

pub(crate) fn dependency_error(dep: JobId, status: Status) -> JobError {
  JobError::system(
    "DependencyError",
    JobErrorCode::DependencyFailed,
    format!("dependency {dep} ended {}", status.as_str()),
    0,
  )
}

/// A transaction's error: worth another try, or not.
enum Retry {
  Transient(tokio_postgres::Error),
  Fatal(Error),
}

impl Retry {
  fn of(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Retry {
    move |e| {
      if is_transient(&e) {
        Retry::Transient(e)
      } else {
        Retry::Fatal(pg_err(what)(e))
      }
    }
  }
}

/// Group commits of one process that may run at once. One at a time caps a
/// process at `max_batch` outcomes per commit time (128 per ~9 ms = 14k
/// jobs/s on the 2-core bench machine, where a commit mostly waits: its
/// flush, the round trip, a shared CPU); outcomes of different jobs touch
/// different rows, so commits in parallel do not wait for each other (a
/// deadlock between two, possible only through a shared dependant, is
/// retried like any other).
pub const COMMITS_IN_FLIGHT: usize = 3;

/// The process's group commit: outcomes sent from any task are applied
/// together, when `max_batch` are waiting or `max_delay` after the first
/// of a batch; each sender learns, after the commit, whether its outcome
/// applied (`false`: fenced).
#[derive(Clone)]
pub struct Committer {
  tx: mpsc::UnboundedSender<(Outcome, oneshot::Sender<Result<bool>>)>,
  stats: Arc<parking_lot::Mutex<CommitStats>>,
  /// Dependants the commits failed, until [`Committer::take_failed`]
  /// (put here before the commit's outcomes are answered).
  failed: Arc<parking_lot::Mutex<Vec<StoreFailed>>>,
}

/// What a [`Committer`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
  /// Group commits.
  pub commits: u64,
  /// Outcomes in them.
  pub outcomes: u64,
  /// Time spent in [`PgStore::apply`].
  pub busy: Duration,
}

impl Committer {
  /// Starts the committer task on the current runtime; `now` is the
  /// cluster clock.
  pub fn start(
    store: PgStore,
    max_batch: usize,
    max_delay: Duration,
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
  ) -> Committer {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Outcome, oneshot::Sender<Result<bool>>)>();
    let max_batch = max_batch.max(1);
    let stats = Arc::new(parking_lot::Mutex::new(CommitStats::default()));
    let shared = stats.clone();
    let failed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = failed.clone();
    let inflight = Arc::new(tokio::sync::Semaphore::new(COMMITS_IN_FLIGHT));
    tokio::spawn(async move {
      let mut batch = Vec::with_capacity(max_batch);
      while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + max_delay;
        while batch.len() < max_batch {
          match rx.try_recv() {
            Ok(m) => {
              batch.push(m);
              continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {}
          }
          tokio::select! {
            m = rx.recv() => match m {
              Some(m) => batch.push(m),
              None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
          }
        }
        // Up to COMMITS_IN_FLIGHT group commits at once, each on its own
        // connection: the next batch is gathered while earlier ones commit.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
          break;
        };
        let batch = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        let store = store.clone();
        let now = now.clone();
        let shared = shared.clone();
        let sink = sink.clone();
        tokio::spawn(async move {
          let _permit = permit;
          let outcomes: Vec<Outcome> = batch.iter().map(|(o, _)| o.clone()).collect();
          let t = std::time::Instant::now();
          // Until committed: an outage is waited out; a try after one whose
          // answer was lost recognises what that one committed (conn.rs).
          let mut first = true;
          let res = store
            .retrying("commit", || {
              let again = !std::mem::replace(&mut first, false);
              let (store, outcomes, at) = (&store, &outcomes, now());
              async move {
                if again {
                  store.apply_again(outcomes, at).await
                } else {
                  store.apply(outcomes, at).await
                }
              }
            })
            .await;
          {
            let mut st = shared.lock();
            st.commits += 1;
            st.outcomes += outcomes.len() as u64;
            st.busy += t.elapsed();
          }
          if let Ok(a) = &res {
            if !a.dependency_failed.is_empty() {
              sink.lock().extend(a.dependency_failed.iter().cloned());
            }
          }
          let fenced: HashSet<JobId> = match &res {
            Ok(a) => a.fenced.iter().copied().collect(),
            Err(_) => HashSet::new(),
          };
          for (o, reply) in batch {
            let r = match &res {
              Ok(_) => Ok(!fenced.contains(&o.lease.id)),
              Err(e) => Err(e.clone()),
            };
            let _ = reply.send(r);
          }
        });
      }
    });
    Committer { tx, stats, failed }
  }

  /// The dependants its commits failed so far (`ERR_DEPENDENCY_FAILED`),
  /// for their `failed` events: each commit's are here before its outcomes
  /// are answered.
  pub fn take_failed(&self) -> Vec<StoreFailed> {
    std::mem::take(&mut *self.failed.lock())
  }

  /// Its figures so far.
  pub fn stats(&self) -> CommitStats {
    *self.stats.lock()
  }

  /// Queues an outcome; resolves after its group commit: `true` if it
  /// applied, `false` if fenced.
  pub async fn send(&self, o: Outcome) -> Result<bool> {
    let (tx, rx) = oneshot::channel();
    self
      .tx
      .send((o, tx))
      .map_err(|_| Error::Storage("PostgreSQL: the committer stopped".into()))?;
    rx.await
      .map_err(|_| Error::Storage("PostgreSQL: the committer stopped".into()))?
  }
}
