//! The schedule model: [`ScheduleSpec`] (what the caller asks for),
//! [`Schedule`] (the spec plus its run state), their validation, JSON forms
//! and next-run computation. The policies are described in the module docs
//! of [`crate::scheduler`].

use serde::{Deserialize, Serialize};

use super::times::Seq;
use crate::cron::CronExpr;
use crate::error::{Error, Result};

/// How late a fire may be and still count as on time (ms): a fire time is
/// missed when `now - fire_time > GRACE_MS`.
pub const GRACE_MS: u64 = 1_000;

/// The default of [`ScheduleSpec::max_catch_up`].
pub const DEFAULT_MAX_CATCH_UP: u32 = 10;

/// The largest accepted [`ScheduleSpec::max_catch_up`].
pub const MAX_CATCH_UP_LIMIT: u32 = 10_000;

/// The longest accepted schedule id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The latest time JavaScript's `Date` can hold (epoch ms); later times are
/// rejected as invalid dates. It is below 2^53, so every accepted time is an
/// exact JavaScript number.
pub const MAX_DATE_MS: u64 = 8_640_000_000_000_000;

/// What a schedule does about fire times it missed (more than [`GRACE_MS`]
/// late, e.g. while the process was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Misfire {
  /// `'runOnce'` (the default): one fire for all of them.
  #[default]
  RunOnce,
  /// `'skip'`: no fire for them.
  Skip,
  /// `'catchUp'`: one fire each, at most `maxCatchUp` (the most recent).
  CatchUp,
}

impl Misfire {
  /// The JavaScript name.
  pub fn as_str(self) -> &'static str {
    match self {
      Misfire::RunOnce => "runOnce",
      Misfire::Skip => "skip",
      Misfire::CatchUp => "catchUp",
    }
  }
}

/// What a schedule does when it is due while its last job is still pending
/// or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Overlap {
  /// `'skip'` (the default): no fire; the schedule moves on to its next time.
  #[default]
  Skip,
  /// `'queue'`: fire anyway; the new job waits in the queue.
  Queue,
}

impl Overlap {
  /// The JavaScript name.
  pub fn as_str(self) -> &'static str {
    match self {
      Overlap::Skip => "skip",
      Overlap::Queue => "queue",
    }
  }
}

/// The kind of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScheduleKind {
  /// `'once'`: fires once, at `scheduledAt`.
  Once,
  /// `'interval'`: fires every `intervalMs`.
  Interval,
  /// `'cron'`: fires at a cron expression's times.
  Cron,
}

impl ScheduleKind {
  /// The JavaScript name.
  pub fn as_str(self) -> &'static str {
    match self {
      ScheduleKind::Once => "once",
      ScheduleKind::Interval => "interval",
      ScheduleKind::Cron => "cron",
    }
  }
}

/// When a schedule fires.
///
/// In JSON it is flattened into the schedule as `kind` plus `scheduledAt`
/// (once), `intervalMs` (interval) or `expression` and `tz` (cron; `tz` is
/// the resolved IANA name, and the expression is parsed again when read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TriggerRepr", into = "TriggerRepr")]
pub enum Trigger {
  /// Once, at `scheduled_at` (epoch ms). A time in the past fires at once.
  Once { scheduled_at: u64 },
  /// At `startAt + k * interval_ms` (k >= 0); without `startAt`, at
  /// `createdAt + (k + 1) * interval_ms`.
  Interval { interval_ms: u64 },
  /// At the expression's fire times ([`CronExpr::next_after`]).
  Cron(Box<CronExpr>),
}

impl Trigger {
  /// A cron trigger: `expr` in zone `tz` (None: the process's local zone,
  /// resolved now and stored by name). A malformed expression or zone is
  /// [`Error::InvalidCron`].
  pub fn cron(expr: &str, tz: Option<&str>) -> Result<Trigger> {
    CronExpr::parse(expr, tz).map(|e| Trigger::Cron(Box::new(e)))
  }

  /// The kind.
  pub fn kind(&self) -> ScheduleKind {
    match self {
      Trigger::Once { .. } => ScheduleKind::Once,
      Trigger::Interval { .. } => ScheduleKind::Interval,
      Trigger::Cron(_) => ScheduleKind::Cron,
    }
  }
}

