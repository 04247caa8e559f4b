//! [`MemoryStore`]: the reference store. Jobs in a slab (fixed-size chunks,
//! addressed by a `u32` slot) with an open-addressing index from id to slot;
//! the due ones in line by (weight, due time, id), the delayed ones in a heap
//! by due time; stale entries in line are skipped by a per-slot generation.
//!
//! Due jobs usually arrive in order (added now, ids increasing), so the line
//! is a few FIFO lanes of `(slot, generation)` (one per weight), taking each
//! entry that sorts after its lane's last one, plus a heap of full keys for
//! the rest; the next job is the least of the lanes' fronts and the heap's top.
//!
//! Per pending job this costs the [`Job`] itself (dense, no empty buckets),
//! its 8-byte index bucket (the table is 7/16 to 7/8 full: 9 to 18 bytes a
//! job) and an 8-byte lane entry (or a 36-byte heap entry, or a 16-byte
//! delayed entry), plus its 16-byte id in the listing's id-ordered index
//! (see [`super::listing`]).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::keys::{ConcurrencyGate, KeyIndex};
use super::listing::{JobFilter, Order};
use super::{FailKind, Failed, Lease, Names, Settled, Store, Unstarted};
use crate::error::Result;
use crate::job::{Job, JobError, JobErrorCode, JobId, Priority, Status, Transition};

/// Why a dependant failed.
fn dependency_error(dep: JobId, status: Status) -> JobError {
  JobError::system(
    "DependencyError",
    JobErrorCode::DependencyFailed,
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

/// The high half of an id: its timestamp and in-millisecond counter.
fn hi(id: u128) -> u64 {
  (id >> 64) as u64
}

/// An index bucket with no entry.
const EMPTY: u64 = u64::MAX;

/// Id -> slot: open addressing with linear probing, one `u64` per bucket
/// holding the id hash's high 32 bits (which also give the bucket the entry
/// belongs in) and the slot; an id matches when the tag does and the job in
/// the slot has it. At most 7/8 full.
#[derive(Debug, Default)]
struct Index {
  buckets: Vec<u64>,
  len: usize,
  /// `log2(buckets.len())`.
  bits: u32,
}

impl Index {
  fn hash(id: u128) -> u64 {
    let x = hi(id) ^ (id as u64).rotate_left(29);
    let p = (x as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (p as u64) ^ ((p >> 64) as u64)
  }

  /// The bucket an entry with this tag belongs in.
  fn home(&self, tag: u32) -> usize {
    (tag >> (32 - self.bits)) as usize
  }

  fn mask(&self) -> usize {
    self.buckets.len() - 1
  }

  /// The bucket and slot of `id`.
  fn find(&self, id: u128, slab: &Slab) -> Option<(usize, u32)> {
    if self.buckets.is_empty() {
      return None;
    }
    let tag = (Index::hash(id) >> 32) as u32;
    let mut i = self.home(tag);
    loop {
      let e = self.buckets[i];
      if e == EMPTY {
        return None;
      }
      if (e >> 32) as u32 == tag {
        let slot = e as u32;
        if matches!(slab.get(slot), Some(j) if j.id.0 == id) {
          return Some((i, slot));
        }
      }
      i = (i + 1) & self.mask();
    }
  }

  /// Adds `id` (not in the index) at `slot`.
  fn insert(&mut self, id: u128, slot: u32) {
    if (self.len + 1) * 8 > self.buckets.len() * 7 {
      self.grow();
    }
    let tag = (Index::hash(id) >> 32) as u32;
    self.place(((tag as u64) << 32) | slot as u64);
    self.len += 1;
  }

  fn place(&mut self, e: u64) {
    let mut i = self.home((e >> 32) as u32);
    while self.buckets[i] != EMPTY {
      i = (i + 1) & self.mask();
    }
    self.buckets[i] = e;
  }

  fn grow(&mut self) {
    let bits = (self.bits + 1).max(4);
    assert!(bits <= 32, "too many jobs");
    let old = std::mem::replace(&mut self.buckets, vec![EMPTY; 1 << bits]);
    self.bits = bits;
    for e in old {
      if e != EMPTY {
        self.place(e);
      }
    }
  }

  /// Empties bucket `i`, moving later entries of its run back so every
  /// entry stays reachable from its home bucket.
  fn remove_at(&mut self, mut i: usize) {
    let mask = self.mask();
    let mut j = i;
    loop {
      j = (j + 1) & mask;
      let e = self.buckets[j];
      if e == EMPTY {
        break;
      }
      let home = self.home((e >> 32) as u32);
      if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
        self.buckets[i] = e;
        i = j;
      }
    }
    self.buckets[i] = EMPTY;
    self.len -= 1;
  }
}

/// A due job's place in line: weight, due time, id (time-ordered), then
/// the slot and generation that say which job it is and whether the entry is
/// still current. Packed to 36 bytes; the heap is a max-heap, so the greatest
/// key is the one that runs first.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct ReadyKey {
  weight: i32,
  run_at: u64,
  id: u128,
  slot: u32,
  gen: u32,
}

impl ReadyKey {
  fn rank(self) -> (i32, u64, u128, u32, u32) {
    (self.weight, self.run_at, self.id, self.slot, self.gen)
  }
}

impl PartialEq for ReadyKey {
  fn eq(&self, other: &Self) -> bool {
    self.rank() == other.rank()
  }
}

impl Eq for ReadyKey {}

impl Ord for ReadyKey {
  fn cmp(&self, other: &Self) -> Ordering {
    other.rank().cmp(&self.rank())
  }
}

impl PartialOrd for ReadyKey {
  fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
    Some(self.cmp(other))
  }
}

/// Due jobs that arrived in order for one weight: `(slot, generation)`,
/// sorted by (due time, id) (read from the jobs; a current entry's job still
/// has the values it was queued with).
#[derive(Debug)]
struct Lane {
  weight: i32,
  /// (due time, id) of the last entry.
  last: (u64, u128),
  q: VecDeque<(u32, u32)>,
}

/// At most this many lanes (weights); other due jobs go in the heap.
const LANES: usize = 4;

/// Where the next due job's entry is.
#[derive(Debug, Clone, Copy)]
enum Src {
  Heap,
  Lane(usize),
}

