//! The queue: jobs, their order, workers, timeouts, retries and cleanup, as a
//! synchronous state machine that takes `now` as an argument ([`Queue`]),
//! and the [`Engine`] that runs it on a timer for JavaScript.
//!
//! The JavaScript bridge moves jobs in batches: [`Queue::take`] hands out up
//! to `n` due jobs as one JSON text, [`Queue::settle`] takes many outcomes as
//! one JSON text, [`Queue::drain`] returns the aborts and events that
//! happened since the last call.

mod config;
mod engine;
pub mod options;
mod stats;

pub use config::{QueueConfig, ServiceConfig};
pub use engine::{Engine, Waker};
pub use options::JobOptions;
pub use stats::{Stats, StatsView};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::{IdGen, Job, JobError, JobId, Priority, Status, Transition};

/// Hashes a job id by its random low bits (UUID v7's `rand_b`).
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

/// Where the service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
  /// Created; jobs may be added but none run yet.
  Idle,
  /// Running jobs.
  Started,
  /// `stop()` called: no new jobs, running ones finish.
  Stopping,
  /// Stopped: no new jobs, none run. `start()` again resumes.
  Stopped,
}

/// A registered calculation: its name and the job defaults it sets.
#[derive(Debug, Clone)]
struct Calc {
  name: Box<str>,
  /// The name as a JSON string literal.
  name_json: Box<str>,
  defaults: JobOptions,
}

/// A job a worker holds.
#[derive(Debug, Clone, Copy)]
struct Running {
  id: u128,
  seq: u32,
  /// Epoch ms after which the attempt times out (`u64::MAX`: never).
  deadline: u64,
}

/// A ready job's place in line: weight, then due time, then insertion (ids
/// are time-ordered).
type ReadyKey = Reverse<(i32, u64, u128, u32)>;
/// A delayed job's place: due time, then insertion.
type DelayKey = Reverse<(u64, u128, u32)>;

/// One job to add.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
  /// The calculation's index from [`Queue::register`].
  pub calc: u32,
  /// JSON text.
  pub data: &'a str,
  /// JSON text.
  pub context: &'a str,
  pub options: JobOptions,
}

/// The queue state machine. Not thread-safe by itself: [`Engine`] locks it.
#[derive(Debug)]
pub struct Queue {
  cfg: QueueConfig,
  state: RunState,
  ids: IdGen,
  jobs: IdMap<Job>,
  ready: BinaryHeap<ReadyKey>,
  delayed: BinaryHeap<DelayKey>,
  slots: Vec<Option<Running>>,
  free_slots: Vec<u32>,
  seq: u32,
  calcs: Vec<Calc>,
  calc_index: HashMap<Box<str>, u32>,
  counts: [usize; 7],
  /// Finished jobs in the order they finished, for pruning.
  finished: VecDeque<(u64, u128)>,
  stats: Stats,
  started_at: u64,
  next_cleanup: u64,
  /// (slot, seq) of attempts JavaScript must abort.
  aborts: Vec<(u32, u32)>,
  events_on: bool,
  /// Pending events as JSON array items, each followed by a comma.
  events: String,
  /// Outcomes that arrived after their attempt had ended.
  late_outcomes: u64,
  /// The earliest time the timer is sleeping until; an earlier deadline sets
  /// `timer_dirty`.
  planned_wake: u64,
  timer_dirty: bool,
}

