//! Progress (`job.updateProgress`) written to the database, so
//! `getJobStatus` from any process sees it. A handler may report progress
//! thousands of times a second: the backend keeps only the latest value per
//! job ([`Progress`]) and a writer task writes what is waiting in one
//! statement after `commit_delay` (the group commit's wait), fenced by the
//! lease like an outcome (a rescued job's old attempt writes nothing). Each
//! batch is one write under the backend's flush marks, so `flush()` covers
//! it. An outcome takes its job's unwritten progress along and writes it
//! first (the finished row keeps the last value).
//!
//! Through an outage the batch is retried like every other write
//! ([`PgStore::retrying`]: backoff while the server does not answer, the
//! storage degraded meanwhile). Memory stays bounded: the batch being
//! written holds one value per job, and each try first merges in the values
//! reported since (the latest wins), so the write that goes through after
//! the outage writes the latest value of each job once. A job whose outcome
//! is sent meanwhile takes its value out of the batch too (its outcome
//! writes it), so a finished job gets no progress write of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::claim::{planned, JOIN_PLAN};
use super::{int, pg_err, Lease, PgId, PgStore};
use crate::error::Result;
use crate::job::JobId;

/// The latest unwritten progress per job, and the marks of their batches.
#[derive(Default)]
pub(crate) struct Progress {
  buf: Mutex<Batch>,
}

#[derive(Default)]
struct Batch {
  /// The waiting values' mark (issued with the first of them).
  seq: Option<u64>,
  /// Waiting: the latest value per job since the writer last took them.
  items: HashMap<JobId, (Lease, String)>,
  /// Taken by the writer and not yet written (retried through an outage):
  /// the latest value per job, and the mark of the write.
  flight: HashMap<JobId, (Lease, String)>,
  flight_seq: Option<u64>,
}

impl Progress {
  /// Records `json` as the latest progress of the attempt `lease`; the
  /// first value of a batch gets a mark from `issue` and wakes `writer`.
  pub(crate) fn put(
    &self,
    lease: Lease,
    json: &str,
    issue: impl FnOnce() -> u64,
    writer: &mpsc::UnboundedSender<()>,
  ) {
    let mut b = self.buf.lock();
    let first = b.seq.is_none();
    if first {
      b.seq = Some(issue());
    }
    b.items.insert(lease.id, (lease, json.to_string()));
    drop(b);
    if first {
      let _ = writer.send(());
    }
  }

  /// Takes job `id`'s unwritten progress, waiting or being written (its
  /// outcome writes it): the write under way no longer carries it.
  pub(crate) fn take_job(&self, id: JobId) -> Option<(Lease, String)> {
    let mut b = self.buf.lock();
    let flying = b.flight.remove(&id);
    b.items.remove(&id).or(flying)
  }

  /// True when values wait for the writer.
  fn waiting(&self) -> bool {
    self.buf.lock().seq.is_some()
  }

  /// Before a try: the waiting values join the write under way (replacing
  /// older values of their jobs); returns what to write, and a mark that
  /// is done at once (of two marks, the write keeps the earlier; `done`
  /// marks only advance in order, so the later cannot pass it).
  fn gather(&self) -> (Vec<(Lease, String)>, Option<u64>) {
    let mut b = self.buf.lock();
    let b = &mut *b;
    let mut done = None;
    if let Some(seq) = b.seq.take() {
      match b.flight_seq {
        None => b.flight_seq = Some(seq),
        Some(kept) => {
          b.flight_seq = Some(kept.min(seq));
          done = Some(kept.max(seq));
        }
      }
    }
    b.flight.extend(b.items.drain());
    (b.flight.values().cloned().collect(), done)
  }

  /// After the write (or giving up): its mark, now done.
  fn landed(&self) -> Option<u64> {
    let mut b = self.buf.lock();
    b.flight.clear();
    b.flight_seq.take()
  }
}

/// The writer task: after each wake-up, waits `delay` for more values, then
/// writes the batch and reports its mark done (`finish(seq, error)`). Ends
/// when the backend drops its sender.
pub(crate) async fn writer(
  pg: PgStore,
  progress: Arc<Progress>,
  delay: Duration,
  mut wake: mpsc::UnboundedReceiver<()>,
  finish: impl Fn(u64, Option<String>),
) {
  while wake.recv().await.is_some() {
    tokio::time::sleep(delay).await;
    if !progress.waiting() {
      continue;
    }
    // Retried while the server does not answer (each try with the latest
    // values); a write that fails while it answers, or while closing, is
    // given up: not the store's failure (the job runs on; its next value,
    // or its outcome, writes again).
    let _ = pg
      .retrying("progress", || {
        let (items, done) = progress.gather();
        if let Some(seq) = done {
          finish(seq, None);
        }
        let pg = &pg;
        async move { pg.write_progress(&items).await }
      })
      .await;
    if let Some(seq) = progress.landed() {
      finish(seq, None);
    }
  }
}

