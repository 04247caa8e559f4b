//! Property tests for `CronExpr`: for random valid expressions, zones and
//! start times (many near DST changes), `next_runs` is strictly increasing,
//! starts after `from`, agrees with `next_after`, lands on times the pattern
//! matches (or at the end of a DST gap for fixed-time jobs), and skips no
//! matching second it should have fired on.

use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use jobwerk::cron::CronExpr;
use proptest::prelude::*;
use proptest::sample::select;

/// Zones with and without DST, half-hour and 45-minute offsets, a 30-minute
/// DST shift (Lord Howe), DST changes at midnight (Santiago) and a skipped day
/// (Apia).
const ZONES: &[&str] = &[
  "UTC",
  "Europe/Berlin",
  "Europe/London",
  "America/New_York",
  "America/Santiago",
  "Australia/Sydney",
  "Australia/Lord_Howe",
  "Asia/Kolkata",
  "Pacific/Chatham",
  "Pacific/Apia",
];

/// Approximate DST changes (epoch seconds) of the zones above; starts are
/// drawn within a day and a half of one of them.
const TRANSITIONS: &[(&str, i64)] = &[
  ("Europe/Berlin", 1_774_746_000),       // 2026-03-29T01:00Z
  ("Europe/Berlin", 1_792_890_000),       // 2026-10-25T01:00Z
  ("Europe/London", 1_774_746_000),       // 2026-03-29T01:00Z
  ("Europe/London", 1_792_890_000),       // 2026-10-25T01:00Z
  ("America/New_York", 1_772_953_200),    // 2026-03-08T07:00Z
  ("America/New_York", 1_793_512_800),    // 2026-11-01T06:00Z
  ("America/Santiago", 1_775_358_000),    // 2026-04-05T03:00Z
  ("America/Santiago", 1_788_667_200),    // 2026-09-06T04:00Z
  ("Australia/Sydney", 1_775_318_400),    // 2026-04-04T16:00Z
  ("Australia/Sydney", 1_791_043_200),    // 2026-10-03T16:00Z
  ("Australia/Lord_Howe", 1_775_314_800), // 2026-04-04T15:00Z
  ("Australia/Lord_Howe", 1_791_041_400), // 2026-10-03T15:30Z
  ("Pacific/Chatham", 1_775_311_200),     // 2026-04-04T14:00Z
  ("Pacific/Chatham", 1_790_431_200),     // 2026-09-26T14:00Z
  ("Pacific/Apia", 1_325_239_200),        // 2011-12-30T10:00Z: 2011-12-30 skipped
];

fn number(min: u32, max: u32) -> BoxedStrategy<String> {
  (min..=max).prop_map(|n| n.to_string()).boxed()
}

fn range(min: u32, max: u32) -> BoxedStrategy<String> {
  (min..=max, min..=max)
    .prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b)))
    .boxed()
}

fn item(min: u32, max: u32, max_step: u32) -> BoxedStrategy<String> {
  prop_oneof![
    3 => number(min, max),
    2 => range(min, max),
    2 => (1..=max_step).prop_map(|s| format!("*/{s}")),
    1 => (range(min, max), 1..=max_step).prop_map(|(r, s)| format!("{r}/{s}")),
    1 => (min..=max, 1..=max_step).prop_map(|(a, s)| format!("{a}/{s}")),
  ]
  .boxed()
}

fn field(min: u32, max: u32, max_step: u32) -> BoxedStrategy<String> {
  prop_oneof![
    3 => Just("*".to_string()),
    4 => item(min, max, max_step),
    2 => prop::collection::vec(item(min, max, max_step), 2..4).prop_map(|items| items.join(",")),
  ]
  .boxed()
}

fn second() -> BoxedStrategy<Option<String>> {
  prop_oneof![4 => Just(None), 1 => field(0, 59, 60).prop_map(Some)].boxed()
}