/// A delayed job's place: due time, slot, generation. (Which of two jobs due
/// at the same time is promoted first does not matter: the line orders them.)
type DelayKey = Reverse<(u64, u32, u32)>;

/// Slots per slab chunk.
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
/// No slot.
const NIL: u32 = u32::MAX;

/// A slab slot: a job, or free with the next free slot and the generation
/// the next job in it starts at (so entries left by the last one stay stale).
#[derive(Debug)]
enum Entry {
  Job(Job),
  Free { next: u32, gen: u32 },
}

/// The jobs, densely, in chunks of [`CHUNK`] slots that never move (growing
/// allocates a chunk; nothing is copied or left behind).
#[derive(Debug)]
struct Slab {
  chunks: Vec<Vec<Entry>>,
  free: u32,
}

impl Default for Slab {
  fn default() -> Self {
    Slab {
      chunks: Vec::new(),
      free: NIL,
    }
  }
}

impl Slab {
  fn entry(&self, slot: u32) -> Option<&Entry> {
    self
      .chunks
      .get((slot >> CHUNK_BITS) as usize)?
      .get(slot as usize & (CHUNK - 1))
  }

  fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry> {
    self
      .chunks
      .get_mut((slot >> CHUNK_BITS) as usize)?
      .get_mut(slot as usize & (CHUNK - 1))
  }

  fn get(&self, slot: u32) -> Option<&Job> {
    match self.entry(slot)? {
      Entry::Job(j) => Some(j),
      Entry::Free { .. } => None,
    }
  }

  fn get_mut(&mut self, slot: u32) -> Option<&mut Job> {
    match self.entry_mut(slot)? {
      Entry::Job(j) => Some(j),
      Entry::Free { .. } => None,
    }
  }

  /// Stores `job` in a free slot (its generation continuing the slot's) or a
  /// new one.
  fn insert(&mut self, mut job: Job) -> u32 {
    if self.free != NIL {
      let slot = self.free;
      if let Some(e) = self.entry_mut(slot) {
        if let Entry::Free { next, gen } = *e {
          job.gen = gen;
          *e = Entry::Job(job);
          self.free = next;
          return slot;
        }
      }
      unreachable!("the free list names a free slot");
    }
    if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
      self.chunks.push(Vec::with_capacity(CHUNK));
    }
    let n = self.chunks.len() - 1;
    let chunk = &mut self.chunks[n];
    let slot = u32::try_from((n << CHUNK_BITS) | chunk.len())
      .ok()
      .filter(|s| *s != NIL)
      .expect("too many jobs");
    chunk.push(Entry::Job(job));
    slot
  }

  fn remove(&mut self, slot: u32) -> Option<Job> {
    let free = self.free;
    let e = self.entry_mut(slot)?;
    let Entry::Job(j) = e else {
      return None;
    };
    let gen = j.gen.wrapping_add(1);
    let Entry::Job(job) = std::mem::replace(e, Entry::Free { next: free, gen }) else {
      return None;
    };
    self.free = slot;
    Some(job)
  }

  fn iter(&self) -> impl Iterator<Item = (u32, &Job)> + '_ {
    self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
      chunk.iter().enumerate().filter_map(move |(i, e)| match e {
        Entry::Job(j) => Some((((c << CHUNK_BITS) | i) as u32, j)),
        Entry::Free { .. } => None,
      })
    })
  }

  fn jobs(&self) -> impl Iterator<Item = &Job> + '_ {
    self.iter().map(|(_, j)| j)
  }
}

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
  slab: Slab,
  index: Index,
  /// Due jobs: in-order lanes, and a heap for the rest.
  lanes: Vec<Lane>,
  ready: BinaryHeap<ReadyKey>,
  delayed: BinaryHeap<DelayKey>,
  /// Due jobs of calculations not registered yet, by calculation.
  parked: HashMap<u32, Vec<ReadyKey>>,
  counts: [usize; 7],
  /// Finished jobs in the order they finished, for pruning (not kept when
  /// a durable store evicts them: see [`MemoryStore::for_durable`]).
  finished: VecDeque<(u64, u128)>,
  /// Durable store only: finished jobs keep no place in `finished`; each
  /// finish is logged here as (id, generation) for the durable store to
  /// evict once its final write is committed ([`MemoryStore::take_finish_log`]).
  evicting: bool,
  finish_log: Vec<(u128, u32)>,
  /// Durable store only: the status and finish time of evicted jobs that
  /// waiting jobs here are filed under (a dependency's outcome, known
  /// without reading it back).
  gone: IdMap<(Status, u64)>,
  weights: [i32; 3],
  /// Dependency id -> waiting jobs that depend on it.
  dependants: IdMap<Vec<u128>>,
  /// Jobs whose status changed because of their dependencies, since the
  /// last [`Store::take_changed`].
  changed: Vec<JobId>,
  /// Ids in order, for [`Store::list_jobs`] (16 bytes a job).
  order: Order,
  /// `options.key` -> the unfinished jobs holding it.
  keys: KeyIndex,
  /// `options.concurrencyKey` -> the running job, and due jobs set aside.
  gate: ConcurrencyGate<ReadyKey>,
  /// The instance id claims are leased to ([`Store::owner`]), drawn at
  /// random for each store.
  owner: u64,
}

impl MemoryStore {
  /// An empty store.
  pub fn new() -> MemoryStore {
    MemoryStore {
      weights: [1, 2, 3],
      owner: fastrand::u64(..),
      ..MemoryStore::default()
    }
  }

