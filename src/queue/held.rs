//! Events held until their outcome commits (docs/design/storage.md, "The
//! decision", point 2): on a store that answers an outcome before it
//! commits it and may still find it fenced then ([`Store::commits_late`]:
//! PostgreSQL), a `completed` event fired at once could report a job that
//! another process rescued and runs again. The queue records the events of
//! outcomes here instead, under the flush mark of the operation that made
//! them, and moves them to the drained events once the store's writes reach
//! that mark, dropping those of outcomes the commit fenced. One operation's
//! events are one batch (one buffer, one mark), released together: the
//! JavaScript side is woken once per commit that covers held events (see
//! `Engine`'s watcher), never once per job.

use std::collections::VecDeque;

use crate::job::JobId;
use crate::storage::Store;
use crate::wire::Events;

/// The kinds of event that report an outcome's commit.
pub(super) fn reports_outcome(kind: &str) -> bool {
  matches!(kind, "completed" | "failed" | "retrying" | "timedOut")
}

/// One operation's held events: their drain items in one buffer, and each
/// one's job and byte range in it.
#[derive(Debug, Default)]
struct Batch {
  mark: u64,
  items: Events,
  jobs: Vec<(JobId, usize, usize)>,
}

/// Events waiting for their outcome's commit.
#[derive(Debug, Default)]
pub(super) struct HeldEvents {
  /// Recorded in the current operation.
  current: Batch,
  /// Waiting for their mark, oldest first.
  waiting: VecDeque<Batch>,
  /// Outcomes the store found fenced, (their mark, job), kept until the
  /// event they cancel is released (it may wait for a later mark: one
  /// operation's mark covers several writes).
  fenced: Vec<(u64, JobId)>,
}

impl HeldEvents {
  /// Holds event `kind` of job `id` until the current operation's mark
  /// commits.
  pub(super) fn hold(&mut self, kind: &str, id: JobId, name: &str, attempt: u32, extra: &str) {
    let c = &mut self.current;
    let start = c.items.text_len();
    c.items.job(kind, id, name, attempt, extra);
    c.jobs.push((id, start, c.items.text_len()));
  }

  /// True while events wait for a commit.
  pub(super) fn is_waiting(&self) -> bool {
    !self.waiting.is_empty()
  }

  /// The mark the newest waiting event needs.
  pub(super) fn last_mark(&self) -> Option<u64> {
    self.waiting.back().map(|b| b.mark)
  }

  /// The end of an operation: its events wait for the mark that covers it;
  /// the events whose mark `store` reached move to `events` (those of
  /// fenced outcomes, or of a store that failed, are dropped).
  pub(super) fn end_operation(&mut self, store: &mut dyn Store, events: &mut Events) {
    if !self.current.jobs.is_empty() {
      let mut b = std::mem::take(&mut self.current);
      b.mark = store.flush_mark().map_or(0, |m| m.0);
      self.waiting.push_back(b);
    }
    // Asked even with nothing waiting: the store forgets the fenced jobs it
    // reported (events off, or a fenced outcome of an event-less kind).
    let (done, fenced) = store.take_committed();
    if self.waiting.is_empty() {
      self.fenced.clear();
      return;
    }
    self.fenced.extend(fenced);
    // A failed commit: the outcomes may not be durable; the store's error
    // is what the service reports (`add`, `flush()` reject with it).
    let failed = store.failure().is_some();
    while self.waiting.front().is_some_and(|b| b.mark <= done) {
      let Some(b) = self.waiting.pop_front() else {
        break;
      };
      if failed {
        continue;
      }
      if self.fenced.is_empty() {
        events.push_items(b.items.as_items());
        continue;
      }
      let text = b.items.as_items();
      for &(id, start, end) in &b.jobs {
        let f = self
          .fenced
          .iter()
          .position(|&(s, j)| j == id && s <= b.mark);
        match f {
          Some(i) => {
            self.fenced.swap_remove(i);
          }
          None => events.push_items(&text[start..end]),
        }
      }
    }
    if !self.fenced.is_empty() {
      let waiting = &self.waiting;
      self.fenced.retain(|&(s, j)| {
        waiting
          .iter()
          .any(|b| b.mark >= s && b.jobs.iter().any(|x| x.0 == j))
      });
    }
  }

  /// Drops everything (events turned off).
  pub(super) fn clear(&mut self) {
    self.current = Batch::default();
    self.waiting.clear();
    self.fenced.clear();
  }
}
