//! Unique keys on PostgreSQL: the same semantics as memory and SQLite
//! (`queue/insert.rs`), decided in the database, race-free across
//! processes.
//!
//! The queue cannot ask PostgreSQL which job holds a key without waiting on
//! the network ([`super::PgBackend`]'s `keyed` answers `None`), so every
//! keyed job reaches the inserting transaction with its add's policy
//! ([`OnDup`]), and the transaction decides there:
//!
//! 1. It takes a transaction advisory lock per key bucket (a hash of the
//!    key into [`BUCKETS`], in ascending order, so inserters never
//!    deadlock): two inserts of one key, from any process, decide one after
//!    the other. The bucket count bounds the locks one transaction holds
//!    (PostgreSQL's lock table is small), however many keys a batch has.
//! 2. It looks up each key's newest holder (waiting, pending or running;
//!    index `job_key`), as memory's and SQLite's key index answer.
//! 3. Walks the batch in order ([`plan`]) as the queue does: no holder, or
//!    only a running one with `replace`: a new row (it holds the key from
//!    then on); an unstarted holder with `replace` or `debounceMs`: that
//!    row is updated (data and context, due time); otherwise nothing, and
//!    the add's answer is the holder.
//! 4. Updates are `WHERE state < 2`: a holder claimed since the lookup
//!    (claims take no advisory lock) is not changed, and the adds that
//!    would have changed it are planned again from a fresh lookup (now a
//!    running holder: a successor with `replace`).
//!
//! The advisory lock is the arbiter, not a unique index: a running holder
//! may have an unstarted successor, and that holder's retry after a failure
//! (or a rescue) makes two unstarted holders, as on memory and SQLite
//! (where a unique index would fail the group commit). `retryJob` of a
//! finished job checks the key under the same lock and refuses while a live
//! job holds it.
//!
//! **The id an add returns.** `add` answers on the JS thread before the
//! transaction, so it returns the new job's id; when the database finds a
//! holder, that id becomes an *alias* of the holder (table `alias`, written
//! in the same transaction): `getJobStatus`, `cancelJob` and `retryJob` of
//! it answer for the holder, from any process (`PgStore::resolve`), and a
//! `dependsOn` naming it depends on the holder. An alias is pruned with its
//! holder (made while the holder was live, it is older than its finish).

use std::collections::HashMap;

use super::insert::NewJob;
use super::{pg_err, PgId, PgStore};
use crate::error::Result;
use crate::job::JobId;

/// How many advisory locks key inserts spread over.
pub(crate) const BUCKETS: u32 = 256;

/// FNV-1a of `s` (stable across processes and builds: the lock names).
fn fnv(s: &str) -> u64 {
  let mut h: u64 = 0xcbf2_9ce4_8422_2325;
  for b in s.bytes() {
    h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
  }
  h
}

/// The advisory lock space of a schema (the first key of the two-key
/// lock).
pub(crate) fn lock_space(schema: &str) -> i32 {
  (fnv(&format!("jobwerk-key:{schema}")) >> 32) as i32
}

/// The bucket of `key`.
pub(crate) fn bucket(key: &str) -> i32 {
  (fnv(key) % BUCKETS as u64) as i32
}

/// A key's newest holder in the database (ids grow with time: a
/// successor is newer than the running job it follows), as memory's and
/// SQLite's key index answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holders {
  pub id: JobId,
  /// It is running (else waiting or pending).
  pub running: bool,
}

/// What one job of a batch comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
  /// A row of its own.
  Insert,
  /// Folded into the new row of the batch's job at this index.
  Into(usize),
  /// This unstarted holder in the database takes the job's data, context
  /// or due time (per its policy).
  Update(JobId),
  /// This holder answers; nothing changes.
  Existing(JobId),
}

/// Where a key stands while the batch is walked.
#[derive(Clone, Copy)]
enum Held {
  /// By a new row of the batch (its index).
  New(usize),
  /// By an unstarted job in the database.
  Unstarted(JobId),
  /// By a running job only.
  Running(JobId),
}