  /// An empty store for a durable store's live jobs: finished jobs are not
  /// kept for pruning but logged for [`MemoryStore::evict`] (the durable
  /// store keeps them in its file).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn for_durable() -> MemoryStore {
    MemoryStore {
      evicting: true,
      ..MemoryStore::new()
    }
  }

  /// Records that the job with this id finished at `at` (see `finished`).
  fn log_finish(&mut self, id: u128, gen: u32, at: u64) {
    if self.evicting {
      self.finish_log.push((id, gen));
    } else if self.finished.back().is_none_or(|&(t, _)| t <= at) {
      self.finished.push_back((at, id));
    } else {
      let i = self.finished.partition_point(|&(t, _)| t <= at);
      self.finished.insert(i, (at, id));
    }
  }

  /// The status of a dependency: the job's here, else an evicted one's.
  fn dep_status(&self, id: u128) -> Option<Status> {
    match self.job(id) {
      Some(j) => Some(j.status),
      None => self.gone.get(&id).map(|g| g.0),
    }
  }

  /// The slot of the job with this id.
  fn slot(&self, id: u128) -> Option<u32> {
    self.index.find(id, &self.slab).map(|(_, slot)| slot)
  }

  /// The slot of the job with this id, trying `hint` first.
  fn slot_hinted(&self, id: u128, hint: u32) -> Option<u32> {
    match self.slab.get(hint) {
      Some(j) if j.id.0 == id => Some(hint),
      _ => self.slot(id),
    }
  }

  /// The job with this id, trying slot `hint` first (see [`Store::claim`]).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn get_hinted(&self, id: JobId, hint: u32) -> Option<&Job> {
    self.slab.get(self.slot_hinted(id.0, hint)?)
  }

  fn job(&self, id: u128) -> Option<&Job> {
    self.slab.get(self.slot(id)?)
  }

  fn job_mut(&mut self, id: u128) -> Option<&mut Job> {
    let slot = self.slot(id)?;
    self.slab.get_mut(slot)
  }

  /// Stores `job`, whose id no job here has (ids are new when added, and
  /// durable stores load each once); returns its slot.
  fn put(&mut self, job: Job) -> u32 {
    let id = job.id.0;
    debug_assert!(self.slot(id).is_none(), "job {} stored twice", job.id);
    self.order.push(job.id, job.created_at);
    self.keys.added(&job);
    let slot = self.slab.insert(job);
    self.index.insert(id, slot);
    slot
  }

  /// Removes the job with this id.
  fn take_out(&mut self, id: u128) -> Option<Job> {
    let (i, slot) = self.index.find(id, &self.slab)?;
    self.index.remove_at(i);
    self.order.removed();
    let job = self.slab.remove(slot)?;
    self.keys.removed(&job);
    Some(job)
  }

  /// The job in `slot` stopped running: the concurrency key it held is
  /// free, and the jobs set aside for it go back in line.
  fn left_running(&mut self, slot: u32) {
    let Some(job) = self.slab.get(slot) else {
      return;
    };
    let Some(key) = job.concurrency_key() else {
      return;
    };
    let back = self.gate.leave(key, job.id.0);
    self.ready.extend(back);
  }

  /// Puts a due job's entry in line: at the end of its weight's lane when it
  /// sorts after the lane's last entry, else in the heap.
  fn push_ready(&mut self, key: ReadyKey) {
    let k = (key.run_at, key.id);
    let lane = match self.lanes.iter().position(|l| l.weight == key.weight) {
      Some(i) => Some(i),
      None if self.lanes.len() < LANES => {
        self.lanes.push(Lane {
          weight: key.weight,
          last: k,
          q: VecDeque::new(),
        });
        Some(self.lanes.len() - 1)
      }
      None => self.lanes.iter().position(|l| l.q.is_empty()),
    };
    if let Some(l) = lane.map(|i| &mut self.lanes[i]) {
      if l.q.is_empty() || k >= l.last {
        l.weight = key.weight;
        l.last = k;
        l.q.push_back((key.slot, key.gen));
        return;
      }
    }
    self.ready.push(key);
  }

  /// Puts the pending job in `slot` in line: due or delayed.
  fn enqueue(&mut self, slot: u32, now: u64) {
    let Some(job) = self.slab.get(slot) else {
      return;
    };
    if job.run_at <= now {
      if let Some(key) = self.ready_key(slot, job.gen) {
        self.push_ready(key);
      }
    } else {
      self.delayed.push(Reverse((job.run_at, slot, job.gen)));
    }
  }

  fn promote_due(&mut self, now: u64) {
    while let Some(&Reverse((at, slot, gen))) = self.delayed.peek() {
      if at > now {
        break;
      }
      self.delayed.pop();
      if let Some(key) = self.ready_key(slot, gen) {
        self.push_ready(key);
      }
    }
  }

  /// The place in line of the pending job in `slot`, if it is still the one
  /// of generation `gen` (a delayed job's due time is its `run_at`).
  fn ready_key(&self, slot: u32, gen: u32) -> Option<ReadyKey> {
    let job = self
      .slab
      .get(slot)
      .filter(|j| j.gen == gen && j.status == Status::Pending)?;
    Some(ReadyKey {
      weight: job.priority.weight(&self.weights),
      run_at: job.run_at,
      id: job.id.0,
      slot,
      gen,
    })
  }

  fn oldest_due_time(&self) -> Option<u64> {
    let run_at = |slot: u32, gen: u32| {
      self
        .slab
        .get(slot)
        .filter(|j| j.gen == gen && j.status == Status::Pending)
        .map(|j| j.run_at)
    };
    // A lane is in due order: its first current entry is its oldest.
    let lanes = self
      .lanes
      .iter()
      .filter_map(|l| l.q.iter().find_map(|&(slot, gen)| run_at(slot, gen)));
    let heap = self.ready.iter().filter_map(|k| run_at(k.slot, k.gen));
    lanes.chain(heap).min()
  }

  fn is_current(&self, slot: u32, gen: u32) -> bool {
    matches!(self.slab.get(slot), Some(j) if j.gen == gen && j.status == Status::Pending)
  }

  /// The first current entry in line and where it is, dropping stale ones.
  fn top(&mut self) -> Option<(Src, ReadyKey)> {
    let slab = &self.slab;
    let current = |slot: u32, gen: u32| -> Option<&Job> {
      slab
        .get(slot)
        .filter(|j| j.gen == gen && j.status == Status::Pending)
    };
    while let Some(&k) = self.ready.peek() {
      if current(k.slot, k.gen).is_some() {
        break;
      }
      self.ready.pop();
    }
    let mut best = self.ready.peek().map(|&k| (Src::Heap, k));
    for (i, lane) in self.lanes.iter_mut().enumerate() {
      while let Some(&(slot, gen)) = lane.q.front() {
        let Some(j) = current(slot, gen) else {
          lane.q.pop_front();
          continue;
        };
        let key = ReadyKey {
          weight: lane.weight,
          run_at: j.run_at,
          id: j.id.0,
          slot,
          gen,
        };
        if best.is_none_or(|(_, b)| key > b) {
          best = Some((Src::Lane(i), key));
        }
        break;
      }
    }
    best
  }

  fn pop(&mut self, src: Src) {
    match src {
      Src::Heap => {
        self.ready.pop();
      }
      Src::Lane(i) => {
        self.lanes[i].q.pop_front();
      }
    }
  }

  /// Drops stale entries and parks unrunnable ones from the top of the line;
  /// returns where the job at the top is, and its slot.
  fn settle_top(&mut self, runnable: &dyn Fn(u32) -> bool) -> Option<(Src, ReadyKey)> {
    loop {
      let (src, key) = self.top()?;
      let Some(job) = self.slab.get(key.slot) else {
        return Some((src, key));
      };
      let name = job.name;
      if !runnable(name) {
        self.pop(src);
        self.parked.entry(name).or_default().push(key);
        continue;
      }
      // Another job with its concurrency key runs: it waits for that one.
      if let Some(ck) = job.concurrency_key() {
        if self.gate.busy(ck, job.id.0) {
          let ck: Box<str> = ck.into();
          self.pop(src);
          self.gate.block(&ck, key);
          continue;
        }
      }
      return Some((src, key));
    }
  }

  fn finish(&mut self, slot: u32, now: u64) {
    let Some(job) = self.slab.get_mut(slot) else {
      return;
    };
    let (id, gen) = (job.id.0, job.gen);
    job.finished_at = now;
    self.log_finish(id, gen, now);
    self.release_dependants(id, now);
  }

  /// A job finished: its waiting dependants are looked at again.
  fn release_dependants(&mut self, id: u128, now: u64) {
    if self.dependants.is_empty() {
      return;
    }
    let mut todo = vec![id];
    while let Some(done) = todo.pop() {
      let Some(waiting) = self.dependants.remove(&done) else {
        continue;
      };
      self.gone.remove(&done);
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
    let slot = self.slot(id)?;
    let job = self.slab.get(slot)?;
    if job.status != Status::Waiting {
      return None;
    }
    let deps = job.deps()?;
    let mut open = Vec::new();
    let mut failed_dep = None;
    for d in &deps.ids {
      match self.dep_status(d.0) {
        // Pruned: it finished long ago.
        None | Some(Status::Completed) => {}
        Some(s) if s.is_finished() => {
          if !deps.ignore_failure {
            failed_dep = Some((*d, s));
            break;
          }
        }
        Some(_) => open.push(d.0),
      }
    }
    let all_done = open.is_empty();
    let job = self.slab.get_mut(slot)?;
    if let Some((dep, status)) = failed_dep {
      job.extra_mut().errors.push(dependency_error(dep, status));
      transition(&mut self.counts, job, Transition::DependencyFailed)?;
      job.finished_at = now;
      let gen = job.gen;
      // In time order: a pruned dependency settles its dependants at the
      // prune's (earlier) cut-off time.
      self.log_finish(id, gen, now);
      self.changed.push(JobId(id));
      return Some(true);
    }
    if !all_done {
      // Filed under each dependency still open: one that finished (its
      // failure ignored) and was retried is open again.
      for d in open {
        let w = self.dependants.entry(d).or_default();
        if !w.contains(&id) {
          w.push(id);
        }
      }
      return None;
    }
    transition(&mut self.counts, job, Transition::DependenciesDone)?;
    job.run_at = job.run_at.max(now);
    self.changed.push(JobId(id));
    self.enqueue(slot, now);
    Some(false)
  }

  /// Files a waiting job under each of its unfinished dependencies, or
  /// settles it at once.
  fn wait_for_dependencies(&mut self, id: u128, now: u64) {
    let Some(deps) = self.job(id).and_then(|j| j.deps().cloned()) else {
      return;
    };
    for d in &deps.ids {
      if matches!(self.job(d.0), Some(j) if !j.status.is_finished()) {
        self.dependants.entry(d.0).or_default().push(id);
      }
    }
    if self.settle_waiting(id, now) == Some(true) {
      self.release_dependants(id, now);
    }
  }

  /// Files a retried (or restored) waiting job under every dependency not
  /// completed, a failed one included: it waits for that one's retry, and
  /// fails again if that fails again. Settles it at once when none is left.
  fn wait_again(&mut self, id: u128, now: u64) {
    let Some(deps) = self.job(id).and_then(|j| j.deps().cloned()) else {
      return;
    };
    let mut open = false;
    for d in &deps.ids {
      match self.dep_status(d.0) {
        None | Some(Status::Completed) => {}
        Some(s) if s.is_finished() && deps.ignore_failure => {}
        Some(_) => {
          self.dependants.entry(d.0).or_default().push(id);
          open = true;
        }
      }
    }
    if !open && self.settle_waiting(id, now) == Some(true) {
      self.release_dependants(id, now);
    }
  }

  /// [`Store::claim`], stopping before the first job that ranks at or after
  /// `bound` (weight, due time, id): a durable store's jobs kept outside
  /// memory start there.
  pub(crate) fn claim_until(
    &mut self,
    max: usize,
    now: u64,
    bound: Option<(i32, u64, u128)>,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> usize {
    self.promote_due(now);
    let owner = self.owner;
    let mut n = 0;
    while n < max {
      let Some((src, key)) = self.settle_top(runnable) else {
        break;
      };
      if bound.is_some_and(|b| (key.weight, key.run_at, key.id) >= b) {
        break;
      }
      self.pop(src);
      let slot = key.slot;
      let Some(job) = self.slab.get_mut(slot) else {
        continue;
      };
      transition(&mut self.counts, job, Transition::Claim);
      job.attempts += 1;
      job.started_at = now;
      if let Some(ck) = job.concurrency_key() {
        self.gate.enter(ck, job.id.0);
      }
      let lease = Lease {
        owner,
        attempt: job.attempts,
        hint: slot,
        claim: job.gen,
      };
      visit(job, lease);
      n += 1;
    }
    n
  }

  /// The slot of the running job `id` if `lease` is its current claim.
  pub(crate) fn leased(&self, lease: &Lease, id: u128) -> Option<u32> {
    if lease.owner != self.owner {
      return None;
    }
    let slot = self.slot_hinted(id, lease.hint)?;
    let job = self.slab.get(slot)?;
    (job.status == Status::Running && job.attempts == lease.attempt && job.gen == lease.claim)
      .then_some(slot)
  }

  /// A running job's attempt failed (the lease already checked, or none:
  /// recovery): retried with backoff or finished. `None` if not running.
  fn fail_running(
    &mut self,
    slot: u32,
    mut err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Option<Failed> {
    let job = self.slab.get_mut(slot)?;
    if job.status != Status::Running {
      return None;
    }
    let (t, delay) = decide_failure(job, kind, rand);
    err.attempt = job.attempts;
    job.extra_mut().errors.push(err);
    if kind == FailKind::Stop {
      job.attempts -= 1;
    }
    let status = transition(&mut self.counts, job, t)?;
    if let Some(d) = delay {
      job.run_at = now + d;
      job.gen = job.gen.wrapping_add(1);
    }
    self.left_running(slot);
    match delay {
      Some(_) => self.enqueue(slot, now),
      None => self.finish(slot, now),
    }
    Some(Failed {
      status,
      retry_delay: delay,
    })
  }

  /// [`Store::insert`], showing each job to `visit` once stored.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn insert_with(&mut self, jobs: Vec<Job>, visit: &mut dyn FnMut(&Job)) {
    for mut job in jobs {
      let id = job.id.0;
      let now = job.created_at;
      if job.deps().is_some() {
        job.status = Status::Waiting;
      }
      let status = job.status;
      self.counts[status as usize] += 1;
      let slot = self.put(job);
      if let Some(j) = self.slab.get(slot) {
        visit(j);
      }
      if status == Status::Waiting {
        self.wait_for_dependencies(id, now);
      } else {
        self.enqueue(slot, now);
      }
    }
  }

  /// True when the job with this id is here.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn contains(&self, id: JobId) -> bool {
    self.slot(id.0).is_some()
  }

  /// The ordering weight of `priority` under the configured weights.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn weight(&self, priority: Priority) -> i32 {
    priority.weight(&self.weights)
  }

  /// Loads a job as stored (used by durable stores when they open).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restore(&mut self, job: Job, now: u64) {
    let id = job.id.0;
    let status = job.status;
    let finished_at = job.finished_at;
    if status == Status::Running {
      if let Some(ck) = job.concurrency_key() {
        self.gate.enter(ck, id);
      }
    }
    self.counts[status as usize] += 1;
    self.gone.remove(&id);
    let slot = self.put(job);
    if status == Status::Pending {
      self.enqueue(slot, now);
    } else if status.is_finished() {
      let gen = self.slab.get(slot).map_or(0, |j| j.gen);
      if self.evicting {
        self.finish_log.push((id, gen));
      } else {
        self.finished.push_back((finished_at, id));
      }
    }
  }

  /// Files the restored waiting jobs under their dependencies (after every
  /// job is loaded).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restore_waiting(&mut self, now: u64) {
    let waiting: Vec<u128> = self
      .slab
      .jobs()
      .filter(|j| j.status == Status::Waiting)
      .map(|j| j.id.0)
      .collect();
    for id in waiting {
      self.wait_again(id, now);
    }
  }

  /// Sorts the prune order after restoring (jobs may load in any order).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn restored(&mut self) {
    self.finished.make_contiguous().sort_unstable();
  }

  /// The jobs that finished since the last call, as (id, generation)
  /// (a durable store's, see [`MemoryStore::for_durable`]).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn take_finish_log(&mut self) -> std::vec::Drain<'_, (u128, u32)> {
    self.finish_log.drain(..)
  }

  /// Removes the job with this id if it is still the finished job of
  /// generation `gen` (a durable store's file holds it now); returns its
  /// status. A waiting job filed under it keeps its outcome (`gone`).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn evict(&mut self, id: u128, gen: u32) -> Option<Status> {
    let (i, slot) = self.index.find(id, &self.slab)?;
    let job = self.slab.get(slot)?;
    if job.gen != gen || !job.status.is_finished() {
      return None;
    }
    let (status, at) = (job.status, job.finished_at);
    if self.dependants.contains_key(&id) {
      self.gone.insert(id, (status, at));
    }
    self.index.remove_at(i);
    self.order.removed();
    self.slab.remove(slot);
    self.counts[status as usize] -= 1;
    Some(status)
  }

  /// After evictions: drops the evicted ids from the listing's index once
  /// they are half of it.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn evicted(&mut self) {
    let (slab, index) = (&self.slab, &self.index);
    self.order.compact(&|id| index.find(id, slab).is_some());
  }

  /// A durable store pruned its file at `before`: waiting jobs filed under
  /// evicted dependencies that finished by then go on (a pruned dependency
  /// counts as done, as in [`Store::prune`]).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn pruned(&mut self, before: u64) {
    let old: Vec<u128> = self
      .gone
      .iter()
      .filter(|(_, g)| g.1 <= before)
      .map(|(id, _)| *id)
      .collect();
    for id in old {
      self.gone.remove(&id);
      self.release_dependants(id, before);
    }
  }

  /// How many jobs are here (a durable store's resident ones).
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn len(&self) -> usize {
    self.index.len
  }

  /// The job with this id, borrowed.
  #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
  pub(crate) fn job_ref(&self, id: JobId) -> Option<&Job> {
    self.job(id.0)
  }

  /// Ids of jobs in `status`.
  pub(crate) fn ids_with(&self, status: Status) -> Vec<JobId> {
    self
      .slab
      .jobs()
      .filter(|j| j.status == status)
      .map(|j| j.id)
      .collect()
  }
}

