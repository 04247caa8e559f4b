//! Promotes delayed jobs: those whose `runAt` has come move into the line of
//! due jobs (jobs of calculations with no handler registered stay back).

use super::Chore;
use crate::queue::Queue;

/// Moves delayed jobs that are due into line (so the store's next due time
/// moves on).
pub(in crate::queue) struct PromoteDue;

impl Chore for PromoteDue {
  fn run(q: &mut Queue, now: u64) {
    let registry = &q.registry;
    q.store.has_due(now, &|n| registry.is_registered(n));
  }

  fn next_wake(q: &Queue) -> u64 {
    q.store.next_due().unwrap_or(u64::MAX)
  }
}
