//! The queue: jobs, their order, workers, timeouts, retries and cleanup, as a
//! synchronous state machine that takes `now` as an argument ([`Queue`]),
//! and the [`Engine`] that runs it on a timer for JavaScript.
//!
//! The JavaScript bridge moves jobs in batches: [`Queue::take`] hands out up
//! to `n` due jobs as one JSON text (the one place a job goes from pending to
//! running), [`Queue::settle`] takes many outcomes as one JSON text,
//! [`Queue::drain`] returns the aborts and events that happened since the
//! last call; their format is [`crate::wire`]'s.
//!
//! The parts: `insert.rs` is the one insert path of `add` and schedule
//! fires, `registry.rs` the calculations by name, `chores/` the periodic
//! work of [`Queue::tick`] (fire schedules, sample the monitor, promote due
//! jobs, time out attempts, prune), `engine.rs` the timer that drives it.

mod chores;
mod config;
mod engine;
mod held;
mod insert;
mod listing;
pub mod options;
mod registry;
mod schedule_options;
mod stats;

pub use config::{QueueConfig, ServiceConfig, StorageConfig};
pub use engine::{runtime, Engine, Waker};
pub use listing::{JobQuery, DEFAULT_LIMIT, MAX_LIMIT};
pub use options::JobOptions;
pub use stats::{Stats, StatsView};

use std::fmt::Write as _;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::{IdGen, Job, JobError, JobErrorCode, JobId, Status};
use crate::monitor::channels::{ChannelsConfig, Dispatcher};
use crate::monitor::{AlertEventKind, Gauge, Monitor, MonitorConfig, Outcome};
use crate::scheduler::{Schedule, ScheduleFilter, ScheduleKind, Scheduler};
use crate::storage::{FailKind, Lease, MemoryStore, Names, Settled, Store};
pub use crate::wire::Abort;
use crate::wire::{self, Events, OutcomeKind, WireOutcome};
use chores::prune::PruneClock;
use chores::sample::Sampling;
use insert::Origin;
use registry::Registry;
pub use schedule_options::parse_schedule;

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

/// The schedules a store holds; unreadable ones are skipped.
fn load_schedules(store: &dyn Store) -> Vec<Schedule> {
  store
    .schedules()
    .iter()
    .filter_map(|j| serde_json::from_str(j).ok())
    .collect()
}

/// A job a worker holds.
#[derive(Debug, Clone, Copy)]
struct Running {
  id: JobId,
  seq: u32,
  /// Epoch ms after which the attempt times out (`u64::MAX`: never).
  deadline: u64,
  /// When the attempt started and when the job was due (epoch ms), its
  /// calculation and attempt number: settling needs no store lookup.
  started_at: u64,
  run_at: u64,
  name: u32,
  attempt: u32,
  /// The store's lease of the attempt: its outcome is fenced by it.
  lease: Lease,
}

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

/// The queue state machine over a [`Store`]. Not thread-safe by itself:
/// [`Engine`] locks it.
pub struct Queue {
  cfg: QueueConfig,
  state: RunState,
  ids: IdGen,
  store: Box<dyn Store>,
  /// Calculation names and the registered calculations.
  registry: Registry,
  slots: Vec<Option<Running>>,
  free_slots: Vec<u32>,
  seq: u32,
  stats: Stats,
  /// When the prune chore next runs.
  prune_clock: PruneClock,
  /// (slot, seq, why) of attempts JavaScript must abort.
  aborts: Vec<(u32, u32, Abort)>,
  events_on: bool,
  /// Events waiting for [`Queue::drain`].
  events: Events,
  /// Events of outcomes not committed yet (a store that commits late).
  held: held::HeldEvents,
  /// The first storage error of a transition no caller waited for (a
  /// timer chore, an outcome, a claim): see [`Queue::store_failure`].
  store_error: Option<String>,
  /// Outcomes that arrived after their attempt had ended: caught by the
  /// slot fence (`running`), or fenced by the store's lease.
  late_outcomes: u64,
  /// The earliest time the timer is sleeping until; an earlier deadline sets
  /// `timer_dirty`.
  planned_wake: u64,
  timer_dirty: bool,
  /// Schedules: they add jobs at their fire times.
  scheduler: Scheduler,
  /// `scheduler.enabled` of the config: false keeps schedules from firing.
  schedules_on: bool,
  /// Metrics, health and alerts; `None` with `monitoring.enabled: false`.
  monitor: Option<Box<Monitor>>,
  /// Delivers fired alerts to webhooks and email on its own thread.
  alert_out: Option<Dispatcher>,
  /// When the monitor chore next samples the queue and evaluates its rules.
  sampling: Sampling,
  /// The kind of the durable store the queue waits for (see
  /// [`Queue::await_store`]); `None` once it is open.
  awaited_kind: Option<&'static str>,
}

impl std::fmt::Debug for Queue {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Queue")
      .field("state", &self.state)
      .field("store", &self.store.kind())
      .finish_non_exhaustive()
  }
}

impl Queue {
  /// An empty queue in memory at `now`.
  pub fn new(cfg: QueueConfig, now: u64) -> Queue {
    Queue::with_store(cfg, now, Box::new(MemoryStore::new()), Names::default())
  }

