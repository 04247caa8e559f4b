//! The scheduler: schedules that create jobs at their fire times, as a
//! synchronous state machine that takes `now` (epoch ms) as an argument.
//! No I/O, no clock, no N-API: the queue calls [`Scheduler::due`] when
//! [`Scheduler::next_wake`] comes, creates one job per [`Fire`], reports
//! each job with [`Scheduler::record_job`], and stores the schedules that
//! [`Scheduler::take_changed`] names (each [`Schedule`] is one JSON text).
//!
//! # Kinds
//!
//! - **once** (`scheduledAt`): fires once. A time in the past is accepted
//!   and fires at once (its fire time is then the time it was upserted).
//! - **interval** (`intervalMs`, optional `startAt`): fires at
//!   `startAt + k * intervalMs` (k >= 0), computed from the anchor so it never
//!   drifts. Without `startAt` the anchor is `createdAt + intervalMs` (the
//!   first fire is one interval after the schedule was first upserted).
//! - **cron** (a [`CronExpr`] with its zone): fires at
//!   [`CronExpr::next_after`] times, none before `startAt`. The zone is stored
//!   by its resolved IANA name, so a restart in another local zone keeps it.
//!   An expression that never fires again from now (e.g. `0 0 30 2 *`) is
//!   accepted; its `next_run_at` is None.
//!
//! All kinds: `maxRuns` (fires, >= 1) and `endAt` (no fire time after it)
//! end the schedule (`next_run_at` None); a one-time schedule ends after its
//! fire. `runCount` counts fires (jobs asked for), not skipped times.
//!
//! # Computing the next run
//!
//! A new schedule and a changed definition compute the next run from `now`:
//! the first fire time at or after `now - GRACE_MS` (one that passed less
//! than [`GRACE_MS`] ago is on time: `startAt: new Date()` fires at once),
//! and after `lastRunAt`, so the fire times of a schedule are strictly
//! increasing whatever the calls. A one-time schedule gets
//! `max(scheduledAt, now)`: in the past, it fires at once whatever its misfire
//! policy.
//!
//! - [`Scheduler::upsert`] of an existing id keeps `runCount`, `lastRunAt`,
//!   `lastJobId` and `createdAt`. If the timing is unchanged (same kind,
//!   expression and zone / interval / `scheduledAt`, same `startAt`, enabled
//!   before and after) it also keeps the pending `next_run_at` (re-checked
//!   against the new `maxRuns`/`endAt`): upserting the same definitions at
//!   every boot must not discard runs missed while the process was down.
//!   A finished schedule with unchanged timing and bounds stays finished; a
//!   finished one whose `maxRuns`/`endAt` changed is computed from `now`.
//! - [`Scheduler::set_enabled`]`(false)` clears `next_run_at`;
//!   `set_enabled(true)` computes it from `now` (the first fire time at or
//!   after `now`, no grace) and does not replay the disabled period: a
//!   one-time schedule whose time passed while disabled is finished. Setting
//!   the current state again changes nothing.
//!
//! # Due fires ([`Scheduler::due`])
//!
//! For each enabled schedule with `next_run_at <= now`, its due times are
//! the fire times from `next_run_at` to `now` (and not after `endAt`). A
//! due time is **missed** when `now - fire_time > GRACE_MS`; the others are
//! on time. Without missed times every due time fires. With missed times,
//! the misfire policy decides:
//!
//! - [`Misfire::RunOnce`] (default): one fire for all due times, at the
//!   latest missed time (or at the latest due time when that one is on time:
//!   the single fire is then on time and stands for the missed ones too).
//! - [`Misfire::Skip`]: no fire for missed times; on-time ones fire.
//! - [`Misfire::CatchUp`]: one fire per missed time, then the on-time ones,
//!   at most `maxCatchUp` in all (the most recent ones): a hard limit.
//!
//! Then `maxRuns` keeps the oldest fires that fit. Then the overlap policy:
//! with [`Overlap::Skip`] (default), when `busy(schedule_id)` says the
//! schedule's last job is still pending or running, none of this call's
//! fires happen (a catch-up batch of one call is not an overlap within
//! itself). [`Overlap::Queue`] never asks. Finally `runCount` and
//! `lastRunAt` advance by the fires made, and `next_run_at` becomes the
//! first fire time after `now` (None once `maxRuns` or `endAt` is reached,
//! or for a one-time schedule): skipped times are gone for good.
//!
//! A fire time is never after `now` or `endAt`; fires are returned oldest
//! first (ties by schedule id).
//!
//! # After a restart
//!
//! [`Scheduler::restore`] loads the schedules as stored, `next_run_at`
//! included; no separate call is needed: the first [`Scheduler::due`] sees
//! the times that passed while the process was down as missed and applies
//! each schedule's misfire policy to them.
//!
//! # Shared by a cluster
//!
//! On a store several processes share (PostgreSQL), each process keeps its
//! own scheduler and evaluates every schedule; the store decides each fire
//! (once per cluster) and [`Scheduler::merge_cluster`] brings the
//! schedules in line with the stored ones: changes made elsewhere, and the
//! cluster's last fire, past which every next run moves.
//!
//! # Validation
//!
//! [`Scheduler::upsert`] rejects a bad spec with
//! [`crate::Error::InvalidSchedule`] whose message starts with the field's
//! JavaScript name (`id`, `calc`, `scheduledAt`, `intervalMs`, `startAt`,
//! `endAt`, `maxRuns`, `maxCatchUp`); see [`ScheduleSpec::validate`]. A
//! malformed cron expression or zone is [`crate::Error::InvalidCron`], raised
//! by [`Trigger::cron`] (or when a schedule's JSON is read).
//!
//! # Cost
//!
//! Schedules are kept in a map by id; `due` and `next_wake` scan them all
//! (meant for tens to thousands of schedules). Missed cron times are found by
//! searching backwards from `now` in growing windows, so a long downtime
//! does not walk every missed time; interval times are computed.

