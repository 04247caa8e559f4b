//! Unique keys and concurrency keys, kept beside a store's jobs.
//!
//! [`KeyIndex`]: `options.key` -> the unfinished jobs holding it, newest
//! last. Usually one; two when a job was added behind a running one
//! (`onDuplicate: 'replace'` or `debounceMs`, see `queue/insert.rs`). An
//! entry whose job finished is dropped when it is next looked at, and when
//! the job is removed; so the index never holds more entries than the store
//! holds jobs.
//!
//! [`ConcurrencyGate`]: `options.concurrencyKey` -> the running job holding
//! it, and the due jobs of that key set aside until it stops running. A
//! claim asks [`ConcurrencyGate::busy`] only for a job that has a
//! concurrency key: jobs without one pay a pointer test.
//!
//! Both hold owned keys and `u128` ids only: the store's own entries (`E`)
//! are whatever it puts back in line when a key is free.

use std::collections::HashMap;

use crate::job::{Job, Status};

/// True for the statuses that hold a key: waiting, pending, running.
pub(crate) fn holds_key(s: Status) -> bool {
  matches!(s, Status::Waiting | Status::Pending | Status::Running)
}

/// `key` -> ids of the unfinished jobs holding it, oldest first.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
  map: HashMap<Box<str>, Vec<u128>>,
}

impl KeyIndex {
  /// A job was stored: it holds its key if it is unfinished.
  pub(crate) fn added(&mut self, job: &Job) {
    let Some(key) = job.key() else {
      return;
    };
    if !holds_key(job.status) {
      return;
    }
    let id = job.id.0;
    let ids = self.map.entry(key.into()).or_default();
    if !ids.contains(&id) {
      ids.push(id);
    }
  }

  /// A job was removed from the store.
  pub(crate) fn removed(&mut self, job: &Job) {
    let Some(key) = job.key() else {
      return;
    };
    let gone = job.id.0;
    if let Some(ids) = self.map.get_mut(key) {
      ids.retain(|&id| id != gone);
      if ids.is_empty() {
        self.map.remove(key);
      }
    }
  }

  /// The newest unfinished job holding `key`; `status` reads a job's
  /// status (`None`: gone). Entries of finished or gone jobs are dropped.
  pub(crate) fn newest(
    &mut self,
    key: &str,
    status: impl Fn(u128) -> Option<Status>,
  ) -> Option<u128> {
    let ids = self.map.get_mut(key)?;
    ids.retain(|&id| status(id).is_some_and(holds_key));
    let newest = ids.last().copied();
    if newest.is_none() {
      self.map.remove(key);
    }
    newest
  }

  /// How many keys are held (tests).
  #[cfg(test)]
  pub(crate) fn len(&self) -> usize {
    self.map.len()
  }
}

/// `concurrencyKey` -> the running job holding it, and the due jobs of that
/// key waiting for it (the store's line entries `E`).
#[derive(Debug)]
pub(crate) struct ConcurrencyGate<E> {
  running: HashMap<Box<str>, u128>,
  blocked: HashMap<Box<str>, Vec<E>>,
}

impl<E> Default for ConcurrencyGate<E> {
  fn default() -> Self {
    ConcurrencyGate {
      running: HashMap::new(),
      blocked: HashMap::new(),
    }
  }
}

impl<E> ConcurrencyGate<E> {
  /// True when a job other than `id` runs with concurrency key `key`.
  pub(crate) fn busy(&self, key: &str, id: u128) -> bool {
    self.running.get(key).is_some_and(|&r| r != id)
  }

  /// Job `id` starts running with concurrency key `key`.
  pub(crate) fn enter(&mut self, key: &str, id: u128) {
    self.running.insert(key.into(), id);
  }

  /// Sets a due job's entry aside until `key` is free.
  pub(crate) fn block(&mut self, key: &str, entry: E) {
    match self.blocked.get_mut(key) {
      Some(v) => v.push(entry),
      None => {
        self.blocked.insert(key.into(), vec![entry]);
      }
    }
  }

  /// Job `id` stopped running: if it held `key`, the key is free and the
  /// entries set aside for it are returned, to go back in line.
  pub(crate) fn leave(&mut self, key: &str, id: u128) -> Vec<E> {
    if self.running.get(key) != Some(&id) {
      return Vec::new();
    }
    self.running.remove(key);
    self.blocked.remove(key).unwrap_or_default()
  }

  /// Every entry set aside, taken out (to put back in line in another order).
  pub(crate) fn drain_blocked(&mut self) -> Vec<(Box<str>, Vec<E>)> {
    self.blocked.drain().collect()
  }

  /// The entries set aside.
  pub(crate) fn blocked(&self) -> impl Iterator<Item = &E> + '_ {
    self.blocked.values().flatten()
  }

  /// The running job holding `key`, if any.
  #[cfg(test)]
  pub(crate) fn holder(&self, key: &str) -> Option<u128> {
    self.running.get(key).copied()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::job::{JobExtra, JobId, JobKeys};

  fn keyed(id: u128, key: &str, status: Status) -> Job {
    let mut j = Job::new(JobId(id), 0, 0, 0, "1".into());
    j.status = status;
    j.extra = Some(Box::new(JobExtra {
      keys: JobKeys::of(Some(key), None, None),
      ..JobExtra::default()
    }));
    j
  }

  #[test]
  fn the_newest_unfinished_holder_is_found_and_finished_ones_drop_out() {
    let mut ix = KeyIndex::default();
    let mut st: HashMap<u128, Status> = HashMap::new();
    for (id, s) in [(1, Status::Running), (2, Status::Pending)] {
      ix.added(&keyed(id, "k", s));
      st.insert(id, s);
    }
    ix.added(&keyed(3, "done", Status::Completed));
    assert_eq!(ix.len(), 1, "a finished job holds no key");
    assert_eq!(ix.newest("k", |id| st.get(&id).copied()), Some(2));
    st.insert(2, Status::Cancelled);
    assert_eq!(ix.newest("k", |id| st.get(&id).copied()), Some(1));
    st.insert(1, Status::Completed);
    assert_eq!(ix.newest("k", |id| st.get(&id).copied()), None);
    assert_eq!(ix.len(), 0);
    ix.added(&keyed(4, "k", Status::Pending));
    ix.removed(&keyed(4, "k", Status::Pending));
    assert_eq!(ix.len(), 0);
  }

  #[test]
  fn a_key_is_free_once_its_holder_leaves_and_returns_what_waited() {
    let mut g: ConcurrencyGate<u32> = ConcurrencyGate::default();
    assert!(!g.busy("t", 1));
    g.enter("t", 1);
    assert!(g.busy("t", 2) && !g.busy("t", 1) && !g.busy("u", 2));
    g.block("t", 20);
    g.block("t", 30);
    assert_eq!(g.leave("t", 2), Vec::<u32>::new(), "not the holder");
    assert_eq!(g.holder("t"), Some(1));
    assert_eq!(g.leave("t", 1), vec![20, 30]);
    assert!(!g.busy("t", 2));
  }
}