impl PartialEq for Trigger {
  /// Same kind and same times: cron triggers compare their expression as
  /// given and their resolved zone.
  fn eq(&self, other: &Trigger) -> bool {
    match (self, other) {
      (Trigger::Once { scheduled_at: a }, Trigger::Once { scheduled_at: b }) => a == b,
      (Trigger::Interval { interval_ms: a }, Trigger::Interval { interval_ms: b }) => a == b,
      (Trigger::Cron(a), Trigger::Cron(b)) => {
        a.source() == b.source() && a.tz_name() == b.tz_name()
      }
      _ => false,
    }
  }
}

/// The JSON form of a [`Trigger`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TriggerRepr {
  kind: ScheduleKind,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  scheduled_at: Option<u64>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  interval_ms: Option<u64>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  expression: Option<String>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  tz: Option<String>,
}

impl From<Trigger> for TriggerRepr {
  fn from(t: Trigger) -> TriggerRepr {
    let mut repr = TriggerRepr {
      kind: t.kind(),
      scheduled_at: None,
      interval_ms: None,
      expression: None,
      tz: None,
    };
    match t {
      Trigger::Once { scheduled_at } => repr.scheduled_at = Some(scheduled_at),
      Trigger::Interval { interval_ms } => repr.interval_ms = Some(interval_ms),
      Trigger::Cron(expr) => {
        repr.expression = Some(expr.source().to_string());
        repr.tz = Some(expr.tz_name().to_string());
      }
    }
    repr
  }
}

impl TryFrom<TriggerRepr> for Trigger {
  type Error = Error;

  fn try_from(r: TriggerRepr) -> Result<Trigger> {
    let missing = |field: &str, kind: &str| {
      Error::InvalidSchedule(format!("{field} is required for a {kind} schedule"))
    };
    match r.kind {
      ScheduleKind::Once => Ok(Trigger::Once {
        scheduled_at: r
          .scheduled_at
          .ok_or_else(|| missing("scheduledAt", "one-time"))?,
      }),
      ScheduleKind::Interval => Ok(Trigger::Interval {
        interval_ms: r
          .interval_ms
          .ok_or_else(|| missing("intervalMs", "interval"))?,
      }),
      ScheduleKind::Cron => {
        let expr = r.expression.ok_or_else(|| missing("expression", "cron"))?;
        Trigger::cron(&expr, r.tz.as_deref())
      }
    }
  }
}

fn default_data() -> String {
  "null".into()
}

fn default_object() -> String {
  "{}".into()
}

fn default_true() -> bool {
  true
}

fn default_max_catch_up() -> u32 {
  DEFAULT_MAX_CATCH_UP
}

/// A schedule as the caller defines it: the input of
/// [`super::Scheduler::upsert`]. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
  /// 1 to [`MAX_ID_BYTES`] bytes; upserting an existing id updates it.
  pub id: String,
  /// The calculation the jobs run (non-empty).
  pub calc: String,
  /// When it fires (JSON: `kind`, `scheduledAt`, `intervalMs`,
  /// `expression`, `tz`).
  #[serde(flatten)]
  pub trigger: Trigger,
  /// The jobs' data, JSON text (opaque here; default `null`).
  #[serde(default = "default_data")]
  pub data: String,
  /// The jobs' context, JSON text (opaque here; default `{}`).
  #[serde(default = "default_object")]
  pub context: String,
  /// The jobs' options, JSON text (opaque here; default `{}`).
  #[serde(default = "default_object")]
  pub job_options: String,
  /// Stop after this many fires (>= 1; None: no limit).
  #[serde(default)]
  pub max_runs: Option<u32>,
  /// No fire time after this (inclusive bound; not before `startAt` or
  /// `scheduledAt`).
  #[serde(default)]
  pub end_at: Option<u64>,
  /// Interval: the first fire time (the grid's anchor). Cron: no fire time
  /// before it. Not allowed on a one-time schedule.
  #[serde(default)]
  pub start_at: Option<u64>,
  /// A disabled schedule does not fire (default true).
  #[serde(default = "default_true")]
  pub enabled: bool,
  /// What to do about missed fire times (default [`Misfire::RunOnce`]).
  #[serde(default)]
  pub misfire: Misfire,
  /// The most fires [`Misfire::CatchUp`] makes for missed times (1 to
  /// [`MAX_CATCH_UP_LIMIT`], default [`DEFAULT_MAX_CATCH_UP`]).
  #[serde(default = "default_max_catch_up")]
  pub max_catch_up: u32,
  /// What to do when due while the last job still runs (default
  /// [`Overlap::Skip`]).
  #[serde(default)]
  pub overlap: Overlap,
}

