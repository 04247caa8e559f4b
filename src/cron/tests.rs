//! Unit tests for [`super::CronExpr`]: parsing, errors and fire times.

use chrono::DateTime;

use super::*;

fn ms(iso: &str) -> u64 {
  let dt = DateTime::parse_from_rfc3339(iso).unwrap_or_else(|e| panic!("bad test date {iso}: {e}"));
  u64::try_from(dt.timestamp_millis()).expect("test dates are after 1970")
}

fn iso(ms: u64) -> String {
  let secs = i64::try_from(ms / 1000).expect("in range");
  DateTime::from_timestamp(secs, 0)
    .map(|d| d.to_rfc3339())
    .unwrap_or_default()
}

fn runs(expr: &str, tz: &str, from: &str, count: usize) -> Vec<String> {
  let cron = CronExpr::parse(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr}: {e}"));
  cron
    .next_runs(ms(from), count)
    .into_iter()
    .map(iso)
    .collect()
}

fn utc(list: &[&str]) -> Vec<String> {
  list.iter().map(|s| iso(ms(s))).collect()
}

fn err_field(expr: &str) -> String {
  match CronExpr::parse(expr, Some("UTC")) {
    Err(Error::InvalidCron { field, message }) => {
      assert!(!message.is_empty(), "{expr:?}: empty message");
      field
    }
    Err(other) => panic!("{expr:?}: expected InvalidCron, got {other:?}"),
    Ok(cron) => panic!(
      "{expr:?}: expected an error, parsed as {:?}",
      cron.pattern()
    ),
  }
}

// ---- parsing ------------------------------------------------------------

#[test]
fn parses_five_and_six_fields() {
  let five = CronExpr::parse("*/15 9-17 * * MON-FRI", Some("Europe/Berlin")).expect("five fields");
  assert_eq!(five.pattern(), "0 */15 9-17 * * 1-5");
  assert_eq!(five.source(), "*/15 9-17 * * MON-FRI");
  assert_eq!(five.tz_name(), "Europe/Berlin");
  let six = CronExpr::parse("  30 0 12 * * *  ", Some("UTC")).expect("six fields");
  assert_eq!(six.pattern(), "30 0 12 * * *");
  assert_eq!(six.source(), "30 0 12 * * *");
  assert_eq!(six.to_string(), "30 0 12 * * * (UTC)");
}

#[test]
fn accepts_the_documented_syntax() {
  for expr in [
    "* * * * *",
    "0 0 * * *",
    "0,30 * * * *",
    "0 9-17/2 * * *",
    "5/15 * * * *",
    "/10 * * * *",
    "0 0 1 JAN,jul *",
    "0 0 * * sun",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 * * FRI-SUN",
    "0 0 L * *",
    "0 0 l * *",
    "0 0 1,15,L * *",
    "0 0 15W * *",
    "0 0 15w * *",
    "0 0 LW * *",
    "0 0 * * 5#3",
    "0 0 * * MON#1",
    "0 0 * * 5L",
    "0 0 * * FRI#L",
    "0 0 ? * MON",
    "0 0 1 * ?",
    "0 0 13 * FRI",
    "*/5 * * * * *",
    "0 0\t12  * *   *",
    "00 09 01 01 *",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@DAILY",
  ] {
    assert!(
      CronExpr::parse(expr, Some("UTC")).is_ok(),
      "{expr:?} should parse"
    );
  }
}

#[test]
fn sunday_is_zero_and_seven() {
  let zero = runs("0 12 * * 0", "UTC", "2026-01-01T00:00:00Z", 3);
  assert_eq!(zero, runs("0 12 * * 7", "UTC", "2026-01-01T00:00:00Z", 3));
  assert_eq!(zero, runs("0 12 * * SUN", "UTC", "2026-01-01T00:00:00Z", 3));
  assert_eq!(
    zero,
    utc(&[
      "2026-01-04T12:00:00Z",
      "2026-01-11T12:00:00Z",
      "2026-01-18T12:00:00Z"
    ])
  );
}

#[test]
fn question_mark_is_a_wildcard() {
  assert_eq!(
    runs("0 0 ? * MON", "UTC", "2026-01-01T00:00:00Z", 2),
    utc(&["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"])
  );
}

#[test]
fn fixed_time_jobs_are_detected() {
  let fixed = |e: &str| {
    CronExpr::parse(e, Some("UTC"))
      .map(|c| c.is_fixed_time())
      .ok()
  };
  assert_eq!(fixed("30 2 * * *"), Some(true));
  assert_eq!(fixed("@daily"), Some(true));
  assert_eq!(fixed("0 0 * * 5#3"), Some(true));
  assert_eq!(fixed("0 * * * *"), Some(false));
  assert_eq!(fixed("*/15 * * * *"), Some(false));
  assert_eq!(fixed("0 8,12 * * *"), Some(false));
}