fn day_of_month() -> BoxedStrategy<String> {
  prop_oneof![
    6 => field(1, 31, 31),
    1 => Just("L".to_string()),
    1 => (1..=31u32).prop_map(|d| format!("{d}W")),
    1 => Just("LW".to_string()),
    1 => Just("1,15,L".to_string()),
    1 => Just("?".to_string()),
  ]
  .boxed()
}

fn month() -> BoxedStrategy<String> {
  prop_oneof![
    6 => field(1, 12, 12),
    1 => select(vec!["JAN", "feb", "Mar", "JUN-AUG", "JAN,JUL", "NOV-DEC"]).prop_map(str::to_string),
  ]
  .boxed()
}

fn day_of_week() -> BoxedStrategy<String> {
  prop_oneof![
    6 => field(0, 7, 7),
    1 => select(vec!["MON-FRI", "sat,sun", "FRI-SUN", "Wed", "?"]).prop_map(str::to_string),
    1 => (0..=7u32, 1..=5u32).prop_map(|(d, n)| format!("{d}#{n}")),
    1 => (0..=7u32).prop_map(|d| format!("{d}L")),
    1 => select(vec!["FRI#L", "MON#1", "SUN#5"]).prop_map(str::to_string),
  ]
  .boxed()
}

fn expression() -> BoxedStrategy<String> {
  let fields = (
    second(),
    field(0, 59, 60),
    field(0, 23, 24),
    day_of_month(),
    month(),
    day_of_week(),
  );
  let plain = fields.prop_map(|(s, mi, h, dom, mo, dow)| {
    let five = format!("{mi} {h} {dom} {mo} {dow}");
    match s {
      Some(s) => format!("{s} {five}"),
      None => five,
    }
  });
  prop_oneof![
    12 => plain,
    1 => select(vec!["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"])
      .prop_map(str::to_string),
  ]
  .boxed()
}

/// A zone and a start (epoch ms): anywhere in 1970-2100, or near a DST change
/// of the chosen zone.
fn zone_and_start() -> BoxedStrategy<(String, u64)> {
  let anywhere =
    (select(ZONES.to_vec()), 0..4_102_444_800_000u64).prop_map(|(z, ms)| (z.to_string(), ms));
  let near_change = (
    select(TRANSITIONS.to_vec()),
    -129_600_000i64..129_600_000i64,
  )
    .prop_map(|((z, secs), delta)| (z.to_string(), (secs * 1000 + delta) as u64));
  prop_oneof![1 => anywhere, 2 => near_change].boxed()
}

