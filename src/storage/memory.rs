//! [`MemoryStore`]: the reference store. Jobs in a hash map by id, the due
//! ones in a heap ordered by (weight, due time, id), the delayed ones in a
//! heap by due time; stale heap entries are skipped by a per-job generation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::{FailKind, Failed, Names, Store};
use crate::job::{Job, JobError, JobId, Status, Transition};

/// Why a dependant failed.
fn dependency_error(dep: JobId, status: Status) -> JobError {
  JobError::system(
    "DependencyError",
    "ERR_DEPENDENCY_FAILED",
    format!("dependency {dep} ended {}", status.as_str()),
    0,
  )
}

/// Hashes a job id by mixing its halves (UUID v7's low bits are random).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
  fn finish(&self) -> u64 {
    self.0
  }
  fn write(&mut self, bytes: &[u8]) {
    for b in bytes {
      self.0 = self.0.rotate_left(8) ^ *b as u64;
    }
  }
  fn write_u128(&mut self, v: u128) {
    self.0 = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
  }
}

type IdMap<V> = HashMap<u128, V, BuildHasherDefault<IdHasher>>;

/// A due job's place in line: weight, due time, id (time-ordered), generation.
type ReadyKey = Reverse<(i32, u64, u128, u32)>;
/// A delayed job's place: due time, id, generation.
type DelayKey = Reverse<(u64, u128, u32)>;

/// Moves `job` along `t`, keeping `counts` right; `None` (no change) when illegal.
pub(crate) fn transition(counts: &mut [usize; 7], job: &mut Job, t: Transition) -> Option<Status> {
  let next = job.status.next(t)?;
  counts[job.status as usize] -= 1;
  counts[next as usize] += 1;
  job.status = next;
  Some(next)
}

/// What a failed attempt leads to: the transition and, for a retry, its delay.
pub(crate) fn decide_failure(job: &Job, kind: FailKind, rand: f64) -> (Transition, Option<u64>) {
  let left = job.attempts <= job.max_retries;
  match kind {
    FailKind::Error { unrecoverable } if left && !unrecoverable => (
      Transition::FailRetry,
      Some(job.backoff.delay(job.attempts, rand)),
    ),
    FailKind::Error { .. } => (Transition::FailFinal, None),
    FailKind::Timeout if left => (
      Transition::TimeoutRetry,
      Some(job.backoff.delay(job.attempts, rand)),
    ),
    FailKind::Timeout => (Transition::TimeoutFinal, None),
    FailKind::Interrupt if left => (Transition::Interrupt, Some(0)),
    FailKind::Interrupt => (Transition::FailFinal, None),
    FailKind::Stop => (Transition::Interrupt, Some(0)),
  }
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
  jobs: IdMap<Job>,
  ready: BinaryHeap<ReadyKey>,
  delayed: BinaryHeap<DelayKey>,
  /// Due jobs of calculations not registered yet, by calculation.
  parked: HashMap<u32, Vec<ReadyKey>>,
  counts: [usize; 7],
  /// Finished jobs in the order they finished, for pruning.
  finished: VecDeque<(u64, u128)>,
  weights: [i32; 3],
  /// Dependency id -> waiting jobs that depend on it.
  dependants: IdMap<Vec<u128>>,
  /// Jobs whose status changed because of their dependencies, since the
  /// last [`Store::take_changed`].
  changed: Vec<JobId>,
}

impl MemoryStore {
  /// An empty store.
  pub fn new() -> MemoryStore {
    MemoryStore {
      weights: [1, 2, 3],
      ..MemoryStore::default()
    }
  }

  /// Puts a pending job in line: due or delayed.
  fn enqueue(&mut self, id: u128, now: u64) {
    let Some(job) = self.jobs.get(&id) else {
      return;
    };
    if job.run_at <= now {
      let w = job.priority.weight(&self.weights);
      self.ready.push(Reverse((w, job.run_at, id, job.gen)));
    } else {
      self.delayed.push(Reverse((job.run_at, id, job.gen)));
    }
  }

