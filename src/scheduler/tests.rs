//! Unit and property tests for [`super::Scheduler`].

use chrono::DateTime;
use proptest::prelude::*;

use super::*;
use crate::error::Error;

const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;

fn ms(iso: &str) -> u64 {
  let dt = DateTime::parse_from_rfc3339(iso).unwrap_or_else(|e| panic!("bad test date {iso}: {e}"));
  u64::try_from(dt.timestamp_millis()).expect("test dates are after 1970")
}

fn idle(_: &str) -> bool {
  false
}

fn busy(_: &str) -> bool {
  true
}

fn interval(id: &str, every: u64, start_at: Option<u64>) -> ScheduleSpec {
  let mut spec = ScheduleSpec::new(id, "calc", Trigger::Interval { interval_ms: every });
  spec.start_at = start_at;
  spec
}

fn cron(id: &str, expr: &str, tz: &str) -> ScheduleSpec {
  let trigger = Trigger::cron(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr}: {e}"));
  ScheduleSpec::new(id, "calc", trigger)
}

fn once(id: &str, at: u64) -> ScheduleSpec {
  ScheduleSpec::new(id, "calc", Trigger::Once { scheduled_at: at })
}

fn add(s: &mut Scheduler, spec: ScheduleSpec, now: u64) -> Schedule {
  match s.upsert(spec, now) {
    Ok((schedule, _)) => schedule.clone(),
    Err(e) => panic!("upsert failed: {e}"),
  }
}

fn times(fires: &[Fire]) -> Vec<u64> {
  fires.iter().map(|f| f.fire_time).collect()
}

fn get<'a>(s: &'a Scheduler, id: &str) -> &'a Schedule {
  s.get(id).unwrap_or_else(|| panic!("no schedule {id}"))
}

fn invalid(spec: ScheduleSpec) -> String {
  match Scheduler::new().upsert(spec, 1_000) {
    Err(Error::InvalidSchedule(msg)) => msg,
    Err(other) => panic!("expected InvalidSchedule, got {other:?}"),
    Ok((s, _)) => panic!("expected an error, got {s:?}"),
  }
}

// ---- interval -------------------------------------------------------------

#[test]
fn interval_fires_on_its_grid_without_drift() {
  let mut s = Scheduler::new();
  let sched = add(&mut s, interval("a", 100, Some(1_000)), 0);
  assert_eq!(sched.next_run_at, Some(1_000));
  assert!(s.due(999, &idle).is_empty());
  let fires = s.due(1_000, &idle);
  assert_eq!(times(&fires), vec![1_000]);
  assert_eq!(fires[0].schedule_id, "a");
  assert_eq!(fires[0].calc, "calc");
  // Late calls (within the grace period) fire on the grid, not from `now`.
  assert_eq!(times(&s.due(1_137, &idle)), vec![1_100]);
  assert_eq!(get(&s, "a").next_run_at, Some(1_200));
  assert_eq!(times(&s.due(1_350, &idle)), vec![1_200, 1_300]);
  assert_eq!(get(&s, "a").run_count, 4);
  assert_eq!(get(&s, "a").last_run_at, Some(1_300));
  assert_eq!(get(&s, "a").next_run_at, Some(1_400));
}

#[test]
fn interval_without_start_at_fires_one_interval_after_creation() {
  let mut s = Scheduler::new();
  assert_eq!(
    add(&mut s, interval("a", 500, None), 10_000).next_run_at,
    Some(10_500)
  );
  assert_eq!(times(&s.due(10_500, &idle)), vec![10_500]);
  assert_eq!(get(&s, "a").next_run_at, Some(11_000));
}

#[test]
fn interval_start_at_just_passed_still_fires() {
  let mut s = Scheduler::new();
  // `startAt: new Date()` arrives a few ms late: the first fire is on time.
  assert_eq!(
    add(&mut s, interval("a", MIN, Some(9_990)), 10_000).next_run_at,
    Some(9_990)
  );
  // A grid time that passed less than GRACE_MS ago is on time too.
  assert_eq!(
    add(&mut s, interval("b", MIN, Some(0)), 10 * MIN + 5).next_run_at,
    Some(10 * MIN)
  );
  // Earlier ones are not: the first grid time from now on.
  assert_eq!(
    add(&mut s, interval("c", MIN, Some(0)), 10 * MIN + 2_000).next_run_at,
    Some(11 * MIN)
  );
}

#[test]
fn interval_stops_after_max_runs() {
  let mut s = Scheduler::new();
  let mut spec = interval("a", 100, Some(0));
  spec.max_runs = Some(3);
  add(&mut s, spec, 0);
  let mut fired = Vec::new();
  for now in (0..=1_000).step_by(50) {
    fired.extend(times(&s.due(now, &idle)));
  }
  assert_eq!(fired, vec![0, 100, 200]);
  let a = get(&s, "a");
  assert_eq!(a.run_count, 3);
  assert_eq!(a.next_run_at, None);
  assert!(!a.is_active());
  assert_eq!(s.next_wake(), None);
}

#[test]
fn interval_stops_at_end_at() {
  let mut s = Scheduler::new();
  let mut spec = interval("a", 100, Some(0));
  spec.end_at = Some(250);
  add(&mut s, spec, 0);
  let mut fired = Vec::new();
  for now in (0..=1_000).step_by(100) {
    fired.extend(times(&s.due(now, &idle)));
  }
  assert_eq!(fired, vec![0, 100, 200]);
  assert_eq!(get(&s, "a").next_run_at, None);
  // An end time exactly on a fire time includes it.
  let mut spec = interval("b", 100, Some(0));
  spec.end_at = Some(300);
  add(&mut s, spec, 0);
  assert_eq!(times(&s.due(350, &idle)), vec![0, 100, 200, 300]);
  assert_eq!(get(&s, "b").next_run_at, None);
}

// ---- cron -----------------------------------------------------------------