  /// A queue over `store`, whose jobs name calculations by `names`.
  pub fn with_store(cfg: QueueConfig, now: u64, mut store: Box<dyn Store>, names: Names) -> Queue {
    let workers = cfg.max_workers as usize;
    store.set_weights(cfg.priority_weights);
    let mut ids = IdGen::default();
    if let Some(max) = store.max_id() {
      ids.seed(max);
    }
    let mut scheduler = Scheduler::new();
    scheduler.restore(load_schedules(&*store));
    let mut q = Queue {
      prune_clock: PruneClock::after(now, cfg.cleanup_interval_ms),
      cfg,
      state: RunState::Idle,
      ids,
      store,
      registry: Registry::new(names),
      slots: vec![None; workers],
      free_slots: (0..workers as u32).rev().collect(),
      seq: 0,
      stats: Stats::new(now),
      aborts: Vec::new(),
      events_on: false,
      events: Events::default(),
      held: held::HeldEvents::default(),
      late_outcomes: 0,
      store_error: None,
      planned_wake: u64::MAX,
      timer_dirty: false,
      scheduler,
      schedules_on: true,
      monitor: None,
      alert_out: None,
      sampling: Sampling::default(),
      awaited_kind: None,
    };
    q.apply_schedule_news();
    q
  }

  /// Takes in what a store that shares its schedules learned of the
  /// cluster's (see [`Store::take_schedule_news`] and
  /// [`Scheduler::merge_cluster`]): the schedules as stored, and the jobs of
  /// the fires this process handed over.
  pub(super) fn apply_schedule_news(&mut self) {
    let Some(news) = self.store.take_schedule_news() else {
      return;
    };
    if let Some(all) = news.all {
      let stored = all
        .into_iter()
        .filter_map(|s| {
          serde_json::from_str::<Schedule>(&s.json)
            .ok()
            .map(|sch| (sch, s.last_fire))
        })
        .collect();
      self.scheduler.merge_cluster(stored, &news.fresh);
    }
    for (schedule, _, job) in news.fired {
      if let Some(job) = job {
        self.scheduler.record_job(&schedule, &job.to_string());
      }
    }
    if let Some(t) = self.scheduler.next_wake() {
      self.want_wake(t);
    }
  }

  /// The store, taken out (tests reopen it as a new process would).
  #[cfg(test)]
  pub(crate) fn into_store(self) -> Box<dyn Store> {
    self.store
  }

  /// The queue's store is a placeholder until a durable store of `kind` is
  /// installed by [`Queue::open_store`]; statistics name `kind` meanwhile.
  pub fn await_store(&mut self, kind: &'static str) {
    self.awaited_kind = Some(kind);
  }

  /// Turns the monitor on (per its config) or off. With a manual clock the
  /// queue is sampled at each health check instead of every second, so
  /// `advanceTime` over a day does not take 86,400 steps.
  pub fn set_monitor(
    &mut self,
    cfg: MonitorConfig,
    channels: ChannelsConfig,
    manual_clock: bool,
    now: u64,
  ) {
    self.sampling.evaluate_ms = cfg.health_check_interval_ms.max(1);
    self.sampling.sample_ms = if manual_clock {
      self.sampling.evaluate_ms
    } else {
      1_000
    };
    self.alert_out = (cfg.enabled && !channels.is_empty()).then(|| Dispatcher::start(channels));
    self.monitor = cfg.enabled.then(|| Box::new(Monitor::new(cfg, now)));
  }

  /// Webhook and email delivery counts (JSON), or `None` with no channel configured.
  pub fn alert_delivery_json(&self) -> Option<String> {
    self
      .alert_out
      .as_ref()
      .and_then(|d| serde_json::to_string(&d.stats()).ok())
  }

  /// The monitor, if enabled.
  pub fn monitor(&self) -> Option<&Monitor> {
    self.monitor.as_deref()
  }

  /// Tells the monitor the store's state ([`Store::health`]); true when
  /// it changed. Called at each sample and before a health read.
  pub fn sync_storage_health(&mut self) -> bool {
    let h = self.store.health();
    self
      .monitor
      .as_deref_mut()
      .is_some_and(|m| m.set_storage(h))
  }

  /// The monitor, to change.
  pub fn monitor_mut(&mut self) -> Option<&mut Monitor> {
    self.monitor.as_deref_mut()
  }

  /// Records a settled attempt's outcome with the monitor (no store lookup).
  fn record_running(&mut self, r: &Running, outcome: Outcome, now: u64) {
    self.record_attempt(r.name, r.run_at, r.started_at, outcome, now, None);
  }

  /// Records a finished attempt of job `id` with the monitor.
  fn record(&mut self, id: JobId, outcome: Outcome, now: u64, error: Option<&str>) {
    if self.monitor.is_none() {
      return;
    }
    let Some(job) = self.job(id) else {
      return;
    };
    let (name, run_at, started_at) = (job.name, job.run_at, job.started_at);
    self.record_attempt(name, run_at, started_at, outcome, now, error);
  }

  /// Records an attempt of calculation `name`, due at `run_at` and started
  /// at `started_at`, that ended at `now`.
  fn record_attempt(
    &mut self,
    name: u32,
    run_at: u64,
    started_at: u64,
    outcome: Outcome,
    now: u64,
    error: Option<&str>,
  ) {
    let Some(m) = self.monitor.as_deref_mut() else {
      return;
    };
    let name = self.registry.name(name).unwrap_or("");
    let wait = started_at.saturating_sub(run_at);
    let run = now.saturating_sub(started_at);
    m.record_outcome(name, outcome, wait, run, now, error);
  }

