//! Fires schedules: the jobs of the schedules due now are added through the
//! same insert path as `add` ([`Queue::insert`]), so the same rules hold
//! (`maxQueueSize`, the payload limit, a failed store, the calculation's
//! defaults). A fire that cannot add its job (the queue is full, or its
//! stored job options cannot be read) adds nothing and is counted in the
//! schedule's `skippedFires`; a full queue also raises the "Schedule fire
//! skipped" alert. Each job remembers its schedule (`scheduleId`). A fire
//! whose job options carry a `key` held by an unfinished job adds nothing
//! (or updates that job, with `onDuplicate: 'replace'`), as an add would;
//! the schedule records that job as its last.

use std::collections::HashSet;

use serde_json::Value;

use super::Chore;
use crate::error::{Error, Result};
use crate::job::{Backoff, JobId, Status};
use crate::queue::{JobOptions, NewJob, Origin, Queue, RunState};
use crate::scheduler::{Fire, Overlap};

/// Adds the jobs of the schedules due at `now`.
pub(in crate::queue) struct FireSchedules;

impl Chore for FireSchedules {
  fn run(q: &mut Queue, now: u64) {
    q.apply_schedule_news();
    if q.state != RunState::Started || !q.schedules_on {
      return;
    }
    if q.scheduler.next_wake().is_none_or(|t| t > now) {
      return;
    }
    // A shared store applies the overlap rule itself, with the cluster's
    // jobs (`FireRecord::overlap`).
    let shared = q.store.shares_schedules();
    // Schedules whose last job still needs the service (overlap: skip).
    let busy: HashSet<String> = q
      .scheduler
      .iter()
      .filter(|_| !shared)
      .filter(|s| {
        s.last_job_id
          .as_deref()
          .and_then(JobId::parse)
          .and_then(|id| q.store.get(id).ok().flatten())
          .is_some_and(|j| {
            matches!(
              j.status,
              Status::Waiting | Status::Pending | Status::Running
            )
          })
      })
      .map(|s| s.id.clone())
      .collect();
    let fires = q.scheduler.due(now, &|id| busy.contains(id));
    let mut seen = HashSet::new();
    for f in fires {
      let first = seen.insert(f.schedule_id.clone());
      let overlap = q
        .scheduler
        .get(&f.schedule_id)
        .is_some_and(|s| s.overlap == Overlap::Skip);
      fire(q, &f, now, (overlap, first));
    }
  }

  fn next_wake(q: &Queue) -> u64 {
    if q.state == RunState::Started && q.schedules_on {
      q.scheduler.next_wake().unwrap_or(u64::MAX)
    } else {
      u64::MAX
    }
  }
}

/// Adds the job of one fire (or hands it to a shared store, which records
/// the job once it decided), or counts the fire as skipped.
/// `overlap`: the schedule's overlap rule is `skip`, and whether this is the
/// first fire of its batch (see [`crate::storage::FireRecord`]).
fn fire(q: &mut Queue, f: &Fire, now: u64, overlap: (bool, bool)) {
  let calc = q.registry.intern(&f.calc);
  let added = stored_options(&f.job_options, q.cfg.default_backoff).and_then(|options| {
    let job = NewJob {
      calc,
      data: &f.data,
      context: &f.context,
      options,
    };
    q.insert(
      &[job],
      Origin::Fire {
        at: f.fire_time,
        schedule: &f.schedule_id,
        overlap,
      },
      now,
    )
  });
  match added {
    Ok(ids) => {
      // A shared store's decision arrives with its news.
      if let Some(id) = ids.first().filter(|_| !q.store.shares_schedules()) {
        q.scheduler.record_job(&f.schedule_id, &id.to_string());
      }
    }
    Err(e) => {
      q.scheduler.record_skip(&f.schedule_id);
      if let Error::QueueFull { max, queued, .. } = e {
        let alert = q
          .monitor
          .as_deref_mut()
          .and_then(|m| m.schedule_skipped(&f.schedule_id, queued, max, now));
        if let Some(alert) = alert {
          q.alert_event(&alert);
        }
      }
    }
  }
}

/// A schedule's stored job options, read as [`Queue::schedule`] accepted
/// them: JSON job options without `runAt` or `delay` (the schedule sets the
/// time). Anything else is a damaged store, never read as "no options".
pub(in crate::queue) fn stored_options(text: &str, backoff: Backoff) -> Result<JobOptions> {
  let v: Value = serde_json::from_str(text)
    .map_err(|e| Error::InvalidSchedule(format!("stored job options are not JSON: {e}")))?;
  let o = JobOptions::parse(&v, "options", backoff)?;
  if o.run_at.is_some() || o.delay_ms.is_some() || o.debounce_ms.is_some() {
    return Err(Error::arg(
      "options.runAt, options.delay and options.debounceMs do not apply to scheduled jobs: the schedule sets their time",
    ));
  }
  Ok(o)
}