impl ScheduleSpec {
  /// A spec with the defaults: data `null`, context and job options `{}`,
  /// no limits, enabled, [`Misfire::RunOnce`], [`Overlap::Skip`].
  pub fn new(id: impl Into<String>, calc: impl Into<String>, trigger: Trigger) -> ScheduleSpec {
    ScheduleSpec {
      id: id.into(),
      calc: calc.into(),
      trigger,
      data: default_data(),
      context: default_object(),
      job_options: default_object(),
      max_runs: None,
      end_at: None,
      start_at: None,
      enabled: true,
      misfire: Misfire::default(),
      max_catch_up: DEFAULT_MAX_CATCH_UP,
      overlap: Overlap::default(),
    }
  }

  /// Checks the spec; the error is [`Error::InvalidSchedule`] whose message
  /// starts with the offending field's JavaScript name.
  pub fn validate(&self) -> Result<()> {
    let bad = |msg: &str| Err(Error::InvalidSchedule(msg.to_string()));
    if self.id.is_empty() || self.id.len() > MAX_ID_BYTES {
      return bad("id must be a non-empty string of at most 256 bytes");
    }
    if self.calc.is_empty() {
      return bad("calc must name a calculation");
    }
    match self.trigger {
      Trigger::Once { scheduled_at } => {
        if scheduled_at > MAX_DATE_MS {
          return bad("scheduledAt must be a valid date");
        }
        if self.start_at.is_some() {
          return bad("startAt does not apply to a one-time schedule (use scheduledAt)");
        }
      }
      Trigger::Interval { interval_ms } => {
        if interval_ms == 0 || interval_ms > MAX_DATE_MS {
          return bad("intervalMs must be a positive number of milliseconds");
        }
      }
      Trigger::Cron(_) => {}
    }
    if self.start_at.is_some_and(|t| t > MAX_DATE_MS) {
      return bad("startAt must be a valid date");
    }
    if let Some(end) = self.end_at {
      if end > MAX_DATE_MS {
        return bad("endAt must be a valid date");
      }
      if self.start_at.is_some_and(|start| end < start) {
        return bad("endAt must not be before startAt");
      }
      if matches!(self.trigger, Trigger::Once { scheduled_at } if end < scheduled_at) {
        return bad("endAt must not be before scheduledAt");
      }
    }
    if self.max_runs == Some(0) {
      return bad("maxRuns must be at least 1");
    }
    if self.max_catch_up == 0 || self.max_catch_up > MAX_CATCH_UP_LIMIT {
      return bad("maxCatchUp must be between 1 and 10000");
    }
    Ok(())
  }
}

/// A schedule: its [`ScheduleSpec`] fields plus its run state. Serializes
/// (camelCase) to one JSON object that [`Schedule`]'s `Deserialize` reads
/// back, re-parsing a cron expression; hand that to
/// [`super::Scheduler::restore`] after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
  /// See [`ScheduleSpec::id`].
  pub id: String,
  /// See [`ScheduleSpec::calc`].
  pub calc: String,
  /// See [`ScheduleSpec::trigger`].
  #[serde(flatten)]
  pub trigger: Trigger,
  /// See [`ScheduleSpec::data`].
  #[serde(default = "default_data")]
  pub data: String,
  /// See [`ScheduleSpec::context`].
  #[serde(default = "default_object")]
  pub context: String,
  /// See [`ScheduleSpec::job_options`].
  #[serde(default = "default_object")]
  pub job_options: String,
  /// See [`ScheduleSpec::max_runs`].
  #[serde(default)]
  pub max_runs: Option<u32>,
  /// See [`ScheduleSpec::end_at`].
  #[serde(default)]
  pub end_at: Option<u64>,
  /// See [`ScheduleSpec::start_at`].
  #[serde(default)]
  pub start_at: Option<u64>,
  /// See [`ScheduleSpec::enabled`].
  #[serde(default = "default_true")]
  pub enabled: bool,
  /// See [`ScheduleSpec::misfire`].
  #[serde(default)]
  pub misfire: Misfire,
  /// See [`ScheduleSpec::max_catch_up`].
  #[serde(default = "default_max_catch_up")]
  pub max_catch_up: u32,
  /// See [`ScheduleSpec::overlap`].
  #[serde(default)]
  pub overlap: Overlap,
  /// Fires so far (jobs asked for; skipped fire times do not count).
  #[serde(default)]
  pub run_count: u64,
  /// The fire time of the last fire.
  #[serde(default)]
  pub last_run_at: Option<u64>,
  /// The next fire time; None when disabled or finished.
  #[serde(default)]
  pub next_run_at: Option<u64>,
  /// The job of the last fire, as recorded by
  /// [`super::Scheduler::record_job`].
  #[serde(default)]
  pub last_job_id: Option<String>,
  /// Fires that added no job because the queue held `maxQueueSize` jobs
  /// (they count in `run_count`).
  #[serde(default)]
  pub skipped_fires: u64,
  /// When the schedule was first upserted.
  #[serde(default)]
  pub created_at: u64,
  /// When it was last upserted, enabled, disabled or advanced by `due`.
  #[serde(default)]
  pub updated_at: u64,
}

