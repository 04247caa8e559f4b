//! Claims: one statement per wake-up takes a batch of due jobs with `FOR NO
//! KEY UPDATE SKIP LOCKED` (processes claiming together skip each other's
//! rows instead of waiting), in the order priority, due time, id, and
//! leases them to the claiming process. Hand-back returns claimed jobs that
//! were not started.
//!
//! A claim is one statement, however big ([`ClaimSizer`] says how big). Split
//! into parts of 128 run together on separate connections, a claim of 1,024
//! took no less time on the 2-core bench machine and cost PostgreSQL ~17 µs
//! more CPU per job (43 instead of 26: each part walks past the rows the
//! parts before it locked, `SKIP LOCKED` skipping them one by one).

use super::read::shared_cols;
use super::{big, decode, int, pg_err, Lease, PgId, PgJob, PgStore};
use crate::error::Result;
use tokio_postgres::error::SqlState;

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
  /// The claim's time (its jobs' `started_at` and the lease's start;
  /// `None`: the `now` of the claim). The claimer's claim times strictly
  /// increase, so they may run ahead of `now`: only `now` says what is due.
  pub at: Option<u64>,
  /// Also jobs due up to this many ms after `now` (claimed ahead), except
  /// keyed ones: a job holding a unique key stays pending until due, so
  /// a debounced or replacing add still finds it unstarted.
  pub ahead_ms: u64,
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
      at: None,
      ahead_ms: 0,
    }
  }
}

/// The most jobs a process keeps claimed ahead ([`ClaimSizer`]).
pub const MAX_CLAIM: usize = 1024;

/// How many jobs the claimer keeps claimed ahead of the workers: at least
/// the configured batch and low-water mark, more when the workers drain the
/// buffer faster than a claim refills it. The buffer must last while a claim
/// is in flight, so the low-water mark follows twice the jobs taken during
/// one claim (the rate jobs are taken times a claim's time, both measured),
/// and a claim takes twice that; capped at [`MAX_CLAIM`]. Slow jobs keep the
/// configured sizes (a process does not hoard jobs another could run);
/// no-op jobs at 20,000/s with 20 ms claims get about 800 per claim.
/// Measured on the (busy) 2-core bench machine: a claim took ~74 µs per job
/// at 128, ~55 at 512 and ~47 at 1,024 (the statement's and the commit's
/// fixed costs spread over more jobs).
#[derive(Debug, Clone)]
pub struct ClaimSizer {
  min_batch: usize,
  min_low: usize,
  /// Jobs taken per second, smoothed.
  rate: f64,
  /// Seconds per claim, smoothed.
  latency: f64,
  /// When the last claim ended and the buffer's length then.
  mark: Option<(std::time::Instant, usize)>,
}

impl ClaimSizer {
  /// The configured sizes are the floor.
  pub fn new(batch: usize, low_water: usize) -> ClaimSizer {
    let min_batch = batch.clamp(1, MAX_CLAIM);
    ClaimSizer {
      min_batch,
      min_low: low_water.clamp(1, min_batch).min(MAX_CLAIM / 2),
      rate: 0.0,
      latency: 0.0,
      mark: None,
    }
  }

  /// (low-water mark, batch) now.
  pub fn sizes(&self) -> (usize, usize) {
    let need = (2.0 * self.rate * self.latency).ceil();
    let low = if need.is_finite() && need > 0.0 {
      (need as usize).clamp(self.min_low, MAX_CLAIM / 2)
    } else {
      self.min_low
    };
    let batch = (2 * low).clamp(self.min_batch, MAX_CLAIM);
    (low.min(batch), batch)
  }

  /// A claim is about to run with `have` jobs in the buffer: the jobs taken
  /// since the last claim ended give the rate.
  pub fn before_claim(&mut self, have: usize) {
    if let Some((at, len)) = self.mark {
      let dt = at.elapsed().as_secs_f64();
      if dt > 0.0005 {
        let r = len.saturating_sub(have) as f64 / dt;
        self.rate = if self.rate == 0.0 {
          r
        } else {
          0.5 * self.rate + 0.5 * r
        };
      }
    }
  }