  /// Sends a fired or resolved alert to its channels and to JavaScript.
  fn alert_event(&mut self, e: &crate::monitor::AlertEvent) {
    if let Some(d) = &self.alert_out {
      d.send(e);
    }
    let kind = match e.kind {
      AlertEventKind::Fired => "alert",
      AlertEventKind::Resolved => "alertResolved",
    };
    let alert = serde_json::to_string(&e.alert).unwrap_or_else(|_| "null".into());
    self.events.service(kind, &alert);
  }

  /// The Prometheus text exposition: the monitor's metrics plus the queue's gauges.
  pub fn prometheus(&self, now: u64) -> Option<String> {
    let m = self.monitor.as_deref()?;
    let counts = self.store.counts();
    let gauges = [
      Gauge {
        name: "jobwerk_jobs_waiting",
        help: "Jobs waiting for their dependencies.",
        value: counts[Status::Waiting as usize] as f64,
      },
      Gauge {
        name: "jobwerk_jobs_pending",
        help: "Jobs queued to run.",
        value: counts[Status::Pending as usize] as f64,
      },
      Gauge {
        name: "jobwerk_jobs_running",
        help: "Jobs running now.",
        value: self.running_count() as f64,
      },
      Gauge {
        name: "jobwerk_workers_max",
        help: "Configured maxWorkers.",
        value: self.cfg.max_workers as f64,
      },
      Gauge {
        name: "jobwerk_late_outcomes_total",
        help: "Outcomes that arrived after their attempt had ended.",
        value: self.late_outcomes as f64,
      },
    ];
    Some(m.prometheus(now, &gauges))
  }

  /// Lets schedules fire or not (`scheduler.enabled`).
  pub fn set_schedules_enabled(&mut self, on: bool) {
    self.schedules_on = on;
  }

  /// The configuration.
  pub fn config(&self) -> &QueueConfig {
    &self.cfg
  }

  /// The store.
  pub fn store(&self) -> &dyn Store {
    &*self.store
  }

  /// The store, to change.
  pub fn store_mut(&mut self) -> &mut dyn Store {
    &mut *self.store
  }

  /// The end of one operation: records events of jobs their dependencies
  /// moved, and sends the store's collected writes.
  pub fn end_batch(&mut self) {
    self.end_batch_deferred();
    self.store.end_batch();
  }

  /// [`Queue::end_batch`] without sending the writes yet: the dispatcher
  /// sends them once its handlers have started (see `Engine::with_deferred`).
  pub fn end_batch_deferred(&mut self) {
    let changed = self.store.take_changed();
    if !changed.is_empty() {
      // A dependant released before its own delay passed waits in the
      // store's delayed line: the timer must wake at its due time.
      if let Some(t) = self.store.next_due() {
        self.want_wake(t);
      }
    }
    for id in changed {
      let Some(job) = self.job(id) else {
        continue;
      };
      if job.status == Status::Failed {
        let err = job
          .last_error()
          .and_then(|e| serde_json::to_string(e).ok())
          .unwrap_or_else(|| "null".into());
        self.event("failed", id, &err);
      }
    }
    if self.store.commits_late() {
      let failed = self.store.take_failed();
      self.failed_in_store(&failed);
      self.held.end_operation(&mut *self.store, &mut self.events);
    }
    for id in self.scheduler.take_changed() {
      if let Some(json) = self
        .scheduler
        .get(&id)
        .and_then(|s| serde_json::to_string(s).ok())
      {
        if let Err(e) = self.store.save_schedule(&id, &json) {
          self.store_failed(e);
        }
      }
    }
  }

  /// Records a storage error of a transition whose caller cannot be told
  /// (a chore, an outcome, a claim); the first one is kept, and
  /// [`Queue::store_failure`] reports it (`add` refuses with it, `start`
  /// too).
  fn store_failed(&mut self, e: Error) {
    if self.store_error.is_none() {
      self.store_error = Some(match e {
        Error::Storage(m) => m,
        other => other.to_string(),
      });
    }
  }

  /// The store's first failure (a write that failed), or the first error
  /// of a transition no caller waited for.
  pub fn store_failure(&self) -> Option<String> {
    self.store.failure().or_else(|| self.store_error.clone())
  }

  /// True while started (jobs are being handed out).
  pub fn is_started(&self) -> bool {
    self.state == RunState::Started
  }

  /// Replaces a closed store by a freshly opened one (a durable store
  /// reopened after `stop()`); names keep their indices.
  pub fn reopen_store(
    &mut self,
    open: impl FnOnce(&mut Names) -> Result<Box<dyn Store>>,
  ) -> Result<()> {
    if !self.store.is_closed() {
      return Ok(());
    }
    self.open_store(open)
  }

  /// Replaces the store by the one `open` returns (a durable store opened
  /// for the first time: until then the queue holds no job and no schedule);
  /// names keep their indices, registered calculations stay registered, the
  /// schedules are the new store's.
  pub fn open_store(
    &mut self,
    open: impl FnOnce(&mut Names) -> Result<Box<dyn Store>>,
  ) -> Result<()> {
    let mut store = open(self.registry.names_mut())?;
    self.registry.grow();
    store.set_weights(self.cfg.priority_weights);
    if let Some(max) = store.max_id() {
      self.ids.seed(max);
    }
    for i in self.registry.registered() {
      store.registered(i);
    }
    // Schedules made while the queue waited for its store (PostgreSQL
    // connects in `start()`) join the stored ones, as an upsert would.
    let early: Vec<Schedule> = match self.awaited_kind {
      Some(_) => self.scheduler.iter().cloned().collect(),
      None => Vec::new(),
    };
    self.awaited_kind = None;
    self.scheduler = Scheduler::new();
    self.scheduler.restore(load_schedules(&*store));
    self.store = store;
    // Events held for the old store's marks: the new one counts anew.
    self.held.clear();
    self.apply_schedule_news();
    for s in early {
      // Validated when it was made.
      let _ = self.scheduler.upsert(s.to_spec(), s.updated_at);
    }
    Ok(())
  }

