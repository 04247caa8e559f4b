//! Reads for the whole cluster: a job by id (live or finished), listings
//! with [`JobFilter`]'s semantics (id order, cursor, statuses, name, time
//! range, with or without data), counts per status; and pruning history.
//!
//! Each read is bounded by `storage.statementTimeoutMs`
//! ([`PgStore::bounded`]) and not retried: a server that keeps the
//! connection open but stops answering fails it with `ERR_STORAGE` naming
//! the read, instead of holding its caller (a `getJobStatus` or `getJobs`
//! promise, the counts' refresh) forever. A prune is bounded per statement.

use super::{big, decode, pg_err, PgId, PgJob, PgStore};
use crate::error::Result;
use crate::job::{JobId, Status};
use crate::storage::{JobFilter, Names};

/// The columns `job` and `done` share, in table order, `errors` excepted
/// (it is spliced in by [`shared_cols`]).
const SHARED: &[&str] = &[
  "id",
  "name",
  "priority",
  "priority_name",
  "run_at",
  "created_at",
  "started_at",
  "attempts",
  "max_retries",
  "timeout_ms",
  "backoff_kind",
  "backoff_delay_ms",
  "backoff_max_ms",
  "backoff_jitter",
  "data",
  "context",
  "errors",
  "progress",
  "deps",
  "deps_ignore_failure",
  "key",
  "concurrency_key",
  "schedule_id",
  "fire_at",
];