mod schedule;
mod times;

pub use schedule::{
  Misfire, Overlap, Schedule, ScheduleKind, ScheduleSpec, Trigger, DEFAULT_MAX_CATCH_UP, GRACE_MS,
  MAX_CATCH_UP_LIMIT, MAX_DATE_MS, MAX_ID_BYTES,
};

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use schedule::Basis;

#[cfg(doc)]
use crate::cron::CronExpr;
use crate::error::Result;

/// A job to create: one fire of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
  /// The schedule that fired.
  pub schedule_id: String,
  /// The fire time it stands for (epoch ms, at or before the `now` of the
  /// [`Scheduler::due`] call; earlier for a late or caught-up fire).
  pub fire_time: u64,
  /// The calculation to run.
  pub calc: String,
  /// JSON text.
  pub data: String,
  /// JSON text.
  pub context: String,
  /// JSON text.
  pub job_options: String,
}

/// Which schedules [`Scheduler::list`] returns; None matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
  /// Only schedules of this kind.
  pub kind: Option<ScheduleKind>,
  /// Only schedules of this calculation.
  pub calc: Option<String>,
  /// Only enabled (true) or disabled (false) schedules.
  pub enabled: Option<bool>,
}

impl ScheduleFilter {
  /// Whether `s` passes the filter.
  pub fn matches(&self, s: &Schedule) -> bool {
    self.kind.is_none_or(|k| s.kind() == k)
      && self.calc.as_deref().is_none_or(|c| s.calc == c)
      && self.enabled.is_none_or(|e| s.enabled == e)
  }
}

/// The schedules by id, with their timing policies. Not thread-safe by
/// itself: the caller locks it.
#[derive(Debug, Default)]
pub struct Scheduler {
  schedules: BTreeMap<String, Schedule>,
  /// Ids whose schedule changed since [`Scheduler::take_changed`].
  changed: BTreeSet<String>,
}

impl Scheduler {
  /// No schedules.
  pub fn new() -> Scheduler {
    Scheduler::default()
  }