/// The public JSON form of a schedule (see [`Schedule::to_public_json`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublicView<'a> {
  id: &'a str,
  name: &'a str,
  kind: ScheduleKind,
  #[serde(skip_serializing_if = "Option::is_none")]
  expression: Option<&'a str>,
  #[serde(skip_serializing_if = "Option::is_none")]
  tz: Option<&'a str>,
  #[serde(skip_serializing_if = "Option::is_none")]
  interval_ms: Option<u64>,
  #[serde(skip_serializing_if = "Option::is_none")]
  scheduled_at: Option<u64>,
  enabled: bool,
  run_count: u64,
  max_runs: Option<u32>,
  end_at: Option<u64>,
  start_at: Option<u64>,
  last_run_at: Option<u64>,
  next_run_at: Option<u64>,
  last_job_id: Option<&'a str>,
  last_status: Option<&'a str>,
  skipped_fires: u64,
  misfire: Misfire,
  overlap: Overlap,
}

/// Why a next run is computed from `now` (see [`Schedule::compute_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Basis {
  /// A new schedule or a changed definition: a one-time schedule in the past
  /// fires at once.
  Define,
  /// Re-enabled: nothing before `now` is replayed, so a one-time schedule
  /// whose time passed is finished.
  Resume,
}

impl Schedule {
  /// A new schedule from a validated spec, its first run computed from
  /// `now`.
  pub(super) fn create(spec: ScheduleSpec, now: u64) -> Schedule {
    let mut s = Schedule {
      id: spec.id,
      calc: spec.calc,
      trigger: spec.trigger,
      data: spec.data,
      context: spec.context,
      job_options: spec.job_options,
      max_runs: spec.max_runs,
      end_at: spec.end_at,
      start_at: spec.start_at,
      enabled: spec.enabled,
      misfire: spec.misfire,
      max_catch_up: spec.max_catch_up,
      overlap: spec.overlap,
      run_count: 0,
      last_run_at: None,
      next_run_at: None,
      last_job_id: None,
      skipped_fires: 0,
      created_at: now,
      updated_at: now,
    };
    s.next_run_at = s.compute_next(now, Basis::Define);
    s
  }

  /// Replaces the definition with a validated spec, keeping the run state.
  ///
  /// When the timing is unchanged (same trigger and `startAt`, enabled
  /// before and after) the pending `next_run_at` is kept, so upserting the
  /// same definition at every boot does not discard runs missed while the
  /// process was down; only the new `endAt`/`maxRuns` are applied to it.
  /// Otherwise the next run is computed from `now`.
  pub(super) fn update(&mut self, spec: ScheduleSpec, now: u64) {
    let same_timing = self.enabled
      && spec.enabled
      && self.trigger == spec.trigger
      && self.start_at == spec.start_at;
    let same_bounds = self.end_at == spec.end_at && self.max_runs == spec.max_runs;
    self.calc = spec.calc;
    self.trigger = spec.trigger;
    self.data = spec.data;
    self.context = spec.context;
    self.job_options = spec.job_options;
    self.max_runs = spec.max_runs;
    self.end_at = spec.end_at;
    self.start_at = spec.start_at;
    self.enabled = spec.enabled;
    self.misfire = spec.misfire;
    self.max_catch_up = spec.max_catch_up;
    self.overlap = spec.overlap;
    self.updated_at = now;
    self.next_run_at = match self.next_run_at {
      Some(next) if same_timing => self.bounded(Some(next)),
      None if same_timing && same_bounds => None,
      _ => self.compute_next(now, Basis::Define),
    };
  }