// ---- errors ------------------------------------------------------------

#[test]
fn rejects_malformed_expressions_naming_the_field() {
  let cases: &[(&str, &str)] = &[
    // the list
    ("61 * * * *", "minute"),
    ("* * * *", "expression"),
    ("*/0 * * * *", "minute"),
    ("1,,2 * * * *", "minute"),
    ("", "expression"),
    ("   ", "expression"),
    ("\t\n", "expression"),
    ("* 25 * * *", "hour"),
    ("* * 32 * *", "dayOfMonth"),
    ("* * * 13 *", "month"),
    ("* * * * 8", "dayOfWeek"),
    // a year field, as npm croner 10 reads it
    ("0 0 0 1 1 * 10000", "year"),
    ("0 0 0 1 1 * 0", "year"),
    ("0 0 0 1 1 * abc", "year"),
    ("0 0 0 1 1 * L", "year"),
    ("0 0 0 1 1 * 2026-2020", "year"),
    // more of each field
    ("60 * * * * *", "second"),
    ("*/61 * * * * *", "second"),
    ("a * * * * *", "second"),
    ("-1 * * * *", "minute"),
    ("1- * * * *", "minute"),
    ("5-1 * * * *", "minute"),
    ("*/x * * * *", "minute"),
    ("*/61 * * * *", "minute"),
    ("1,2, * * * *", "minute"),
    (",1 * * * *", "minute"),
    ("L * * * *", "minute"),
    ("0 24 * * *", "hour"),
    ("0 */25 * * *", "hour"),
    ("0 MON * * *", "hour"),
    ("0 ? * * *", "hour"),
    ("0 0 0 * *", "dayOfMonth"),
    ("0 0 32W * *", "dayOfMonth"),
    ("0 0 5L * *", "dayOfMonth"),
    ("0 0 5#2 * *", "dayOfMonth"),
    ("0 0 X * *", "dayOfMonth"),
    ("0 0 * 0 *", "month"),
    ("0 0 * FOO *", "month"),
    ("0 0 * MON *", "month"),
    ("0 0 * JAN-DECEMBER *", "month"),
    ("0 0 * ? *", "month"),
    ("0 0 * * 5#6", "dayOfWeek"),
    ("0 0 * * 5#0", "dayOfWeek"),
    ("0 0 * * MONDAY", "dayOfWeek"),
    ("0 0 * * JAN", "dayOfWeek"),
    ("0 0 * * L", "dayOfWeek"),
    ("0 0 * * 5W", "dayOfWeek"),
    ("0 0 * * MON+", "dayOfWeek"),
    ("0 0 * * ++MON", "dayOfWeek"),
    ("0 0 +1 * MON", "dayOfMonth"),
    ("0 0 * * SAT-MON", "dayOfWeek"),
    ("0 0 * * */8", "dayOfWeek"),
    ("* * * * * @", "dayOfWeek"),
    // macros and counts
    ("@reboot", "expression"),
    ("@every 5m", "expression"),
    ("@daily *", "expression"),
    ("@", "expression"),
    ("*", "expression"),
    ("* * * * * * * *", "expression"),
  ];
  for (expr, field) in cases {
    assert_eq!(err_field(expr), *field, "{expr:?}");
  }
}

#[test]
fn error_messages_name_the_problem() {
  let message = |expr: &str| match CronExpr::parse(expr, Some("UTC")) {
    Err(Error::InvalidCron { message, .. }) => message,
    other => panic!("{expr:?}: {other:?}"),
  };
  assert!(message("1,,2 * * * *").contains("empty list item"));
  assert!(message("*/0 * * * *").contains("step cannot be 0"));
  assert!(message("61 * * * *").contains("0-59"));
  assert!(message("0 0 0 1 1 * 10000").contains("1-9999"));
  assert!(message("* * * *").contains("got 4"));
  assert!(message("@reboot").contains("unknown macro"));
  assert!(message("").contains("empty"));
  let err = CronExpr::parse("61 * * * *", Some("UTC")).expect_err("invalid");
  assert_eq!(err.code(), "ERR_INVALID_CRON");
  assert!(
    err
      .to_string()
      .starts_with("invalid cron expression (minute): "),
    "{err}"
  );
}

#[test]
fn rejects_unknown_time_zones() {
  for tz in ["Mars/Olympus", "", "Europe/Berlinn", "GMT+2:00"] {
    match CronExpr::parse("* * * * *", Some(tz)) {
      Err(Error::InvalidCron { field, message }) => {
        assert_eq!(field, "tz", "{tz:?}");
        assert!(message.contains(&format!("{tz:?}")), "{message}");
      }
      other => panic!("{tz:?}: expected a tz error, got {other:?}"),
    }
  }
}

