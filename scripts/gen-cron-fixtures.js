#!/usr/bin/env node
// Generates tests/fixtures/cron-reference.json: reference fire times for
// `CronExpr::next_runs` (src/cron), computed by the npm packages users know.
//
//   node scripts/gen-cron-fixtures.js
//
// The primary reference is npm `croner` 10 (Strapi 5.54's cron runs it),
// configured like ours: day-of-month OR day-of-week (Vixie cron; croner 10's
// default, croner 9's `legacyMode: true`) and an explicit `timezone`. npm `cron-parser` is run on every case as a
// cross-check. Each case records both outputs; `next` is what the Rust side
// must produce, and `expect` says where `next` came from:
//
//   "croner"       npm croner's output (the default);
//   "cron-parser"  npm cron-parser's output, where npm croner contradicts the
//                  semantics jobwerk documents (see the case's `note`);
//   "computed"     computed by this script, where both contradict the
//                  documented semantics (DST gap); see the case's `note`.
//
// A case may also carry `check` (a function from fromMs to runs): a second
// opinion computed here that npm croner must agree with (W, LW).
//
// Two more lists: `neverMatches` (expressions that no date fits: npm croner
// accepts them and never runs them, jobwerk refuses them with
// ERR_INVALID_CRON) and `acceptance` (whether npm croner 10 accepts each
// expression; jobwerk accepts the same ones, except those with a `note`).
//
// Every case that does not follow npm croner carries a `note`; the Rust test
// fails on a case whose `next` differs from npm croner without one.

'use strict'

const fs = require('fs')
const path = require('path')
const { Cron } = require('croner')
const { CronExpressionParser } = require('cron-parser')

const COUNT = 5
const OUT = path.join(__dirname, '..', 'tests', 'fixtures', 'cron-reference.json')

function pkgVersion(name) {
  const file = require.resolve(`${name}/package.json`, { paths: [path.join(__dirname, '..')] })
  return JSON.parse(fs.readFileSync(file, 'utf8')).version
}

function iso(ms) {
  return new Date(ms).toISOString()
}

function ms(isoString) {
  const t = Date.parse(isoString)
  if (Number.isNaN(t)) throw new Error(`bad ISO date ${isoString}`)
  return t
}

/** npm croner: the next COUNT runs strictly after `from`, or { error }. */
function runCroner(expr, tz, from) {
  try {
    const job = new Cron(expr, { timezone: tz, paused: true })
    const runs = job.nextRuns(COUNT, new Date(from)).map((d) => d.getTime())
    job.stop()
    return runs
  } catch (e) {
    return { error: String(e.message || e) }
  }
}

/** npm cron-parser: the next COUNT runs strictly after `from`, or { error }. */
function runCronParser(expr, tz, from) {
  try {
    const it = CronExpressionParser.parse(expr, { tz, currentDate: new Date(from) })
    return it.take(COUNT).map((d) => d.getTime())
  } catch (e) {
    return { error: String(e.message || e) }
  }
}

/** Days in `month` (1-12) of `year`. */
function daysInMonth(year, month) {
  return new Date(Date.UTC(year, month, 0)).getUTCDate()
}

/**
 * The day of month that `W` (nearest weekday) picks in a month: `day` is a
 * number or 'L' (LW: the last weekday). The nearest weekday never leaves the
 * month (1W on a Saturday is Monday the 3rd).
 */
function nearestWeekday(year, month, day) {
  const last = daysInMonth(year, month)
  const d = day === 'L' ? last : day
  if (d > last) return null
  const dow = new Date(Date.UTC(year, month - 1, d)).getUTCDay()
  if (dow === 6) return d === 1 ? 3 : d - 1
  if (dow === 0) return d === last ? d - 2 : d + 1
  return d
}

/** Fire times of `M H <day>W * *` in UTC, strictly after `from`. */
function computeW(day, hour, minute) {
  return (from) => {
    const out = []
    const start = new Date(from)
    let year = start.getUTCFullYear()
    let month = start.getUTCMonth() + 1
    while (out.length < COUNT) {
      const d = nearestWeekday(year, month, day)
      if (d !== null) {
        const t = Date.UTC(year, month - 1, d, hour, minute)
        if (t > from) out.push(t)
      }
      month += 1
      if (month > 12) {
        month = 1
        year += 1
      }
    }
    return out
  }
}

