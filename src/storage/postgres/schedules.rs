//! Schedules shared by the cluster, and fires that happen once per cluster.
//!
//! Any number of processes may evaluate the same schedule; each fire is one
//! statement: a compare-and-set that moves `schedule.last_fire` forward to
//! the fire time (only one process can move it from before that time),
//! and the job inserted from the CAS's row, `ON CONFLICT DO NOTHING`
//! against the unique `(schedule_id, fire_at)` index (a second guard, e.g.
//! after `last_fire` was reset by hand; it holds for live jobs only). The
//! CAS also asks the stored spec (enabled, `endAt`, `maxRuns` against the
//! cluster's `runCount`) and, for the overlap rule, the hot table. Misfire
//! policies then apply to the cluster's `last_fire`, not to one process's
//! memory (see `cron.rs` and `Scheduler::merge_cluster`).
//!
//! `spec` is the scheduler's JSON of the schedule; its run state
//! (`runCount`, `lastRunAt`, `lastJobId`) is the cluster's: moved by the
//! fire's transaction and kept when a process saves the definition again.

use std::collections::HashMap;

use super::insert::{insert_from, Columns};
use super::{big, pg_err, NewJob, PgId, PgStore};
use crate::error::Result;
use crate::job::{JobId, Status};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
  pub id: String,
  /// The schedule as JSON (the scheduler's own format).
  pub spec: String,
  /// The last fire time the cluster recorded.
  pub last_fire: Option<u64>,
}

/// What a fire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
  /// This process fired it: the job was added (or, for a job with a
  /// unique key, the live job holding the key stands for it).
  Fired(JobId),
  /// This process moved `last_fire`, but the job was not added: a job for
  /// this fire time exists, or a live job holds its key (overlap).
  Skipped,
  /// Another process fired this time (or a later one) first, or the
  /// schedule is gone.
  Lost,
}

impl PgStore {
  /// Stores a schedule, replacing the spec of one with the same id: its
  /// `last_fire` and the run state the cluster recorded in its spec
  /// (`runCount`, `lastRunAt`, `lastJobId`, see [`PgStore::fire`]) are
  /// kept, and so is its `createdAt` (the first process's: an interval
  /// without `startAt` is anchored there, one grid for the cluster). Other processes hear `s:<id>` (NOTIFY, sent in the saving
  /// transaction).
  pub async fn save_schedule(&self, id: &str, spec: &str, now: u64) -> Result<()> {
    let mut c = self.client().await?;
    let s = &self.quoted;
    let tx = c.transaction().await.map_err(pg_err("save schedule"))?;
    let st = tx
      .prepare_cached(&format!(
        "INSERT INTO {s}.schedule AS t (id, spec, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, \
         spec = (excluded.spec::jsonb || jsonb_strip_nulls(jsonb_build_object( \
           'runCount', t.spec::jsonb->'runCount', \
           'lastRunAt', t.spec::jsonb->'lastRunAt', \
           'lastJobId', t.spec::jsonb->'lastJobId', \
           'createdAt', t.spec::jsonb->'createdAt')))::text"
      ))
      .await
      .map_err(pg_err("save schedule"))?;
    tx.execute(&st, &[&id, &spec, &big(now)])
      .await
      .map_err(pg_err("save schedule"))?;
    self.notify_in(&tx, &format!("s:{id}")).await?;
    tx.commit().await.map_err(pg_err("save schedule: commit"))?;
    Ok(())
  }

  /// Deletes a schedule; false if there was none. Other processes hear
  /// `s:<id>`.
  pub async fn delete_schedule(&self, id: &str) -> Result<bool> {
    let mut c = self.client().await?;
    let s = &self.quoted;
    let tx = c.transaction().await.map_err(pg_err("delete schedule"))?;
    let n = tx
      .execute(&format!("DELETE FROM {s}.schedule WHERE id = $1"), &[&id])
      .await
      .map_err(pg_err("delete schedule"))?;
    if n == 1 {
      self.notify_in(&tx, &format!("s:{id}")).await?;
    }
    tx.commit()
      .await
      .map_err(pg_err("delete schedule: commit"))?;
    Ok(n == 1)
  }