  /// Validates `spec` and inserts it, or updates the schedule with the same
  /// id (see the module docs: the run state is kept, and so is the pending
  /// next run when the timing is unchanged; otherwise the next run is
  /// computed from `now`). Returns the schedule and whether it was created.
  pub fn upsert(&mut self, spec: ScheduleSpec, now: u64) -> Result<(&Schedule, bool)> {
    spec.validate()?;
    self.changed.insert(spec.id.clone());
    Ok(match self.schedules.entry(spec.id.clone()) {
      Entry::Occupied(e) => {
        let s = e.into_mut();
        s.update(spec, now);
        (&*s, false)
      }
      Entry::Vacant(e) => (&*e.insert(Schedule::create(spec, now)), true),
    })
  }

  /// Removes a schedule (cancels its future fires), returning it.
  pub fn remove(&mut self, id: &str) -> Option<Schedule> {
    self.changed.remove(id);
    self.schedules.remove(id)
  }

  /// Enables or disables a schedule. Disabling clears its next run;
  /// re-enabling computes it from `now` without replaying the disabled
  /// period. Setting the current state changes nothing. None for an unknown
  /// id.
  pub fn set_enabled(&mut self, id: &str, enabled: bool, now: u64) -> Option<&Schedule> {
    let s = self.schedules.get_mut(id)?;
    if s.enabled != enabled {
      s.enabled = enabled;
      s.next_run_at = s.compute_next(now, Basis::Resume);
      s.updated_at = now;
      self.changed.insert(s.id.clone());
    }
    Some(&*s)
  }

  /// The schedule with this id.
  pub fn get(&self, id: &str) -> Option<&Schedule> {
    self.schedules.get(id)
  }

  /// The schedules passing `filter`, by id.
  pub fn list(&self, filter: &ScheduleFilter) -> Vec<&Schedule> {
    self
      .schedules
      .values()
      .filter(|s| filter.matches(s))
      .collect()
  }