  /// The definition as a spec (for [`super::Scheduler::upsert`]).
  pub fn to_spec(&self) -> ScheduleSpec {
    ScheduleSpec {
      id: self.id.clone(),
      calc: self.calc.clone(),
      trigger: self.trigger.clone(),
      data: self.data.clone(),
      context: self.context.clone(),
      job_options: self.job_options.clone(),
      max_runs: self.max_runs,
      end_at: self.end_at,
      start_at: self.start_at,
      enabled: self.enabled,
      misfire: self.misfire,
      max_catch_up: self.max_catch_up,
      overlap: self.overlap,
    }
  }

  /// True when `other` has the same definition (everything a spec sets;
  /// the run state and times of the last change aside).
  pub fn same_definition(&self, other: &Schedule) -> bool {
    self.calc == other.calc
      && self.trigger == other.trigger
      && self.data == other.data
      && self.context == other.context
      && self.job_options == other.job_options
      && self.max_runs == other.max_runs
      && self.end_at == other.end_at
      && self.start_at == other.start_at
      && self.enabled == other.enabled
      && self.misfire == other.misfire
      && self.max_catch_up == other.max_catch_up
      && self.overlap == other.overlap
  }

  /// Moves the next run past `t`, a fire time already used up (by another
  /// process sharing the schedule): the first fire time after it, none for
  /// a one-time schedule. A next run after `t` stays.
  pub(super) fn move_past(&mut self, t: u64) {
    if self.next_run_at.is_some_and(|n| n <= t) {
      let next = self.seq().after(t);
      self.next_run_at = self.bounded(next);
    }
  }

  /// The kind.
  pub fn kind(&self) -> ScheduleKind {
    self.trigger.kind()
  }

  /// Whether the schedule will fire again (enabled, with a next run).
  pub fn is_active(&self) -> bool {
    self.enabled && self.next_run_at.is_some()
  }

  /// The public JSON object JavaScript sees: `{ id, name (the calculation),
  /// kind: 'once'|'interval'|'cron', expression?, tz? (cron), intervalMs?
  /// (interval), scheduledAt? (once), enabled, runCount, maxRuns, endAt,
  /// startAt, lastRunAt, nextRunAt, lastJobId, lastStatus, skippedFires,
  /// misfire, overlap }`, times as epoch ms numbers or null. `last_status` is the last job's
  /// status, which the queue knows.
  pub fn to_public_json(&self, last_status: Option<&str>) -> String {
    let (expression, tz) = match &self.trigger {
      Trigger::Cron(expr) => (Some(expr.source()), Some(expr.tz_name())),
      _ => (None, None),
    };
    let view = PublicView {
      id: &self.id,
      name: &self.calc,
      kind: self.kind(),
      expression,
      tz,
      interval_ms: match self.trigger {
        Trigger::Interval { interval_ms } => Some(interval_ms),
        _ => None,
      },
      scheduled_at: match self.trigger {
        Trigger::Once { scheduled_at } => Some(scheduled_at),
        _ => None,
      },
      enabled: self.enabled,
      run_count: self.run_count,
      max_runs: self.max_runs,
      end_at: self.end_at,
      start_at: self.start_at,
      last_run_at: self.last_run_at,
      next_run_at: self.next_run_at,
      last_job_id: self.last_job_id.as_deref(),
      last_status,
      skipped_fires: self.skipped_fires,
      misfire: self.misfire,
      overlap: self.overlap,
    };
    // Strings, numbers and booleans always serialize.
    serde_json::to_string(&view).unwrap_or_default()
  }

