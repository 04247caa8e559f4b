//! Adds claimed at once: when this process has room for more jobs (its
//! ready buffer below the claimer's low-water mark) and the claimer's last
//! claim found no due backlog, `insert` takes the jobs of a batch that are
//! due now, of a calculation this process runs, without dependencies,
//! `key` or `concurrencyKey`: they go to the ready buffer at once, before
//! anything is written, and the inserter writes them as claimed by this
//! process in the inserting transaction. An add's handler then starts
//! without waiting for the database (as on SQLite, where the write is
//! committed off the JavaScript thread too), and no claim walks past them.
//!
//! The guarantees are those of a claim: the row goes in as a claim leaves
//! it (state running, attempt 1, owner, the lease a claim computes), so
//! fencing, the rescue of a dead process and cancel see an ordinary claimed
//! job. What differs is the order of the writes, which the backend keeps:
//! such a job's outcome (and a hand-back) is written after its insert
//! committed; the insert is retried until it commits (a retry after a lost
//! answer inserts only what is missing, still claimed). Before that commit
//! the job exists only in this process, like any add whose promise has not
//! resolved: if the process dies then, the job is gone with it (it may have
//! started). Its claim time is one of the claimer's strictly increasing
//! claim times, never released as a lost claim's ([`PgStore::release_lost`]).
//! Priorities: a batch's jobs are taken in claim order, and only while the
//! last claim came back short (no due job of any priority was left pending
//! then); a job added meanwhile by another process may wait for the next
//! claim, as it would behind a claim already in flight.

use super::claim::ClaimOptions;
use super::insert::{Columns, NewJob, INSERT_COLS};
use super::read::shared_cols;
use super::{big, decode, pg_err, PgJob, PgStore};
use crate::error::Result;
use crate::job::{JobId, Status};
use crate::storage::StoreFailed;
use tokio_postgres::types::ToSql;

/// Inserts a batch's rows (`$1..$22` as [`super::insert::insert_sql`])
/// already claimed for `$23` at `$24` (lease: `$25` for a job without a
/// timeout, plus `$26`), in one statement: run alone it commits by itself,
/// so an add whose batch is all claimed costs one round trip.
pub(crate) fn insert_claimed_sql(s: &str) -> String {
  let cols: Vec<&str> = INSERT_COLS.iter().map(|c| c.0).collect();
  let arrays: Vec<String> = INSERT_COLS
    .iter()
    .enumerate()
    .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
    .collect();
  format!(
    "INSERT INTO {s}.job AS j ({cols}, owner, attempts, started_at, lease_until) \
     SELECT u.*, $23::bigint, 1, $24::bigint, $24::bigint + (CASE WHEN u.timeout_ms > 0 \
       THEN u.timeout_ms::bigint ELSE $25::bigint END) + $26::bigint \
     FROM unnest({arrays}) AS u({cols}) ON CONFLICT DO NOTHING \
     RETURNING {}, j.state, 0::bigint AS finished_at, NULL::text AS result, j.owner, j.lease_until",
    shared_cols("j.", "j.errors::text AS errors"),
    cols = cols.join(", "),
    arrays = arrays.join(", "),
  )
}

/// Due at `at`, without dependencies, key, concurrency key or schedule.
fn plain(j: &NewJob, at: u64) -> bool {
  j.run_at <= at
    && j.deps.is_none()
    && j.key.is_none()
    && j.concurrency_key.is_none()
    && j.schedule.is_none()
}

/// The jobs of `jobs` that may be added claimed at `at`: due, of a
/// calculation in `names`, without dependencies, key, concurrency key or
/// schedule; at most `room`, in claim order (priority, due time, id).
#[cfg(test)]
pub(crate) fn pick(jobs: &[NewJob], at: u64, names: &[String], room: usize) -> Vec<JobId> {
  pick_indices(jobs, at, names, room)
    .into_iter()
    .map(|i| jobs[i].id)
    .collect()
}