  /// A claim took `took` and left `len` jobs in the buffer.
  pub fn after_claim(&mut self, took: std::time::Duration, len: usize) {
    let l = took.as_secs_f64();
    self.latency = if self.latency == 0.0 {
      l
    } else {
      0.5 * self.latency + 0.5 * l
    };
    self.mark = Some((std::time::Instant::now(), len));
  }
}

/// The claim's planner settings, for its transaction only: the jobs in
/// claim order from `job_ready` (a walk that stops after `LIMIT` rows),
/// then each by primary key, whatever the table's statistics say. Without
/// statistics (autovacuum off, the table never analysed) the planner took
/// `state = 1` for a rare value and chose a bitmap scan of every due job
/// and a sort, for each claim: with 200,000 jobs waiting a claim took
/// ~50 ms instead of ~5, most of the server's time per job. With these
/// settings the plan is the same whatever the parameters, so the claim's
/// prepared statement keeps one generic plan instead of planning each
/// claim anew (~1.5 ms of the server's time per claim). The rescue sweep
/// uses them too (a walk of `job_lease`, see `lease.rs`).
pub(crate) const INDEX_PLAN: &str = "SET LOCAL enable_seqscan = off; \
  SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; \
  SET LOCAL plan_cache_mode = force_generic_plan";

/// The planner settings of a statement that joins `job` to a batch given
/// as arrays (the group commit, hand-backs, progress), for its transaction
/// only. Each such statement also has the batch's ids as an index
/// condition on `job`, so no estimate makes it walk the table; but with
/// both sides small by estimate the planner then looped over the batch
/// once per job found (512 x 512 comparisons, ~0.3 s per commit of 512):
/// a hash join does it in one pass.
pub(crate) const JOIN_PLAN: &str = "SET LOCAL enable_nestloop = off";

/// Runs `settings` (one of the plans above) and then `stmt` in `tx`,
/// pipelined: one round trip for both. Both answers come back (a failed
/// `SET` fails the statement too, the transaction being aborted).
pub(crate) async fn planned<T>(
  tx: &deadpool_postgres::Transaction<'_>,
  settings: &str,
  stmt: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> (
  Result<(), tokio_postgres::Error>,
  Result<T, tokio_postgres::Error>,
) {
  tokio::join!(tx.batch_execute(settings), stmt)
}

/// The claim. A job with a `concurrencyKey` is taken only while no job of
/// its key runs and when it is the first due job of its key in claim order
/// (both `NOT EXISTS`, over `job_ckey_running` and `job_ckey_pending`), so
/// a batch holds one job per key and `LIMIT` counts only jobs it can take.
/// Two processes claiming jobs of one key at once are decided by the
/// unique index `job_ckey_running`: the loser's statement fails (`23505`)
/// and [`PgStore::claim`] claims again, now seeing the winner.
///
/// The update finds the chosen rows by primary key (`id = ANY(ARRAY(..))`),
/// never by joining the chosen ids to the table: for such a join the
/// planner picked a hash join over a scan of the whole job table (a claim
/// of 1,024 from a backlog of 50,000 took three times as long), and with
/// statistics saying the table was empty (as a `VACUUM` can leave them
/// while claims run) a nested loop of every row against every chosen id,
/// which took seconds per claim.
pub(crate) fn claim_sql(s: &str) -> String {
  format!(
    "WITH c AS MATERIALIZED (\
       SELECT id FROM {s}.job q \
       WHERE state = 1 AND run_at <= $1 AND (run_at <= $8 OR q.key IS NULL) \
         AND ($4::text[] IS NULL OR name = ANY($4)) \
         AND (q.concurrency_key IS NULL OR (\
           NOT EXISTS (SELECT 1 FROM {s}.job r \
             WHERE r.concurrency_key = q.concurrency_key AND r.state = 2) \
           AND NOT EXISTS (SELECT 1 FROM {s}.job e \
             WHERE e.concurrency_key = q.concurrency_key AND e.state = 1 AND e.run_at <= $1 \
               AND (e.priority, e.run_at, e.id) < (q.priority, q.run_at, q.id)))) \
       ORDER BY priority, run_at, id LIMIT $2 \
       FOR NO KEY UPDATE SKIP LOCKED) \
     UPDATE {s}.job j SET state = 2, attempts = j.attempts + 1, owner = $3, started_at = $7, \
       lease_until = $7 + (CASE WHEN j.timeout_ms > 0 THEN j.timeout_ms::bigint ELSE $5 END) + $6 \
     WHERE j.id = ANY(ARRAY(SELECT id FROM c)) \
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
    let mut c = self.client().await?;
    let st = c
      .prepare_cached(&self.sql.claim)
      .await
      .map_err(pg_err("claim"))?;
    let max = i64::try_from(o.max).unwrap_or(i64::MAX);
    let at = big(o.at.unwrap_or(now));
    let until = big(now.saturating_add(o.ahead_ms));
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
      &until,
      &max,
      &o.owner,
      &o.names,
      &big(o.default_lease_ms),
      &big(o.grace_ms),
      &at,
      &big(now),
    ];
    let mut tries = 0;
    let rows = loop {
      // Its own transaction, for the planner settings (see INDEX_PLAN);
      // dropped on an error, it rolls back.
      let tx = c.transaction().await.map_err(pg_err("claim"))?;
      let (set, rows) = planned(&tx, INDEX_PLAN, tx.query(&st, &params)).await;
      set.map_err(pg_err("claim: planner settings"))?;
      match rows {
        Ok(rows) => {
          tx.commit().await.map_err(pg_err("claim: commit"))?;
          break rows;
        }
        // Another process took a job of the same concurrency key at once.
        Err(e) if tries < 5 && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => tries += 1,
        Err(e) => return Err(pg_err("claim")(e)),
      }
    };
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
    let sql = format!(
      "UPDATE {s}.job j SET state = 1, attempts = j.attempts - 1, owner = NULL, \
         lease_until = NULL \
       FROM unnest($1::uuid[], $2::bigint[], $3::int[]) AS i(id, owner, attempt) \
       WHERE j.id = i.id AND j.id = ANY($1::uuid[]) AND j.state::int = 2 \
         AND j.owner = i.owner AND j.attempts = i.attempt"
    );
    let (set, n) = planned(
      &tx,
      JOIN_PLAN,
      tx.execute(&sql, &[&ids, &owners, &attempts]),
    )
    .await;
    set.map_err(pg_err("hand back: planner settings"))?;
    let n = n.map_err(pg_err("hand back"))? as usize;
    if n > 0 {
      self.notify_in(&tx, &format!("i:{now}")).await?;
    }
    tx.commit().await.map_err(pg_err("hand back: commit"))?;
    Ok(n)
  }
}

