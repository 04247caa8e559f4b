//! Schedules shared by the cluster, and fires that happen once per cluster.
//!
//! Any number of processes may evaluate the same schedule; each fire is one
//! statement: a compare-and-set that moves `schedule.last_fire` forward to
//! the fire time (only one process can move it from before that time),
//! and the job inserted from the CAS's row, `ON CONFLICT DO NOTHING`
//! against the unique `(schedule_id, fire_at)` index (a second guard, e.g.
//! after `last_fire` was reset by hand). Misfire policies then apply to the
//! cluster's `last_fire`, not to one process's memory.

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
  /// This process fired it: the job was added.
  Fired(JobId),
  /// This process moved `last_fire`, but the job was not added: a job for
  /// this fire time exists, or a live job holds its key (overlap).
  Skipped,
  /// Another process fired this time (or a later one) first, or the
  /// schedule is gone.
  Lost,
}

impl PgStore {
  /// Stores a schedule, replacing the spec of one with the same id (its
  /// `last_fire` is kept).
  pub async fn save_schedule(&self, id: &str, spec: &str, now: u64) -> Result<()> {
    let c = self.client().await?;
    let s = &self.quoted;
    c.execute(
      &format!(
        "INSERT INTO {s}.schedule (id, spec, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at"
      ),
      &[&id, &spec, &big(now)],
    )
    .await
    .map_err(pg_err("save schedule"))?;
    Ok(())
  }

  /// Deletes a schedule; false if there was none.
  pub async fn delete_schedule(&self, id: &str) -> Result<bool> {
    let c = self.client().await?;
    let s = &self.quoted;
    let n = c
      .execute(&format!("DELETE FROM {s}.schedule WHERE id = $1"), &[&id])
      .await
      .map_err(pg_err("delete schedule"))?;
    Ok(n == 1)
  }

  /// Every schedule of the cluster, by id.
  pub async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
    let c = self.client().await?;
    let s = &self.quoted;
    let rows = c
      .query(
        &format!("SELECT id, spec, last_fire FROM {s}.schedule ORDER BY id"),
        &[],
      )
      .await
      .map_err(pg_err("schedules"))?;
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

  /// Fires schedule `id` for `fire_at`, adding `job` (its `schedule` set to
  /// this fire) if and only if no process fired this time before.
  pub async fn fire(&self, id: &str, fire_at: u64, job: &NewJob) -> Result<Fire> {
    let s = &self.quoted;
    let mut job = job.clone();
    job.schedule = Some((id.to_string(), fire_at));
    let mut cols = Columns::default();
    cols.push(&job, Status::Pending, 0);
    let sql = format!(
      "WITH cas AS (UPDATE {s}.schedule SET last_fire = $23 \
                    WHERE id = $24 AND (last_fire IS NULL OR last_fire < $23) RETURNING id), \
       ins AS ({}) \
       SELECT (SELECT count(*) FROM cas), (SELECT id FROM ins)",
      insert_from(s, "cas, ")
    );
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("fire"))?;
    let st = tx.prepare_cached(&sql).await.map_err(pg_err("fire"))?;
    let fire = big(fire_at);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
    params.push(&fire);
    params.push(&id);
    let row = tx.query_one(&st, &params).await.map_err(pg_err("fire"))?;
    let won: i64 = row.get(0);
    let added: Option<PgId> = row.get(1);
    let out = match (won, added) {
      (0, _) => Fire::Lost,
      (_, Some(id)) => Fire::Fired(id.0),
      (_, None) => Fire::Skipped,
    };
    if matches!(out, Fire::Fired(_)) {
      self.notify_in(&tx, &format!("i:{}", job.run_at)).await?;
    }
    tx.commit().await.map_err(pg_err("fire: commit"))?;
    Ok(out)
  }
}