/// The steps of the jobs `todo` (indexes into `jobs`, in order), given each
/// key's holders; jobs without a key are inserted.
pub(crate) fn plan(jobs: &[NewJob], todo: &[usize], found: &HashMap<&str, Holders>) -> Vec<Step> {
  let mut held: HashMap<&str, Held> = HashMap::new();
  let mut out = Vec::with_capacity(todo.len());
  for &i in todo {
    let j = &jobs[i];
    let Some(key) = j.key.as_deref() else {
      out.push(Step::Insert);
      continue;
    };
    let now = held.get(key).copied().or_else(|| {
      found.get(key).map(|h| {
        if h.running {
          Held::Running(h.id)
        } else {
          Held::Unstarted(h.id)
        }
      })
    });
    let changes = j.on_dup.replace || j.on_dup.debounce;
    let step = match now {
      None => Step::Insert,
      Some(Held::New(at)) => Step::Into(at),
      Some(Held::Unstarted(id)) if changes => Step::Update(id),
      Some(Held::Unstarted(id)) => Step::Existing(id),
      Some(Held::Running(_)) if j.on_dup.replace => Step::Insert,
      Some(Held::Running(id)) => Step::Existing(id),
    };
    match step {
      Step::Insert => {
        held.insert(key, Held::New(i));
      }
      _ => {
        if let Some(h) = now {
          held.insert(key, h);
        }
      }
    }
    out.push(step);
  }
  out
}

/// `row` as changed by a later add `by` of its key (its policy).
pub(crate) fn fold(row: &mut NewJob, by: &NewJob) {
  if by.on_dup.replace {
    row.data.clone_from(&by.data);
    row.context.clone_from(&by.context);
  }
  if by.on_dup.debounce {
    row.run_at = by.run_at;
  }
}

/// The change an existing unstarted holder takes (the last add's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Change {
  pub data: Option<String>,
  /// `Some(None)`: no context.
  pub context: Option<Option<String>>,
  pub run_at: Option<u64>,
}

impl Change {
  pub(crate) fn by(&mut self, j: &NewJob) {
    if j.on_dup.replace {
      self.data = Some(j.data.clone());
      self.context = Some(j.context.clone().filter(|c| c != "{}"));
    }
    if j.on_dup.debounce {
      self.run_at = Some(j.run_at);
    }
  }
}

impl PgStore {
  /// Locks the buckets of `keys` for the transaction (ascending).
  pub(crate) async fn lock_keys(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[&str],
  ) -> Result<()> {
    let mut b: Vec<i32> = keys.iter().map(|k| bucket(k)).collect();
    b.sort_unstable();
    b.dedup();
    if b.is_empty() {
      return Ok(());
    }
    tx.execute(
      "SELECT count(pg_advisory_xact_lock($1::int, b)) \
       FROM unnest($2::int[]) WITH ORDINALITY AS u(b, n)",
      &[&lock_space(&self.schema), &b],
    )
    .await
    .map_err(pg_err("insert: key locks"))?;
    Ok(())
  }

