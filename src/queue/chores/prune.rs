//! Prunes finished jobs: every `cleanupInterval` while started, jobs that
//! finished more than `maxJobAge` ago are removed from the store.

use super::Chore;
use crate::queue::{Queue, RunState};

/// When the next cleanup is due (epoch ms).
#[derive(Debug, Clone, Copy)]
pub(in crate::queue) struct PruneClock {
  pub(in crate::queue) next: u64,
}

impl PruneClock {
  /// The first cleanup, one interval after `now`.
  pub(in crate::queue) fn after(now: u64, interval_ms: u64) -> PruneClock {
    PruneClock {
      next: now.saturating_add(interval_ms),
    }
  }
}

/// Removes old finished jobs when the cleanup interval has passed.
pub(in crate::queue) struct Prune;

impl Chore for Prune {
  fn run(q: &mut Queue, now: u64) {
    if q.state == RunState::Started && now >= q.prune_clock.next {
      if let Err(e) = q.prune(now.saturating_sub(q.cfg.max_job_age_ms)) {
        q.store_failed(e);
      }
      q.prune_clock = PruneClock::after(now, q.cfg.cleanup_interval_ms);
    }
  }

  fn next_wake(q: &Queue) -> u64 {
    if q.state == RunState::Started {
      q.prune_clock.next
    } else {
      u64::MAX
    }
  }
}