#[test]
fn a_bad_expression_is_reported_before_a_bad_zone() {
  assert_eq!(
    CronExpr::parse("61 * * * *", Some("Mars/Olympus")).map(|_| ()),
    Err(Error::InvalidCron {
      field: "minute".to_string(),
      message: "\"61\": Component error: Number out of bounds. (allowed values 0-59)".to_string(),
    })
  );
}

#[test]
fn zone_names_are_canonicalized() {
  let cron = CronExpr::parse("0 0 * * *", Some("america/new_york")).expect("case-insensitive zone");
  assert_eq!(cron.tz_name(), "America/New_York");
  assert_eq!(cron.tz(), chrono_tz::America::New_York);
}

#[test]
fn no_zone_means_the_local_zone() {
  let cron = CronExpr::parse("0 0 * * *", None).expect("local zone");
  assert_eq!(cron.tz_name(), local_tz().name());
}

// ---- fire times ----------------------------------------------------------

#[test]
fn next_after_is_strictly_after() {
  let cron = CronExpr::parse("0 * * * *", Some("UTC")).expect("valid");
  let ten = ms("2026-01-01T10:00:00Z");
  assert_eq!(cron.next_after(ten), Some(ms("2026-01-01T11:00:00Z")));
  assert_eq!(cron.next_after(ten - 1), Some(ten));
  assert_eq!(cron.next_after(ten + 999), Some(ms("2026-01-01T11:00:00Z")));
  let every_second = CronExpr::parse("* * * * * *", Some("UTC")).expect("valid");
  assert_eq!(every_second.next_after(ten + 500), Some(ten + 1000));
  assert_eq!(every_second.next_after(0), Some(1000));
}

#[test]
fn matches_reads_the_wall_clock() {
  let cron = CronExpr::parse("30 9 * * MON-FRI", Some("Europe/Berlin")).expect("valid");
  // 2026-01-05 is a Monday; 09:30 CET is 08:30Z.
  assert!(cron.matches(ms("2026-01-05T08:30:00Z")));
  assert!(!cron.matches(ms("2026-01-05T08:30:00Z") + 1));
  assert!(!cron.matches(ms("2026-01-05T09:30:00Z")));
  assert!(!cron.matches(ms("2026-01-04T08:30:00Z")));
  assert!(!cron.matches(u64::MAX));
}

#[test]
fn next_runs_counts() {
  let cron = CronExpr::parse("*/20 * * * * *", Some("UTC")).expect("valid");
  let from = ms("2026-01-01T00:00:00Z");
  assert!(cron.next_runs(from, 0).is_empty());
  assert_eq!(
    cron.next_runs(from, 3),
    vec![from + 20_000, from + 40_000, from + 60_000]
  );
  assert_eq!(cron.next_runs(from, 100).len(), 100);
}

#[test]
fn expressions_that_never_match_are_rejected() {
  for expr in [
    "0 0 30 2 *",
    "0 0 31 4,6,9,11 *",
    "0 0 31 FEB *",
    "0 0 30W 2 *",
    "0 0 0 29 2 * 2027",
    "0 0 0 1 1 * 1969",
  ] {
    assert_eq!(err_field(expr), "expression", "{expr}");
    let Err(e) = CronExpr::parse(expr, Some("Europe/Berlin")) else {
      panic!("{expr}: accepted");
    };
    assert!(e.to_string().contains("never matches"), "{expr}: {e}");
  }
  // rare but possible: the fifth Monday of February (leap years whose 1st is a Monday)
  assert_eq!(
    runs("0 0 * 2 1#5", "UTC", "2026-01-01T00:00:00Z", 1),
    utc(&["2044-02-29T00:00:00Z"])
  );
}

#[test]
fn a_year_field_is_accepted() {
  let cron = CronExpr::parse("0 0 0 1 1 * 2030", Some("UTC")).expect("7 fields");
  assert_eq!(cron.pattern(), "0 0 0 1 1 * 2030");
  assert_eq!(
    runs("0 0 0 1 1 * 2030", "UTC", "2026-01-01T00:00:00Z", 3),
    utc(&["2030-01-01T00:00:00Z"])
  );
  assert_eq!(
    runs(
      "0 30 9 * * MON 2027,2029-2030/1",
      "UTC",
      "2026-01-01T00:00:00Z",
      1
    ),
    utc(&["2027-01-04T09:30:00Z"])
  );
  // a year that has passed: valid, but nothing runs any more
  assert!(runs("0 0 0 1 1 * 2020", "UTC", "2026-01-01T00:00:00Z", 3).is_empty());
}

#[test]
fn plus_makes_day_of_month_and_day_of_week_both_required() {
  assert_eq!(
    runs("0 0 1 * +MON", "UTC", "2026-01-01T00:00:00Z", 3),
    utc(&[
      "2026-06-01T00:00:00Z",
      "2027-02-01T00:00:00Z",
      "2027-03-01T00:00:00Z"
    ])
  );
}

