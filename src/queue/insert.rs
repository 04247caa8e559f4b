//! The one insert path: [`Queue::add`] and schedule fires
//! ([`super::chores::fire`]) both add jobs through [`Queue::insert`], so the
//! same rules hold for both:
//!
//! - nothing is added while stopping or stopped, or once the store failed;
//! - `maxQueueSize` counts waiting and pending jobs; a batch that would pass
//!   it adds nothing (`ERR_QUEUE_FULL`);
//! - data plus context may not exceed `maxPayloadBytes`;
//! - options resolve as job options over the calculation's defaults over
//!   the queue's defaults;
//! - all or nothing: a bad job refuses the whole batch before anything is
//!   written.
//!
//! What differs is the [`Origin`]: an added job names a registered
//! calculation, is due at `runAt`/`delay` (else now), and every `dependsOn`
//! id must name a job the store holds; a fired job may name a calculation
//! with no handler yet (it waits for one), is due at its fire time, records
//! its schedule's id, and a dependency pruned since the schedule was made
//! counts as done.
//!
//! Unique jobs (`options.key`): while a job holding the key is waiting,
//! pending or running ([`Store::keyed`]), an add with that key adds nothing
//! and returns that job's id. What it does besides ([`OnDuplicate`]):
//!
//! - `skip` (the default): nothing;
//! - `replace` (the default with `debounceMs`): a job that has not started
//!   takes the new data and context (its other options stay); a running
//!   job cannot, so the new job is added behind it and holds the key from
//!   then on (a second add replaces into that one). Nothing added after a
//!   running job read its data is lost; `concurrencyKey` keeps the two from
//!   running at once;
//! - `debounceMs`: the job is due `debounceMs` after the last add with its
//!   key: each duplicate moves the unstarted job's due time to
//!   now + `debounceMs` (with `skip` too, keeping the first data).
//!
//! Duplicates within one batch behave as if added one after the other. A
//! duplicate adds no job, so it does not count against `maxQueueSize`.
//!
//! [`Store::keyed`]: crate::storage::Store::keyed

use std::collections::HashMap;

use super::options::OnDuplicate;
use super::{JobOptions, NewJob, Queue, RunState};
use crate::error::{Error, Result};
use crate::job::{Dependencies, Job, JobExtra, JobId, JobKeys, OnDup, Status};
use crate::storage::{FireRecord, Unstarted};

/// Where jobs to insert come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin<'a> {
  /// `addCalculationJob` and friends.
  Add,
  /// Schedule `schedule`'s fire for fire time `at` (epoch ms); `overlap`:
  /// [`FireRecord::overlap`] and [`FireRecord::first`].
  Fire {
    at: u64,
    schedule: &'a str,
    overlap: (bool, bool),
  },
}

/// What one job of a batch comes to.
enum Plan<'b> {
  /// A new job.
  New(Job),
  /// A job holding its key already: nothing changes.
  Existing(JobId),
  /// A job holding its key already, not started: it changes.
  Update(JobId, Unstarted<'b>),
}