#[cfg(test)]
mod sizer_tests {
  use super::*;
  use std::time::Duration;

  #[test]
  fn the_configured_sizes_hold_until_a_rate_is_measured() {
    let s = ClaimSizer::new(128, 64);
    assert_eq!(s.sizes(), (64, 128));
    // Out-of-range settings are clamped (a batch is twice the low-water
    // mark at least).
    assert_eq!(ClaimSizer::new(0, 0).sizes(), (1, 2));
    assert_eq!(ClaimSizer::new(5_000, 9_000).sizes(), (512, 1024));
  }

  #[test]
  fn a_fast_drain_with_slow_claims_claims_more_and_a_slow_one_keeps_the_floor() {
    let mut s = ClaimSizer::new(128, 64);
    // 20 ms claims; 1,000 jobs taken in ~50 ms: ~20,000/s.
    s.after_claim(Duration::from_millis(20), 1_000);
    std::thread::sleep(Duration::from_millis(50));
    s.before_claim(0);
    let (low, batch) = s.sizes();
    assert!(low > 64 && batch > 128, "grew: {low}, {batch}");
    assert!(batch <= MAX_CLAIM && low <= batch);
    // Slow jobs: 2 taken in ~50 ms; the rate falls and so do the sizes,
    // never below the configured floor.
    let mut slow = ClaimSizer::new(128, 64);
    slow.after_claim(Duration::from_millis(20), 100);
    std::thread::sleep(Duration::from_millis(50));
    slow.before_claim(98);
    assert_eq!(slow.sizes(), (64, 128));
  }

  #[test]
  fn the_sizes_never_pass_the_cap() {
    let mut s = ClaimSizer::new(128, 64);
    s.after_claim(Duration::from_secs(2), 1_000_000);
    std::thread::sleep(Duration::from_millis(5));
    s.before_claim(0);
    assert_eq!(s.sizes(), (MAX_CLAIM / 2, MAX_CLAIM));
  }
}