const GAP_NOTE =
  'DST gap: a fixed time inside the skipped hour runs once, when the gap ends ' +
  '(the documented semantics, as in Vixie cron and Rust croner). npm croner and ' +
  'cron-parser both shift it by the DST offset (02:30 -> 03:30), which is not ' +
  'when the gap ends.'
const OVERLAP_INTERVAL_NOTE =
  'DST overlap: interval-style fields keep real elapsed time, so they run in ' +
  'both copies of the repeated hour (the documented semantics; cron-parser and ' +
  'Rust croner agree). npm croner 10 skips runs in the repeated hour.'
const GAP_BACKWARDS_NOTE =
  'DST gap, interval-style fields: they keep real elapsed time, so the runs ' +
  'go on every interval through the change (the documented semantics; ' +
  'cron-parser and Rust croner agree). npm croner 10 returns times that go ' +
  'backwards after the gap (it repeats the first runs after it), which a ' +
  'scheduler cannot use.'
const QUESTION_NOTE =
  "?: 'no specific value', as Quartz users mean it, so 0 0 ? * MON runs on " +
  'Mondays and 0 0 15 * ? on the 15th (cron-parser agrees). npm croner 10 ' +
  'reads ? as a restricted *, so with day-of-month OR day-of-week both run ' +
  'every day.'
const GAP_INTERVAL_NOTE =
  'DST gap, interval job confined to the skipped hour: the minute field is a ' +
  'step, so this is not a fixed-time job and nothing is carried past the gap; ' +
  'wall-clock times that do not exist do not run (interval-style fields keep ' +
  'real elapsed time; Vixie cron and Rust croner agree). npm croner 10 and ' +
  'cron-parser run at 03:00 and 03:30 (shifted by the DST offset).'
const OVERLAP_INTERVAL_HOUR_NOTE =
  'DST overlap, interval job confined to the repeated hour: interval-style ' +
  'fields keep real elapsed time, so it runs every 30 real minutes through both ' +
  'copies of 02:00-03:00 (Vixie cron and Rust croner agree). npm croner 10 and ' +
  'cron-parser run only in the earlier copy.'