fn tz(name: &str) -> Tz {
  name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn wall(tz: Tz, ms: u64) -> NaiveDateTime {
  tz.timestamp_millis_opt(ms as i64)
    .single()
    .map(|d| d.naive_local())
    .unwrap_or_default()
}

/// Whether `ms` is the first instant after a DST gap: its wall clock is more
/// than a second after that of the second before.
fn ends_a_gap(tz: Tz, ms: u64) -> bool {
  (wall(tz, ms) - wall(tz, ms - 1000)).num_seconds() > 1
}

/// Whether `ms` is the later of two instants sharing a wall-clock time.
fn in_later_copy(tz: Tz, ms: u64) -> bool {
  let Some(at) = tz.timestamp_millis_opt(ms as i64).single() else {
    return false;
  };
  match tz.from_local_datetime(&at.naive_local()) {
    LocalResult::Ambiguous(earlier, later) => {
      later == at && earlier.offset().fix() != later.offset().fix()
    }
    _ => false,
  }
}

/// The longest stretch (seconds) scanned second by second for missed fire
/// times.
const SCAN_LIMIT_SECS: u64 = 3 * 3600;

fn check(expr: &str, zone: &str, from: u64, count: usize) -> Result<(), TestCaseError> {
  let cron = match CronExpr::parse(expr, Some(zone)) {
    Ok(c) => c,
    // A generated day that no generated month has (`* * 31 2 *`) is refused
    // at parse time; which expressions never match is checked against
    // croner 10's list (tests/cron_reference.rs) and in src/cron/tests.rs.
    Err(e) if e.to_string().contains("never matches") => return Ok(()),
    Err(e) => return Err(TestCaseError::fail(format!("{expr:?}: {e}"))),
  };
  let tz = tz(zone);
  let runs = cron.next_runs(from, count);

  // Increasing, after `from`, whole seconds, and `next_after` agrees.
  prop_assert_eq!(cron.next_after(from), runs.first().copied());
  let mut previous = from;
  for (i, &run) in runs.iter().enumerate() {
    prop_assert!(
      run > previous,
      "run {} ({}) is not after {}",
      i,
      run,
      previous
    );
    prop_assert_eq!(run % 1000, 0);
    if i > 0 {
      prop_assert_eq!(cron.next_after(previous), Some(run));
    }
    previous = run;
  }
  // A schedule stops early only if it never fires again.
  if runs.len() < count {
    prop_assert_eq!(cron.next_after(previous), None);
  }

  // Each run matches the pattern, or ends a DST gap (fixed-time jobs only).
  for &run in &runs {
    prop_assert!(
      cron.matches(run) || (cron.is_fixed_time() && ends_a_gap(tz, run)),
      "{} does not match and ends no gap",
      run
    );
  }

  // Nothing between two consecutive fire times matches, except the second
  // copy of a repeated time for a fixed-time job.
  let mut scanned = 0;
  let mut start = from;
  for &run in &runs {
    let first = start / 1000 + 1;
    let last = run / 1000;
    if last - first <= SCAN_LIMIT_SECS && scanned < 2 {
      scanned += 1;
      for secs in first..last {
        let t = secs * 1000;
        if cron.matches(t) {
          prop_assert!(
            cron.is_fixed_time() && in_later_copy(tz, t),
            "{} matches between {} and {} but was skipped",
            t,
            start,
            run
          );
        }
      }
    }
    start = run;
  }
  Ok(())
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

  #[test]
  fn next_runs_are_increasing_matching_and_complete(
    expr in expression(),
    (zone, from) in zone_and_start(),
    count in 1usize..10,
  ) {
    check(&expr, &zone, from, count)?;
  }
}

/// Fixed regressions and DST corner cases, run every time.
#[test]
fn dst_corner_cases_hold_the_properties() {
  let cases: &[(&str, &str, u64)] = &[
    ("30 2 * * *", "Europe/Berlin", 1_774_652_400_000), // 2026-03-27T23:00Z
    ("30 2 * * *", "Europe/Berlin", 1_792_796_400_000), // 2026-10-23T23:00Z
    ("*/30 2 * * *", "Europe/Berlin", 1_792_796_400_000),
    ("0 * * * *", "America/New_York", 1_793_505_600_000), // 2026-11-01T04:00Z
    ("30 1 * * *", "America/New_York", 1_793_422_800_000), // 2026-10-31T05:00Z
    ("0 0 * * *", "America/Santiago", 1_788_580_800_000), // 2026-09-05T04:00Z, midnight gap
    ("0 0 * * *", "America/Santiago", 1_775_271_600_000), // 2026-04-04T03:00Z, midnight overlap
    ("15 2 * * *", "Australia/Lord_Howe", 1_790_956_800_000), // 2026-10-02T16:00Z
    ("*/15 * * * * *", "Pacific/Chatham", 1_775_307_600_000),
    ("0 12 * * *", "Pacific/Apia", 1_325_030_400_000), // 2011-12-28T00:00Z
    ("30 23 * * *", "Pacific/Apia", 1_325_030_400_000),
  ];
  for (expr, zone, from) in cases {
    if let Err(e) = check(expr, zone, *from, 8) {
      panic!("{expr:?} in {zone} from {from}: {e}");
    }
  }
}