impl PgStore {
  /// Writes the progress of running attempts, each fenced by its lease;
  /// returns how many rows took it.
  pub async fn write_progress(&self, items: &[(Lease, String)]) -> Result<u64> {
    if items.is_empty() {
      return Ok(0);
    }
    let ids: Vec<PgId> = items.iter().map(|(l, _)| PgId(l.id)).collect();
    let owners: Vec<i64> = items.iter().map(|(l, _)| l.owner).collect();
    let attempts: Vec<i32> = items.iter().map(|(l, _)| int(l.attempt)).collect();
    let values: Vec<&str> = items.iter().map(|(_, p)| p.as_str()).collect();
    let s = &self.quoted;
    let mut client = self.client().await?;
    let tx = client.transaction().await.map_err(pg_err("progress"))?;
    let sql = format!(
      "UPDATE {s}.job j SET progress = i.p \
       FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[]) AS i(id, owner, attempt, p) \
       WHERE j.id = i.id AND j.id = ANY($1::uuid[]) AND j.state::int = 2 \
         AND j.owner = i.owner AND j.attempts = i.attempt"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
      [&ids, &owners, &attempts, &values];
    let (set, n) = planned(&tx, JOIN_PLAN, tx.execute(&sql, &params)).await;
    set.map_err(pg_err("progress: planner settings"))?;
    let n = n.map_err(pg_err("progress"))?;
    tx.commit().await.map_err(pg_err("progress: commit"))?;
    Ok(n)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn lease(id: u128, attempt: u32) -> Lease {
    Lease {
      id: JobId(id),
      owner: 7,
      attempt,
    }
  }

  fn values(mut v: Vec<(Lease, String)>) -> Vec<(u128, String)> {
    v.sort_by_key(|(l, _)| l.id.0);
    v.into_iter().map(|(l, p)| (l.id.0, p)).collect()
  }

  #[test]
  fn a_retried_batch_takes_the_latest_values_and_keeps_one_per_job() {
    let p = Progress::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut marks = 0;
    let mut issue = || {
      marks += 1;
      marks
    };
    p.put(lease(1, 1), "1", &mut issue, &tx);
    p.put(lease(2, 1), "a", &mut issue, &tx);
    assert!(rx.try_recv().is_ok(), "the first value wakes the writer");
    assert!(rx.try_recv().is_err(), "once");
    // The first try (fails: the server is down).
    let (items, done) = p.gather();
    assert_eq!(values(items), vec![(1, "1".into()), (2, "a".into())]);
    assert_eq!(done, None);
    assert!(!p.waiting());
    // Reported during the outage: a new batch under a new mark.
    for v in 2..=500 {
      p.put(lease(1, 1), &v.to_string(), &mut issue, &tx);
    }
    p.put(lease(3, 1), "x", &mut issue, &tx);
    assert!(p.waiting());
    // The next try writes the latest of each job; the later mark is done
    // at once, the earlier stays with the write.
    let (items, done) = p.gather();
    assert_eq!(
      values(items),
      vec![(1, "500".into()), (2, "a".into()), (3, "x".into())]
    );
    assert_eq!(done, Some(2));
    assert_eq!(p.buf.lock().flight.len(), 3, "one value per job");
    // Nothing new: the same values again.
    let (items, done) = p.gather();
    assert_eq!((items.len(), done), (3, None));
    assert_eq!(p.landed(), Some(1));
    assert_eq!(p.landed(), None);
    assert!(p.gather().0.is_empty());
  }

  #[test]
  fn a_job_whose_outcome_is_sent_takes_its_value_out_of_the_write_under_way() {
    let p = Progress::default();
    let (tx, _rx) = mpsc::unbounded_channel();
    p.put(lease(1, 1), "old", || 1, &tx);
    p.put(lease(2, 1), "b", || 1, &tx);
    let _ = p.gather(); // the write under way (an outage)
    assert_eq!(p.take_job(JobId(1)), Some((lease(1, 1), "old".into())));
    // A newer waiting value wins over the one being written.
    p.put(lease(2, 1), "b2", || 2, &tx);
    assert_eq!(p.take_job(JobId(2)), Some((lease(2, 1), "b2".into())));
    assert_eq!(p.take_job(JobId(2)), None);
    let (items, _) = p.gather();
    assert!(items.is_empty(), "finished jobs are not written: {items:?}");
  }
}