  /// All schedules, by id.
  pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
    self.schedules.values()
  }

  /// How many schedules there are.
  pub fn len(&self) -> usize {
    self.schedules.len()
  }

  /// Whether there are none.
  pub fn is_empty(&self) -> bool {
    self.schedules.is_empty()
  }

  /// The earliest next run of an enabled schedule: when to call
  /// [`Scheduler::due`] next (None: no schedule will fire).
  pub fn next_wake(&self) -> Option<u64> {
    self
      .schedules
      .values()
      .filter(|s| s.enabled)
      .filter_map(|s| s.next_run_at)
      .min()
  }

  /// The fires due at `now`, oldest first, after the misfire, `maxRuns`,
  /// `endAt` and overlap policies (see the module docs); advances every due
  /// schedule past `now`. `busy(schedule_id)` says whether the schedule's
  /// last job is still pending or running (asked only for a schedule with
  /// [`Overlap::Skip`] that would fire).
  pub fn due(&mut self, now: u64, busy: &dyn Fn(&str) -> bool) -> Vec<Fire> {
    let mut fires = Vec::new();
    for (id, s) in &mut self.schedules {
      if !s.enabled || s.next_run_at.is_none_or(|t| t > now) {
        continue;
      }
      let times = s.take_due(now, busy);
      self.changed.insert(id.clone());
      fires.extend(times.into_iter().map(|fire_time| Fire {
        schedule_id: id.clone(),
        fire_time,
        calc: s.calc.clone(),
        data: s.data.clone(),
        context: s.context.clone(),
        job_options: s.job_options.clone(),
      }));
    }
    // Stable: one schedule's fires keep their (increasing) order.
    fires.sort_by(|a, b| {
      a.fire_time
        .cmp(&b.fire_time)
        .then_with(|| a.schedule_id.cmp(&b.schedule_id))
    });
    fires
  }

  /// Records the job created for the schedule's latest fire (its
  /// `lastJobId`). False for an unknown id.
  pub fn record_job(&mut self, schedule_id: &str, job_id: &str) -> bool {
    match self.schedules.get_mut(schedule_id) {
      Some(s) => {
        s.last_job_id = Some(job_id.to_string());
        self.changed.insert(s.id.clone());
        true
      }
      None => false,
    }
  }

  /// Records a fire that added no job (the queue was full). False for an
  /// unknown id.
  pub fn record_skip(&mut self, schedule_id: &str) -> bool {
    match self.schedules.get_mut(schedule_id) {
      Some(s) => {
        s.skipped_fires = s.skipped_fires.saturating_add(1);
        self.changed.insert(s.id.clone());
        true
      }
      None => false,
    }
  }

  /// Loads schedules as stored (replacing any with the same id), state
  /// included. Times that passed while the process was down get their
  /// misfire policy on the next [`Scheduler::due`]. Loaded schedules are not
  /// reported by [`Scheduler::take_changed`].
  pub fn restore(&mut self, schedules: Vec<Schedule>) {
    for s in schedules {
      self.changed.remove(&s.id);
      self.schedules.insert(s.id.clone(), s);
    }
  }

  /// Brings the schedules in line with the cluster's, as a backend several
  /// processes share stores them (PostgreSQL): `all` is every stored
  /// schedule with the last fire time the cluster used up; `fresh` names
  /// schedules changed here since that read began (they stay as they are).
  ///
  /// - A stored schedule not held here is added; one whose definition
  ///   differs from the one held here (another process changed it) replaces
  ///   it, with the cluster's run state; so does one created at another
  ///   time (the store keeps the first `createdAt`: an interval without
  ///   `startAt` goes on that one's grid, its next run computed from the
  ///   stored `updatedAt`, as is a new one's).
  /// - One with the same definition keeps its next run and takes the
  ///   cluster's `runCount` when higher, and its `lastRunAt` and
  ///   `lastJobId` when they are as recent as the ones held here.
  /// - Every next run is then moved past the cluster's last fire (see
  ///   [`Schedule`]'s `move_past`): times another process fired are not
  ///   fired again here, and after a restart the times the whole cluster
  ///   missed are due, so the misfire policy applies to the cluster's
  ///   downtime, not this process's.
  /// - A schedule held here that is neither stored nor fresh is removed
  ///   (another process removed it).
  ///
  /// Nothing here is reported by [`Scheduler::take_changed`].
  pub fn merge_cluster(&mut self, all: Vec<(Schedule, Option<u64>)>, fresh: &[String]) {
    let mut seen = BTreeSet::new();
    for (stored, last_fire) in all {
      seen.insert(stored.id.clone());
      if fresh.contains(&stored.id) {
        continue;
      }
      // An interval without `startAt` is anchored at its creation: the
      // stored `createdAt` is the first process's (the store keeps it), and
      // the next run goes on that grid.
      let regrid = |s: &mut Schedule| {
        if matches!(s.trigger, Trigger::Interval { .. }) && s.start_at.is_none() {
          s.next_run_at = s.compute_next(s.updated_at, Basis::Define);
        }
      };
      let s = match self.schedules.entry(stored.id.clone()) {
        Entry::Vacant(e) => {
          let s = e.insert(stored);
          regrid(s);
          s
        }
        Entry::Occupied(e) => {
          let s = e.into_mut();
          if s.same_definition(&stored) && s.created_at == stored.created_at {
            s.run_count = s.run_count.max(stored.run_count);
            if stored.last_run_at >= s.last_run_at {
              s.last_run_at = stored.last_run_at;
              if stored.last_job_id.is_some() {
                s.last_job_id = stored.last_job_id;
              }
            }
          } else {
            let anchor_moved = s.same_definition(&stored);
            *s = stored;
            if anchor_moved {
              regrid(s);
            }
          }
          s
        }
      };
      if let Some(t) = last_fire {
        s.move_past(t);
      }
    }
    self
      .schedules
      .retain(|id, _| seen.contains(id) || fresh.contains(id));
  }

  /// The ids of the schedules whose definition or state changed since the
  /// last call (upsert, set_enabled, due, record_job; not remove), by id:
  /// the ones to store again.
  pub fn take_changed(&mut self) -> Vec<String> {
    std::mem::take(&mut self.changed).into_iter().collect()
  }
}

#[cfg(test)]
mod tests;