#[test]
fn cron_in_utc_fires_at_its_times() {
  let mut s = Scheduler::new();
  let now = ms("2024-01-15T08:00:00Z");
  let sched = add(&mut s, cron("c", "0 9 * * *", "UTC"), now);
  assert_eq!(sched.next_run_at, Some(ms("2024-01-15T09:00:00Z")));
  assert!(s.due(ms("2024-01-15T08:59:59Z"), &idle).is_empty());
  let fires = s.due(ms("2024-01-15T09:00:00.250Z"), &idle);
  assert_eq!(times(&fires), vec![ms("2024-01-15T09:00:00Z")]);
  assert_eq!(get(&s, "c").next_run_at, Some(ms("2024-01-16T09:00:00Z")));
}

#[test]
fn cron_in_berlin_follows_the_zone_across_dst() {
  let mut s = Scheduler::new();
  add(
    &mut s,
    cron("c", "0 9 * * *", "Europe/Berlin"),
    ms("2024-03-29T00:00:00Z"),
  );
  let mut fired = Vec::new();
  for _ in 0..4 {
    let Some(wake) = s.next_wake() else {
      panic!("no next wake")
    };
    fired.extend(times(&s.due(wake, &idle)));
  }
  // 09:00 CET is 08:00Z; from 31 March (CEST) it is 07:00Z.
  assert_eq!(
    fired,
    vec![
      ms("2024-03-29T08:00:00Z"),
      ms("2024-03-30T08:00:00Z"),
      ms("2024-03-31T07:00:00Z"),
      ms("2024-04-01T07:00:00Z"),
    ]
  );
  let json = get(&s, "c").to_public_json(None);
  assert!(json.contains(r#""tz":"Europe/Berlin""#), "{json}");
}

#[test]
fn cron_start_at_delays_the_first_fire() {
  let mut s = Scheduler::new();
  let mut spec = cron("c", "*/15 * * * *", "UTC");
  spec.start_at = Some(ms("2024-05-01T12:07:00Z"));
  let sched = add(&mut s, spec, ms("2024-05-01T10:00:00Z"));
  assert_eq!(sched.next_run_at, Some(ms("2024-05-01T12:15:00Z")));
  // A start time on a fire time includes it.
  let mut spec = cron("d", "*/15 * * * *", "UTC");
  spec.start_at = Some(ms("2024-05-01T12:15:00Z"));
  let sched = add(&mut s, spec, ms("2024-05-01T10:00:00Z"));
  assert_eq!(sched.next_run_at, Some(ms("2024-05-01T12:15:00Z")));
}

#[test]
fn cron_that_never_fires_is_refused() {
  match Trigger::cron("0 0 30 2 *", Some("UTC")) {
    Err(Error::InvalidCron { field, message }) => {
      assert_eq!(field, "expression");
      assert!(message.contains("never matches"), "{message}");
    }
    other => panic!("expected never matches, got {other:?}"),
  }
}

#[test]
fn cron_whose_years_have_passed_is_accepted_without_next_run() {
  let mut s = Scheduler::new();
  let sched = add(
    &mut s,
    cron("y2020", "0 0 0 1 1 * 2020", "UTC"),
    ms("2024-01-01T00:00:00Z"),
  );
  assert_eq!(sched.next_run_at, None);
  assert_eq!(s.next_wake(), None);
}

#[test]
fn cron_catch_up_after_a_long_downtime_takes_the_latest() {
  let mut s = Scheduler::new();
  let start = ms("2024-01-01T00:00:30Z");
  let mut spec = cron("c", "* * * * *", "UTC");
  spec.misfire = Misfire::CatchUp;
  spec.max_catch_up = 3;
  add(&mut s, spec, start);
  assert_eq!(get(&s, "c").next_run_at, Some(ms("2024-01-01T00:01:00Z")));
  // Down for 30 days: only the three most recent minutes are caught up.
  let fires = s.due(ms("2024-01-31T00:00:30Z"), &idle);
  assert_eq!(
    times(&fires),
    vec![
      ms("2024-01-30T23:58:00Z"),
      ms("2024-01-30T23:59:00Z"),
      ms("2024-01-31T00:00:00Z"),
    ]
  );
  assert_eq!(get(&s, "c").next_run_at, Some(ms("2024-01-31T00:01:00Z")));
}

// ---- one-time -------------------------------------------------------------

#[test]
fn once_fires_once_at_its_time() {
  let mut s = Scheduler::new();
  assert_eq!(
    add(&mut s, once("o", 5_000), 1_000).next_run_at,
    Some(5_000)
  );
  assert_eq!(s.next_wake(), Some(5_000));
  assert!(s.due(4_999, &idle).is_empty());
  assert_eq!(times(&s.due(5_010, &idle)), vec![5_000]);
  assert!(s.due(1_000_000, &idle).is_empty());
  let o = get(&s, "o");
  assert_eq!(
    (o.run_count, o.last_run_at, o.next_run_at),
    (1, Some(5_000), None)
  );
}

#[test]
fn once_in_the_past_fires_at_once_whatever_the_misfire_policy() {
  let mut s = Scheduler::new();
  let mut spec = once("o", 1_000);
  spec.misfire = Misfire::Skip;
  assert_eq!(add(&mut s, spec, 50_000).next_run_at, Some(50_000));
  assert_eq!(times(&s.due(50_000, &idle)), vec![50_000]);
  assert_eq!(get(&s, "o").next_run_at, None);
  // Upserting the same definition again (e.g. at the next boot) does not
  // fire it again.
  add(
    &mut s,
    {
      let mut spec = once("o", 1_000);
      spec.misfire = Misfire::Skip;
      spec
    },
    90_000,
  );
  assert_eq!(get(&s, "o").next_run_at, None);
  assert!(s.due(100_000, &idle).is_empty());
}

#[test]
fn once_missed_during_downtime_follows_the_misfire_policy() {
  for (misfire, expected) in [
    (Misfire::RunOnce, vec![5_000]),
    (Misfire::Skip, vec![]),
    (Misfire::CatchUp, vec![5_000]),
  ] {
    let mut s = Scheduler::new();
    let mut spec = once("o", 5_000);
    spec.misfire = misfire;
    add(&mut s, spec, 1_000);
    assert_eq!(times(&s.due(60_000, &idle)), expected, "{misfire:?}");
    assert_eq!(get(&s, "o").next_run_at, None, "{misfire:?}");
  }
}

// ---- enable / disable / remove --------------------------------------------

#[test]
fn re_enabling_does_not_replay_the_disabled_period() {
  let mut s = Scheduler::new();
  add(&mut s, interval("a", 1_000, Some(0)), 0);
  assert_eq!(times(&s.due(0, &idle)), vec![0]);
  let off = s.set_enabled("a", false, 500).cloned();
  assert_eq!(off.map(|a| (a.enabled, a.next_run_at)), Some((false, None)));
  assert!(s.due(5_000, &idle).is_empty());
  assert_eq!(s.next_wake(), None);
  let on = s.set_enabled("a", true, 10_500).cloned();
  assert_eq!(
    on.map(|a| (a.enabled, a.next_run_at)),
    Some((true, Some(11_000)))
  );
  assert_eq!(times(&s.due(11_000, &idle)), vec![11_000]);
  assert_eq!(get(&s, "a").run_count, 2);
  // Setting the current state again changes nothing.
  let before = get(&s, "a").clone();
  s.set_enabled("a", true, 11_500);
  assert_eq!(get(&s, "a"), &before);
  assert!(s.set_enabled("nope", true, 0).is_none());
}

#[test]
fn re_enabling_a_one_time_schedule_after_its_time_finishes_it() {
  let mut s = Scheduler::new();
  add(&mut s, once("late", 5_000), 0);
  add(&mut s, once("soon", 50_000), 0);
  s.set_enabled("late", false, 1_000);
  s.set_enabled("soon", false, 1_000);
  assert_eq!(
    s.set_enabled("late", true, 20_000)
      .and_then(|o| o.next_run_at),
    None
  );
  assert_eq!(
    s.set_enabled("soon", true, 20_000)
      .and_then(|o| o.next_run_at),
    Some(50_000)
  );
  assert_eq!(times(&s.due(60_000, &idle)), vec![50_000]);
}

#[test]
fn disabled_upsert_has_no_next_run() {
  let mut s = Scheduler::new();
  let mut spec = interval("a", 1_000, Some(0));
  spec.enabled = false;
  assert_eq!(add(&mut s, spec, 0).next_run_at, None);
  assert!(s.due(10_000, &idle).is_empty());
  assert_eq!(
    s.set_enabled("a", true, 10_000).and_then(|a| a.next_run_at),
    Some(10_000)
  );
}

#[test]
fn removing_cancels_future_fires() {
  let mut s = Scheduler::new();
  add(&mut s, interval("a", 1_000, Some(0)), 0);
  add(&mut s, interval("b", 700, Some(0)), 0);
  assert_eq!(s.remove("a").map(|a| a.id), Some("a".to_string()));
  assert!(s.remove("a").is_none());
  assert!(s.get("a").is_none());
  let fires = s.due(5_000, &idle);
  assert!(fires.iter().all(|f| f.schedule_id == "b"), "{fires:?}");
  s.remove("b");
  assert_eq!(s.next_wake(), None);
  assert!(s.is_empty());
}

// ---- upsert ---------------------------------------------------------------

#[test]
fn upsert_by_id_updates_without_duplicating() {
  let mut s = Scheduler::new();
  let created = s.upsert(interval("a", 1_000, Some(0)), 0).map(|(_, c)| c);
  assert_eq!(created, Ok(true));
  assert_eq!(times(&s.due(0, &idle)), vec![0]);
  assert_eq!(times(&s.due(1_000, &idle)), vec![1_000]);
  s.record_job("a", "job-2");

  let mut spec = interval("a", 5_000, Some(0));
  spec.calc = "other".into();
  spec.data = r#"{"x":1}"#.into();
  let (a, created) = match s.upsert(spec, 1_500) {
    Ok((a, created)) => (a.clone(), created),
    Err(e) => panic!("{e}"),
  };
  assert!(!created);
  assert_eq!(s.len(), 1);
  assert_eq!((a.run_count, a.last_run_at), (2, Some(1_000)));
  assert_eq!(a.last_job_id.as_deref(), Some("job-2"));
  assert_eq!(a.created_at, 0);
  assert_eq!(a.updated_at, 1_500);
  // A new interval: the next run is computed from now on the new grid.
  assert_eq!(a.next_run_at, Some(5_000));
  let fires = s.due(5_000, &idle);
  assert_eq!(times(&fires), vec![5_000]);
  assert_eq!(
    (fires[0].calc.as_str(), fires[0].data.as_str()),
    ("other", r#"{"x":1}"#)
  );
  assert_eq!(get(&s, "a").run_count, 3);
}

#[test]
fn upserting_the_same_definition_keeps_missed_runs() {
  // The app upserts its schedules at every boot, after restore().
  let mut s = Scheduler::new();
  add(&mut s, interval("a", MIN, Some(0)), 0);
  assert_eq!(times(&s.due(0, &idle)), vec![0]);
  let stored = get(&s, "a").clone();

  let mut after_restart = Scheduler::new();
  after_restart.restore(vec![stored]);
  let boot = 10 * MIN + 30_000;
  let (a, created) = match after_restart.upsert(interval("a", MIN, Some(0)), boot) {
    Ok((a, created)) => (a.clone(), created),
    Err(e) => panic!("{e}"),
  };
  assert!(!created);
  assert_eq!(a.next_run_at, Some(MIN));
  // RunOnce: the missed period is made up by one fire.
  assert_eq!(times(&after_restart.due(boot + 1, &idle)), vec![10 * MIN]);
  assert_eq!(get(&after_restart, "a").next_run_at, Some(11 * MIN));

  // New bounds apply to the kept next run...
  let mut spec = interval("a", MIN, Some(0));
  spec.end_at = Some(20 * MIN);
  assert_eq!(
    add(&mut after_restart, spec, boot + 2).next_run_at,
    Some(11 * MIN)
  );
  let mut spec = interval("a", MIN, Some(0));
  spec.max_runs = Some(2);
  assert_eq!(add(&mut after_restart, spec, boot + 3).next_run_at, None);
  // ... and lifting a bound revives a finished schedule from now.
  let mut spec = interval("a", MIN, Some(0));
  spec.max_runs = Some(5);
  assert_eq!(
    add(&mut after_restart, spec, boot + 4).next_run_at,
    Some(11 * MIN)
  );
  // Changing the timing computes from now: nothing missed is kept.
  let mut spec = interval("a", 2 * MIN, Some(0));
  spec.max_runs = Some(5);
  assert_eq!(
    add(&mut after_restart, spec, 15 * MIN).next_run_at,
    Some(16 * MIN)
  );
}

// ---- overlap --------------------------------------------------------------

#[test]
fn overlap_skip_skips_while_busy_and_queue_fires() {
  let mut s = Scheduler::new();
  add(&mut s, interval("skip", 1_000, Some(0)), 0);
  let mut spec = interval("queue", 1_000, Some(0));
  spec.overlap = Overlap::Queue;
  add(&mut s, spec, 0);

  let fires = s.due(0, &busy);
  assert_eq!(fires.len(), 1);
  assert_eq!(fires[0].schedule_id, "queue");
  // The skipped schedule still moves on.
  let skipped = get(&s, "skip");
  assert_eq!(
    (skipped.run_count, skipped.last_run_at, skipped.next_run_at),
    (0, None, Some(1_000))
  );
  assert_eq!(get(&s, "queue").run_count, 1);

  let asked = std::cell::RefCell::new(Vec::new());
  let is_busy = |id: &str| {
    asked.borrow_mut().push(id.to_string());
    id == "nothing"
  };
  let fires = s.due(1_000, &is_busy);
  assert_eq!(times(&fires), vec![1_000, 1_000]);
  let ids: Vec<&str> = fires.iter().map(|f| f.schedule_id.as_str()).collect();
  assert_eq!(ids, vec!["queue", "skip"]);
  // Only Overlap::Skip schedules are asked.
  assert_eq!(asked.borrow().as_slice(), ["skip".to_string()]);
}

// ---- misfire --------------------------------------------------------------

/// An interval schedule every minute from 0 that fired at 0, then due() at
/// `now` after a downtime.
fn after_downtime(misfire: Misfire, max_catch_up: u32, now: u64) -> (Vec<u64>, Schedule) {
  let mut s = Scheduler::new();
  let mut spec = interval("a", MIN, Some(0));
  spec.misfire = misfire;
  spec.max_catch_up = max_catch_up;
  add(&mut s, spec, 0);
  assert_eq!(times(&s.due(0, &idle)), vec![0]);
  let fired = times(&s.due(now, &idle));
  (fired, get(&s, "a").clone())
}

#[test]
fn misfire_run_once_fires_once_for_the_missed_period() {
  let (fired, a) = after_downtime(Misfire::RunOnce, 10, 10 * MIN + 30_000);
  assert_eq!(fired, vec![10 * MIN]);
  assert_eq!(
    (a.run_count, a.last_run_at, a.next_run_at),
    (2, Some(10 * MIN), Some(11 * MIN))
  );
}

#[test]
fn misfire_skip_drops_the_missed_period() {
  let (fired, a) = after_downtime(Misfire::Skip, 10, 10 * MIN + 30_000);
  assert!(fired.is_empty());
  assert_eq!(
    (a.run_count, a.last_run_at, a.next_run_at),
    (1, Some(0), Some(11 * MIN))
  );
}

#[test]
fn misfire_catch_up_fires_each_missed_time() {
  let (fired, a) = after_downtime(Misfire::CatchUp, 10, 10 * MIN + 30_000);
  assert_eq!(fired, (1..=10).map(|k| k * MIN).collect::<Vec<_>>());
  assert_eq!((a.run_count, a.next_run_at), (11, Some(11 * MIN)));
}

#[test]
fn misfire_catch_up_is_bounded_by_max_catch_up() {
  let (fired, a) = after_downtime(Misfire::CatchUp, 3, 100 * MIN + 30_000);
  assert_eq!(fired, vec![98 * MIN, 99 * MIN, 100 * MIN]);
  assert_eq!((a.run_count, a.next_run_at), (4, Some(101 * MIN)));
  // The default bound is 10.
  let (fired, _) = after_downtime(Misfire::CatchUp, DEFAULT_MAX_CATCH_UP, 100 * MIN + 30_000);
  assert_eq!(fired, (91..=100).map(|k| k * MIN).collect::<Vec<_>>());
}

#[test]
fn misfire_policies_keep_an_on_time_fire() {
  // Down from 0 to 10 min + 0.5 s: 10 min itself is on time.
  let now = 10 * MIN + 500;
  assert_eq!(after_downtime(Misfire::RunOnce, 10, now).0, vec![10 * MIN]);
  assert_eq!(after_downtime(Misfire::Skip, 10, now).0, vec![10 * MIN]);
  assert_eq!(
    after_downtime(Misfire::CatchUp, 2, now).0,
    vec![9 * MIN, 10 * MIN]
  );
}

/// Issue 17, bug 10: `maxCatchUp` is a hard limit on the fires of one
/// catch-up, the on-time ones (less than GRACE_MS late) included: with
/// `maxCatchUp: 1` three fires came out.
#[test]
fn max_catch_up_is_a_hard_limit_with_on_time_fires_in_the_grace() {
  let mut s = Scheduler::new();
  let mut spec = interval("fast", 300, Some(0));
  spec.misfire = Misfire::CatchUp;
  spec.max_catch_up = 1;
  add(&mut s, spec, 0);
  assert_eq!(times(&s.due(0, &idle)), vec![0]);
  // Down from 0 to 10 s: 9.3 s, 9.6 s and 9.9 s are in the grace.
  let fired = times(&s.due(10_000, &idle));
  assert_eq!(fired, vec![9_900]);
}

#[test]
fn catch_up_respects_max_runs_and_end_at() {
  let mut s = Scheduler::new();
  let mut spec = interval("runs", MIN, Some(0));
  spec.misfire = Misfire::CatchUp;
  spec.max_runs = Some(4);
  add(&mut s, spec, 0);
  let mut spec = interval("end", MIN, Some(0));
  spec.misfire = Misfire::CatchUp;
  spec.end_at = Some(5 * MIN + 1);
  add(&mut s, spec, 0);
  let mut spec = interval("once", MIN, Some(0));
  spec.end_at = Some(5 * MIN + 1);
  add(&mut s, spec, 0);
  s.due(0, &idle);
  let fires = s.due(50 * MIN + 30_000, &idle);
  let of = |id: &str| -> Vec<u64> {
    fires
      .iter()
      .filter(|f| f.schedule_id == id)
      .map(|f| f.fire_time)
      .collect()
  };
  // 10 most recent missed (41..=50 min), of which 3 runs are left.
  assert_eq!(of("runs"), vec![41 * MIN, 42 * MIN, 43 * MIN]);
  assert_eq!(of("end"), vec![MIN, 2 * MIN, 3 * MIN, 4 * MIN, 5 * MIN]);
  // RunOnce: the latest missed time before endAt.
  assert_eq!(of("once"), vec![5 * MIN]);
  for id in ["runs", "end", "once"] {
    assert_eq!(get(&s, id).next_run_at, None, "{id}");
  }
  assert_eq!(get(&s, "runs").run_count, 4);
}

#[test]
fn restored_schedules_get_their_misfire_policy_on_the_next_due() {
  let mut s = Scheduler::new();
  let mut spec = cron("c", "0 * * * *", "UTC");
  spec.misfire = Misfire::CatchUp;
  add(&mut s, spec, ms("2024-06-01T00:30:00Z"));
  s.due(ms("2024-06-01T01:00:00Z"), &idle);
  let json = serde_json::to_string(get(&s, "c")).unwrap_or_default();

  let stored: Schedule = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
  let mut restarted = Scheduler::new();
  restarted.restore(vec![stored]);
  assert!(restarted.take_changed().is_empty());
  assert_eq!(restarted.next_wake(), Some(ms("2024-06-01T02:00:00Z")));
  let fires = restarted.due(ms("2024-06-01T04:30:00Z"), &idle);
  assert_eq!(
    times(&fires),
    vec![
      ms("2024-06-01T02:00:00Z"),
      ms("2024-06-01T03:00:00Z"),
      ms("2024-06-01T04:00:00Z"),
    ]
  );
  assert_eq!(restarted.take_changed(), vec!["c".to_string()]);
}

// ---- next_wake, list, changes ---------------------------------------------

#[test]
fn next_wake_is_the_earliest_enabled_next_run() {
  let mut s = Scheduler::new();
  assert_eq!(s.next_wake(), None);
  add(&mut s, interval("a", 1_000, Some(5_000)), 0);
  add(&mut s, once("b", 3_000), 0);
  add(&mut s, interval("c", 1_000, Some(2_000)), 0);
  assert_eq!(s.next_wake(), Some(2_000));
  s.set_enabled("c", false, 0);
  assert_eq!(s.next_wake(), Some(3_000));
  s.due(3_000, &idle);
  assert_eq!(s.next_wake(), Some(5_000));
}

#[test]
fn list_filters_by_kind_calc_and_enabled() {
  let mut s = Scheduler::new();
  add(&mut s, interval("a", 1_000, None), 0);
  let mut spec = once("b", 5_000);
  spec.calc = "report".into();
  add(&mut s, spec, 0);
  let mut spec = cron("c", "@daily", "UTC");
  spec.enabled = false;
  add(&mut s, spec, 0);
  let ids = |filter: ScheduleFilter| -> Vec<String> {
    s.list(&filter).iter().map(|x| x.id.clone()).collect()
  };
  assert_eq!(ids(ScheduleFilter::default()), ["a", "b", "c"]);
  assert_eq!(
    ids(ScheduleFilter {
      kind: Some(ScheduleKind::Cron),
      ..Default::default()
    }),
    ["c"]
  );
  assert_eq!(
    ids(ScheduleFilter {
      calc: Some("calc".into()),
      ..Default::default()
    }),
    ["a", "c"]
  );
  assert_eq!(
    ids(ScheduleFilter {
      calc: Some("calc".into()),
      enabled: Some(true),
      ..Default::default()
    }),
    ["a"]
  );
}

#[test]
fn take_changed_names_what_to_store() {
  let mut s = Scheduler::new();
  add(&mut s, interval("a", 1_000, Some(0)), 0);
  add(&mut s, interval("b", 1_000, Some(500)), 0);
  add(&mut s, interval("gone", 1_000, Some(500)), 0);
  s.remove("gone");
  assert_eq!(s.take_changed(), ["a", "b"]);
  assert!(s.take_changed().is_empty());
  s.due(0, &idle);
  assert_eq!(s.take_changed(), ["a"]);
  assert!(s.record_job("b", "j1"));
  assert!(!s.record_job("nope", "j1"));
  assert_eq!(s.take_changed(), ["b"]);
  assert_eq!(get(&s, "b").last_job_id.as_deref(), Some("j1"));
}

// ---- JSON -----------------------------------------------------------------

#[test]
fn schedule_serde_round_trip() {
  let mut s = Scheduler::new();
  let mut spec = cron("c", "*/5 9-17 * * MON-FRI", "europe/berlin");
  spec.data = r#"{"a":[1,2]}"#.into();
  spec.context = r#"{"user":"x"}"#.into();
  spec.job_options = r#"{"priority":"high"}"#.into();
  spec.max_runs = Some(7);
  spec.end_at = Some(ms("2030-01-01T00:00:00Z"));
  spec.start_at = Some(ms("2024-01-01T00:00:00Z"));
  spec.misfire = Misfire::CatchUp;
  spec.max_catch_up = 4;
  spec.overlap = Overlap::Queue;
  add(&mut s, spec, ms("2024-03-04T08:00:00Z"));
  s.due(ms("2024-03-04T08:00:00Z"), &idle);
  s.record_job("c", "job-1");
  add(&mut s, interval("i", 250, Some(1_000)), 0);
  add(&mut s, once("o", 42), 0);

  for original in s.iter() {
    let json = serde_json::to_string(original).unwrap_or_default();
    let back: Schedule = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, original, "{json}");
    assert_eq!(serde_json::to_string(&back).unwrap_or_default(), json);
  }
  let json = serde_json::to_string(get(&s, "c")).unwrap_or_default();
  let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
  assert_eq!(v["kind"], "cron");
  assert_eq!(v["expression"], "*/5 9-17 * * MON-FRI");
  assert_eq!(v["tz"], "Europe/Berlin");
  assert_eq!(v["misfire"], "catchUp");
  assert_eq!(v["overlap"], "queue");
  assert_eq!(v["jobOptions"], r#"{"priority":"high"}"#);
  assert_eq!(v["lastJobId"], "job-1");
  assert_eq!(v["maxCatchUp"], 4);
  assert!(v.get("intervalMs").is_none());
}

#[test]
fn schedule_json_with_a_bad_cron_is_rejected() {
  let json = r#"{"id":"x","calc":"c","kind":"cron","expression":"61 * * * *","tz":"UTC"}"#;
  let err = serde_json::from_str::<Schedule>(json).map(|_| ());
  assert!(err.is_err_and(|e| e.to_string().contains("minute")));
  let json = r#"{"id":"x","calc":"c","kind":"interval"}"#;
  let err = serde_json::from_str::<Schedule>(json).map(|_| ());
  assert!(err.is_err_and(|e| e.to_string().contains("intervalMs")));
}

#[test]
fn spec_json_uses_defaults() {
  let json = r#"{"id":"x","calc":"c","kind":"interval","intervalMs":5000}"#;
  let spec: ScheduleSpec = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
  let mut expected = ScheduleSpec::new("x", "c", Trigger::Interval { interval_ms: 5_000 });
  expected.max_catch_up = DEFAULT_MAX_CATCH_UP;
  assert_eq!(spec, expected);
  assert!(spec.enabled);
  assert_eq!((spec.data.as_str(), spec.context.as_str()), ("null", "{}"));
}

#[test]
fn public_json_has_the_documented_shape() {
  let mut s = Scheduler::new();
  let mut spec = interval("i", 250, Some(1_000));
  spec.max_runs = Some(5);
  add(&mut s, spec, 0);
  s.due(1_000, &idle);
  s.record_job("i", "job-9");
  let v: serde_json::Value =
    serde_json::from_str(&get(&s, "i").to_public_json(Some("running"))).unwrap_or_default();
  assert_eq!(
    v,
    serde_json::json!({
      "id": "i", "name": "calc", "kind": "interval", "intervalMs": 250,
      "enabled": true, "runCount": 1, "maxRuns": 5, "endAt": null, "startAt": 1000,
      "lastRunAt": 1000, "nextRunAt": 1250, "lastJobId": "job-9", "lastStatus": "running",
      "skippedFires": 0, "misfire": "runOnce", "overlap": "skip"
    })
  );
  add(&mut s, once("o", 42), 0);
  let v: serde_json::Value =
    serde_json::from_str(&get(&s, "o").to_public_json(None)).unwrap_or_default();
  assert_eq!(v["kind"], "once");
  assert_eq!(v["scheduledAt"], 42);
  assert_eq!(v["lastStatus"], serde_json::Value::Null);
  assert_eq!(v["lastRunAt"], serde_json::Value::Null);
  assert!(v.get("expression").is_none() && v.get("tz").is_none());
  add(&mut s, cron("c", "@hourly", "UTC"), 0);
  let v: serde_json::Value =
    serde_json::from_str(&get(&s, "c").to_public_json(None)).unwrap_or_default();
  assert_eq!(
    (
      v["kind"].as_str(),
      v["expression"].as_str(),
      v["tz"].as_str()
    ),
    (Some("cron"), Some("@hourly"), Some("UTC"))
  );
}

// ---- validation -----------------------------------------------------------

#[test]
fn validation_errors_name_the_field() {
  let starts = |spec: ScheduleSpec, field: &str| {
    let msg = invalid(spec);
    assert!(msg.starts_with(field), "{field}: {msg}");
  };
  starts(interval("", 1_000, None), "id");
  starts(interval(&"x".repeat(257), 1_000, None), "id");
  assert!(Scheduler::new()
    .upsert(interval(&"x".repeat(256), 1_000, None), 0)
    .is_ok());
  starts(
    ScheduleSpec::new("a", "", Trigger::Interval { interval_ms: 1 }),
    "calc",
  );
  starts(interval("a", 0, None), "intervalMs");
  starts(interval("a", MAX_DATE_MS + 1, None), "intervalMs");
  starts(once("a", MAX_DATE_MS + 1), "scheduledAt");
  let msg = invalid(once("a", u64::MAX));
  assert_eq!(msg, "scheduledAt must be a valid date");
  let mut spec = interval("a", 1_000, Some(5_000));
  spec.end_at = Some(4_999);
  starts(spec, "endAt");
  let mut spec = once("a", 5_000);
  spec.end_at = Some(4_000);
  starts(spec, "endAt");
  let mut spec = once("a", 5_000);
  spec.start_at = Some(4_000);
  starts(spec, "startAt");
  let mut spec = cron("a", "@daily", "UTC");
  spec.start_at = Some(MAX_DATE_MS + 1);
  starts(spec, "startAt");
  let mut spec = interval("a", 1_000, None);
  spec.end_at = Some(u64::MAX);
  starts(spec, "endAt");
  let mut spec = interval("a", 1_000, None);
  spec.max_runs = Some(0);
  starts(spec, "maxRuns");
  let mut spec = interval("a", 1_000, None);
  spec.max_catch_up = 0;
  starts(spec, "maxCatchUp");
  let mut spec = interval("a", 1_000, None);
  spec.max_catch_up = MAX_CATCH_UP_LIMIT + 1;
  starts(spec, "maxCatchUp");
  // A failed upsert leaves nothing behind; the error has the schedule code.
  let mut s = Scheduler::new();
  let err = s.upsert(interval("a", 0, None), 0).map(|_| ());
  assert_eq!(err.map_err(|e| e.code()), Err("ERR_INVALID_SCHEDULE"));
  assert!(s.is_empty());
  // Cron errors come from the expression parser.
  let err = Trigger::cron("* * *", Some("UTC")).map(|_| ());
  assert_eq!(err.map_err(|e| e.code()), Err("ERR_INVALID_CRON"));
  // end == start is allowed: one possible fire.
  let mut spec = interval("ok", 1_000, Some(5_000));
  spec.end_at = Some(5_000);
  assert_eq!(add(&mut s, spec, 0).next_run_at, Some(5_000));
}

// ---- properties -----------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
  /// Advance the clock by this many ms and call due(); busy or not.
  Due(u64, bool),
  Toggle,
  Reupsert,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    8 => (0u64..20_000, any::<bool>()).prop_map(|(step, busy)| Op::Due(step, busy)),
    1 => Just(Op::Toggle),
    1 => Just(Op::Reupsert),
  ]
}

fn misfire() -> impl Strategy<Value = Misfire> {
  prop_oneof![
    Just(Misfire::RunOnce),
    Just(Misfire::Skip),
    Just(Misfire::CatchUp)
  ]
}

proptest! {
  #[test]
  fn fire_times_increase_and_respect_max_runs(
    every in 1u64..5_000,
    start in proptest::option::of(0u64..10_000),
    max_runs in proptest::option::of(1u32..30),
    end_after in proptest::option::of(0u64..200_000),
    misfire in misfire(),
    max_catch_up in 1u32..20,
    queue in any::<bool>(),
    created in 0u64..5_000,
    ops in proptest::collection::vec(op(), 1..60),
  ) {
    let mut spec = interval("p", every, start);
    spec.max_runs = max_runs;
    spec.end_at = end_after.map(|e| start.unwrap_or(0) + e);
    spec.misfire = misfire;
    spec.max_catch_up = max_catch_up;
    spec.overlap = if queue { Overlap::Queue } else { Overlap::Skip };
    let mut s = Scheduler::new();
    prop_assert!(s.upsert(spec.clone(), created).is_ok());
    let anchor = start.unwrap_or(created + every);
    let mut now = created;
    let mut fired: Vec<u64> = Vec::new();
    for op in ops {
      match op {
        Op::Due(step, is_busy) => {
          now += step;
          let busy_fn = move |_: &str| is_busy;
          let fires = s.due(now, &busy_fn);
          let call = times(&fires);
          prop_assert!(call.len() <= max_catch_up as usize + 1_001, "{call:?}");
          for t in call {
            prop_assert!(t <= now, "fire {t} after now {now}");
            prop_assert!(t >= anchor && (t - anchor) % every == 0, "fire {t} off the grid");
            if let Some(end) = spec.end_at {
              prop_assert!(t <= end, "fire {t} after endAt {end}");
            }
            if let Some(&last) = fired.last() {
              prop_assert!(t > last, "fire {t} not after {last}");
            }
            fired.push(t);
          }
        }
        Op::Toggle => {
          let enabled = s.get("p").is_some_and(|p| p.enabled);
          prop_assert!(s.set_enabled("p", !enabled, now).is_some());
        }
        Op::Reupsert => {
          let mut again = spec.clone();
          again.enabled = s.get("p").is_some_and(|p| p.enabled);
          prop_assert!(s.upsert(again, now).is_ok());
        }
      }
      let Some(p) = s.get("p") else {
        return Err(TestCaseError::fail("schedule lost"));
      };
      prop_assert_eq!(p.run_count, fired.len() as u64);
      prop_assert_eq!(p.last_run_at, fired.last().copied());
      if let Some(max) = max_runs {
        prop_assert!(fired.len() <= max as usize);
      }
      if let (Some(next), Some(&last)) = (p.next_run_at, fired.last()) {
        prop_assert!(next > last);
      }
    }
  }

  #[test]
  fn timely_calls_fire_every_grid_time(
    every in 1u64..3_000,
    start in 0u64..10_000,
    steps in proptest::collection::vec(0u64..=GRACE_MS, 1..80),
    misfire in misfire(),
  ) {
    // Called at least every GRACE_MS ms, nothing is missed, whatever the policy.
    let mut spec = interval("p", every, Some(start));
    spec.misfire = misfire;
    let mut s = Scheduler::new();
    prop_assert!(s.upsert(spec, start).is_ok());
    let mut now = start;
    let mut fired = times(&s.due(now, &idle));
    for step in steps {
      now += step;
      fired.extend(times(&s.due(now, &idle)));
    }
    let expected: Vec<u64> = (0..).map(|k| start + k * every).take_while(|&t| t <= now).collect();
    prop_assert_eq!(fired, expected);
  }
}

proptest! {
  #![proptest_config(ProptestConfig::with_cases(64))]

  #[test]
  fn cron_fire_times_increase_and_respect_max_runs(
    expr in prop_oneof![
      Just("* * * * *"),
      Just("*/7 * * * * *"),
      Just("0 */2 * * *"),
      Just("30 2 * * *"),
    ],
    tz in prop_oneof![Just("UTC"), Just("Europe/Berlin")],
    // Around the 2024 spring-forward in Berlin.
    created in ms("2024-03-30T20:00:00Z")..ms("2024-03-31T02:00:00Z"),
    max_runs in proptest::option::of(1u32..40),
    misfire in misfire(),
    steps in proptest::collection::vec(0u64..3 * HOUR, 1..40),
  ) {
    let mut spec = cron("p", expr, tz);
    spec.max_runs = max_runs;
    spec.misfire = misfire;
    let mut s = Scheduler::new();
    prop_assert!(s.upsert(spec, created).is_ok());
    let mut now = created;
    let mut fired: Vec<u64> = Vec::new();
    for step in steps {
      now += step;
      for t in times(&s.due(now, &idle)) {
        prop_assert!(t <= now);
        prop_assert!(t + GRACE_MS >= created, "fire {t} before creation {created}");
        if let Some(&last) = fired.last() {
          prop_assert!(t > last, "fire {t} not after {last}");
        }
        fired.push(t);
      }
      if let Some(max) = max_runs {
        prop_assert!(fired.len() <= max as usize);
      }
      let Some(p) = s.get("p") else {
        return Err(TestCaseError::fail("schedule lost"));
      };
      prop_assert_eq!(p.run_count, fired.len() as u64);
      prop_assert!(p.next_run_at.is_none_or(|next| next > now));
    }
  }
}

// ------------------------------------------------- merge_cluster (PostgreSQL)

/// A schedule as another process stored it.
fn stored(spec: ScheduleSpec, now: u64) -> Schedule {
  let mut other = Scheduler::new();
  add(&mut other, spec, now)
}

#[test]
fn merge_cluster_adds_changes_and_removes_what_other_processes_did() {
  let t0 = ms("2026-01-05T00:00:00Z");
  let mut s = Scheduler::new();
  add(&mut s, interval("kept", MIN, Some(t0 + MIN)), t0);
  add(&mut s, interval("gone", MIN, Some(t0 + MIN)), t0);
  add(&mut s, interval("mine", MIN, Some(t0 + MIN)), t0);
  s.take_changed();
  let mut changed = interval("kept", 2 * MIN, Some(t0 + MIN));
  changed.misfire = Misfire::Skip;
  let all = vec![
    (stored(changed, t0), None),
    (stored(interval("new", MIN, Some(t0 + MIN)), t0), None),
  ];
  // "mine" was saved here after the read began: it stays as it is.
  s.merge_cluster(all, &["mine".to_string()]);
  let ids: Vec<&str> = s.iter().map(|x| x.id.as_str()).collect();
  assert_eq!(ids, ["kept", "mine", "new"]);
  assert_eq!(get(&s, "kept").misfire, Misfire::Skip);
  assert_eq!(
    get(&s, "kept").trigger,
    Trigger::Interval {
      interval_ms: 2 * MIN
    }
  );
  assert!(s.take_changed().is_empty(), "a merge is nothing to store");
}

#[test]
fn merge_cluster_moves_next_runs_past_the_clusters_last_fire() {
  let t0 = ms("2026-01-05T00:00:00Z");
  let mut s = Scheduler::new();
  add(&mut s, cron("c", "* * * * *", "UTC"), t0);
  add(&mut s, once("o", t0 + MIN), t0);
  let c = get(&s, "c").clone();
  let o = get(&s, "o").clone();
  assert_eq!(c.next_run_at, Some(t0));
  // Another process fired "c" up to 10 min and "o".
  s.merge_cluster(
    vec![(c.clone(), Some(t0 + 10 * MIN)), (o, Some(t0 + MIN))],
    &[],
  );
  assert_eq!(get(&s, "c").next_run_at, Some(t0 + 11 * MIN));
  assert_eq!(
    get(&s, "o").next_run_at,
    None,
    "a one-time schedule fired elsewhere is done"
  );
  // A process that starts after the cluster was down from 10 min to 30
  // min: the missed times are the cluster's (11 min to 30 min).
  let mut fresh = Scheduler::new();
  let mut down = c;
  down.run_count = 11;
  down.last_run_at = Some(t0 + 10 * MIN);
  fresh.merge_cluster(vec![(down, Some(t0 + 10 * MIN))], &[]);
  assert_eq!(get(&fresh, "c").next_run_at, Some(t0 + 11 * MIN));
  let fires = fresh.due(t0 + 30 * MIN, &idle);
  // runOnce: one fire for them, at the latest.
  assert_eq!(times(&fires), [t0 + 30 * MIN]);
  assert_eq!(get(&fresh, "c").run_count, 12);
}

#[test]
fn merge_cluster_keeps_the_local_timing_and_takes_the_clusters_run_state() {
  let t0 = ms("2026-01-05T00:00:00Z");
  let mut s = Scheduler::new();
  add(&mut s, interval("i", MIN, Some(t0 + MIN)), t0);
  assert_eq!(times(&s.due(t0 + MIN, &idle)), [t0 + MIN]);
  assert_eq!(times(&s.due(t0 + 2 * MIN, &idle)), [t0 + 2 * MIN]);
  let mut st = get(&s, "i").clone();
  // The cluster: the other process won 2 min, with its job.
  st.last_job_id = Some("job-2".into());
  st.run_count = 2;
  st.next_run_at = Some(t0); // stale in the stored JSON: not taken
  s.merge_cluster(vec![(st, Some(t0 + 2 * MIN))], &[]);
  let i = get(&s, "i");
  assert_eq!(i.next_run_at, Some(t0 + 3 * MIN));
  assert_eq!(i.last_job_id.as_deref(), Some("job-2"));
  assert_eq!(i.run_count, 2);
}

#[test]
fn merge_cluster_puts_an_interval_on_the_first_creators_grid() {
  let t0 = ms("2026-01-05T00:00:00Z");
  let mut s = Scheduler::new();
  // Created here at 3 s: its grid would be 63 s, 123 s, ...
  add(&mut s, interval("i", MIN, None), t0 + 3_000);
  assert_eq!(get(&s, "i").next_run_at, Some(t0 + 63_000));
  let mut first = stored(interval("i", MIN, None), t0);
  first.updated_at = t0 + 3_000;
  s.merge_cluster(vec![(first, None)], &[]);
  assert_eq!(get(&s, "i").next_run_at, Some(t0 + MIN));
  assert_eq!(get(&s, "i").created_at, t0);
}