  fn promote_due(&mut self, now: u64) {
    while let Some(&Reverse((at, id, gen))) = self.delayed.peek() {
      if at > now {
        break;
      }
      self.delayed.pop();
      if let Some(job) = self.jobs.get(&id) {
        if job.gen == gen && job.status == Status::Pending {
          let w = job.priority.weight(&self.weights);
          self.ready.push(Reverse((w, at, id, gen)));
        }
      }
    }
  }

  fn is_current(&self, id: u128, gen: u32) -> bool {
    matches!(self.jobs.get(&id), Some(j) if j.gen == gen && j.status == Status::Pending)
  }

  /// Drops stale entries and parks unrunnable ones from the top of the line.
  fn settle_top(&mut self, runnable: &dyn Fn(u32) -> bool) -> Option<u128> {
    while let Some(&Reverse(key)) = self.ready.peek() {
      let (_, _, id, gen) = key;
      if !self.is_current(id, gen) {
        self.ready.pop();
        continue;
      }
      let name = self.jobs.get(&id).map(|j| j.name).unwrap_or(0);
      if !runnable(name) {
        self.ready.pop();
        self.parked.entry(name).or_default().push(Reverse(key));
        continue;
      }
      return Some(id);
    }
    None
  }

  fn finish(&mut self, id: u128, now: u64) {
    if let Some(job) = self.jobs.get_mut(&id) {
      job.finished_at = now;
      self.finished.push_back((now, id));
    }
    self.release_dependants(id, now);
  }

  /// A job finished: its waiting dependants are looked at again.
  fn release_dependants(&mut self, id: u128, now: u64) {
    let mut todo = vec![id];
    while let Some(done) = todo.pop() {
      let Some(waiting) = self.dependants.remove(&done) else {
        continue;
      };
      for w in waiting {
        if let Some(failed) = self.settle_waiting(w, now) {
          if failed {
            todo.push(w);
          }
        }
      }
    }
  }

  /// Looks at a waiting job's dependencies: moves it to pending when they
  /// all completed (or finished, with `ignore_failure`), fails it when one
  /// failed. Returns `Some(true)` when it failed, `Some(false)` when it
  /// became pending, `None` when it still waits.
  fn settle_waiting(&mut self, id: u128, now: u64) -> Option<bool> {
    let job = self.jobs.get(&id)?;
    if job.status != Status::Waiting {
      return None;
    }
    let deps = job.deps.as_deref()?;
    let mut all_done = true;
    let mut failed_dep = None;
    for d in &deps.ids {
      match self.jobs.get(&d.0).map(|j| j.status) {
        // Pruned: it finished long ago.
        None | Some(Status::Completed) => {}
        Some(s) if s.is_finished() => {
          if !deps.ignore_failure {
            failed_dep = Some((*d, s));
            break;
          }
        }
        Some(_) => all_done = false,
      }
    }
    let job = self.jobs.get_mut(&id)?;
    if let Some((dep, status)) = failed_dep {
      job.outcome_mut().errors.push(dependency_error(dep, status));
      transition(&mut self.counts, job, Transition::DependencyFailed)?;
      job.finished_at = now;
      self.finished.push_back((now, id));
      self.changed.push(JobId(id));
      return Some(true);
    }
    if !all_done {
      return None;
    }
    transition(&mut self.counts, job, Transition::DependenciesDone)?;
    job.run_at = job.run_at.max(now);
    self.changed.push(JobId(id));
    self.enqueue(id, now);
    Some(false)
  }

  /// Files a waiting job under each of its unfinished dependencies, or
  /// settles it at once.
  fn wait_for_dependencies(&mut self, id: u128, now: u64) {
    let Some(deps) = self.jobs.get(&id).and_then(|j| j.deps.clone()) else {
      return;
    };
    for d in &deps.ids {
      if matches!(self.jobs.get(&d.0), Some(j) if !j.status.is_finished()) {
        self.dependants.entry(d.0).or_default().push(id);
      }
    }
    if self.settle_waiting(id, now) == Some(true) {
      self.release_dependants(id, now);
    }
  }

