//! Processes, heartbeats and the rescuer.
//!
//! A process registers a `process` row (its id owns the jobs it claims) and
//! updates `last_seen` every few seconds. [`PgStore::rescue`], which any
//! process may run at any time (concurrent runs are safe), removes
//! processes silent for longer than the limit and takes back every running
//! job whose owner is gone or whose lease expired: pending again with the
//! attempt counted, or failed with `ERR_INTERRUPTED` when none are left.
//! It goes through the same fenced statement as outcomes
//! ([`PgStore::apply`]): a job the owner settles meanwhile is not rescued,
//! and a rescued job's late outcome is fenced.

use super::claim::{planned, INDEX_PLAN};
use super::{big, decode, pg_err, Outcome, PgStore};
use crate::error::{JobErrorCode, Result};
use crate::job::{JobError, JobId};
use crate::storage::FailKind;

/// What a rescue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
  /// Processes found dead (their rows removed).
  pub dead: Vec<i64>,
  /// Jobs back to pending.
  pub retried: Vec<JobId>,
  /// Jobs failed with `ERR_INTERRUPTED` (no attempts left).
  pub failed: Vec<JobId>,
}

impl PgStore {
  /// Registers this process; its id owns the jobs it claims.
  pub async fn register(&self, host: &str, pid: u32, now: u64) -> Result<i64> {
    let c = self.client().await?;
    let s = &self.quoted;
    let r = c
      .query_one(
        &format!(
          "INSERT INTO {s}.process (host, pid, started_at, last_seen) VALUES ($1, $2, $3, $3) \
           RETURNING id"
        ),
        &[&host, &(pid as i32), &big(now)],
      )
      .await
      .map_err(pg_err("register process"))?;
    Ok(r.get(0))
  }

  /// The process is alive at `now`. False when its row is gone: it was
  /// found dead (its jobs were rescued; its late outcomes will be fenced)
  /// and should register again.
  pub async fn heartbeat(&self, id: i64, now: u64) -> Result<bool> {
    let c = self.client().await?;
    let s = &self.quoted;
    let st = c
      .prepare_cached(&format!(
        "UPDATE {s}.process SET last_seen = greatest(last_seen, $2) WHERE id = $1"
      ))
      .await
      .map_err(pg_err("heartbeat"))?;
    let n = c
      .execute(&st, &[&id, &big(now)])
      .await
      .map_err(pg_err("heartbeat"))?;
    Ok(n == 1)
  }

  /// A graceful stop: the process row goes (its unfinished jobs, if any
  /// were left running, are rescued at the next sweep).
  pub async fn deregister(&self, id: i64) -> Result<()> {
    let c = self.client().await?;
    let s = &self.quoted;
    c.execute(&format!("DELETE FROM {s}.process WHERE id = $1"), &[&id])
      .await
      .map_err(pg_err("deregister process"))?;
    Ok(())
  }

  /// Removes processes silent since before `now - dead_after_ms` and
  /// rescues the running jobs of missing owners and expired leases.
  pub async fn rescue(&self, now: u64, dead_after_ms: u64) -> Result<Rescued> {
    let s = &self.quoted;
    let mut c = self.client().await?;
    let dead: Vec<i64> = c
      .query(
        &format!("DELETE FROM {s}.process WHERE last_seen < $1 RETURNING id"),
        &[&big(now.saturating_sub(dead_after_ms))],
      )
      .await
      .map_err(pg_err("rescue"))?
      .iter()
      .map(|r| r.get(0))
      .collect();
    // A walk of `job_lease` (every running job), not a bitmap scan of it:
    // the walk marks the entries of jobs finished since the last VACUUM
    // dead as it passes them, so the next sweep skips them; a bitmap scan
    // visited each of their rows again at every sweep (~0.4 s per sweep
    // after a minute at 25,000 jobs/s).
    let tx = c.transaction().await.map_err(pg_err("rescue"))?;
    let sql = format!(
      "SELECT {}, j.state, 0::bigint AS finished_at, NULL::text AS result, j.owner, \
         j.lease_until, (j.lease_until < $1) AS expired \
       FROM {s}.job j WHERE j.state = 2 AND (j.lease_until < $1 OR NOT EXISTS \
         (SELECT 1 FROM {s}.process p WHERE p.id = j.owner))",
      super::read::shared_cols("j.", "j.errors::text AS errors")
    );
    let (set, rows) = planned(&tx, INDEX_PLAN, tx.query(&sql, &[&big(now)])).await;
    set.map_err(pg_err("rescue: planner settings"))?;
    let rows = rows.map_err(pg_err("rescue"))?;
    tx.commit().await.map_err(pg_err("rescue"))?;
    drop(c);
    let mut outcomes = Vec::with_capacity(rows.len());
    for r in &rows {
      let job = decode(r)?;
      let expired: bool = r.get("expired");
      let message = if expired {
        format!(
          "the job's lease expired (process {} held it past its timeout and grace)",
          job.owner.unwrap_or(0)
        )
      } else {
        format!(
          "the process running the job (process {}) stopped answering",
          job.owner.unwrap_or(0)
        )
      };
      let err = JobError::system(
        "InterruptedError",
        JobErrorCode::Interrupted,
        message,
        job.job.attempts,
      );
      outcomes.push(Outcome::failed(&job, err, FailKind::Interrupt, now, 0.0));
    }
    let applied = if outcomes.is_empty() {
      Default::default()
    } else {
      self.apply(&outcomes, now).await?
    };
    Ok(Rescued {
      dead,
      retried: applied.retried,
      failed: applied.failed,
    })
  }
}