  /// The holders of `keys`.
  pub(crate) async fn holders<'k>(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[&'k str],
  ) -> Result<HashMap<&'k str, Holders>> {
    let s = &self.quoted;
    let rows = tx
      .query(
        &format!("SELECT key, id, state FROM {s}.job WHERE key = ANY($1) AND state < 3"),
        &[&keys],
      )
      .await
      .map_err(pg_err("insert: key lookup"))?;
    let mut out: HashMap<&'k str, Holders> = HashMap::new();
    for r in rows {
      let k: String = r.get(0);
      let id = r.get::<_, PgId>(1).0;
      let state: i16 = r.get(2);
      let Some(&key) = keys.iter().find(|x| **x == k) else {
        continue;
      };
      let h = Holders {
        id,
        running: state == 2,
      };
      out
        .entry(key)
        .and_modify(|o| {
          if o.id < id {
            *o = h;
          }
        })
        .or_insert(h);
    }
    Ok(out)
  }

  /// True when a live job holds `key` (checked under its lock, held to the
  /// end of `tx`: `retryJob` of a finished job refuses then).
  pub(crate) async fn key_held(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    key: Option<&str>,
  ) -> Result<bool> {
    let Some(key) = key else {
      return Ok(false);
    };
    self.lock_keys(tx, &[key]).await?;
    let s = &self.quoted;
    let row = tx
      .query_opt(
        &format!("SELECT 1 FROM {s}.job WHERE key = $1 AND state < 3 LIMIT 1"),
        &[&key],
      )
      .await
      .map_err(pg_err("retry: key"))?;
    Ok(row.is_some())
  }

  /// Applies `changes` to unstarted holders; returns those it changed
  /// (one claimed since the lookup is not).
  pub(crate) async fn update_holders(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    changes: &[(JobId, Change)],
  ) -> Result<Vec<JobId>> {
    if changes.is_empty() {
      return Ok(Vec::new());
    }
    let s = &self.quoted;
    let ids: Vec<PgId> = changes.iter().map(|c| PgId(c.0)).collect();
    let data: Vec<Option<&str>> = changes.iter().map(|c| c.1.data.as_deref()).collect();
    let set_ctx: Vec<bool> = changes.iter().map(|c| c.1.context.is_some()).collect();
    let ctx: Vec<Option<&str>> = changes
      .iter()
      .map(|c| c.1.context.as_ref().and_then(|x| x.as_deref()))
      .collect();
    let run_at: Vec<Option<i64>> = changes.iter().map(|c| c.1.run_at.map(super::big)).collect();
    let rows = tx
      .query(
        &format!(
          "UPDATE {s}.job j SET data = coalesce(u.data, j.data), \
             context = CASE WHEN u.set_ctx THEN u.ctx ELSE j.context END, \
             run_at = coalesce(u.run_at, j.run_at) \
           FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::bigint[]) \
             AS u(id, data, set_ctx, ctx, run_at) \
           WHERE j.id = u.id AND j.id = ANY($1::uuid[]) AND j.state < 2 RETURNING j.id"
        ),
        &[&ids, &data, &set_ctx, &ctx, &run_at],
      )
      .await
      .map_err(pg_err("insert: update a key's job"))?;
    Ok(rows.iter().map(|r| r.get::<_, PgId>(0).0).collect())
  }

  /// Records refused ids as aliases of their holders.
  pub(crate) async fn record_aliases(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    pairs: &[(JobId, JobId)],
    now: u64,
  ) -> Result<()> {
    if pairs.is_empty() {
      return Ok(());
    }
    let s = &self.quoted;
    let ids: Vec<PgId> = pairs.iter().map(|p| PgId(p.0)).collect();
    let holders: Vec<PgId> = pairs.iter().map(|p| PgId(p.1)).collect();
    tx.execute(
      &format!(
        "INSERT INTO {s}.alias (id, holder, created_at) \
         SELECT u.id, u.holder, $3 FROM unnest($1::uuid[], $2::uuid[]) AS u(id, holder) \
         ON CONFLICT (id) DO NOTHING"
      ),
      &[&ids, &holders, &super::big(now)],
    )
    .await
    .map_err(pg_err("insert: aliases"))?;
    Ok(())
  }

  /// The holder `id` is an alias of (a refused duplicate's id), if it is
  /// one.
  pub async fn resolve(&self, id: JobId) -> Result<Option<JobId>> {
    let s = &self.quoted;
    let row = self
      .bounded("read an alias", async {
        let c = self.client().await?;
        c.query_opt(
          &format!("SELECT holder FROM {s}.alias WHERE id = $1"),
          &[&PgId(id)],
        )
        .await
        .map_err(pg_err("alias"))
      })
      .await?;
    Ok(row.map(|r| r.get::<_, PgId>(0).0))
  }

  /// `cancel_job` of a refused duplicate's id: its holder's (boxed: the
  /// two call each other once at most).
  pub(crate) fn cancel_alias(
    &self,
    id: JobId,
    now: u64,
  ) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<super::Cancelled>>> + Send + '_>,
  > {
    Box::pin(async move {
      match self.resolve(id).await? {
        Some(h) if h != id => self.cancel_job(h, now).await,
        _ => Ok(None),
      }
    })
  }

  /// `retry` of a refused duplicate's id: its holder's.
  pub(crate) fn retry_alias(
    &self,
    id: JobId,
    now: u64,
  ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send + '_>> {
    Box::pin(async move {
      match self.resolve(id).await? {
        Some(h) if h != id => self.retry(h, now).await,
        _ => Ok(false),
      }
    })
  }

  /// `jobs` with every dependency that names an alias renamed to its
  /// holder (`None`: none does).
  pub(crate) async fn resolve_deps(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[NewJob],
  ) -> Result<Option<Vec<NewJob>>> {
    let wanted: Vec<PgId> = jobs
      .iter()
      .flat_map(|j| j.deps.iter().flat_map(|d| d.ids.iter().map(|i| PgId(*i))))
      .collect();
    if wanted.is_empty() {
      return Ok(None);
    }
    let s = &self.quoted;
    let rows = tx
      .query(
        &format!("SELECT id, holder FROM {s}.alias WHERE id = ANY($1)"),
        &[&wanted],
      )
      .await
      .map_err(pg_err("insert: dependencies"))?;
    if rows.is_empty() {
      return Ok(None);
    }
    let holder: HashMap<JobId, JobId> = rows
      .iter()
      .map(|r| (r.get::<_, PgId>(0).0, r.get::<_, PgId>(1).0))
      .collect();
    let mut out = jobs.to_vec();
    for j in &mut out {
      if let Some(d) = &mut j.deps {
        let mut ids: Vec<JobId> = Vec::with_capacity(d.ids.len());
        for id in &d.ids {
          let id = holder.get(id).copied().unwrap_or(*id);
          if !ids.contains(&id) {
            ids.push(id);
          }
        }
        d.ids = ids;
      }
    }
    Ok(Some(out))
  }

  /// Tells every process's claimer that a concurrency key is free (a job
  /// holding one finished or went back in line; committed): the next job
  /// of the key is claimable now, not at the next poll. A failure is left
  /// to the poll.
  pub(crate) async fn key_freed(&self, now: u64) {
    if let Ok(c) = self.client().await {
      let _ = c
        .execute(
          "SELECT pg_notify($1, $2)",
          &[&self.channel, &format!("i:{now}")],
        )
        .await;
    }
  }

  /// Deletes aliases made at or before `before` whose holder is not live
  /// (an alias lives as long as its holder: made while the holder was
  /// live, it is older than the holder's finish).
  pub(crate) async fn prune_aliases(&self, before: u64) -> Result<usize> {
    let c = self.client().await?;
    let s = &self.quoted;
    let n = c
      .execute(
        &format!(
          "DELETE FROM {s}.alias a WHERE a.created_at <= $1 \
           AND NOT EXISTS (SELECT 1 FROM {s}.job j WHERE j.id = a.holder)"
        ),
        &[&super::big(before)],
      )
      .await
      .map_err(pg_err("prune aliases"))?;
    Ok(n as usize)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::job::OnDup;

  fn job(n: u128, key: Option<&str>, replace: bool, debounce: bool) -> NewJob {
    let mut j = NewJob::new(JobId(n), "a", &n.to_string(), n as u64);
    j.key = key.map(str::to_string);
    j.on_dup = OnDup { replace, debounce };
    j
  }

  #[test]
  fn a_batch_is_planned_as_if_added_one_by_one() {
    let jobs = vec![
      job(1, Some("k"), false, false),
      job(2, Some("k"), true, false),
      job(3, None, false, false),
      job(4, Some("r"), false, false),
      job(5, Some("r"), true, false),
      job(6, Some("r"), false, false),
      job(7, Some("u"), false, true),
      job(8, Some("u"), false, false),
    ];
    let mut found = HashMap::new();
    found.insert(
      "r",
      Holders {
        id: JobId(90),
        running: true,
      },
    );
    found.insert(
      "u",
      Holders {
        id: JobId(91),
        running: false,
      },
    );
    let todo: Vec<usize> = (0..jobs.len()).collect();
    assert_eq!(
      plan(&jobs, &todo, &found),
      vec![
        Step::Insert,
        Step::Into(0),
        Step::Insert,
        // a skip while only a running job holds it: that job
        Step::Existing(JobId(90)),
        // a replace: a successor, which later adds find
        Step::Insert,
        Step::Into(4),
        // an unstarted holder: a debounce moves it, a skip answers it
        Step::Update(JobId(91)),
        Step::Existing(JobId(91)),
      ]
    );
  }

  #[test]
  fn folds_and_changes_take_the_last_add() {
    let mut row = job(1, Some("k"), false, false);
    fold(&mut row, &job(2, Some("k"), false, false));
    assert_eq!((row.data.as_str(), row.run_at), ("1", 1));
    let mut by = job(3, Some("k"), true, true);
    by.context = Some("{\"v\":3}".into());
    fold(&mut row, &by);
    assert_eq!(
      (row.data.as_str(), row.context.as_deref(), row.run_at),
      ("3", Some("{\"v\":3}"), 3)
    );
    let mut c = Change::default();
    c.by(&job(4, Some("k"), false, true));
    assert_eq!((c.data.as_deref(), c.run_at), (None, Some(4)));
    c.by(&job(5, Some("k"), true, false));
    assert_eq!(
      (c.data.as_deref(), c.context, c.run_at),
      (Some("5"), Some(None), Some(4))
    );
  }

  #[test]
  fn buckets_are_stable_and_bounded() {
    assert_eq!(bucket("k"), bucket("k"));
    for k in ["", "a", "'); DROP TABLE job; --", "ü"] {
      assert!((0..BUCKETS as i32).contains(&bucket(k)));
    }
    assert_ne!(lock_space("a"), lock_space("b"));
  }
}