/// The transitions, infallible in memory ([`Store`] wraps them in `Ok`).
impl MemoryStore {
  pub(crate) fn insert(&mut self, jobs: Vec<Job>, _names: &Names) {
    self.insert_with(jobs, &mut |_| {});
  }

  pub(crate) fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> usize {
    self.claim_until(max, now, None, runnable, visit)
  }

  pub(crate) fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Settled {
    let Some(slot) = self.leased(&lease, id.0) else {
      return Settled::Fenced;
    };
    let Some(job) = self.slab.get_mut(slot) else {
      return Settled::Fenced;
    };
    if transition(&mut self.counts, job, Transition::Succeed).is_none() {
      return Settled::Fenced;
    }
    job.extra_mut().result = Some(result.into());
    self.left_running(slot);
    self.finish(slot, now);
    Settled::Applied(())
  }

  pub(crate) fn fail(
    &mut self,
    lease: Lease,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Settled<Failed> {
    match self.leased(&lease, id.0) {
      Some(slot) => match self.fail_running(slot, err, kind, now, rand) {
        Some(f) => Settled::Applied(f),
        None => Settled::Fenced,
      },
      None => Settled::Fenced,
    }
  }

  pub(crate) fn update_unstarted(&mut self, id: JobId, change: &Unstarted<'_>, now: u64) -> bool {
    let Some(slot) = self.slot(id.0) else {
      return false;
    };
    let Some(job) = self.slab.get_mut(slot) else {
      return false;
    };
    if !matches!(job.status, Status::Pending | Status::Waiting) {
      return false;
    }
    job.change(change.data, change.context, change.run_at);
    if change.run_at.is_some() {
      // A waiting job's due time applies once its dependencies are done.
      if job.status == Status::Pending {
        job.gen = job.gen.wrapping_add(1);
        self.enqueue(slot, now);
      }
    }
    true
  }

  pub(crate) fn cancel(&mut self, id: JobId, now: u64) -> Option<Status> {
    let slot = self.slot(id.0)?;
    let job = self.slab.get_mut(slot)?;
    let was = job.status;
    transition(&mut self.counts, job, Transition::Cancel)?;
    job.gen = job.gen.wrapping_add(1);
    let attempt = job.attempts;
    job.extra_mut().errors.push(JobError::system(
      "CancelledError",
      JobErrorCode::JobCancelled,
      "the job was cancelled".into(),
      attempt,
    ));
    if was == Status::Running {
      self.left_running(slot);
    }
    self.finish(slot, now);
    Some(was)
  }

  pub(crate) fn retry(&mut self, id: JobId, now: u64) -> bool {
    let Some(slot) = self.slot(id.0) else {
      return false;
    };
    let Some(job) = self.slab.get_mut(slot) else {
      return false;
    };
    // A job with dependencies waits for them again (one that failed with
    // ERR_DEPENDENCY_FAILED must not run while its dependency is failed).
    let waits = job.deps().is_some();
    let t = if waits {
      Transition::RetryWaiting
    } else {
      Transition::Retry
    };
    if transition(&mut self.counts, job, t).is_none() {
      return false;
    }
    job.attempts = 0;
    job.run_at = now;
    job.finished_at = 0;
    job.gen = job.gen.wrapping_add(1);
    // Unfinished again: it holds its key again.
    self.keys.added(job);
    if waits {
      self.wait_again(id.0, now);
    } else {
      self.enqueue(slot, now);
    }
    true
  }

  pub(crate) fn progress(&mut self, id: JobId, json: &str) -> bool {
    match self.job_mut(id.0) {
      Some(job) if job.status == Status::Running => {
        job.extra_mut().progress = Some(json.into());
        true
      }
      _ => false,
    }
  }

  pub(crate) fn recover_interrupted(&mut self, now: u64) -> usize {
    let running = self.ids_with(Status::Running);
    for id in &running {
      let err = JobError::system(
        "InterruptedError",
        JobErrorCode::Interrupted,
        "the process stopped while the job ran".into(),
        0,
      );
      if let Some(slot) = self.slot(id.0) {
        self.fail_running(slot, err, FailKind::Interrupt, now, 0.0);
      }
    }
    running.len()
  }

  pub(crate) fn prune(&mut self, before: u64) -> usize {
    let mut n = 0;
    let mut released = Vec::new();
    while let Some(&(at, id)) = self.finished.front() {
      if at > before {
        break;
      }
      self.finished.pop_front();
      let remove = matches!(self.job(id), Some(j) if j.status.is_finished() && j.finished_at == at);
      if remove {
        if let Some(j) = self.take_out(id) {
          self.counts[j.status as usize] -= 1;
          n += 1;
        }
        if self.dependants.contains_key(&id) {
          released.push(id);
        }
      }
    }
    // A retried dependant waiting for a pruned failed job: a pruned
    // dependency counts as done (jobs this fails are pruned next time).
    for id in released {
      self.release_dependants(id, before);
    }
    if n > 0 {
      let (slab, index) = (&self.slab, &self.index);
      self.order.compact(&|id| index.find(id, slab).is_some());
    }
    n
  }
}

impl Store for MemoryStore {
  fn kind(&self) -> &'static str {
    "memory"
  }