  /// Where the service is in its life.
  pub fn run_state(&self) -> RunState {
    self.state
  }

  /// Registers (or updates) a calculation by name with its job defaults
  /// (JSON options or `null`); returns its index. Jobs of that name waiting
  /// for their handler become runnable.
  pub fn register(&mut self, name: &str, defaults: &Value) -> Result<u32> {
    let (i, was_known) = self
      .registry
      .register(name, defaults, self.cfg.default_backoff)?;
    if !was_known {
      self.store.registered(i);
    }
    Ok(i)
  }

  /// Makes `take` write the data and context of calculation `i`'s jobs as
  /// JSON strings (`raw`) or as JSON values; false for an unregistered `i`.
  pub fn set_raw(&mut self, i: u32, raw: bool) -> bool {
    self.registry.set_raw(i, raw)
  }

  /// The name of calculation `i`.
  pub fn calc_name(&self, i: u32) -> Option<&str> {
    self.registry.name(i)
  }

  /// Starts running jobs.
  pub fn start(&mut self, now: u64) {
    if self.state != RunState::Started {
      self.state = RunState::Started;
      self.stats = Stats::new(now);
      self.prune_clock = PruneClock::after(now, self.cfg.cleanup_interval_ms);
      self.want_wake(self.prune_clock.next);
      if self.monitor.is_some() {
        self.sampling.next_sample = now;
        self.sampling.next_evaluate = now.saturating_add(self.sampling.evaluate_ms);
        self.want_wake(now);
      }
    }
  }

  /// Stops taking new jobs; running ones go on.
  pub fn begin_stop(&mut self) {
    if matches!(self.state, RunState::Started | RunState::Idle) {
      self.state = RunState::Stopping;
    }
  }