/// The shared columns, each prefixed with `p` (`"d."`, or empty), `errors`
/// as `errors` gives it.
pub(crate) fn shared_cols(p: &str, errors: &str) -> String {
  SHARED
    .iter()
    .map(|c| {
      if *c == "errors" {
        errors.to_string()
      } else {
        format!("{p}{c}")
      }
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// The shared column names, for an `INSERT INTO done (...)`.
pub(crate) fn shared_names() -> String {
  SHARED.join(", ")
}

/// What a read of `job` selects (decoded by [`decode`]).
pub(crate) const COLS: &str = "id, name, priority, priority_name, run_at, created_at, started_at, \
  attempts, max_retries, timeout_ms, backoff_kind, backoff_delay_ms, backoff_max_ms, \
  backoff_jitter, data, context, errors::text AS errors, progress, deps, deps_ignore_failure, key, \
  concurrency_key, schedule_id, fire_at";

fn hot_select(s: &str, data: bool) -> String {
  let cols = if data {
    COLS.to_string()
  } else {
    COLS.replace("data, ", "''::text AS data, ")
  };
  format!(
    "SELECT {cols}, state, 0::bigint AS finished_at, NULL::text AS result, owner, lease_until \
     FROM {s}.job"
  )
}

fn done_select(s: &str, data: bool) -> String {
  let (cols, result) = if data {
    (COLS.to_string(), "result")
  } else {
    (
      COLS.replace("data, ", "''::text AS data, "),
      "NULL::text AS result",
    )
  };
  format!(
    "SELECT {cols}, status AS state, finished_at, {result}, NULL::bigint AS owner, \
     NULL::bigint AS lease_until FROM {s}.done"
  )
}

impl PgStore {
  /// The job with this id, live or finished.
  pub async fn get(&self, id: JobId) -> Result<Option<PgJob>> {
    self.bounded("read a job", self.get_unbounded(id)).await
  }

  async fn get_unbounded(&self, id: JobId) -> Result<Option<PgJob>> {
    let c = self.client().await?;
    let s = &self.quoted;
    let sql = format!(
      "{} WHERE id = $1 UNION ALL {} WHERE id = $1",
      hot_select(s, true),
      done_select(s, true)
    );
    let st = c.prepare_cached(&sql).await.map_err(pg_err("get"))?;
    let rows = c.query(&st, &[&PgId(id)]).await.map_err(pg_err("get"))?;
    if rows.is_empty() {
      // A refused duplicate's id answers for its key's holder (keys.rs).
      let alias = c
        .query_opt(
          &format!("SELECT holder FROM {s}.alias WHERE id = $1"),
          &[&PgId(id)],
        )
        .await
        .map_err(pg_err("get"))?;
      if let Some(a) = alias {
        let holder: PgId = a.get(0);
        let rows = c.query(&st, &[&holder]).await.map_err(pg_err("get"))?;
        return rows.first().map(decode).transpose();
      }
    }
    rows.first().map(decode).transpose()
  }

  /// The jobs `f` selects, in id order (newest first unless
  /// `f.ascending`), strictly after the cursor, at most `f.limit`; the name
  /// index of `f.name` is looked up in `names` (an index it does not hold
  /// matches no job).
  pub async fn list(&self, f: &JobFilter, names: &Names) -> Result<Vec<PgJob>> {
    let name: Option<String> = match f.name {
      None => None,
      Some(i) => match names.get(i) {
        Some(n) => Some(n.to_string()),
        None => return Ok(Vec::new()),
      },
    };
    if f.limit == 0 || f.statuses == 0 {
      return Ok(Vec::new());
    }
    let statuses: Vec<i16> = Status::ALL
      .into_iter()
      .filter(|s| f.admits(*s))
      .map(|s| s as i16)
      .collect();
    let hot: Vec<i16> = statuses.iter().copied().filter(|s| *s < 3).collect();
    let done: Vec<i16> = statuses.iter().copied().filter(|s| *s >= 3).collect();
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    let (cmp, dir) = if f.ascending {
      (">", "ASC")
    } else {
      ("<", "DESC")
    };
    // $1 name, $2 since, $3 until, $4 cursor, $5 limit, $6 states
    let cond = format!(
      "($1::text IS NULL OR name = $1) AND ($2::bigint IS NULL OR created_at >= $2) \
       AND ($3::bigint IS NULL OR created_at < $3) AND ($4::uuid IS NULL OR id {cmp} $4)"
    );
    let s = &self.quoted;
    let mut parts = Vec::new();
    if !hot.is_empty() {
      parts.push(format!(
        "({} WHERE state = ANY($6) AND {cond} ORDER BY id {dir} LIMIT $5)",
        hot_select(s, f.include_data)
      ));
    }
    if !done.is_empty() {
      parts.push(format!(
        "({} WHERE status = ANY($6) AND {cond} ORDER BY id {dir} LIMIT $5)",
        done_select(s, f.include_data)
      ));
    }
    let sql = format!(
      "SELECT * FROM ({}) u ORDER BY id {dir} LIMIT $5",
      parts.join(" UNION ALL ")
    );
    let since = f.since.map(big);
    let until = f.until.map(big);
    let after = f.after.map(PgId);
    let rows = self
      .bounded("list jobs", async {
        let c = self.client().await?;
        let st = c.prepare_cached(&sql).await.map_err(pg_err("list"))?;
        c.query(&st, &[&name, &since, &until, &after, &limit, &statuses])
          .await
          .map_err(pg_err("list"))
      })
      .await?;
    rows.iter().map(decode).collect()
  }

  /// Jobs per status in the whole cluster (indexed by `Status as usize`).
  pub async fn counts(&self) -> Result<[usize; 7]> {
    let s = &self.quoted;
    let sql = format!(
      "SELECT state, count(*) FROM {s}.job GROUP BY state \
       UNION ALL SELECT status, count(*) FROM {s}.done GROUP BY status"
    );
    let rows = self
      .bounded("count jobs", async {
        let c = self.client().await?;
        let st = c.prepare_cached(&sql).await.map_err(pg_err("counts"))?;
        c.query(&st, &[]).await.map_err(pg_err("counts"))
      })
      .await?;
    let mut out = [0usize; 7];
    for r in rows {
      let st: i16 = r.get(0);
      let n: i64 = r.get(1);
      if let Some(slot) = out.get_mut(st as usize) {
        *slot += n.max(0) as usize;
      }
    }
    Ok(out)
  }

  /// Which of `ids` are still queued (`waiting` or `pending`).
  pub async fn still_queued(&self, ids: &[JobId]) -> Result<std::collections::HashSet<JobId>> {
    let s = &self.quoted;
    let sql = format!("SELECT id FROM {s}.job WHERE id = ANY($1) AND state IN (0, 1)");
    let ids: Vec<PgId> = ids.iter().map(|i| PgId(*i)).collect();
    let rows = self
      .bounded("check which jobs are still queued", async {
        let c = self.client().await?;
        let st = c
          .prepare_cached(&sql)
          .await
          .map_err(pg_err("still queued"))?;
        c.query(&st, &[&ids]).await.map_err(pg_err("still queued"))
      })
      .await?;
    Ok(rows.iter().map(|r| r.get::<_, PgId>(0).0).collect())
  }

  /// Deletes finished jobs that finished at or before `before`, at most
  /// `batch` per statement (so a large prune does not hold locks long),
  /// oldest first; returns how many. `ORDER BY finished_at` walks the
  /// `finished_at` index: without it a planner without statistics (the
  /// table never analysed, autovacuum off) may scan the table from its
  /// start for each batch, past every row the earlier batches deleted.
  /// Each statement is bounded by the statement timeout (a large prune
  /// takes many), each on a pooled connection taken for it (one that hung
  /// is closed, not used for the next batch: see [`PgStore::bounded`]).
  pub async fn prune(&self, before: u64, batch: usize) -> Result<usize> {
    let s = &self.quoted;
    let sql = format!(
      "DELETE FROM {s}.done WHERE id IN \
       (SELECT id FROM {s}.done WHERE finished_at <= $1 ORDER BY finished_at LIMIT $2)"
    );
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
      let n = self
        .bounded("prune finished jobs", async {
          let c = self.client().await?;
          let st = c.prepare_cached(&sql).await.map_err(pg_err("prune"))?;
          c.execute(&st, &[&big(before), &batch])
            .await
            .map_err(pg_err("prune"))
        })
        .await? as usize;
      total += n;
      if (n as i64) < batch {
        self
          .bounded("prune aliases", self.prune_aliases(before))
          .await?;
        return Ok(total);
      }
    }
  }
}