  fn insert(&mut self, jobs: Vec<Job>, _names: &Names) -> Result<()> {
    MemoryStore::insert(self, jobs, _names);
    Ok(())
  }

  fn claim(
    &mut self,
    max: usize,
    now: u64,
    runnable: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(&Job, Lease),
  ) -> Result<usize> {
    Ok(MemoryStore::claim(self, max, now, runnable, visit))
  }

  fn has_due(&mut self, now: u64, runnable: &dyn Fn(u32) -> bool) -> bool {
    self.promote_due(now);
    self.settle_top(runnable).is_some()
  }

  fn owner(&self) -> u64 {
    self.owner
  }

  fn complete(&mut self, lease: Lease, id: JobId, result: &str, now: u64) -> Result<Settled> {
    Ok(MemoryStore::complete(self, lease, id, result, now))
  }

  fn fail(
    &mut self,
    lease: Lease,
    id: JobId,
    err: JobError,
    kind: FailKind,
    now: u64,
    rand: f64,
  ) -> Result<Settled<Failed>> {
    Ok(MemoryStore::fail(self, lease, id, err, kind, now, rand))
  }

  fn keyed(&mut self, key: &str) -> Option<JobId> {
    let (slab, index) = (&self.slab, &self.index);
    let status = |id: u128| {
      let (_, slot) = index.find(id, slab)?;
      slab.get(slot).map(|j| j.status)
    };
    self.keys.newest(key, status).map(JobId)
  }