  /// Ends the stop: attempts still running are aborted and their jobs go back
  /// to pending (the aborted attempt does not count). Returns how many.
  pub fn finish_stop(&mut self, now: u64) -> usize {
    let mut n = 0;
    for slot in 0..self.slots.len() as u32 {
      if let Some(r) = self.slots[slot as usize] {
        self.abort(slot, r.seq, Abort::Stop);
        let err = JobError::system(
          "InterruptedError",
          JobErrorCode::ServiceStopped,
          "the service stopped while the job ran".into(),
          0,
        );
        // Fenced only if the store moved the job on meanwhile: nothing to undo.
        if let Err(e) = self
          .store
          .fail(r.lease, r.id, err, FailKind::Stop, now, 0.0)
        {
          self.store_failed(e);
        }
        n += 1;
      }
    }
    self.state = RunState::Stopped;
    self.store.close();
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

  fn queued(&self) -> usize {
    let c = self.store.counts();
    c[Status::Pending as usize] + c[Status::Waiting as usize]
  }

  /// True when a job is due and a worker is free.
  pub fn has_work(&mut self, now: u64) -> bool {
    if self.state != RunState::Started || self.free_slots.is_empty() {
      return false;
    }
    let registry = &self.registry;
    self.store.has_due(now, &|n| registry.is_registered(n))
  }

  /// Hands out up to `max` due jobs to free workers, appending them to `out`
  /// as flat JSON array items `slot,seq,"id",calc,attempt,data,context,`.
  /// Returns how many.
  pub fn take(&mut self, max: usize, now: u64, out: &mut String) -> usize {
    if self.state != RunState::Started {
      return 0;
    }
    let max = max.min(self.free_slots.len());
    if max == 0 {
      return 0;
    }
    let Queue {
      store,
      registry,
      slots,
      free_slots,
      seq,
      stats,
      ..
    } = self;
    let mut earliest = u64::MAX;
    let mut handed = 0;
    let claimed = store.claim(
      max,
      now,
      &|n| registry.is_registered(n),
      &mut |job, lease| {
        let Some(slot) = free_slots.pop() else {
          return;
        };
        *seq = seq.wrapping_add(1);
        let deadline = if job.timeout_ms == 0 {
          u64::MAX
        } else {
          now + job.timeout_ms as u64
        };
        earliest = earliest.min(deadline);
        slots[slot as usize] = Some(Running {
          id: job.id,
          seq: *seq,
          deadline,
          started_at: now,
          run_at: job.run_at,
          name: job.name,
          attempt: job.attempts,
          lease,
        });
        stats.started(now, now.saturating_sub(job.run_at));
        wire::write_taken(out, slot, *seq, job, registry.is_raw(job.name));
        handed += 1;
      },
    );
    if let Err(e) = claimed {
      // The jobs handed out before the error run; the rest stay pending.
      self.store_failed(e);
    }
    if earliest != u64::MAX {
      self.want_wake(earliest);
    }
    handed
  }

  fn release(&mut self, slot: u32) {
    self.slots[slot as usize] = None;
    self.free_slots.push(slot);
  }

  /// Ends the attempt in `slot` for JavaScript to abort. The slot stays out
  /// of `free_slots` until [`Queue::drain`] hands the abort over, so no new
  /// attempt takes it before the old one's signal fired.
  fn abort(&mut self, slot: u32, seq: u32, why: Abort) {
    self.slots[slot as usize] = None;
    self.aborts.push((slot, seq, why));
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

  /// Applies outcomes: a flat JSON array `[slot, seq, kind, value, ...]`
  /// whose `kind` is an [`OutcomeKind`] (see [`wire::parse_outcomes`]).
  /// An outcome for an attempt that already ended (timed out, cancelled) is
  /// counted and ignored.
  ///
  /// With `caller_emits_completed` the caller (JavaScript, which still holds
  /// each job's id, name, attempt and result) emits the `completed` events
  /// itself when every outcome is current; then none are recorded here and
  /// the second value returned is true. Otherwise they are recorded as usual.
  pub fn settle(&mut self, json: &str, now: u64) -> Result<usize> {
    self.settle_with(json, now, false).map(|(n, _)| n)
  }

  /// [`Queue::settle`], the caller emitting `completed` events when it can.
  pub fn settle_with(
    &mut self,
    json: &str,
    now: u64,
    caller_emits_completed: bool,
  ) -> Result<(usize, bool)> {
    let outcomes = wire::parse_outcomes(json)?;
    let n = outcomes.len();
    // A store that commits late: `completed` waits for the commit (held).
    let caller_emits = caller_emits_completed
      && self.events_on
      && !self.store.commits_late()
      && self.all_current(&outcomes);
    for WireOutcome {
      slot,
      seq,
      kind,
      value,
    } in outcomes
    {
      let Some(r) = self.running(slot, seq) else {
        self.late_outcomes += 1;
        continue;
      };
      self.release(slot);
      self.stats.finished(now, now.saturating_sub(r.started_at));
      if kind == OutcomeKind::Ok {
        self.record_running(&r, Outcome::Completed, now);
        match self.store.complete(r.lease, r.id, value.get(), now) {
          Ok(Settled::Applied(())) if !caller_emits => {
            self.event_of("completed", r.id, r.name, r.attempt, value.get())
          }
          Ok(Settled::Applied(())) => {}
          Ok(Settled::Fenced) => self.late_outcomes += 1,
          Err(e) => self.store_failed(e),
        }
      } else {
        let err: JobError = serde_json::from_str(value.get()).unwrap_or_else(|_| JobError {
          name: "Error".into(),
          message: value.get().into(),
          ..JobError::default()
        });
        self.fail_attempt(
          &r,
          err,
          FailKind::Error {
            unrecoverable: kind == OutcomeKind::Unrecoverable,
          },
          now,
        );
      }
    }
    Ok((n, caller_emits))
  }

  /// True when every outcome is for a running attempt, each slot once.
  fn all_current(&self, outcomes: &[WireOutcome<'_>]) -> bool {
    if !outcomes
      .iter()
      .all(|o| self.running(o.slot, o.seq).is_some())
    {
      return false;
    }
    let mut slots: Vec<u32> = outcomes.iter().map(|o| o.slot).collect();
    slots.sort_unstable();
    slots.windows(2).all(|w| w[0] != w[1])
  }

  /// A failed or timed-out attempt: the store retries or finishes it; this
  /// records the events and the timer.
  fn fail_attempt(&mut self, r: &Running, err: JobError, kind: FailKind, now: u64) {
    let id = r.id;
    let err_json = if self.events_on {
      let mut e = err.clone();
      e.attempt = self.job(id).map(|j| j.attempts).unwrap_or(0);
      serde_json::to_string(&e).unwrap_or_default()
    } else {
      String::new()
    };
    match kind {
      FailKind::Error { .. } => self.record(id, Outcome::Failed, now, Some(&err.message)),
      FailKind::Timeout => self.record(id, Outcome::TimedOut, now, Some(&err.message)),
      FailKind::Interrupt | FailKind::Stop => {}
    }
    let f = match self
      .store
      .fail(r.lease, id, err, kind, now, fastrand::f64())
    {
      Ok(Settled::Applied(f)) => f,
      Ok(Settled::Fenced) => {
        self.late_outcomes += 1;
        return;
      }
      Err(e) => {
        self.store_failed(e);
        return;
      }
    };
    let timed_out = kind == FailKind::Timeout;
    if timed_out {
      self.event("timedOut", id, &err_json);
    }
    match f.retry_delay {
      Some(delay) => {
        self.want_wake(now + delay);
        if self.events_on {
          self.event(
            "retrying",
            id,
            &format!("{{\"delayMs\":{delay},\"error\":{err_json}}}"),
          );
        }
      }
      None if !timed_out => self.event("failed", id, &err_json),
      None => {}
    }
  }

  fn event(&mut self, kind: &str, id: JobId, extra: &str) {
    if !self.events_on {
      return;
    }
    let Some(job) = self.job(id) else {
      return;
    };
    let (name, attempt) = (job.name, job.attempts);
    self.event_of(kind, id, name, attempt, extra);
  }

  /// Records event `kind` of job `id` (calculation `name`, attempt `attempt`).
  fn event_of(&mut self, kind: &str, id: JobId, name: u32, attempt: u32, extra: &str) {
    if !self.events_on {
      return;
    }
    let name = self.registry.name_json(name);
    if held::reports_outcome(kind) && self.store.commits_late() {
      self.held.hold(kind, id, name, attempt, extra);
      return;
    }
    self.events.job(kind, id, name, attempt, extra);
  }

  /// The mark the newest held event waits for, with a receiver of the
  /// store's progress (the engine's watcher wakes JavaScript when it is
  /// reached); `None` when no event is held.
  pub fn held_watch(
    &mut self,
  ) -> Option<(u64, tokio::sync::watch::Receiver<crate::storage::Commit>)> {
    let mark = self.held.last_mark()?;
    let (_, rx) = self.store.flush_mark()?;
    Some((mark, rx))
  }

  /// True while events wait for their outcome's commit.
  pub fn has_held(&self) -> bool {
    self.held.is_waiting()
  }

  /// Turns event recording on or off (off: nobody listens, nothing is built).
  pub fn set_events(&mut self, on: bool) {
    self.events_on = on;
    if !on {
      self.events.clear();
      self.held.clear();
    }
  }

  /// True when aborts or events wait for [`Queue::drain`].
  pub fn has_news(&self) -> bool {
    !self.aborts.is_empty() || !self.events.is_empty()
  }

  /// Takes the pending aborts and events as JSON (see [`wire::write_drain`]);
  /// the aborted attempts' workers are free from here on.
  pub fn drain(&mut self) -> String {
    // JavaScript aborts those attempts now: their workers are free again.
    self.free_slots.extend(self.aborts.iter().map(|a| a.0));
    wire::write_drain(self.aborts.drain(..), &mut self.events)
  }

  /// Advances time: runs the periodic chores (`chores/`: fire schedules,
  /// sample the monitor, promote due jobs, time out attempts, prune).
  pub fn tick(&mut self, now: u64) {
    chores::run_all(self, now);
  }

  /// The earliest time a chore has work (a delayed job, a deadline, a
  /// schedule's fire, a sample, the cleanup), and records it as the timer's
  /// plan.
  pub fn plan_wake(&mut self) -> u64 {
    let at = chores::next_wake(self);
    self.planned_wake = at;
    self.timer_dirty = false;
    at
  }

  /// Removes finished jobs that finished at or before `before`. Returns how many.
  pub fn prune(&mut self, before: u64) -> Result<usize> {
    self.store.prune(before)
  }

  /// Cancels a waiting, pending or running job (running: its signal fires
  /// and a late outcome is ignored). False for unknown or finished jobs;
  /// `Err` (`ERR_STORAGE`) when the store could not do it.
  pub fn cancel(&mut self, id: JobId, now: u64) -> Result<bool> {
    let before = self.job(id);
    if before.as_ref().is_some_and(|j| j.status == Status::Running) {
      self.record(id, Outcome::Cancelled, now, None);
    }
    let Some(was) = self.store.cancel(id, now)? else {
      return Ok(false);
    };
    if was == Status::Running {
      let found = self
        .slots
        .iter()
        .position(|s| matches!(s, Some(r) if r.id == id));
      if let Some(slot) = found {
        let seq = self.slots[slot].map(|r| r.seq).unwrap_or(0);
        self.abort(slot as u32, seq, Abort::Cancel);
        let started = before.map_or(now, |j| j.started_at);
        self.stats.finished(now, now.saturating_sub(started));
      }
    }
    self.event("cancelled", id, "null");
    Ok(true)
  }

  /// A job the storage cancelled elsewhere (PostgreSQL: another call's
  /// transaction, or another process) while it may run here: aborts its
  /// slot (`job.signal` with `ERR_JOB_CANCELLED`). True when it ran here.
  pub fn abort_cancelled(&mut self, id: JobId, now: u64) -> bool {
    let Some(slot) = self
      .slots
      .iter()
      .position(|s| matches!(s, Some(r) if r.id == id))
    else {
      return false;
    };
    let Some(r) = self.slots[slot] else {
      return false;
    };
    self.record_running(&r, Outcome::Cancelled, now);
    self.abort(slot as u32, r.seq, Abort::Cancel);
    self.stats.finished(now, now.saturating_sub(r.started_at));
    self.event_of("cancelled", id, r.name, r.attempt, "null");
    true
  }

  /// Puts a failed, timed-out or cancelled job back in line with its
  /// attempts reset. False for unknown jobs or other states.
  pub fn retry(&mut self, id: JobId, now: u64) -> Result<bool> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    match self.store.get(id)? {
      Some(j)
        if matches!(
          j.status,
          Status::Failed | Status::Timeout | Status::Cancelled
        ) =>
      {
        // A unique key held by another unfinished job: retrying would make
        // two holders (two runs of what the key says runs once).
        if let Some(key) = j.key() {
          if self.store.keyed(key).is_some_and(|holder| holder != id) {
            return Ok(false);
          }
        }
      }
      _ => return Ok(false),
    }
    self.check_room(1)?;
    self.store.retry(id, now)
  }

  /// `ERR_QUEUE_FULL` unless `adding` more jobs fit under `maxQueueSize`
  /// (`retryJob`; on PostgreSQL the binding asks before its transaction).
  pub fn check_room(&self, adding: usize) -> Result<()> {
    let queued = self.queued();
    if queued.saturating_add(adding) > self.cfg.max_queue_size {
      return Err(Error::QueueFull {
        max: self.cfg.max_queue_size,
        queued,
        adding,
      });
    }
    Ok(())
  }

  /// A job the storage cancelled before it ran (PostgreSQL: `cancelJob`'s
  /// transaction): records its `cancelled` event here, as
  /// [`Queue::cancel`] does on the other storages.
  pub fn cancelled_unstarted(&mut self, id: JobId, name: &str, attempt: u32) {
    if !self.events_on {
      return;
    }
    let json = match self.registry.names().find(name) {
      Some(i) => self.registry.name_json(i).to_string(),
      None => serde_json::to_string(name).unwrap_or_else(|_| "null".into()),
    };
    self.events.job("cancelled", id, &json, attempt, "null");
  }

  /// Jobs the storage failed in a write that committed (PostgreSQL: the
  /// dependants a failure or cancel failed in SQL, a `dependsOn` naming no
  /// job): records their `failed` events here, as the other storages do
  /// for the dependants they fail. Not held: already committed.
  pub fn failed_in_store(&mut self, failed: &[crate::storage::StoreFailed]) {
    if !self.events_on {
      return;
    }
    for f in failed {
      let json = match self.registry.names().find(&f.name) {
        Some(i) => self.registry.name_json(i).to_string(),
        None => serde_json::to_string(&f.name).unwrap_or_else(|_| "null".into()),
      };
      self.events.job("failed", f.id, &json, f.attempt, &f.error);
    }
  }

  /// Records progress (JSON) of the attempt in `slot`/`seq`; false when that
  /// attempt has ended.
  pub fn progress(&mut self, slot: u32, seq: u32, json: &str) -> bool {
    match self.running(slot, seq) {
      Some(r) => match self.store.progress(r.id, json) {
        Ok(done) => done,
        Err(e) => {
          self.store_failed(e);
          false
        }
      },
      None => false,
    }
  }

  /// A copy of the job with this id (`None` too when reading it failed:
  /// see [`Queue::status_json`] for the error).
  pub fn get(&mut self, id: JobId) -> Option<Job> {
    self.job(id)
  }

  /// The job for the queue's own bookkeeping (events, the monitor): a read
  /// error counts as no job (the store reports its failure itself).
  fn job(&mut self, id: JobId) -> Option<Job> {
    self.store.get(id).ok().flatten()
  }

  /// The job's status as JSON (`CalculationStatus`), or `None`; `Err` when
  /// it cannot be read (`ERR_STORAGE`).
  pub fn status_json(&mut self, id: JobId) -> Result<Option<String>> {
    let Some(job) = self.store.get(id)? else {
      return Ok(None);
    };
    let mut s = String::new();
    listing::write_job_json(&self.registry, &job, true, &mut s);
    Ok(Some(s))
  }

  /// Jobs per status.
  pub fn count(&self, s: Status) -> usize {
    self.store.counts()[s as usize]
  }

  /// Attempts running now (an aborted one whose abort JavaScript has not
  /// drained yet holds its worker but is not counted).
  pub fn running_count(&self) -> usize {
    self
      .slots
      .len()
      .saturating_sub(self.free_slots.len() + self.aborts.len())
  }

  /// Jobs that still need the service: waiting, pending or running. On a
  /// store whose counts are the cluster's (PostgreSQL), the work this
  /// process knows of instead ([`Store::local_work`]: its jobs not yet
  /// committed or still queued, claimed ones, outcomes not committed) and
  /// one while events wait for their commit: a snapshot of the cluster
  /// would keep the process alive for other processes' jobs, and miss its
  /// own for up to a second.
  pub fn active(&self) -> usize {
    let queued = match self.store.local_work() {
      Some(n) => n + self.held.is_waiting() as usize,
      None => self.queued(),
    };
    queued + self.running_count()
  }

  /// What keeps a started service's process alive: its active jobs, plus
  /// one while an enabled schedule has a next run (schedules on).
  pub fn keeps_alive(&self) -> usize {
    let active = self.active();
    // The schedules are looked at only when no job needs the service.
    let scheduled = active == 0
      && self.state == RunState::Started
      && self.schedules_on
      && self.scheduler.next_wake().is_some();
    active + scheduled as usize
  }

  /// Outcomes that arrived after their attempt had ended.
  pub fn late_outcomes(&self) -> u64 {
    self.late_outcomes
  }

  /// `QueueStatistics` as JSON.
  pub fn stats_json(&self, now: u64) -> String {
    let v = self.stats.view(now);
    let running = self.running_count();
    let counts = self.store.counts();
    let mut s = String::with_capacity(512);
    s.push('{');
    for st in Status::ALL {
      let _ = write!(s, "\"{}\":{},", st.as_str(), counts[st as usize]);
    }
    let total: usize = counts.iter().sum();
    let _ = write!(
      s,
      "\"total\":{total},\"queued\":{},\"unregistered\":{},\"throughput\":{:.3},\"averageWaitTime\":{:.3},\"averageRunTime\":{:.3},\"activeWorkers\":{running},\"workerUtilization\":{:.4},\"maxWorkers\":{},\"maxQueueSize\":{},\"lateOutcomes\":{},\"storage\":\"{}\"}}",
      self.queued(),
      self.store.unregistered(),
      v.throughput,
      v.avg_wait_ms,
      v.avg_run_ms,
      running as f64 / self.cfg.max_workers as f64,
      self.cfg.max_workers,
      self.cfg.max_queue_size,
      self.late_outcomes,
      self.awaited_kind.unwrap_or_else(|| self.store.kind()),
    );
    // Which figures are whose: the counts are the storage's (the cluster's
    // on PostgreSQL, from a snapshot read at `asOf`); throughput, times,
    // workers and lateOutcomes are this process's.
    s.pop();
    match self.store.counts_as_of() {
      Some(t) => {
        let _ = write!(
          s,
          ",\"scope\":{{\"counts\":\"cluster\",\"countsAsOf\":{t},\"figures\":\"process\"}}}}"
        );
      }
      None => s.push_str(
        ",\"scope\":{\"counts\":\"process\",\"countsAsOf\":null,\"figures\":\"process\"}}",
      ),
    }
    s
  }

  /// Adds or updates (same id) a schedule for calculation `calc` (JSON as
  /// [`parse_schedule`] reads it). Returns the schedule's public JSON.
  pub fn schedule(&mut self, calc: u32, v: &Value, now: u64) -> Result<String> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    let name = match self.registry.get(calc) {
      Some(_) => self.registry.name(calc).unwrap_or(""),
      _ => return Err(Error::arg(format!("unknown calculation index {calc}"))),
    };
    let mut fallback = String::from("sched-");
    self.ids.next(now).write_to(&mut fallback);
    let spec = parse_schedule(v, name, fallback, self.cfg.default_backoff)?;
    // dependsOn: checked now (unknown ids are refused before anything is
    // written); each job the schedule adds waits for them.
    let o = chores::fire::stored_options(&spec.job_options, self.cfg.default_backoff)?;
    self.dependencies(&o, 0, 1)?;
    let size = spec.data.len() + spec.context.len();
    if size > self.cfg.max_payload_bytes {
      return Err(Error::PayloadTooLarge {
        size,
        max: self.cfg.max_payload_bytes,
        job: None,
      });
    }
    let (s, _) = self.scheduler.upsert(spec, now)?;
    let json = s.to_public_json(None);
    if let Some(t) = self.scheduler.next_wake() {
      self.want_wake(t);
    }
    Ok(json)
  }

  /// Removes a schedule (its jobs already added stay). False for unknown ids.
  pub fn unschedule(&mut self, id: &str) -> bool {
    let gone = self.scheduler.remove(id).is_some();
    if gone {
      if let Err(e) = self.store.delete_schedule(id) {
        self.store_failed(e);
      }
    }
    gone
  }

  /// Enables or disables a schedule; re-enabling computes the next run from
  /// now. False for unknown ids.
  pub fn set_schedule_enabled(&mut self, id: &str, enabled: bool, now: u64) -> bool {
    let found = self.scheduler.set_enabled(id, enabled, now).is_some();
    if let Some(t) = self.scheduler.next_wake() {
      self.want_wake(t);
    }
    found
  }

  /// The schedules matching `filter` (`{ kind, name, enabled }`) as a JSON array.
  pub fn schedules_json(&mut self, filter: &Value) -> Result<String> {
    let mk = Error::InvalidArgument;
    let mut f = ScheduleFilter::default();
    if let Some(m) = options::object(Some(filter), "filter", mk)? {
      options::known_keys(m, "filter", &["kind", "name", "enabled"], mk)?;
      if let Some(k) = m.get("kind").filter(|v| !v.is_null()) {
        f.kind = Some(match k.as_str() {
          Some("once") => ScheduleKind::Once,
          Some("interval") => ScheduleKind::Interval,
          Some("cron") => ScheduleKind::Cron,
          _ => {
            return Err(mk(format!(
              "filter.kind must be 'once', 'interval' or 'cron', got {k}"
            )))
          }
        });
      }
      if let Some(n) = m.get("name").filter(|v| !v.is_null()) {
        f.calc = Some(
          n.as_str()
            .ok_or_else(|| mk(format!("filter.name must be a string, got {n}")))?
            .to_string(),
        );
      }
      if let Some(e) = m.get("enabled").filter(|v| !v.is_null()) {
        f.enabled = Some(
          e.as_bool()
            .ok_or_else(|| mk(format!("filter.enabled must be true or false, got {e}")))?,
        );
      }
    }
    self.apply_schedule_news();
    // A shared store answers from its last read of the cluster (no I/O).
    let shared = self.store.shares_schedules();
    let mut out = String::from("[");
    for (i, s) in self.scheduler.list(&f).into_iter().enumerate() {
      if i > 0 {
        out.push(',');
      }
      let status = s
        .last_job_id
        .as_deref()
        .and_then(JobId::parse)
        .and_then(|id| match shared {
          true => self.store.schedule_job_status(id),
          false => self.store.get(id).ok().flatten().map(|j| j.status),
        })
        .map(|st| st.as_str());
      out.push_str(&s.to_public_json(status));
    }
    out.push(']');
    Ok(out)
  }

  /// Checks the queue's and the store's invariants (used by tests).
  pub fn check_invariants(&mut self) -> std::result::Result<(), String> {
    self.store.check_invariants()?;
    let counts = self.store.counts();
    let running: Vec<JobId> = self.slots.iter().flatten().map(|r| r.id).collect();
    if running.len() != counts[Status::Running as usize] {
      return Err(format!(
        "{} slots used, {} jobs running",
        running.len(),
        counts[Status::Running as usize]
      ));
    }
    for id in &running {
      match self.store.get(*id) {
        Ok(Some(j)) if j.status == Status::Running => {}
        _ => return Err("a slot holds a job that is not running".into()),
      }
    }
    if self.free_slots.len() + running.len() + self.aborts.len() != self.cfg.max_workers as usize {
      return Err("slot accounting is off".into());
    }
    Ok(())
  }
}

#[cfg(test)]
pub(crate) mod tests;