impl Queue {
  /// Adds jobs, all or none. Returns their ids in order.
  pub fn add(&mut self, batch: &[NewJob<'_>], now: u64) -> Result<Vec<JobId>> {
    self.insert(batch, Origin::Add, now)
  }

  /// Inserts jobs from `origin`, all or none (see the module docs). Returns
  /// their ids in order (a duplicate's: the job holding its key).
  pub(super) fn insert(
    &mut self,
    batch: &[NewJob<'_>],
    origin: Origin<'_>,
    now: u64,
  ) -> Result<Vec<JobId>> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    if let Some(e) = self.store_failure() {
      return Err(Error::Storage(e));
    }
    // The placeholder until PostgreSQL connects (in `start()`) would lose
    // what it holds when the real store replaces it: refused, never lost.
    if let Some(kind) = self.awaited_kind {
      return Err(Error::Storage(format!(
        "{kind} storage is not open yet (it connects in start(); await it first): nothing was added"
      )));
    }
    let keyed = batch.iter().any(|nj| nj.options.key.is_some());
    let queued = self.queued();
    // Without keys every job is new: the cheap check first.
    if !keyed && queued + batch.len() > self.cfg.max_queue_size {
      return Err(Error::QueueFull {
        max: self.cfg.max_queue_size,
        queued,
        adding: batch.len(),
      });
    }
    let base = self.cfg.job_defaults();
    let unregistered = JobOptions::default();
    let mut resolved = Vec::with_capacity(batch.len());
    for (i, nj) in batch.iter().enumerate() {
      let defaults = match (self.registry.get(nj.calc), origin) {
        (Some(calc), _) => &calc.defaults,
        (None, Origin::Fire { .. }) => &unregistered,
        (None, Origin::Add) => {
          return Err(Error::arg(format!(
            "job {i}: unknown calculation index {}",
            nj.calc
          )))
        }
      };
      let size = nj.data.len() + nj.context.len();
      if size > self.cfg.max_payload_bytes {
        return Err(Error::PayloadTooLarge {
          size,
          max: self.cfg.max_payload_bytes,
          job: (batch.len() > 1).then_some(i),
        });
      }
      let o = nj.options.over(&defaults.over(&base));
      let deps = match origin {
        Origin::Add => self.dependencies(&o, i, batch.len())?,
        Origin::Fire { .. } => fired_dependencies(&o),
      };
      resolved.push((o, deps));
    }
    let schedule = match origin {
      Origin::Add => None,
      Origin::Fire { schedule, .. } => Some(schedule),
    };
    // The plan: nothing changes until every job is known to fit.
    let mut plans: Vec<Plan<'_>> = Vec::with_capacity(batch.len());
    // Keys held by new jobs of this batch -> their place in `plans`.
    let mut in_batch: HashMap<&str, usize> = HashMap::new();
    let mut adding = 0;
    for (nj, (o, deps)) in batch.iter().zip(&resolved) {
      let run_at = match (origin, o.debounce_ms) {
        (Origin::Add, Some(d)) => now.saturating_add(d),
        (Origin::Add, None) => o
          .run_at
          .unwrap_or(now)
          .max(now.saturating_add(o.delay_ms.unwrap_or(0))),
        // A late fire keeps its fire time: it goes before jobs added since.
        (Origin::Fire { at, .. }, _) => at.min(now),
      };
      if let Some(key) = o.key.as_deref() {
        let replace = o.on_duplicate() == OnDuplicate::Replace;
        let change = Unstarted {
          data: replace.then_some(nj.data),
          context: replace.then_some(nj.context),
          run_at: o.debounce_ms.map(|_| run_at),
        };
        if let Some(&at) = in_batch.get(key) {
          if let Plan::New(job) = &mut plans[at] {
            job.change(change.data, change.context, change.run_at);
            let id = job.id;
            plans.push(Plan::Existing(id));
            continue;
          }
        }
        if let Some(id) = self.store.keyed(key) {
          let status = self.store.get(id)?.map(|j| j.status);
          let started = status == Some(Status::Running);
          if !started || !replace {
            let nothing = change == Unstarted::default();
            plans.push(if started || nothing {
              Plan::Existing(id)
            } else {
              Plan::Update(id, change)
            });
            continue;
          }
          // Replacing a running job: a new one goes behind it.
        }
        in_batch.insert(key, plans.len());
      }
      let id = self.ids.next(now);
      let mut job = Job {
        extra: JobExtra::of(deps.clone(), nj.context),
        ..o.pending_job(id, nj.calc, now, run_at, nj.data.into())
      };
      job.set_keys(JobKeys::of(
        o.key.as_deref(),
        o.concurrency_key.as_deref(),
        schedule,
      ));
      if o.key.is_some() {
        // For a store that finds the holder only when it writes.
        job
          .extra_mut()
          .keys
          .get_or_insert_with(Default::default)
          .on_dup = OnDup {
          replace: o.on_duplicate() == OnDuplicate::Replace,
          debounce: o.debounce_ms.is_some(),
        };
      }
      plans.push(Plan::New(job));
      adding += 1;
    }
    if keyed && queued + adding > self.cfg.max_queue_size {
      return Err(Error::QueueFull {
        max: self.cfg.max_queue_size,
        queued,
        adding,
      });
    }
    let mut ids = Vec::with_capacity(batch.len());
    let mut jobs = Vec::with_capacity(adding);
    let mut earliest = u64::MAX;
    for plan in plans {
      match plan {
        Plan::New(job) => {
          if job.run_at > now {
            earliest = earliest.min(job.run_at);
          }
          ids.push(job.id);
          jobs.push(job);
        }
        Plan::Existing(id) => ids.push(id),
        Plan::Update(id, change) => {
          if self.store.update_unstarted(id, &change, now)? {
            if let Some(t) = change.run_at.filter(|&t| t > now) {
              earliest = earliest.min(t);
            }
          }
          ids.push(id);
        }
      }
    }
    match origin {
      // A fire's one job goes to the store as a fire: once per cluster on a
      // store that shares its schedules.
      Origin::Fire {
        at,
        schedule,
        overlap,
      } if jobs.len() == 1 => {
        let fire = FireRecord {
          schedule: schedule.to_string(),
          at,
          overlap: overlap.0,
          first: overlap.1,
        };
        if let Some(job) = jobs.pop() {
          self.store.record_fire(&fire, job, self.registry.names())?;
        }
      }
      _ if !jobs.is_empty() => self.store.insert(jobs, self.registry.names())?,
      _ => {}
    }
    if earliest != u64::MAX {
      self.want_wake(earliest);
    }
    Ok(ids)
  }

  /// Checks `dependsOn`: every id must name a job this store holds (on a
  /// store that checks them in its insert, only that each is a job id).
  pub(super) fn dependencies(
    &mut self,
    o: &JobOptions,
    i: usize,
    n: usize,
  ) -> Result<Option<Dependencies>> {
    if o.depends_on.is_empty() {
      return Ok(None);
    }
    let at = if n > 1 {
      format!("jobs[{i}].")
    } else {
      String::new()
    };
    let mut ids: Vec<JobId> = Vec::with_capacity(o.depends_on.len());
    for s in &o.depends_on {
      let id = JobId::parse(s).ok_or_else(|| {
        Error::DependencyNotFound(format!("{at}options.dependsOn: '{s}' is not a job id"))
      })?;
      // A store that checks them in its insert (PostgreSQL) is not asked:
      // that would be a read on the JavaScript thread.
      if !self.store.checks_dependencies_late() && self.store.dependency(id)?.is_none() {
        return Err(Error::DependencyNotFound(format!(
          "{at}options.dependsOn: no job '{s}' (it never existed or was pruned)"
        )));
      }
      if !ids.contains(&id) {
        ids.push(id);
      }
    }
    Ok(Some(Dependencies {
      ids,
      ignore_failure: o.ignore_dependency_failure,
    }))
  }
}

/// A fired job's dependencies: checked when the schedule was made; one
/// pruned since counts as done.
fn fired_dependencies(o: &JobOptions) -> Option<Dependencies> {
  (!o.depends_on.is_empty()).then(|| Dependencies {
    ids: o
      .depends_on
      .iter()
      .filter_map(|s| JobId::parse(s))
      .collect(),
    ignore_failure: o.ignore_dependency_failure,
  })
}