#[test]
fn out_of_range_starts_give_none() {
  let cron = CronExpr::parse("* * * * *", Some("UTC")).expect("valid");
  assert_eq!(cron.next_after(u64::MAX), None);
  assert!(cron.next_runs(u64::MAX, 2).is_empty());
}

#[test]
fn day_of_month_or_day_of_week() {
  // Friday the 13th is OR: every 13th and every Friday.
  assert_eq!(
    runs("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z", 5),
    utc(&[
      "2026-01-02T00:00:00Z",
      "2026-01-09T00:00:00Z",
      "2026-01-13T00:00:00Z",
      "2026-01-16T00:00:00Z",
      "2026-01-23T00:00:00Z",
    ])
  );
  // With one side `*`, only the other restricts.
  assert_eq!(
    runs("0 0 13 * *", "UTC", "2026-01-01T00:00:00Z", 2),
    utc(&["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"])
  );
}

#[test]
fn last_nearest_and_nth_days() {
  assert_eq!(
    runs("0 0 L * *", "UTC", "2026-01-01T00:00:00Z", 3),
    utc(&[
      "2026-01-31T00:00:00Z",
      "2026-02-28T00:00:00Z",
      "2026-03-31T00:00:00Z"
    ])
  );
  // 2026-02-15 and 2026-03-15 are Sundays: nearest weekday is Monday the 16th.
  assert_eq!(
    runs("0 0 15W * *", "UTC", "2026-02-01T00:00:00Z", 2),
    utc(&["2026-02-16T00:00:00Z", "2026-03-16T00:00:00Z"])
  );
  // 2026-01-31 is a Saturday: last weekday is Friday the 30th.
  assert_eq!(
    runs("0 0 LW * *", "UTC", "2026-01-01T00:00:00Z", 1),
    utc(&["2026-01-30T00:00:00Z"])
  );
  assert_eq!(
    runs("0 0 * * 5#3", "UTC", "2026-01-01T00:00:00Z", 2),
    utc(&["2026-01-16T00:00:00Z", "2026-02-20T00:00:00Z"])
  );
  let last_friday = utc(&["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]);
  assert_eq!(
    runs("0 0 * * 5L", "UTC", "2026-01-01T00:00:00Z", 2),
    last_friday
  );
  assert_eq!(
    runs("0 0 * * FRI#L", "UTC", "2026-01-01T00:00:00Z", 2),
    last_friday
  );
}

#[test]
fn dst_gap_fixed_time_runs_when_the_gap_ends() {
  // Europe/Berlin 2026-03-29: 02:00 CET -> 03:00 CEST (01:00Z).
  assert_eq!(
    runs("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
    utc(&["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"])
  );
}

#[test]
fn a_gap_longer_than_two_hours_is_crossed() {
  // Pacific/Apia skipped 2011-12-30 (-10 -> +14 at 2011-12-30T10:00Z); croner
  // alone gives up on a fixed time inside it.
  assert_eq!(
    runs("0 12 * * *", "Pacific/Apia", "2011-12-28T00:00:00Z", 4),
    utc(&[
      "2011-12-28T22:00:00Z",
      "2011-12-29T22:00:00Z",
      "2011-12-30T10:00:00Z", // 2011-12-31 00:00 +14, when the gap ends
      "2011-12-30T22:00:00Z", // 2011-12-31 12:00 +14
    ])
  );
  // A date the pattern does not run on after the gap gets no carried run.
  assert_eq!(
    runs("0 12 30 * *", "Pacific/Apia", "2011-12-28T00:00:00Z", 1),
    utc(&["2012-01-29T22:00:00Z"]) // 2012-01-30 12:00 +14 (DST)
  );
  // Interval jobs just skip the missing day.
  assert_eq!(
    runs("0 */12 * * *", "Pacific/Apia", "2011-12-29T12:00:00Z", 3),
    utc(&[
      "2011-12-29T22:00:00Z",
      "2011-12-30T10:00:00Z",
      "2011-12-30T22:00:00Z"
    ])
  );
}

#[test]
fn dst_overlap_fixed_time_runs_once() {
  // America/New_York 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 happens twice.
  assert_eq!(
    runs("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
    utc(&["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
  );
}

#[test]
fn dst_overlap_interval_keeps_elapsed_time() {
  assert_eq!(
    runs("0 * * * *", "America/New_York", "2026-11-01T04:00:00Z", 4),
    utc(&[
      "2026-11-01T05:00:00Z",
      "2026-11-01T06:00:00Z",
      "2026-11-01T07:00:00Z",
      "2026-11-01T08:00:00Z"
    ])
  );
}
