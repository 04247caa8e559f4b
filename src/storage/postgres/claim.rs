//! Claims: one statement per wake-up takes a batch of due jobs with `FOR NO
//! KEY UPDATE SKIP LOCKED` (processes claiming together skip each other's
//! rows instead of waiting), in the order priority, due time, id, and
//! leases them to the claiming process. Hand-back returns claimed jobs that
//! were not started.

use super::read::shared_cols;
use super::{big, decode, int, pg_err, Lease, PgId, PgJob, PgStore};
use crate::error::Result;

/// What a claim takes.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
  /// The claiming process (its `process` row id).
  pub owner: i64,
  /// At most this many jobs.
  pub max: usize,
  /// Only these calculations (`None`: any).
  pub names: Option<Vec<String>>,
  /// The lease of a job without a timeout.
  pub default_lease_ms: u64,
  /// Added to every lease (a job's timeout is enforced by its process;
  /// the lease is the cluster's backstop).
  pub grace_ms: u64,
}

impl ClaimOptions {
  /// `max` jobs of any calculation for `owner`, leases of 15 min for jobs
  /// without a timeout, 30 s grace.
  pub fn new(owner: i64, max: usize) -> ClaimOptions {
    ClaimOptions {
      owner,
      max,
      names: None,
      default_lease_ms: 15 * 60_000,
      grace_ms: 30_000,
    }
  }
}

pub(crate) fn claim_sql(s: &str) -> String {
  format!(
    "WITH c AS MATERIALIZED (\
       SELECT id FROM {s}.job \
       WHERE state = 1 AND run_at <= $1 AND ($4::text[] IS NULL OR name = ANY($4)) \
       ORDER BY priority, run_at, id LIMIT $2 \
       FOR NO KEY UPDATE SKIP LOCKED) \
     UPDATE {s}.job j SET state = 2, attempts = j.attempts + 1, owner = $3, started_at = $1, \
       lease_until = $1 + (CASE WHEN j.timeout_ms > 0 THEN j.timeout_ms::bigint ELSE $5 END) + $6 \
     FROM c WHERE j.id = c.id \
     RETURNING {}, j.state, 0::bigint AS finished_at, NULL::text AS result, j.owner, j.lease_until",
    shared_cols("j.", "j.errors::text AS errors")
  )
}

impl PgStore {
  /// Claims up to `o.max` jobs due at `now`, running and leased to
  /// `o.owner` when they come back (attempt counted), in claim order.
  pub async fn claim(&self, o: &ClaimOptions, now: u64) -> Result<Vec<PgJob>> {
    if o.max == 0 {
      return Ok(Vec::new());
    }
    let c = self.client().await?;
    let st = c
      .prepare_cached(&self.sql.claim)
      .await
      .map_err(pg_err("claim"))?;
    let max = i64::try_from(o.max).unwrap_or(i64::MAX);
    let rows = c
      .query(
        &st,
        &[
          &big(now),
          &max,
          &o.owner,
          &o.names,
          &big(o.default_lease_ms),
          &big(o.grace_ms),
        ],
      )
      .await
      .map_err(pg_err("claim"))?;
    let mut jobs = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.weight, j.job.run_at, j.job.id));
    Ok(jobs)
  }

  /// Hands back claimed jobs that were not started: pending again, their
  /// attempt uncounted, free for any process (a NOTIFY wakes idle ones).
  /// Returns how many were still held under these leases.
  pub async fn hand_back(&self, leases: &[Lease], now: u64) -> Result<usize> {
    if leases.is_empty() {
      return Ok(0);
    }
    let ids: Vec<PgId> = leases.iter().map(|l| PgId(l.id)).collect();
    let owners: Vec<i64> = leases.iter().map(|l| l.owner).collect();
    let attempts: Vec<i32> = leases.iter().map(|l| int(l.attempt)).collect();
    let s = &self.quoted;
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("hand back"))?;
    let n = tx
      .execute(
        &format!(
          "UPDATE {s}.job j SET state = 1, attempts = j.attempts - 1, owner = NULL, \
             lease_until = NULL \
           FROM unnest($1::uuid[], $2::bigint[], $3::int[]) AS i(id, owner, attempt) \
           WHERE j.id = i.id AND j.state::int = 2 AND j.owner = i.owner \
             AND j.attempts = i.attempt"
        ),
        &[&ids, &owners, &attempts],
      )
      .await
      .map_err(pg_err("hand back"))? as usize;
    if n > 0 {
      self.notify_in(&tx, &format!("i:{now}")).await?;
    }
    tx.commit().await.map_err(pg_err("hand back: commit"))?;
    Ok(n)
  }
}
