//! Progress (`job.updateProgress`) written to the database, so
//! `getJobStatus` from any process sees it. A handler may report progress
//! thousands of times a second: the backend keeps only the latest value per
//! job ([`Progress`]) and a writer task writes what is waiting in one
//! statement after `commit_delay` (the group commit's wait), fenced by the
//! lease like an outcome (a rescued job's old attempt writes nothing). Each
//! batch is one write under the backend's flush marks, so `flush()` covers
//! it. An outcome takes its job's unwritten progress along and writes it
//! first (the finished row keeps the last value).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{int, pg_err, Lease, PgId, PgStore};
use crate::error::Result;
use crate::job::JobId;

/// The latest unwritten progress per job, and the mark of their batch.
#[derive(Default)]
pub(crate) struct Progress {
  buf: Mutex<Batch>,
}

#[derive(Default)]
struct Batch {
  /// The batch's mark (issued with its first value).
  seq: Option<u64>,
  items: HashMap<JobId, (Lease, String)>,
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

  /// Takes job `id`'s unwritten progress (its outcome writes it).
  pub(crate) fn take_job(&self, id: JobId) -> Option<(Lease, String)> {
    self.buf.lock().items.remove(&id)
  }

  fn take(&self) -> (Option<u64>, Vec<(Lease, String)>) {
    let mut b = self.buf.lock();
    let seq = b.seq.take();
    (seq, b.items.drain().map(|(_, v)| v).collect())
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
    let (seq, items) = progress.take();
    let Some(seq) = seq else {
      continue;
    };
    // A failed progress write is not the store's failure (the job runs
    // on; the next value, or its outcome, writes again).
    let _ = pg.write_progress(&items).await;
    finish(seq, None);
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
    let client = self.client().await?;
    client
      .execute(
        &format!(
          "UPDATE {s}.job j SET progress = i.p \
           FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[]) AS i(id, owner, attempt, p) \
           WHERE j.id = i.id AND j.state::int = 2 AND j.owner = i.owner AND j.attempts = i.attempt"
        ),
        &[&ids, &owners, &attempts, &values],
      )
      .await
      .map_err(pg_err("progress"))
  }
}