  /// Loads a job as stored (used by durable stores when they open).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restore(&mut self, job: Job, now: u64) {
    let id = job.id.0;
    let status = job.status;
    let finished_at = job.finished_at;
    self.counts[status as usize] += 1;
    self.jobs.insert(id, job);
    if status == Status::Pending {
      self.enqueue(id, now);
    } else if status.is_finished() {
      self.finished.push_back((finished_at, id));
    }
  }

  /// Files the restored waiting jobs under their dependencies (after every
  /// job is loaded).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restore_waiting(&mut self, now: u64) {
    let waiting: Vec<u128> = self
      .jobs
      .values()
      .filter(|j| j.status == Status::Waiting)
      .map(|j| j.id.0)
      .collect();
    for id in waiting {
      self.wait_for_dependencies(id, now);
    }
  }

  /// Sorts the prune order after restoring (jobs may load in any order).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restored(&mut self) {
    self.finished.make_contiguous().sort_unstable();
  }

  /// Ids of finished jobs that [`Store::prune`] at `before` would remove.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn finished_before(&self, before: u64) -> Vec<JobId> {
    self
      .finished
      .iter()
      .take_while(|(at, _)| *at <= before)
      .filter(|(at, id)| matches!(self.jobs.get(id), Some(j) if j.status.is_finished() && j.finished_at == *at))
      .map(|(_, id)| JobId(*id))
      .collect()
  }

  /// Ids of jobs in `status`.
  pub(crate) fn ids_with(&self, status: Status) -> Vec<JobId> {
    self
      .jobs
      .values()
      .filter(|j| j.status == status)
      .map(|j| j.id)
      .collect()
  }
}