  /// Every schedule of the cluster, by id (bounded by the statement
  /// timeout, as every read: `read.rs`).
  pub async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
    let s = &self.quoted;
    let rows = self
      .bounded("read the schedules", async {
        let c = self.client().await?;
        c.query(
          &format!("SELECT id, spec, last_fire FROM {s}.schedule ORDER BY id"),
          &[],
        )
        .await
        .map_err(pg_err("schedules"))
      })
      .await?;
    Ok(
      rows
        .iter()
        .map(|r| StoredSchedule {
          id: r.get(0),
          spec: r.get(1),
          last_fire: r.get::<_, Option<i64>>(2).map(|v| v.max(0) as u64),
        })
        .collect(),
    )
  }

  /// The status of each of `ids` that is still stored (live or finished).
  pub async fn statuses(&self, ids: &[JobId]) -> Result<HashMap<JobId, Status>> {
    if ids.is_empty() {
      return Ok(HashMap::new());
    }
    let s = &self.quoted;
    let ids: Vec<PgId> = ids.iter().map(|&i| PgId(i)).collect();
    let rows = self
      .bounded("read the schedules' last jobs", async {
        let c = self.client().await?;
        c.query(
          &format!(
            "SELECT id, state FROM {s}.job WHERE id = ANY($1) \
             UNION ALL SELECT id, status FROM {s}.done WHERE id = ANY($1)"
          ),
          &[&ids],
        )
        .await
        .map_err(pg_err("schedules: statuses"))
      })
      .await?;
    Ok(
      rows
        .iter()
        .filter_map(|r| {
          let id: PgId = r.get(0);
          let st: i16 = r.get(1);
          Status::ALL
            .get(usize::try_from(st).ok()?)
            .map(|&st| (id.0, st))
        })
        .collect(),
    )
  }

  /// Fires schedule `id` for `fire_at`, adding `job` (its `schedule` set to
  /// this fire) if and only if no process fired this time or a later one
  /// before, and the stored schedule may fire then: enabled, `fire_at`
  /// not after its `endAt`, fewer than `maxRuns` fires recorded (the
  /// stored spec decides, so a change another process made counts before
  /// this process hears of it). With `overlap`, while a job of the
  /// schedule is unfinished (waiting, pending or running: in the hot table)
  /// the time is used up without a job ([`Fire::Skipped`]). A fired job
  /// moves the spec's `runCount`, `lastRunAt` and `lastJobId` in the same
  /// transaction.
  pub async fn fire(&self, id: &str, fire_at: u64, job: &NewJob, overlap: bool) -> Result<Fire> {
    let s = &self.quoted;
    let mut job = job.clone();
    job.schedule = Some((id.to_string(), fire_at));
    if job.key.is_some() || job.deps.as_ref().is_some_and(|d| !d.ids.is_empty()) {
      return self.fire_by_insert(id, fire_at, &job, overlap).await;
    }
    let mut cols = Columns::default();
    cols.push(&job, Status::Pending, 0);
    let sql = format!(
      "WITH cas AS ({}), \
       gate AS (SELECT 1 FROM cas WHERE NOT $25::bool \
                  OR NOT EXISTS (SELECT 1 FROM {s}.job WHERE schedule_id = $24)), \
       ins AS ({}) \
       SELECT (SELECT count(*) FROM cas), (SELECT id FROM ins)",
      cas_sql(s, "$23", "$24"),
      insert_from(s, "gate, "),
    );
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("fire"))?;
    let st = tx.prepare_cached(&sql).await.map_err(pg_err("fire"))?;
    let fire = big(fire_at);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
    params.push(&fire);
    params.push(&id);
    params.push(&overlap);
    let row = tx.query_one(&st, &params).await.map_err(pg_err("fire"))?;
    let won: i64 = row.get(0);
    let added: Option<PgId> = row.get(1);
    let out = match (won, added) {
      (0, _) => Fire::Lost,
      (_, Some(id)) => Fire::Fired(id.0),
      (_, None) => Fire::Skipped,
    };
    if let Fire::Fired(job_id) = out {
      self.record_run(&tx, id, fire_at, job_id).await?;
      self.notify_in(&tx, &format!("i:{}", job.run_at)).await?;
    }
    tx.commit().await.map_err(pg_err("fire: commit"))?;
    Ok(out)
  }

  /// [`PgStore::fire`] of a job with a unique `key` or dependencies
  /// (`dependsOn`) in the schedule's job options: the same compare-and-set,
  /// then, in the same transaction, the insert path ([`PgStore::insert_in`]:
  /// the key decided under its lock, the job waiting for its
  /// dependencies). A live job holding the key is the fire's job, as on
  /// the other backends ([`Fire::Fired`] with its id; with `replace` or
  /// `debounceMs` it was changed).
  async fn fire_by_insert(
    &self,
    id: &str,
    fire_at: u64,
    job: &NewJob,
    overlap: bool,
  ) -> Result<Fire> {
    let s = &self.quoted;
    let sql = format!(
      "WITH cas AS ({}) SELECT (SELECT count(*) FROM cas), \
       NOT $3::bool OR NOT EXISTS (SELECT 1 FROM {s}.job WHERE schedule_id = $2)",
      cas_sql(s, "$1", "$2"),
    );
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("fire"))?;
    let fire = big(fire_at);
    let row = tx
      .query_one(&sql, &[&fire, &id, &overlap])
      .await
      .map_err(pg_err("fire"))?;
    let won: i64 = row.get(0);
    let free: bool = row.get(1);
    let out = if won == 0 {
      Fire::Lost
    } else if !free {
      Fire::Skipped
    } else {
      let (ins, _failed) = self
        .insert_in(&tx, std::slice::from_ref(job), job.created_at)
        .await?;
      match ins.first() {
        Some(i) if i.added || i.id != job.id => Fire::Fired(i.id),
        _ => Fire::Skipped,
      }
    };
    if let Fire::Fired(job_id) = out {
      self.record_run(&tx, id, fire_at, job_id).await?;
    }
    tx.commit().await.map_err(pg_err("fire: commit"))?;
    Ok(out)
  }

  /// Moves the stored spec's run state for a fire that added `job_id`.
  async fn record_run(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    fire_at: u64,
    job_id: JobId,
  ) -> Result<()> {
    let s = &self.quoted;
    let st = tx
      .prepare_cached(&format!(
        "UPDATE {s}.schedule SET spec = (spec::jsonb || jsonb_build_object( \
           'runCount', COALESCE((spec::jsonb->>'runCount')::bigint, 0) + 1, \
           'lastRunAt', $2::bigint, 'lastJobId', $3::text))::text \
         WHERE id = $1"
      ))
      .await
      .map_err(pg_err("fire"))?;
    tx.execute(&st, &[&id, &big(fire_at), &job_id.to_string()])
      .await
      .map_err(pg_err("fire"))?;
    Ok(())
  }
}

/// The compare-and-set of a fire (`fire` and `id` are the placeholders of
/// the fire time and the schedule's id): `last_fire` moves to the fire time
/// if it is earlier and the stored spec may fire then.
fn cas_sql(s: &str, fire: &str, id: &str) -> String {
  let max = i64::MAX;
  format!(
    "UPDATE {s}.schedule SET last_fire = {fire} \
     WHERE id = {id} AND (last_fire IS NULL OR last_fire < {fire}) \
       AND (spec::jsonb->'enabled') IS DISTINCT FROM 'false'::jsonb \
       AND {fire} <= COALESCE((spec::jsonb->>'endAt')::bigint, {max}) \
       AND COALESCE((spec::jsonb->>'runCount')::bigint, 0) \
           < COALESCE((spec::jsonb->>'maxRuns')::bigint, {max}) \
     RETURNING id"
  )
}