/// The jobs of a batch that may be added claimed at `at`, as positions in
/// `jobs`: due, of a calculation in `names`, without dependencies, key,
/// concurrency key or schedule; at most `room`, in claim order (priority,
/// due time, id).
pub(crate) fn pick_indices(jobs: &[NewJob], at: u64, names: &[String], room: usize) -> Vec<usize> {
  if room == 0 {
    return Vec::new();
  }
  let mut ok: Vec<usize> = (0..jobs.len())
    .filter(|&i| plain(&jobs[i], at) && names.contains(&jobs[i].name))
    .collect();
  ok.sort_by_key(|&i| (jobs[i].weight, jobs[i].run_at, jobs[i].id));
  ok.truncate(room);
  ok
}

/// `job` (from `row`) as a claim by `o.owner` at `now` leaves it: running,
/// attempt 1, leased (the lease an insert computes from its own, later,
/// claim time ends no earlier).
pub(crate) fn claimed_here(
  job: &crate::job::Job,
  row: &NewJob,
  o: &ClaimOptions,
  now: u64,
) -> PgJob {
  let mut job = job.clone();
  job.status = Status::Running;
  job.attempts = 1;
  job.started_at = now;
  let lease = if row.timeout_ms > 0 {
    u64::from(row.timeout_ms)
  } else {
    o.default_lease_ms
  };
  PgJob {
    job,
    name: row.name.clone(),
    weight: row.weight,
    key: None,
    concurrency_key: None,
    schedule_id: None,
    fire_at: None,
    owner: Some(o.owner),
    lease_until: Some(now + lease + o.grace_ms),
  }
}

/// The jobs of an insert that go in claimed by this process: their ids
/// (from [`pick`]), the claim's owner and lease settings, its claim time.
#[derive(Clone, Copy)]
pub(crate) struct Claiming<'a> {
  pub ids: &'a [JobId],
  pub opts: &'a ClaimOptions,
  pub at: u64,
}

impl PgStore {
  /// Adds `jobs` as [`PgStore::insert`] does, those of `ids` (from
  /// [`pick`]; any not plain go in as usual) already claimed for `o.owner`
  /// at `at` by an insert of their own (no NOTIFY for them: nobody else may
  /// take them). With nothing else in the batch that insert is the whole
  /// transaction (one round trip); otherwise the others follow through the
  /// usual insert in the same transaction (one of them may depend on one of
  /// these: it is in the table by then). Returns the claimed jobs, in claim
  /// order, and the jobs the insert failed at once (as
  /// [`PgStore::insert_reporting`]).
  pub async fn insert_claiming(
    &self,
    jobs: &[NewJob],
    now: u64,
    ids: &[JobId],
    o: &ClaimOptions,
    at: u64,
  ) -> Result<(Vec<PgJob>, Vec<StoreFailed>)> {
    let picked: std::collections::HashSet<JobId> = ids.iter().copied().collect();
    let (mine, rest): (Vec<NewJob>, Vec<NewJob>) = jobs
      .iter()
      .cloned()
      .partition(|j| picked.contains(&j.id) && plain(j, now));
    let mut cols = Columns::default();
    for j in &mine {
      cols.push(j, Status::Running, 0);
    }
    let sql = insert_claimed_sql(&self.quoted);
    let (owner, at) = (o.owner, big(at));
    let (lease, grace) = (big(o.default_lease_ms), big(o.grace_ms));
    let mut params: Vec<&(dyn ToSql + Sync)> = cols.params().to_vec();
    params.extend([&owner as &(dyn ToSql + Sync), &at, &lease, &grace]);
    let mut client = self.client().await?;
    let mut claimed = Vec::new();
    let mut failed = Vec::new();
    if rest.is_empty() {
      // One statement, its own transaction.
      if !mine.is_empty() {
        let st = client
          .prepare_cached(&sql)
          .await
          .map_err(pg_err("insert"))?;
        let rows = client.query(&st, &params).await.map_err(pg_err("insert"))?;
        claimed = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
      }
    } else {
      let tx = client.transaction().await.map_err(pg_err("insert"))?;
      if !mine.is_empty() {
        let st = tx.prepare_cached(&sql).await.map_err(pg_err("insert"))?;
        let rows = tx.query(&st, &params).await.map_err(pg_err("insert"))?;
        claimed = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
      }
      failed = self.insert_in(&tx, &rest, now).await?.1;
      tx.commit().await.map_err(pg_err("insert: commit"))?;
    }
    claimed.sort_by_key(|j| (j.weight, j.job.run_at, j.job.id));
    Ok((claimed, failed))
  }
}