// Each case: expr, tz, from (ISO), and optionally name, npmExpr (the
// expression given to the npm packages, when ours is an alias they lack),
// expect ('croner' | 'cron-parser' | a function from fromMs to runs), note.
const CASES = [
  // Basics
  { name: 'every minute', expr: '* * * * *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'every minute, from a fractional second', expr: '* * * * *', tz: 'UTC', from: '2026-01-01T10:15:30.250Z' },
  { name: 'strictly after a fire time', expr: '0 * * * *', tz: 'UTC', from: '2026-01-01T10:00:00Z' },
  { name: 'minute step', expr: '*/15 * * * *', tz: 'Europe/Berlin', from: '2026-05-10T10:07:00Z' },
  { name: 'minute step not dividing 60', expr: '*/7 * * * *', tz: 'UTC', from: '2026-01-01T00:50:00Z' },
  { name: 'range with step', expr: '10-40/10 9-10 * * *', tz: 'UTC', from: '2026-01-01T09:35:00Z' },
  {
    name: 'start/step (no range)',
    expr: '5/15 * * * *',
    tz: 'UTC',
    from: '2026-01-01T00:00:00Z',
    expect: 'cron-parser',
    note: "5/15: npm croner 10 refuses a step with a numeric start and no range; croner 9 and cron-parser read it as 5-59/15, and jobwerk keeps accepting it so that schedules stored before still run.",
  },
  { name: 'hour list', expr: '0 8,12,18 * * *', tz: 'America/New_York', from: '2026-06-01T00:00:00Z' },
  { name: 'hour range', expr: '0 9-17 * * *', tz: 'Asia/Kolkata', from: '2026-01-01T10:00:00Z' },
  { name: 'hour step', expr: '0 */6 * * *', tz: 'Asia/Tokyo', from: '2026-01-01T00:00:00Z' },
  // Names
  { name: 'weekday names range', expr: '0 9 * * MON-FRI', tz: 'Europe/Berlin', from: '2026-01-02T12:00:00Z' },
  { name: 'lower-case names', expr: '30 6 * jan,jul mon', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'month name range', expr: '0 0 1 JAN-MAR *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'weekday range ending on SUN', expr: '0 0 * * FRI-SUN', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'Sunday as 0', expr: '0 12 * * 0', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'Sunday as 7', expr: '0 12 * * 7', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  // Day of month OR day of week
  { name: 'Friday the 13th is OR', expr: '0 0 13 * FRI', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'DOM list OR DOW', expr: '0 0 1,15 * MON', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'DOM step OR DOW', expr: '0 0 */10 * SUN', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  // Calendar edges
  { name: 'Feb 29', expr: '0 0 29 2 *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'day 31 skips short months', expr: '0 0 31 * *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'last day of month', expr: '0 0 L * *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'last day of month, late evening', expr: '59 23 L * *', tz: 'Europe/Berlin', from: '2026-01-31T23:00:00Z' },
  {
    name: 'nearest weekday (W)',
    expr: '0 0 15W * *',
    tz: 'UTC',
    from: '2026-01-01T00:00:00Z',
    check: computeW(15, 0, 0),
  },
  {
    name: 'nearest weekday to the 1st (W)',
    expr: '0 0 1W * *',
    tz: 'UTC',
    from: '2026-01-01T00:00:00Z',
    check: computeW(1, 0, 0),
  },
  {
    name: 'last weekday of month (LW)',
    expr: '0 18 LW * *',
    tz: 'UTC',
    from: '2026-01-01T00:00:00Z',
    check: computeW('L', 18, 0),
  },
  { name: 'third Friday (#)', expr: '0 0 * * 5#3', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'first Monday (#, name)', expr: '0 9 * * MON#1', tz: 'Europe/Berlin', from: '2026-01-01T00:00:00Z' },
  { name: 'fifth Sunday (#5)', expr: '0 0 * * 0#5', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'last Friday (#L)', expr: '0 0 * * 5#L', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'last Friday (L)', expr: '0 0 * * 5L', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'fifth Monday of February (rare)', expr: '0 0 * 2 1#5', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  // ? is no specific value
  { name: '? in day-of-month', expr: '0 0 ? * MON', tz: 'UTC', from: '2026-01-01T00:00:00Z', expect: 'cron-parser', note: QUESTION_NOTE },
  { name: '? in day-of-week', expr: '0 0 15 * ?', tz: 'UTC', from: '2026-01-01T00:00:00Z', expect: 'cron-parser', note: QUESTION_NOTE },
  // + : day-of-month AND day-of-week (croner 10)
  { name: '+ AND modifier', expr: '0 0 1 * +MON', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: '+ AND modifier, Friday the 13th', expr: '0 12 13 * +FRI', tz: 'Europe/Berlin', from: '2026-01-01T00:00:00Z' },
  // A year field (7 fields: seconds first, year last; croner 10)
  { name: 'year field', expr: '0 0 12 * * MON 2026', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'year field, range with step', expr: '0 30 9 1 * * 2026-2030/2', tz: 'Europe/Berlin', from: '2026-10-01T00:00:00Z' },
  { name: 'year field, list', expr: '0 0 0 1 1,7 * 2027,2029,2031', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  // Seconds field
  { name: 'seconds step', expr: '*/20 * * * * *', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: 'seconds fixed', expr: '30 0 12 * * *', tz: 'Europe/Berlin', from: '2026-01-01T00:00:00Z' },
  { name: 'seconds list', expr: '15,45 * * * * *', tz: 'UTC', from: '2026-01-01T00:00:50Z' },
  // Macros
  { name: '@yearly', expr: '@yearly', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: '@annually', expr: '@annually', tz: 'Europe/Berlin', from: '2026-01-01T00:00:00Z' },
  { name: '@monthly', expr: '@monthly', tz: 'UTC', from: '2026-01-15T00:00:00Z' },
  { name: '@weekly', expr: '@weekly', tz: 'UTC', from: '2026-01-01T00:00:00Z' },
  { name: '@daily', expr: '@daily', tz: 'America/New_York', from: '2026-01-01T00:00:00Z' },
  { name: '@midnight', expr: '@midnight', tz: 'UTC', from: '2026-01-01T12:00:00Z' },
  { name: '@hourly', expr: '@hourly', tz: 'UTC', from: '2026-01-01T00:30:00Z' },
  // DST, Europe/Berlin: gap 2026-03-29 02:00 -> 03:00, overlap 2026-10-25 03:00 -> 02:00
  {
    name: 'Berlin gap, fixed time in the gap',
    expr: '30 2 * * *',
    tz: 'Europe/Berlin',
    from: '2026-03-27T00:00:00Z',
    expect: [
      '2026-03-27T01:30:00Z',
      '2026-03-28T01:30:00Z',
      '2026-03-29T01:00:00Z', // 03:00 CEST, when the gap ends
      '2026-03-30T00:30:00Z',
      '2026-03-31T00:30:00Z',
    ],
    note: GAP_NOTE,
  },
  { name: 'Berlin gap, fixed time at the gap start', expr: '0 2 * * *', tz: 'Europe/Berlin', from: '2026-03-28T12:00:00Z' },
  { name: 'Berlin gap, */30', expr: '*/30 * * * *', tz: 'Europe/Berlin', from: '2026-03-29T00:00:00Z', expect: 'cron-parser', note: GAP_BACKWARDS_NOTE },
  { name: 'Berlin gap, hourly', expr: '0 * * * *', tz: 'Europe/Berlin', from: '2026-03-29T00:00:00Z', expect: 'cron-parser', note: GAP_BACKWARDS_NOTE },
  {
    name: 'Berlin gap, interval inside the gap hour',
    expr: '*/30 2 * * *',
    tz: 'Europe/Berlin',
    from: '2026-03-28T00:00:00Z',
    expect: [
      '2026-03-28T01:00:00Z',
      '2026-03-28T01:30:00Z',
      // 2026-03-29 has no 02:xx: no run
      '2026-03-30T00:00:00Z',
      '2026-03-30T00:30:00Z',
      '2026-03-31T00:00:00Z',
    ],
    note: GAP_INTERVAL_NOTE,
  },
  { name: 'Berlin overlap, fixed time in the overlap', expr: '30 2 * * *', tz: 'Europe/Berlin', from: '2026-10-23T00:00:00Z' },
  {
    name: 'Berlin overlap, fixed time, from between the two instants',
    expr: '30 2 * * *',
    tz: 'Europe/Berlin',
    from: '2026-10-25T00:45:00Z',
  },
  {
    name: 'Berlin overlap, */30',
    expr: '*/30 * * * *',
    tz: 'Europe/Berlin',
    from: '2026-10-25T00:00:00Z',
    expect: 'cron-parser',
    note: OVERLAP_INTERVAL_NOTE,
  },
  {
    name: 'Berlin overlap, hourly',
    expr: '0 * * * *',
    tz: 'Europe/Berlin',
    from: '2026-10-25T00:00:00Z',
    expect: 'cron-parser',
    note: OVERLAP_INTERVAL_NOTE,
  },
  {
    name: 'Berlin overlap, interval inside the repeated hour',
    expr: '*/30 2 * * *',
    tz: 'Europe/Berlin',
    from: '2026-10-24T23:00:00Z',
    expect: [
      '2026-10-25T00:00:00Z', // 02:00 CEST
      '2026-10-25T00:30:00Z', // 02:30 CEST
      '2026-10-25T01:00:00Z', // 02:00 CET
      '2026-10-25T01:30:00Z', // 02:30 CET
      '2026-10-26T01:00:00Z',
    ],
    note: OVERLAP_INTERVAL_HOUR_NOTE,
  },
  // DST, America/New_York: gap 2026-03-08 02:00 -> 03:00, overlap 2026-11-01 02:00 -> 01:00
  {
    name: 'New York gap, fixed time in the gap',
    expr: '30 2 * * *',
    tz: 'America/New_York',
    from: '2026-03-06T12:00:00Z',
    expect: [
      '2026-03-07T07:30:00Z',
      '2026-03-08T07:00:00Z', // 03:00 EDT, when the gap ends
      '2026-03-09T06:30:00Z',
      '2026-03-10T06:30:00Z',
      '2026-03-11T06:30:00Z',
    ],
    note: GAP_NOTE,
  },
  { name: 'New York gap, */30', expr: '*/30 * * * *', tz: 'America/New_York', from: '2026-03-08T06:00:00Z', expect: 'cron-parser', note: GAP_BACKWARDS_NOTE },
  { name: 'New York gap, hourly', expr: '0 * * * *', tz: 'America/New_York', from: '2026-03-08T05:00:00Z', expect: 'cron-parser', note: GAP_BACKWARDS_NOTE },
  { name: 'New York overlap, fixed time in the overlap', expr: '30 1 * * *', tz: 'America/New_York', from: '2026-10-30T12:00:00Z' },
  {
    name: 'New York overlap, fixed time, from between the two instants',
    expr: '30 1 * * *',
    tz: 'America/New_York',
    from: '2026-11-01T05:45:00Z',
  },
  { name: 'New York, 02:30 on the overlap day', expr: '30 2 * * *', tz: 'America/New_York', from: '2026-10-31T12:00:00Z' },
  {
    name: 'New York overlap, */30',
    expr: '*/30 * * * *',
    tz: 'America/New_York',
    from: '2026-11-01T04:30:00Z',
    expect: 'cron-parser',
    note: OVERLAP_INTERVAL_NOTE,
  },
  {
    name: 'New York overlap, hourly',
    expr: '0 * * * *',
    tz: 'America/New_York',
    from: '2026-11-01T04:00:00Z',
    expect: 'cron-parser',
    note: OVERLAP_INTERVAL_NOTE,
  },
  // DST with a 30-minute shift: Australia/Lord_Howe, gap 2026-10-04 02:00 -> 02:30
  {
    name: 'Lord Howe half-hour gap, */15',
    expr: '*/15 * * * *',
    tz: 'Australia/Lord_Howe',
    from: '2026-10-03T15:00:00Z',
    expect: [
      '2026-10-03T15:15:00Z', // 01:45 +10:30
      '2026-10-03T15:30:00Z', // 02:30 +11, the gap 02:00-02:30 skipped
      '2026-10-03T15:45:00Z',
      '2026-10-03T16:00:00Z',
      '2026-10-03T16:15:00Z',
    ],
    note:
      GAP_BACKWARDS_NOTE +
      ' Here cron-parser also skips 02:30 and 02:45 (15:30Z and 15:45Z), which exist after the 30-minute gap.',
  },
]

// No date fits these: npm croner accepts them and never runs them; jobwerk
// refuses them (ERR_INVALID_CRON, field expression, "never matches").
const NEVER_MATCHES = ['0 0 30 2 *', '0 0 31 4,6,9,11 *', '0 0 31 FEB *', '0 0 30W 2 *', '0 0 0 29 2 * 2027', '0 0 0 1 1 * 1969']

// Whether npm croner 10 accepts each; jobwerk accepts the same ones, except
// where a note says otherwise.
const ACCEPTANCE = [
  ['* * * * *'],
  ['*/5 * * * * *'],
  ['0 0 0 1 1 * 2030'],
  ['0 0 0 1 1 * *'],
  ['0 0 0 1 1 * 2026-2030/2'],
  ['0 0 1 * +MON'],
  ['0 0 1 * +1-5'],
  ['0 0 ? * MON'],
  ['0 0 15W * *'],
  ['0 0 LW * *'],
  ['0 0 L * *'],
  ['0 0 * * 5L'],
  ['0 0 * * 5#L'],
  ['0 0 * * MON#2'],
  ['0 0 * * FRI-SUN'],
  ['0 0 * JAN-MAR *'],
  ['@midnight'],
  ['@weekly'],
  ['0 0 0 1 1 * 10000'],
  ['0 0 0 1 1 * 0'],
  ['* * * *'],
  ['* * * * * * * *'],
  ['61 * * * *'],
  ['0 0 32 * *'],
  ['0 0 * * 8'],
  ['0 0 * * 5#6'],
  ['0 0 * * MON+'],
  ['@reboot'],
  ['*/0 * * * *'],
  [
    '5/15 * * * *',
    "npm croner 10 refuses a step with a numeric start and no range; croner 9 and cron-parser accept it (as 5-59/15), and jobwerk keeps accepting it so that schedules stored before still run.",
  ],
]

function sameRuns(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => v === b[i])
}

function main() {
  const cases = CASES.map((c) => {
    const fromMs = ms(c.from)
    const npmExpr = c.npmExpr || c.expr
    const croner = runCroner(npmExpr, c.tz, fromMs)
    const cronParser = runCronParser(npmExpr, c.tz, fromMs)
    let expect = c.expect || 'croner'
    let next
    if (expect === 'croner') {
      next = croner
    } else if (expect === 'cron-parser') {
      next = cronParser
    } else if (typeof expect === 'function') {
      next = expect(fromMs)
      expect = 'computed'
    } else if (Array.isArray(expect)) {
      next = expect.map(ms)
      expect = 'computed'
    } else {
      throw new Error(`${c.expr}: bad expect ${expect}`)
    }
    if (!Array.isArray(next) || next.length !== COUNT) {
      throw new Error(`${c.expr} (${c.tz}): no ${COUNT} reference runs: ${JSON.stringify(next)}`)
    }
    if (!sameRuns(next, croner) && !c.note) {
      throw new Error(`${c.expr} (${c.tz}): differs from npm croner without a note`)
    }
    if (c.check && !sameRuns(c.check(fromMs), croner)) {
      throw new Error(`${c.expr} (${c.tz}): npm croner disagrees with this script's own computation`)
    }
    const out = {
      name: c.name || c.expr,
      expr: c.expr,
      tz: c.tz,
      from: iso(fromMs),
      fromMs,
      next,
      nextIso: next.map(iso),
      expect,
    }
    if (npmExpr !== c.expr) out.npmExpr = npmExpr
    out.croner = croner
    out.cronParser = cronParser
    out.cronerAgrees = sameRuns(next, croner)
    out.cronParserAgrees = sameRuns(next, cronParser)
    if (c.note) out.note = c.note
    return out
  })

  const neverMatches = NEVER_MATCHES.map((expr) => {
    // (croner 10 answers [] or, for some, overflows its stack searching)
    const croner = runCroner(expr, 'UTC', ms('2026-01-01T00:00:00Z'))
    if (Array.isArray(croner) && croner.length > 0) throw new Error(`${expr}: npm croner runs it: ${JSON.stringify(croner)}`)
    return { expr, croner }
  })
  const acceptance = ACCEPTANCE.map(([expr, note]) => {
    let accepted = true
    let error
    try {
      new Cron(expr, { paused: true }).stop()
    } catch (e) {
      accepted = false
      error = String(e.message || e)
    }
    const out = { expr, croner: accepted }
    if (error) out.cronerError = error
    if (note) out.note = note
    return out
  })

  const doc = {
    comment:
      'Generated by scripts/gen-cron-fixtures.js; do not edit. `next` is what CronExpr::next_runs(fromMs, 5) must return (epoch ms); `croner`/`cronParser` are the npm outputs; `expect` and `note` explain any case that does not follow npm croner.',
    generator: 'scripts/gen-cron-fixtures.js',
    node: process.version,
    croner: pkgVersion('croner'),
    cronParser: pkgVersion('cron-parser'),
    count: COUNT,
    cases,
    neverMatches,
    acceptance,
  }
  fs.mkdirSync(path.dirname(OUT), { recursive: true })
  fs.writeFileSync(OUT, JSON.stringify(doc, null, 2) + '\n')

  const differing = cases.filter((c) => !c.cronerAgrees)
  console.log(`wrote ${cases.length} cases to ${path.relative(process.cwd(), OUT)}`)
  console.log(`${differing.length} cases do not follow npm croner:`)
  for (const c of differing) console.log(`  ${c.expr} (${c.tz}, from ${c.from}): expect ${c.expect}`)
  const parserDiffers = cases.filter((c) => c.expect === 'croner' && !c.cronParserAgrees)
  console.log(`${parserDiffers.length} cases follow npm croner where cron-parser differs:`)
  for (const c of parserDiffers) {
    const p = Array.isArray(c.cronParser) ? c.cronParser.map(iso).join(', ') : c.cronParser.error
    console.log(`  ${c.expr} (${c.tz}, from ${c.from}): cron-parser ${p}`)
  }
}

main()
