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
//! with no handler yet (it waits for one), is due at its fire time, and a
//! dependency pruned since the schedule was made counts as done.

use super::{JobOptions, NewJob, Queue, RunState};
use crate::error::{Error, Result};
use crate::job::{Dependencies, Job, JobExtra, JobId};

/// Where jobs to insert come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
  /// `addCalculationJob` and friends.
  Add,
  /// A schedule's fire for fire time `at` (epoch ms).
  Fire { at: u64 },
}

impl Queue {
  /// Adds jobs, all or none. Returns their ids in order.
  pub fn add(&mut self, batch: &[NewJob<'_>], now: u64) -> Result<Vec<JobId>> {
    self.insert(batch, Origin::Add, now)
  }

  /// Inserts jobs from `origin`, all or none (see the module docs). Returns
  /// their ids in order.
  pub(super) fn insert(
    &mut self,
    batch: &[NewJob<'_>],
    origin: Origin,
    now: u64,
  ) -> Result<Vec<JobId>> {
    if matches!(self.state, RunState::Stopping | RunState::Stopped) {
      return Err(Error::Stopped);
    }
    if let Some(e) = self.store.failure() {
      return Err(Error::Storage(e));
    }
    let queued = self.queued();
    if queued + batch.len() > self.cfg.max_queue_size {
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
    let mut ids = Vec::with_capacity(batch.len());
    let mut jobs = Vec::with_capacity(batch.len());
    let mut earliest = u64::MAX;
    for (nj, (o, deps)) in batch.iter().zip(resolved) {
      let id = self.ids.next(now);
      let run_at = match origin {
        Origin::Add => o
          .run_at
          .unwrap_or(now)
          .max(now.saturating_add(o.delay_ms.unwrap_or(0))),
        // A late fire keeps its fire time: it goes before jobs added since.
        Origin::Fire { at } => at.min(now),
      };
      if run_at > now {
        earliest = earliest.min(run_at);
      }
      jobs.push(Job {
        extra: JobExtra::of(deps, nj.context),
        ..o.pending_job(id, nj.calc, now, run_at, nj.data.into())
      });
      ids.push(id);
    }
    self.store.insert(jobs, self.registry.names());
    if earliest != u64::MAX {
      self.want_wake(earliest);
    }
    Ok(ids)
  }

  /// Checks `dependsOn`: every id must name a job this store holds.
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
      if self.store.get(id)?.is_none() {
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
