//! What this process knows of its own work on PostgreSQL, for the two
//! things the cluster's counts snapshot cannot answer:
//!
//! * **Keep-alive** ([`Store::local_work`](crate::storage::Store::local_work)):
//!   a started service keeps Node alive while it has work. On memory and
//!   SQLite that is the store's queued jobs; on PostgreSQL the counts are
//!   the cluster's and up to one poll old, so a script that adds a job and
//!   awaits its `completed` event would see 0 and exit before the job
//!   committed, and a process would stay alive for another process's
//!   delayed jobs. So the backend counts the jobs *this process added*
//!   (from the add until it claims them here, or a check finds them no
//!   longer queued: claimed by another instance, cancelled, failed), plus
//!   its ready buffer and outcomes not committed (see `store.rs`). The
//!   check runs on the claimer's poll, a bounded number of ids per poll
//!   (going round the set), and only for ids with nothing in flight: a
//!   process that adds faster than that for others to run holds a growing
//!   set (ids only) until it slows down.
//! * **Jobs failed in SQL** ([`Store::take_failed`](crate::storage::Store::take_failed)):
//!   dependants failed by an insert of this process (a dependency that
//!   failed, or named no job), for their `failed` events after the commit.
//!   (Those an outcome's commit failed come from the committer, those a
//!   cancel failed from the cancel's answer.)

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::PgStore;
use crate::job::JobId;
use crate::storage::StoreFailed;

/// The most ids one poll checks (one query): the rate at which jobs this
/// process added and others ran are forgotten, per poll.
const CHECK_PER_POLL: usize = 5_000;

/// The jobs added here, each with the number of the add that put it there
/// (a check forgets a job only if no add came since it looked).
#[derive(Debug, Default)]
struct Added {
  next: u64,
  ids: BTreeMap<JobId, u64>,
  /// Where the next check starts (the checks go round the set, so jobs
  /// still queued at its start, delayed ones, do not hide newer ones that
  /// left).
  cursor: Option<JobId>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Known {
  /// Jobs added (or put back in line) here, not claimed here yet, and not
  /// found gone from the queue by a check.
  added: Mutex<Added>,
  /// Jobs an insert of this process failed, after its commit.
  failed: Mutex<Vec<StoreFailed>>,
}

impl Known {
  /// Jobs added here (or put back in line: a retry, `retryJob`).
  pub(super) fn add(&self, ids: impl IntoIterator<Item = JobId>) {
    let mut a = self.added.lock();
    a.next += 1;
    let n = a.next;
    a.ids.extend(ids.into_iter().map(|id| (id, n)));
  }

  /// Jobs that left the queue as far as this process knows (claimed here,
  /// failed, cancelled).
  pub(super) fn gone(&self, ids: impl IntoIterator<Item = JobId>) {
    let mut a = self.added.lock();
    if a.ids.is_empty() {
      return;
    }
    for id in ids {
      a.ids.remove(&id);
    }
  }

  /// How many jobs added here may still be queued.
  pub(super) fn queued(&self) -> usize {
    self.added.lock().ids.len()
  }

  /// Failures an insert reported (committed).
  pub(super) fn push_failed(&self, f: Vec<StoreFailed>) {
    self.gone(f.iter().map(|f| f.id));
    self.failed.lock().extend(f);
  }

  /// Takes the failures reported so far.
  pub(super) fn take_failed(&self) -> Vec<StoreFailed> {
    std::mem::take(&mut *self.failed.lock())
  }

  /// Checks the next ids added here (going round the set) that have
  /// nothing in flight (not in `inserting`, whose insert has not
  /// committed, nor in `settling`, whose outcome, a retry, has not) against
  /// the database and forgets those no longer `waiting` or `pending`,
  /// unless added again meanwhile. True when the set became empty by it
  /// (the binding is woken to drop its keep-alive). A failed query changes
  /// nothing (tried again at the next poll).
  pub(super) async fn check<I, S>(
    &self,
    pg: &PgStore,
    inserting: &Mutex<HashMap<JobId, I>>,
    settling: &Mutex<HashMap<JobId, S>>,
  ) -> bool {
    let looked: Vec<(JobId, u64)> = {
      // Under these locks together only here (taken in this order; the
      // insert and settle paths never hold one of them with `added`).
      let mut a = self.added.lock();
      let ins = inserting.lock();
      let set = settling.lock();
      let from = match a.cursor {
        Some(c) => std::ops::Bound::Excluded(c),
        None => std::ops::Bound::Unbounded,
      };
      let free = |(id, _): &(&JobId, &u64)| !ins.contains_key(id) && !set.contains_key(id);
      let mut looked: Vec<(JobId, u64)> = a
        .ids
        .range((from, std::ops::Bound::Unbounded))
        .filter(free)
        .take(CHECK_PER_POLL)
        .map(|(id, n)| (*id, *n))
        .collect();
      if looked.len() < CHECK_PER_POLL && a.cursor.is_some() {
        // Round again from the oldest.
        let left = CHECK_PER_POLL - looked.len();
        let end = a
          .cursor
          .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        looked.extend(
          a.ids
            .range((std::ops::Bound::Unbounded, end))
            .filter(free)
            .take(left)
            .map(|(id, n)| (*id, *n)),
        );
      }
      a.cursor = looked.last().map(|l| l.0);
      looked
    };
    if looked.is_empty() {
      return false;
    }
    let ids: Vec<JobId> = looked.iter().map(|l| l.0).collect();
    let Ok(queued) = pg.still_queued(&ids).await else {
      return false;
    };
    let mut a = self.added.lock();
    for (id, n) in looked {
      if !queued.contains(&id) && a.ids.get(&id) == Some(&n) {
        a.ids.remove(&id);
      }
    }
    a.ids.is_empty()
  }
}