  /// The fire-time sequence of the trigger.
  pub(super) fn seq(&self) -> Seq<'_> {
    match &self.trigger {
      Trigger::Once { .. } => Seq::Once,
      Trigger::Interval { interval_ms } => Seq::Grid {
        anchor: self
          .start_at
          .unwrap_or_else(|| self.created_at.saturating_add(*interval_ms)),
        every: *interval_ms,
      },
      Trigger::Cron(expr) => Seq::Cron {
        expr: expr.as_ref(),
        not_before: self.start_at.unwrap_or(0),
      },
    }
  }

  /// Whether `maxRuns` fires have happened.
  fn exhausted(&self) -> bool {
    self
      .max_runs
      .is_some_and(|max| self.run_count >= u64::from(max))
  }

  /// `next` if the schedule may still fire then (`maxRuns`, `endAt`).
  pub(super) fn bounded(&self, next: Option<u64>) -> Option<u64> {
    if self.exhausted() {
      return None;
    }
    next.filter(|&t| self.end_at.is_none_or(|end| t <= end))
  }

  /// The next run computed from `now` (None when disabled or finished).
  ///
  /// Interval and cron: the first fire time after `last_run_at` and at or
  /// after `now - GRACE_MS` ([`Basis::Define`]: a fire time that has just
  /// passed is on time) or `now` ([`Basis::Resume`]). One-time: see
  /// [`Basis`].
  pub(super) fn compute_next(&self, now: u64, why: Basis) -> Option<u64> {
    if !self.enabled {
      return None;
    }
    let after_last = self.last_run_at.map_or(0, |t| t.saturating_add(1));
    let floor = match why {
      Basis::Define => now.saturating_sub(GRACE_MS),
      Basis::Resume => now,
    };
    let next = match (&self.trigger, why) {
      (&Trigger::Once { scheduled_at }, Basis::Define) => Some(scheduled_at.max(now)),
      (&Trigger::Once { scheduled_at }, Basis::Resume) => Some(scheduled_at).filter(|&t| t >= now),
      _ => self.seq().at_or_after(floor.max(after_last)),
    };
    let next = next.filter(|&t| t >= after_last);
    self.bounded(next)
  }

  /// Takes the fire times due at `now` (`next_run_at <= now`) under the
  /// misfire, `maxRuns`, `endAt` and overlap policies, and advances the
  /// state past `now`. Returns the fire times to create jobs for, oldest
  /// first.
  pub(super) fn take_due(&mut self, now: u64, busy: &dyn Fn(&str) -> bool) -> Vec<u64> {
    let Some(first) = self.next_run_at.filter(|&t| t <= now) else {
      return Vec::new();
    };
    let seq = self.seq();
    let hi = now.min(self.end_at.unwrap_or(u64::MAX));
    // Fire times before this are missed.
    let on_time_from = now.saturating_sub(GRACE_MS);
    let mut times = if first > hi {
      Vec::new()
    } else if first >= on_time_from {
      seq.last_in(first, first, hi, usize::MAX)
    } else {
      let on_time = seq.last_in(first, on_time_from, hi, usize::MAX);
      // `first < on_time_from`, so this does not wrap.
      let missed_to = hi.min(on_time_from - 1);
      match self.misfire {
        Misfire::RunOnce => match on_time.last() {
          Some(&latest) => vec![latest],
          None => seq.last_in(first, first, missed_to, 1),
        },
        Misfire::Skip => on_time,
        Misfire::CatchUp => {
          let keep = usize::try_from(self.max_catch_up).unwrap_or(usize::MAX);
          let mut missed = seq.last_in(first, first, missed_to, keep);
          missed.extend(on_time);
          // A hard limit: the on-time fires count too (the most recent kept).
          let extra = missed.len().saturating_sub(keep);
          missed.drain(..extra);
          missed
        }
      }
    };
    let after_now = seq.after(now);
    if let Some(max) = self.max_runs {
      let left = u64::from(max).saturating_sub(self.run_count);
      times.truncate(usize::try_from(left).unwrap_or(usize::MAX));
    }
    if !times.is_empty() && self.overlap == Overlap::Skip && busy(&self.id) {
      times.clear();
    }
    if let Some(&last) = times.last() {
      self.run_count = self
        .run_count
        .saturating_add(u64::try_from(times.len()).unwrap_or(u64::MAX));
      self.last_run_at = Some(last);
    }
    self.next_run_at = self.bounded(after_now);
    self.updated_at = now;
    times
  }
}