  fn update_unstarted(&mut self, id: JobId, change: &Unstarted<'_>, now: u64) -> Result<bool> {
    Ok(MemoryStore::update_unstarted(self, id, change, now))
  }

  fn cancel(&mut self, id: JobId, now: u64) -> Result<Option<Status>> {
    Ok(MemoryStore::cancel(self, id, now))
  }

  fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    Ok(MemoryStore::retry(self, id, now))
  }

  fn progress(&mut self, id: JobId, json: &str) -> Result<bool> {
    Ok(MemoryStore::progress(self, id, json))
  }

  fn recover_interrupted(&mut self, now: u64) -> Result<usize> {
    Ok(MemoryStore::recover_interrupted(self, now))
  }

  fn prune(&mut self, before: u64) -> Result<usize> {
    Ok(MemoryStore::prune(self, before))
  }

  fn get(&mut self, id: JobId) -> crate::error::Result<Option<Job>> {
    Ok(self.job(id.0).cloned())
  }

  fn list(&mut self, status: Option<Status>, limit: usize) -> Vec<JobId> {
    let mut ids: Vec<JobId> = self
      .slab
      .jobs()
      .filter(|j| status.is_none_or(|s| j.status == s))
      .map(|j| j.id)
      .collect();
    ids.sort_unstable();
    ids.truncate(limit);
    ids
  }

  fn list_jobs(&mut self, filter: &JobFilter, _names: &Names) -> crate::error::Result<Vec<Job>> {
    let (slab, index) = (&self.slab, &self.index);
    let find = |id: u128| index.find(id, slab).and_then(|(_, slot)| slab.get(slot));
    Ok(self.order.page(filter, &find))
  }

  fn counts(&self) -> [usize; 7] {
    self.counts
  }

  fn unregistered(&self) -> usize {
    self
      .parked
      .values()
      .flatten()
      .filter(|k| self.is_current(k.slot, k.gen))
      .count()
  }

  fn registered(&mut self, name: u32) {
    if let Some(keys) = self.parked.remove(&name) {
      self.ready.extend(keys);
    }
  }

  fn oldest_due(&self) -> Option<u64> {
    self.oldest_due_time()
  }

  fn next_due(&self) -> Option<u64> {
    self.delayed.peek().map(|Reverse((t, _, _))| *t)
  }

  fn take_changed(&mut self) -> Vec<JobId> {
    std::mem::take(&mut self.changed)
  }

  fn max_id(&self) -> Option<JobId> {
    self.slab.jobs().map(|j| j.id).max()
  }

  fn set_weights(&mut self, weights: [i32; 3]) {
    if self.weights == weights {
      return;
    }
    self.weights = weights;
    // The line is ordered by the old weights (jobs loaded before the
    // configuration was applied): every due job takes its place again.
    let mut entries: Vec<(u32, u32)> = self.ready.drain().map(|k| (k.slot, k.gen)).collect();
    for lane in self.lanes.drain(..) {
      entries.extend(lane.q);
    }
    let parked: Vec<(u32, ReadyKey)> = self
      .parked
      .drain()
      .flat_map(|(name, keys)| keys.into_iter().map(move |k| (name, k)))
      .collect();
    // Jobs set aside for a concurrency key go back in line: the next claim
    // sets them aside again, in their new order.
    for (_, keys) in self.gate.drain_blocked() {
      entries.extend(keys.into_iter().map(|k| (k.slot, k.gen)));
    }
    for (slot, gen) in entries {
      if let Some(k) = self.ready_key(slot, gen) {
        self.push_ready(k);
      }
    }
    for (name, k) in parked {
      if let Some(k) = self.ready_key(k.slot, k.gen) {
        self.parked.entry(name).or_default().push(k);
      }
    }
  }

  fn check_invariants(&self) -> std::result::Result<(), String> {
    let mut counts = [0usize; 7];
    let mut jobs = 0;
    for (slot, j) in self.slab.iter() {
      jobs += 1;
      counts[j.status as usize] += 1;
      if j.attempts > j.max_retries + 1 {
        return Err(format!(
          "job {} has {} attempts, max {}",
          j.id,
          j.attempts,
          j.max_retries + 1
        ));
      }
      if self.slot(j.id.0) != Some(slot) {
        return Err(format!("job {} is not indexed at its slot {slot}", j.id));
      }
    }
    if self.index.len != jobs {
      return Err(format!("{} index entries for {jobs} jobs", self.index.len));
    }
    for lane in &self.lanes {
      let mut prev = None;
      for &(slot, gen) in &lane.q {
        let Some(j) = self.slab.get(slot).filter(|j| j.gen == gen) else {
          continue;
        };
        let k = (j.run_at, j.id.0);
        if prev.is_some_and(|p| p > k) {
          return Err(format!(
            "lane {} is out of order at job {}",
            lane.weight, j.id
          ));
        }
        prev = Some(k);
      }
    }
    if counts != self.counts {
      return Err(format!("counts {:?} != actual {:?}", self.counts, counts));
    }
    for j in self.slab.jobs().filter(|j| j.status == Status::Waiting) {
      let filed = self.dependants.values().any(|w| w.contains(&{ j.id.0 }));
      if !filed {
        return Err(format!("waiting job {} waits for nothing", j.id));
      }
    }
    for (slot, j) in self
      .slab
      .iter()
      .filter(|(_, j)| j.status == Status::Pending)
    {
      let has = |k: &ReadyKey| k.slot == slot && k.gen == j.gen;
      let queued = self.ready.iter().any(has)
        || self.lanes.iter().any(|l| l.q.contains(&(slot, j.gen)))
        || self.parked.values().flatten().any(has)
        || self.gate.blocked().any(has)
        || self
          .delayed
          .iter()
          .any(|Reverse((_, s, g))| *s == slot && *g == j.gen);
      if !queued {
        return Err(format!("pending job {} is in no line", j.id));
      }
    }
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::job::{IdGen, Priority, Text};
  use crate::storage::StoreExt;
  use std::mem::size_of;

  fn job(id: JobId, priority: Priority, now: u64, run_at: u64) -> Job {
    Job {
      priority,
      ..Job::new(id, 0, now, run_at, "{\"x\":1}".into())
    }
  }

  fn claim_one(s: &mut MemoryStore, now: u64) -> Option<JobId> {
    let mut got = None;
    s.claim(1, now, &|_| true, &mut |j, _| got = Some(j.id));
    got
  }

  #[test]
  fn layout() {
    assert_eq!(size_of::<Entry>(), size_of::<Job>());
    assert_eq!(size_of::<Job>(), 120, "a pending job's whole record");
    assert_eq!(size_of::<ReadyKey>(), 36);
    assert_eq!(size_of::<DelayKey>(), 16);
    assert_eq!(size_of::<Text>(), 16);
  }

  #[test]
  fn index_finds_every_job_through_inserts_and_removals() {
    let mut s = MemoryStore::new();
    let mut g = IdGen::default();
    let names = Names::default();
    let mut live: Vec<JobId> = vec![];
    let mut gone: Vec<JobId> = vec![];
    let mut now = 1_000;
    for round in 0..40u64 {
      let batch: Vec<Job> = (0..300)
        .map(|_| job(g.next(now), Priority::Medium, now, now))
        .collect();
      live.extend(batch.iter().map(|j| j.id));
      s.insert(batch, &names);
      // Finish a random half and prune them: their slots are reused.
      let n = 150 + (round as usize % 7);
      let mut done = vec![];
      for _ in 0..n {
        let id = claim_one(&mut s, now).expect("due");
        assert!(s.complete_current(id, "1", now));
        done.push(id);
      }
      now += 1;
      assert_eq!(s.prune(now), done.len());
      live.retain(|id| !done.contains(id));
      gone.extend(done);
      s.check_invariants().expect("invariants");
    }
    for id in &live {
      assert_eq!(s.get(*id).expect("get").map(|j| j.id), Some(*id));
    }
    for id in &gone {
      assert!(s.get(*id).expect("get").is_none());
    }
    assert_eq!(s.counts()[Status::Pending as usize], live.len());
  }

  #[test]
  fn a_reused_slot_ignores_the_old_jobs_entries() {
    let mut s = MemoryStore::new();
    let mut g = IdGen::default();
    let names = Names::default();
    let a = job(g.next(10), Priority::Medium, 10, 10);
    let a_id = a.id;
    s.insert(vec![a], &names);
    // Cancelled while pending: its lane entry stays behind, stale.
    assert_eq!(s.cancel(a_id, 10), Some(Status::Pending));
    assert_eq!(s.prune(10), 1);
    let b = job(g.next(20), Priority::Low, 20, 20);
    let b_id = b.id;
    s.insert(vec![b], &names);
    s.check_invariants().expect("invariants");
    assert_eq!(claim_one(&mut s, 20), Some(b_id));
    assert_eq!(claim_one(&mut s, 20), None, "claimed once");
    s.check_invariants().expect("invariants");
  }

  #[test]
  fn ids_sharing_their_high_half_are_told_apart() {
    let mut s = MemoryStore::new();
    let names = Names::default();
    let base = 0x0190_0000_0000_7000u128 << 64;
    let ids: Vec<JobId> = (0..50).map(|i| JobId(base | (i * 7919))).collect();
    s.insert(
      ids
        .iter()
        .map(|id| job(*id, Priority::Medium, 0, 0))
        .collect(),
      &names,
    );
    for id in &ids {
      assert_eq!(s.get(*id).expect("get").map(|j| j.id), Some(*id));
    }
    s.check_invariants().expect("invariants");
    for id in &ids[..25] {
      assert_eq!(s.cancel(*id, 1), Some(Status::Pending));
    }
    assert_eq!(s.prune(1), 25);
    for id in &ids[..25] {
      assert!(s.get(*id).expect("get").is_none());
    }
    for id in &ids[25..] {
      assert_eq!(s.get(*id).expect("get").map(|j| j.id), Some(*id));
    }
    s.check_invariants().expect("invariants");
  }

  /// Random adds (any priority, due or delayed, ids in or out of order),
  /// claims, cancels, retries and failures: every claim takes the least
  /// (weight, due time, id) of the due pending jobs.
  #[test]
  fn claims_follow_weight_due_time_and_id() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..8 {
      let mut s = MemoryStore::new();
      s.set_weights([1, 2, 3]);
      let names = Names::default();
      let mut g = IdGen::default();
      let mut made: Vec<JobId> = vec![];
      let mut now = 1_000u64;
      for step in 0..600 {
        match rng.u32(0..10) {
          0..=3 => {
            let n = rng.usize(1..20);
            let mut batch = vec![];
            for _ in 0..n {
              let id = if !made.is_empty() && rng.u32(0..8) == 0 {
                // An id older than some already stored.
                let lo = rng.u64(..) as u128 & ((1 << 62) - 1);
                let older = hi(made[rng.usize(0..made.len())].0) - 1;
                JobId(((older as u128) << 64) | lo)
              } else {
                g.next(now)
              };
              if s.get(id).expect("get").is_some() {
                continue;
              }
              let p = match rng.u32(0..5) {
                0 => Priority::High,
                1 => Priority::Low,
                2 => Priority::Weight(rng.i32(-3..6)),
                _ => Priority::Medium,
              };
              let run_at = if rng.bool() {
                now
              } else {
                now + rng.u64(0..30)
              };
              made.push(id);
              batch.push(job(id, p, now, run_at));
            }
            s.insert(batch, &names);
          }
          4..=6 => {
            let weights = [1, 2, 3];
            let want = s
              .slab
              .jobs()
              .filter(|j| j.status == Status::Pending && j.run_at <= now)
              .map(|j| (j.priority.weight(&weights), j.run_at, j.id))
              .min()
              .map(|(_, _, id)| id);
            let got = claim_one(&mut s, now);
            assert_eq!(got, want);
            if let Some(id) = got {
              match rng.u32(0..3) {
                0 => {
                  s.complete_current(id, "1", now);
                }
                1 => {
                  let kind = FailKind::Interrupt;
                  s.fail_current(id, JobError::default(), kind, now, 0.0);
                }
                _ => {}
              }
            }
          }
          7 => {
            if !made.is_empty() {
              let id = made[rng.usize(0..made.len())];
              s.cancel(id, now);
            }
          }
          8 => {
            if !made.is_empty() {
              let id = made[rng.usize(0..made.len())];
              s.retry(id, now);
            }
          }
          _ => {
            now += rng.u64(0..10);
            if rng.u32(0..4) == 0 {
              s.prune(now.saturating_sub(20));
            }
          }
        }
        if step % 25 == 0 {
          s.check_invariants().expect("invariants");
        }
      }
    }
  }
}