fn json_str(s: &str) -> String {
  serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Queue {
  /// An empty queue at `now`.
  pub fn new(cfg: QueueConfig, now: u64) -> Queue {
    let workers = cfg.max_workers as usize;
    Queue {
      next_cleanup: now.saturating_add(cfg.cleanup_interval_ms),
      cfg,
      state: RunState::Idle,
      ids: IdGen::default(),
      jobs: IdMap::default(),
      ready: BinaryHeap::new(),
      delayed: BinaryHeap::new(),
      slots: vec![None; workers],
      free_slots: (0..workers as u32).rev().collect(),
      seq: 0,
      calcs: Vec::new(),
      calc_index: HashMap::new(),
      counts: [0; 7],
      finished: VecDeque::new(),
      stats: Stats::new(now),
      started_at: 0,
      aborts: Vec::new(),
      events_on: false,
      events: String::new(),
      late_outcomes: 0,
      planned_wake: u64::MAX,
      timer_dirty: false,
    }
  }

  /// The configuration.
  pub fn config(&self) -> &QueueConfig {
    &self.cfg
  }

  /// Where the service is in its life.
  pub fn run_state(&self) -> RunState {
    self.state
  }

  /// Registers (or updates) a calculation by name with its job defaults
  /// (JSON options or `null`); returns its index.
  pub fn register(&mut self, name: &str, defaults: &Value) -> Result<u32> {
    if name.is_empty() || name.len() > 512 {
      return Err(Error::arg(
        "calculation.name must be a non-empty string of at most 512 bytes",
      ));
    }
    let defaults = JobOptions::parse(defaults, "calculation", self.cfg.default_backoff)?;
    if defaults.run_at.is_some() || defaults.delay_ms.is_some() {
      return Err(Error::arg(
        "calculation may not set runAt or delay: pass them as job options",
      ));
    }
    if let Some(&i) = self.calc_index.get(name) {
      self.calcs[i as usize].defaults = defaults;
      return Ok(i);
    }
    let i = self.calcs.len() as u32;
    self.calcs.push(Calc {
      name: name.into(),
      name_json: json_str(name).into(),
      defaults,
    });
    self.calc_index.insert(name.into(), i);
    Ok(i)
  }

  /// The name of calculation `i`.
  pub fn calc_name(&self, i: u32) -> Option<&str> {
    self.calcs.get(i as usize).map(|c| &*c.name)
  }

  /// Starts running jobs.
  pub fn start(&mut self, now: u64) {
    if self.state != RunState::Started {
      self.state = RunState::Started;
      self.started_at = now;
      self.stats = Stats::new(now);
      self.next_cleanup = now.saturating_add(self.cfg.cleanup_interval_ms);
      self.want_wake(self.next_cleanup);
    }
  }

  /// Stops taking new jobs; running ones go on.
  pub fn begin_stop(&mut self) {
    if matches!(self.state, RunState::Started | RunState::Idle) {
      self.state = RunState::Stopping;
    }
  }

  /// Ends the stop: attempts still running are aborted and their jobs go back
  /// to pending (the attempt counts). Returns how many were aborted.
  pub fn finish_stop(&mut self, now: u64) -> usize {
    let mut n = 0;
    for slot in 0..self.slots.len() as u32 {
      if let Some(r) = self.slots[slot as usize] {
        self.release(slot);
        self.aborts.push((slot, r.seq));
        if let Some(job) = self.jobs.get_mut(&r.id) {
          let err = JobError::system(
            "InterruptedError",
            "ERR_INTERRUPTED",
            "the service stopped while the job ran".into(),
            job.attempts,
          );
          job.outcome_mut().errors.push(err);
          job.run_at = now;
          set_status(&mut self.counts, job, Transition::Interrupt);
          job.gen = job.gen.wrapping_add(1);
          let (p, gen) = (job.priority, job.gen);
          self.enqueue(p, now, r.id, gen, now);
        }
        n += 1;
      }
    }
    self.state = RunState::Stopped;
    n
  }

  fn want_wake(&mut self, at: u64) {
    if at < self.planned_wake {
      self.planned_wake = at;
      self.timer_dirty = true;
    }
  }

  /// True (once) when a deadline earlier than the timer's planned wake-up
  /// appeared since the last call.
  pub fn take_timer_dirty(&mut self) -> bool {
    std::mem::take(&mut self.timer_dirty)
  }

  /// Adds jobs, all or none. Returns their ids in order.
  pub fn add(&mut self, batch: &[NewJob<'_>], now: u64) -> Result<Vec<JobId>> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    let queued = self.counts[Status::Pending as usize] + self.counts[Status::Waiting as usize];
    if queued + batch.len() > self.cfg.max_queue_size {
      return Err(Error::QueueFull {
        max: self.cfg.max_queue_size,
      });
    }
    let base = self.cfg.job_defaults();
    let mut resolved = Vec::with_capacity(batch.len());
    for (i, nj) in batch.iter().enumerate() {
      let calc = self
        .calcs
        .get(nj.calc as usize)
        .ok_or_else(|| Error::arg(format!("job {i}: unknown calculation index {}", nj.calc)))?;
      let size = nj.data.len() + nj.context.len();
      if size > self.cfg.max_payload_bytes {
        return Err(Error::PayloadTooLarge {
          size,
          max: self.cfg.max_payload_bytes,
        });
      }
      resolved.push(nj.options.over(&calc.defaults.over(&base)));
    }
    let mut ids = Vec::with_capacity(batch.len());
    for (nj, o) in batch.iter().zip(resolved) {
      let id = self.ids.next(now);
      let run_at = o
        .run_at
        .unwrap_or(now)
        .max(now.saturating_add(o.delay_ms.unwrap_or(0)));
      let job = Job {
        id,
        name: nj.calc,
        priority: o.priority.unwrap_or(Priority::Medium),
        status: Status::Pending,
        attempts: 0,
        max_retries: o.retries.unwrap_or(0),
        timeout_ms: o.timeout_ms.unwrap_or(0),
        backoff: o.backoff.unwrap_or_default(),
        gen: 0,
        created_at: now,
        run_at,
        started_at: 0,
        finished_at: 0,
        data: nj.data.into(),
        context: if nj.context == "{}" {
          "".into()
        } else {
          nj.context.into()
        },
        outcome: None,
      };
      self.counts[Status::Pending as usize] += 1;
      self.enqueue(job.priority, run_at, id.0, 0, now);
      self.jobs.insert(id.0, job);
      ids.push(id);
    }
    Ok(ids)
  }

  /// Puts a pending job in line: ready if due, delayed otherwise.
  fn enqueue(&mut self, priority: Priority, run_at: u64, id: u128, gen: u32, now: u64) {
    if run_at <= now {
      let w = priority.weight(&self.cfg.priority_weights);
      self.ready.push(Reverse((w, run_at, id, gen)));
    } else {
      self.delayed.push(Reverse((run_at, id, gen)));
      self.want_wake(run_at);
    }
  }

  /// Moves delayed jobs that are due into line.
  fn promote_due(&mut self, now: u64) {
    while let Some(&Reverse((at, id, gen))) = self.delayed.peek() {
      if at > now {
        break;
      }
      self.delayed.pop();
      if let Some(job) = self.jobs.get(&id) {
        if job.gen == gen && job.status == Status::Pending {
          let w = job.priority.weight(&self.cfg.priority_weights);
          self.ready.push(Reverse((w, at, id, gen)));
        }
      }
    }
  }

  /// True when a job is due and a worker is free.
  pub fn has_work(&mut self, now: u64) -> bool {
    if self.state != RunState::Started || self.free_slots.is_empty() {
      return false;
    }
    self.promote_due(now);
    self.skip_stale();
    !self.ready.is_empty()
  }

  fn skip_stale(&mut self) {
    while let Some(&Reverse((_, _, id, gen))) = self.ready.peek() {
      match self.jobs.get(&id) {
        Some(j) if j.gen == gen && j.status == Status::Pending => return,
        _ => {
          self.ready.pop();
        }
      }
    }
  }

  /// Hands out up to `max` due jobs to free workers, appending them to `out`
  /// as flat JSON array items `slot,seq,"id",calc,attempt,data,context,`.
  /// Returns how many.
  pub fn take(&mut self, max: usize, now: u64, out: &mut String) -> usize {
    if self.state != RunState::Started {
      return 0;
    }
    self.promote_due(now);
    let mut n = 0;
    while n < max {
      let Some(&slot) = self.free_slots.last() else {
        break;
      };
      let Some(Reverse((_, due, id, gen))) = self.ready.pop() else {
        break;
      };
      let Some(job) = self.jobs.get_mut(&id) else {
        continue;
      };
      if job.gen != gen || job.status != Status::Pending {
        continue;
      }
      self.free_slots.pop();
      set_status(&mut self.counts, job, Transition::Claim);
      job.attempts += 1;
      job.started_at = now;
      self.seq = self.seq.wrapping_add(1);
      let deadline = if job.timeout_ms == 0 {
        u64::MAX
      } else {
        now + job.timeout_ms as u64
      };
      self.slots[slot as usize] = Some(Running {
        id,
        seq: self.seq,
        deadline,
      });
      self.stats.started(now, now.saturating_sub(due));
      let _ = write!(out, "{},{},\"", slot, self.seq);
      job.id.write_to(out);
      let _ = write!(out, "\",{},{},", job.name, job.attempts);
      out.push_str(&job.data);
      out.push(',');
      out.push_str(job.context_json());
      out.push(',');
      n += 1;
      if deadline != u64::MAX {
        self.want_wake(deadline);
      }
    }
    n
  }

  fn release(&mut self, slot: u32) {
    self.slots[slot as usize] = None;
    self.free_slots.push(slot);
  }

  /// The running attempt in `slot` if it is still attempt `seq`.
  fn running(&self, slot: u32, seq: u32) -> Option<Running> {
    self
      .slots
      .get(slot as usize)
      .copied()
      .flatten()
      .filter(|r| r.seq == seq)
  }

  /// Applies outcomes: JSON `[[slot, seq, kind, value], ...]` where kind 1 is
  /// a result, 0 an error `{name, message, stack}`, 2 an unrecoverable error.
  /// An outcome for an attempt that already ended (timed out, cancelled) is
  /// counted and ignored.
  pub fn settle(&mut self, json: &str, now: u64) -> Result<usize> {
    let outcomes: Vec<(u32, u32, u8, &RawValue)> =
      serde_json::from_str(json).map_err(|e| Error::arg(format!("malformed outcomes: {e}")))?;
    let n = outcomes.len();
    for (slot, seq, kind, value) in outcomes {
      let Some(r) = self.running(slot, seq) else {
        self.late_outcomes += 1;
        continue;
      };
      self.release(slot);
      let Some(job) = self.jobs.get_mut(&r.id) else {
        continue;
      };
      self.stats.finished(now, now.saturating_sub(job.started_at));
      if kind == 1 {
        job.outcome_mut().result = Some(value.get().into());
        set_status(&mut self.counts, job, Transition::Succeed);
        let id = r.id;
        self.finish(id, now);
        self.event_with("completed", id, value.get());
      } else {
        let mut err: JobError = serde_json::from_str(value.get()).unwrap_or_else(|_| JobError {
          name: "Error".into(),
          message: value.get().into(),
          ..JobError::default()
        });
        err.attempt = job.attempts;
        self.fail_attempt(r.id, err, kind == 2, false, now);
      }
    }
    Ok(n)
  }

  /// A failed or timed-out attempt: retry with backoff if attempts are left,
  /// finish otherwise.
  fn fail_attempt(
    &mut self,
    id: u128,
    err: JobError,
    unrecoverable: bool,
    timed_out: bool,
    now: u64,
  ) {
    let Some(job) = self.jobs.get_mut(&id) else {
      return;
    };
    let retry = !unrecoverable && job.attempts <= job.max_retries;
    let attempt = job.attempts;
    let err_json = serde_json::to_string(&err).unwrap_or_default();
    job.outcome_mut().errors.push(err);
    if retry {
      let delay = job.backoff.delay(attempt, fastrand::f64());
      job.run_at = now + delay;
      job.gen = job.gen.wrapping_add(1);
      let t = if timed_out {
        Transition::TimeoutRetry
      } else {
        Transition::FailRetry
      };
      set_status(&mut self.counts, job, t);
      let (p, gen) = (job.priority, job.gen);
      self.enqueue(p, now + delay, id, gen, now);
      if timed_out {
        self.event_with("timedOut", id, &err_json);
      }
      if self.events_on {
        self.event_with(
          "retrying",
          id,
          &format!("{{\"delayMs\":{delay},\"error\":{err_json}}}"),
        );
      }
    } else {
      let t = if timed_out {
        Transition::TimeoutFinal
      } else {
        Transition::FailFinal
      };
      set_status(&mut self.counts, job, t);
      self.finish(id, now);
      self.event_with(if timed_out { "timedOut" } else { "failed" }, id, &err_json);
    }
  }

  fn finish(&mut self, id: u128, now: u64) {
    if let Some(job) = self.jobs.get_mut(&id) {
      job.finished_at = now;
      self.finished.push_back((now, id));
    }
  }

  fn event_with(&mut self, kind: &str, id: u128, extra: &str) {
    if !self.events_on {
      return;
    }
    let Some(job) = self.jobs.get(&id) else {
      return;
    };
    let name = self
      .calcs
      .get(job.name as usize)
      .map(|c| &*c.name_json)
      .unwrap_or("null");
    let _ = write!(self.events, "[\"{kind}\",\"");
    job.id.write_to(&mut self.events);
    let _ = write!(self.events, "\",{name},{},{extra}],", job.attempts);
  }

  /// Turns event recording on or off (off: nobody listens, nothing is built).
  pub fn set_events(&mut self, on: bool) {
    self.events_on = on;
    if !on {
      self.events.clear();
    }
  }

  /// True when aborts or events wait for [`Queue::drain`].
  pub fn has_news(&self) -> bool {
    !self.aborts.is_empty() || !self.events.is_empty()
  }

  /// Takes the pending aborts and events as JSON `[[slot, seq, ...], [events]]`.
  pub fn drain(&mut self) -> String {
    let mut out = String::with_capacity(16 + self.events.len());
    out.push_str("[[");
    for (i, (slot, seq)) in self.aborts.drain(..).enumerate() {
      if i > 0 {
        out.push(',');
      }
      let _ = write!(out, "{slot},{seq}");
    }
    out.push_str("],[");
    if !self.events.is_empty() {
      self.events.pop();
      out.push_str(&self.events);
      self.events.clear();
    }
    out.push_str("]]");
    out
  }

  /// Advances time: promotes due jobs, times out overdue attempts, prunes
  /// old finished jobs when the cleanup interval has passed.
  pub fn tick(&mut self, now: u64) {
    self.promote_due(now);
    for slot in 0..self.slots.len() as u32 {
      let Some(r) = self.slots[slot as usize] else {
        continue;
      };
      if r.deadline > now {
        continue;
      }
      self.release(slot);
      self.aborts.push((slot, r.seq));
      let Some(job) = self.jobs.get(&r.id) else {
        continue;
      };
      self.stats.finished(now, now.saturating_sub(job.started_at));
      let err = JobError::system(
        "TimeoutError",
        "ERR_JOB_TIMEOUT",
        format!(
          "attempt {} timed out after {} ms",
          job.attempts, job.timeout_ms
        ),
        job.attempts,
      );
      self.fail_attempt(r.id, err, false, true, now);
    }
    if self.state == RunState::Started && now >= self.next_cleanup {
      self.prune(now.saturating_sub(self.cfg.max_job_age_ms));
      self.next_cleanup = now.saturating_add(self.cfg.cleanup_interval_ms);
    }
  }

  /// The earliest time something is due (a delayed job, a deadline, the
  /// cleanup), and records it as the timer's plan.
  pub fn plan_wake(&mut self) -> u64 {
    let mut at = u64::MAX;
    if let Some(&Reverse((t, _, _))) = self.delayed.peek() {
      at = at.min(t);
    }
    for r in self.slots.iter().flatten() {
      at = at.min(r.deadline);
    }
    if self.state == RunState::Started {
      at = at.min(self.next_cleanup);
    }
    self.planned_wake = at;
    self.timer_dirty = false;
    at
  }

  /// Removes finished jobs that finished at or before `before`. Returns how many.
  pub fn prune(&mut self, before: u64) -> usize {
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

  /// Cancels a waiting, pending or running job (running: its signal fires
  /// and a late outcome is ignored). False for unknown or finished jobs.
  pub fn cancel(&mut self, id: JobId, now: u64) -> bool {
    let Some(job) = self.jobs.get_mut(&id.0) else {
      return false;
    };
    let was = job.status;
    if set_status(&mut self.counts, job, Transition::Cancel).is_none() {
      return false;
    }
    job.gen = job.gen.wrapping_add(1);
    let attempt = job.attempts;
    job.outcome_mut().errors.push(JobError::system(
      "CancelledError",
      "ERR_CANCELLED",
      "the job was cancelled".into(),
      attempt,
    ));
    if was == Status::Running {
      let found = self
        .slots
        .iter()
        .position(|s| matches!(s, Some(r) if r.id == id.0));
      if let Some(slot) = found {
        let seq = self.slots[slot].map(|r| r.seq).unwrap_or(0);
        self.release(slot as u32);
        self.aborts.push((slot as u32, seq));
        self.stats.finished(now, 0);
      }
    }
    self.finish(id.0, now);
    self.event_with("cancelled", id.0, "null");
    true
  }

  /// Puts a failed, timed-out or cancelled job back in line with its
  /// attempts reset. False for unknown jobs or other states.
  pub fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    let Some(job) = self.jobs.get_mut(&id.0) else {
      return Ok(false);
    };
    if !matches!(
      job.status,
      Status::Failed | Status::Timeout | Status::Cancelled
    ) {
      return Ok(false);
    }
    let queued = self.counts[Status::Pending as usize] + self.counts[Status::Waiting as usize];
    if queued >= self.cfg.max_queue_size {
      return Err(Error::QueueFull {
        max: self.cfg.max_queue_size,
      });
    }
    set_status(&mut self.counts, job, Transition::Retry);
    job.attempts = 0;
    job.run_at = now;
    job.finished_at = 0;
    job.gen = job.gen.wrapping_add(1);
    let (p, gen) = (job.priority, job.gen);
    self.enqueue(p, now, id.0, gen, now);
    Ok(true)
  }

  /// Records progress (JSON) of the attempt in `slot`/`seq`; false when that
  /// attempt has ended.
  pub fn progress(&mut self, slot: u32, seq: u32, json: &str) -> bool {
    let Some(r) = self.running(slot, seq) else {
      return false;
    };
    match self.jobs.get_mut(&r.id) {
      Some(job) => {
        job.outcome_mut().progress = Some(json.into());
        true
      }
      None => false,
    }
  }

  /// The job with this id.
  pub fn get(&self, id: JobId) -> Option<&Job> {
    self.jobs.get(&id.0)
  }

  /// The job's status as JSON (`CalculationStatus`), or `None`.
  pub fn status_json(&self, id: JobId) -> Option<String> {
    let job = self.jobs.get(&id.0)?;
    let name = self
      .calcs
      .get(job.name as usize)
      .map(|c| &*c.name_json)
      .unwrap_or("null");
    let opt_ms = |t: u64| {
      if t == 0 {
        "null".to_string()
      } else {
        t.to_string()
      }
    };
    let o = job.outcome.as_deref();
    let result = o.and_then(|o| o.result.as_deref()).unwrap_or("null");
    let progress = o.and_then(|o| o.progress.as_deref()).unwrap_or("null");
    let error = job
      .last_error()
      .and_then(|e| serde_json::to_string(e).ok())
      .unwrap_or_else(|| "null".into());
    let errors = o
      .and_then(|o| serde_json::to_string(&o.errors).ok())
      .unwrap_or_else(|| "[]".into());
    let mut s = String::with_capacity(256 + job.data.len() + result.len());
    s.push_str("{\"jobId\":\"");
    job.id.write_to(&mut s);
    let _ = write!(
      s,
      "\",\"name\":{name},\"status\":\"{}\",\"priority\":{},\"attempts\":{},\"maxRetries\":{},\"timeout\":{},\"progress\":{progress},\"result\":{result},\"error\":{error},\"errors\":{errors},\"createdAt\":{},\"runAt\":{},\"startedAt\":{},\"finishedAt\":{},\"data\":{},\"context\":{}}}",
      job.status.as_str(),
      job.priority.to_json(),
      job.attempts,
      job.max_retries,
      job.timeout_ms,
      job.created_at,
      job.run_at,
      opt_ms(job.started_at),
      opt_ms(job.finished_at),
      job.data,
      job.context_json(),
    );
    Some(s)
  }

  /// Jobs per status.
  pub fn count(&self, s: Status) -> usize {
    self.counts[s as usize]
  }

  /// Attempts running now.
  pub fn running_count(&self) -> usize {
    self.slots.len() - self.free_slots.len()
  }

  /// Jobs that still need the service: waiting, pending or running.
  pub fn active(&self) -> usize {
    self.counts[Status::Waiting as usize]
      + self.counts[Status::Pending as usize]
      + self.running_count()
  }

  /// Outcomes that arrived after their attempt had ended.
  pub fn late_outcomes(&self) -> u64 {
    self.late_outcomes
  }

  /// `QueueStatistics` as JSON.
  pub fn stats_json(&self, now: u64) -> String {
    let v = self.stats.view(now);
    let running = self.running_count();
    let mut s = String::with_capacity(512);
    s.push('{');
    for st in Status::ALL {
      let _ = write!(s, "\"{}\":{},", st.as_str(), self.counts[st as usize]);
    }
    let total: usize = self.counts.iter().sum();
    let _ = write!(
      s,
      "\"total\":{total},\"queued\":{},\"throughput\":{:.3},\"averageWaitTime\":{:.3},\"averageRunTime\":{:.3},\"activeWorkers\":{running},\"workerUtilization\":{:.4},\"maxWorkers\":{},\"maxQueueSize\":{},\"lateOutcomes\":{}}}",
      self.counts[Status::Pending as usize] + self.counts[Status::Waiting as usize],
      v.throughput,
      v.avg_wait_ms,
      v.avg_run_ms,
      running as f64 / self.cfg.max_workers as f64,
      self.cfg.max_workers,
      self.cfg.max_queue_size,
      self.late_outcomes,
    );
    s
  }

  /// Checks the queue's internal invariants (used by tests).
  pub fn check_invariants(&self) -> std::result::Result<(), String> {
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
    let running: Vec<u128> = self.slots.iter().flatten().map(|r| r.id).collect();
    if running.len() != counts[Status::Running as usize] {
      return Err(format!(
        "{} slots used, {} jobs running",
        running.len(),
        counts[Status::Running as usize]
      ));
    }
    for id in &running {
      match self.jobs.get(id) {
        Some(j) if j.status == Status::Running => {}
        _ => return Err("a slot holds a job that is not running".into()),
      }
    }
    if self.free_slots.len() + running.len() != self.cfg.max_workers as usize {
      return Err("slot accounting is off".into());
    }
    for j in self.jobs.values().filter(|j| j.status == Status::Pending) {
      let queued = self
        .ready
        .iter()
        .any(|Reverse((_, _, id, g))| *id == j.id.0 && *g == j.gen)
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

/// Moves `job` along `t`, keeping `counts` right. `None` (and no change) when
/// the transition is illegal.
fn set_status(counts: &mut [usize; 7], job: &mut Job, t: Transition) -> Option<Status> {
  let next = job.status.next(t)?;
  counts[job.status as usize] -= 1;
  counts[next as usize] += 1;
  job.status = next;
  Some(next)
}

#[cfg(test)]
mod tests;