impl Store for MemoryStore {
  fn kind(&self) -> &'static str {
    "memory"
  }

  fn insert(&mut self, jobs: Vec<Job>, _names: &Names) {
    for mut job in jobs {
      let id = job.id.0;
      let now = job.created_at;
      if job.deps.is_some() {
        job.status = Status::Waiting;
      }
      let status = job.status;
      self.counts[status as usize] += 1;
      self.jobs.insert(id, job);
      if status == Status::Waiting {
        self.wait_for_dependencies(id, now);
      } else {
        self.enqueue(id, now);
      }
    }
  }

  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job),
  ) -> usize {
    self.promote_due(now);
    let mut n = 0;
    while n < max {
      let Some(id) = self.settle_top(runnable) else {
        break;
      };
      self.ready.pop();
      let Some(job) = self.jobs.get_mut(&id) else {
        continue;
      };
      transition(&mut self.counts, job, Transition::Claim);
      job.attempts += 1;
      job.started_at = now;
      visit(job);
      n += 1;
    }
    n
  }

  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.promote_due(now);
    self.settle_top(runnable).is_some()
  }

  fn complete(&mut self, id: JobId, result: &str, now: u64) -> bool {
    let Some(job) = self.jobs.get_mut(&id.0) else {
      return false;
    };
    if transition(&mut self.counts, job, Transition::Succeed).is_none() {
      return false;
    }
    job.outcome_mut().result = Some(result.into());
    self.finish(id.0, now);
    true
  }

  fn fail(
    &mut self,
    id: JobId,
    mut err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Option<Failed> {
    let job = self.jobs.get_mut(&id.0)?;
    if job.status != Status::Running {
      return None;
    }
    let (t, delay) = decide_failure(job, kind, rand);
    err.attempt = job.attempts;
    job.outcome_mut().errors.push(err);
    if kind == FailKind::Stop {
      job.attempts -= 1;
    }
    let status = transition(&mut self.counts, job, t)?;
    match delay {
      Some(d) => {
        job.run_at = now + d;
        job.gen = job.gen.wrapping_add(1);
        self.enqueue(id.0, now);
      }
      None => self.finish(id.0, now),
    }
    Some(Failed {
      status,
      retry_delay: delay,
    })
  }

  fn cancel(&mut self, id: JobId, now: u64) -> Option<Status> {
    let job = self.jobs.get_mut(&id.0)?;
    let was = job.status;
    transition(&mut self.counts, job, Transition::Cancel)?;
    job.gen = job.gen.wrapping_add(1);
    let attempt = job.attempts;
    job.outcome_mut().errors.push(JobError::system(
      "CancelledError",
      "ERR_CANCELLED",
      "the job was cancelled".into(),
      attempt,
    ));
    self.finish(id.0, now);
    Some(was)
  }

  fn retry(&mut self, id: JobId, now: u64) -> bool {
    let Some(job) = self.jobs.get_mut(&id.0) else {
      return false;
    };
    if transition(&mut self.counts, job, Transition::Retry).is_none() {
      return false;
    }
    job.attempts = 0;
    job.run_at = now;
    job.finished_at = 0;
    job.gen = job.gen.wrapping_add(1);
    self.enqueue(id.0, now);
    true
  }

  fn progress(&mut self, id: JobId, json: &str) -> bool {
    match self.jobs.get_mut(&id.0) {
      Some(job) if job.status == Status::Running => {
        job.outcome_mut().progress = Some(json.into());
        true
      }
      _ => false,
    }
  }

  fn recover_interrupted(&mut self, now: u64) -> usize {
    let running = self.ids_with(Status::Running);
    for id in &running {
      let err = JobError::system(
        "InterruptedError",
        "ERR_INTERRUPTED",
        "the process stopped while the job ran".into(),
        0,
      );
      self.fail(*id, err, FailKind::Interrupt, now, 0.0);
    }
    running.len()
  }

  fn prune(&mut self, before: u64) -> usize {
    let mut n = 0;
    while let Some(&(at, id)) = self.finished.front() {
      if at > before {
        break;
      }
      self.finished.pop_front();
      let remove =
        matches!(self.jobs.get(&id), Some(j) if j.status.is_finished() && j.finished_at == at);
      if remove {
        if let Some(j) = self.jobs.remove(&id) {
          self.counts[j.status as usize] -= 1;
          n += 1;
        }
      }
    }
    n
  }

  fn get(&self, id: JobId) -> Option<&Job> {
    self.jobs.get(&id.0)
  }

  fn list(&self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let mut ids: Vec<JobId> = self
      .jobs
      .values()
      .filter(|j| status.is_none_or(|s| j.status == s))
      .map(|j| j.id)
      .collect();
    ids.sort_unstable();
    ids.truncate(limit);
    ids
  }

  fn counts(&self) -> [usize; 7] {
    self.counts
  }

  fn unregistered(&self) -> usize {
    self
      .parked
      .values()
      .flatten()
      .filter(|Reverse((_, _, id, gen))| self.is_current(*id, *gen))
      .count()
  }

  fn registered(&mut self, name: u32) {
    if let Some(keys) = self.parked.remove(&name) {
      self.ready.extend(keys);
    }
  }

  fn next_due(&self) -> Option<u64> {
    self.delayed.peek().map(|Reverse((t, _, _))| *t)
  }

  fn take_changed(&mut self) -> Vec<JobId> {
    std::mem::take(&mut self.changed)
  }

  fn max_id(&self) -> Option<JobId> {
    self.jobs.keys().max().map(|k| JobId(*k))
  }

  fn set_weights(&mut self, weights: [i32; 3]) {
    self.weights = weights;
  }

  fn check_invariants(&self) -> std::result::Result<(), String> {
    let mut counts = [0usize; 7];
    for j in self.jobs.values() {
      counts[j.status as usize] += 1;
      if j.attempts > j.max_retries + 1 {
        return Err(format!(
          "job {} has {} attempts, max {}",
          j.id,
          j.attempts,
          j.max_retries + 1
        ));
      }
    }
    if counts != self.counts {
      return Err(format!("counts {:?} != actual {:?}", self.counts, counts));
    }
    for j in self.jobs.values().filter(|j| j.status == Status::Waiting) {
      let filed = self.dependants.values().any(|w| w.contains(&j.id.0));
      if !filed {
        return Err(format!("waiting job {} waits for nothing", j.id));
      }
    }
    for j in self.jobs.values().filter(|j| j.status == Status::Pending) {
      let has = |k: &ReadyKey| k.0 .2 == j.id.0 && k.0 .3 == j.gen;
      let queued = self.ready.iter().any(has)
        || self.parked.values().flatten().any(has)
        || self
          .delayed
          .iter()
          .any(|Reverse((_, id, g))| *id == j.id.0 && *g == j.gen);
      if !queued {
        return Err(format!("pending job {} is in no line", j.id));
      }
    }
    Ok(())
  }
}
