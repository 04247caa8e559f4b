'use strict'
// nextCronRuns: the scheduler's own cron code, exported for "next runs" previews.

const { nextCronRuns } = require('..')
const { Cron } = require('croner')

const FROM = new Date('2026-05-04T10:17:23Z')

test.each([
  ['* * * * *', 'UTC'],
  ['*/15 9-17 * * MON-FRI', 'Europe/Berlin'],
  ['0 0 L * *', 'America/New_York'],
  ['0 12 * * 5#3', 'UTC'],
  ['30 */2 * * *', 'Asia/Tokyo'],
  ['15 10 * * * *', 'UTC'],
  ['@weekly', 'UTC'],
])('%s in %s matches npm croner', (expression, tz) => {
  const ours = nextCronRuns(expression, { tz, from: FROM, count: 6 }).map((d) => d.toISOString())
  const theirs = new Cron(expression, { timezone: tz }).nextRuns(6, FROM).map((d) => d.toISOString())
  expect(ours).toEqual(theirs)
})

test('returns Dates strictly after from, count of them', () => {
  const runs = nextCronRuns('0 * * * *', { tz: 'UTC', from: new Date('2026-01-01T00:00:00Z'), count: 3 })
  expect(runs.every((d) => d instanceof Date)).toBe(true)
  expect(runs.map((d) => d.toISOString())).toEqual(['2026-01-01T01:00:00.000Z', '2026-01-01T02:00:00.000Z', '2026-01-01T03:00:00.000Z'])
  expect(nextCronRuns('0 * * * *').length).toBe(5)
  expect(nextCronRuns('0 * * * *', { from: Date.parse('2026-01-01T00:00:00Z'), tz: 'UTC', count: 1 })[0].toISOString()).toBe('2026-01-01T01:00:00.000Z')
})

test('a fixed time in the spring-forward gap runs once, when the gap ends', () => {
  const runs = nextCronRuns('30 2 * * *', { tz: 'Europe/Berlin', from: new Date('2026-03-28T12:00:00Z'), count: 2 })
  expect(runs.map((d) => d.toISOString())).toEqual(['2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z'])
})

test.each([
  ['61 * * * *', 'minute'],
  ['* * * *', 'expression'],
  ['*/0 * * * *', 'minute'],
  ['1,,2 * * * *', 'minute'],
  ['', 'expression'],
  ['* 25 * * *', 'hour'],
  ['* * 32 * *', 'dayOfMonth'],
  ['* * * 13 *', 'month'],
  ['* * * * 8', 'dayOfWeek'],
])('%j is ERR_INVALID_CRON naming %s', (expression, field) => {
  let err
  try {
    nextCronRuns(expression)
  } catch (e) {
    err = e
  }
  expect(err).toBeDefined()
  expect(err.code).toBe('ERR_INVALID_CRON')
  expect(err.field).toBe(field)
})

test('bad arguments are coded errors', () => {
  const code = (fn) => {
    try {
      fn()
    } catch (e) {
      return e.code
    }
    return null
  }
  expect(code(() => nextCronRuns(5))).toBe('ERR_INVALID_CRON')
  expect(code(() => nextCronRuns('* * * * *', { tz: 'Mars/Base' }))).toBe('ERR_INVALID_CRON')
  expect(code(() => nextCronRuns('* * * * *', { count: 0 }))).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => nextCronRuns('* * * * *', { count: 1.5 }))).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => nextCronRuns('* * * * *', { from: new Date('nope') }))).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => nextCronRuns('* * * * *', { from: NaN }))).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => nextCronRuns('* * * * *', { tz: 5 }))).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => nextCronRuns('* * * * *', 'x'))).toBe('ERR_INVALID_ARGUMENT')
})

// Issue 17, bug 13: an expression that can never fire was accepted silently;
// croner 10's syntax (a year field, `+`) is accepted; `?` keeps meaning "no
// specific value" (croner 10 would run `0 0 ? * MON` every day).
describe('croner 10 and expressions that never match', () => {
  const codeOf = (fn) => {
    try {
      fn()
    } catch (e) {
      return e
    }
    return null
  }

  test.each(['0 0 30 2 *', '0 0 31 4,6,9,11 *', '0 0 30W 2 *', '0 0 0 29 2 * 2027'])('%s never matches: ERR_INVALID_CRON (expression)', (expression) => {
    const e = codeOf(() => nextCronRuns(expression, { tz: 'UTC', from: FROM }))
    expect(e).not.toBeNull()
    expect(e.code).toBe('ERR_INVALID_CRON')
    expect(e.field).toBe('expression')
    expect(e.message).toContain('never matches')
  })

  test('a schedule that would never run is refused and nothing is scheduled', () => {
    const { JobManagementService } = require('..')
    const s = new JobManagementService({ clock: 'manual' })
    const e = codeOf(() => s.scheduleCronCalculationJob({ name: 'n', calculate() {} }, {}, {}, '0 0 30 2 *'))
    expect(e && e.code).toBe('ERR_INVALID_CRON')
    expect(e.field).toBe('expression')
    expect(s.getScheduledJobs()).toEqual([])
  })

  test('7 fields with a year, and the + (AND) modifier, as croner 10 reads them', () => {
    const iso = (expression) => nextCronRuns(expression, { tz: 'UTC', from: FROM, count: 3 }).map((d) => d.toISOString())
    const croner = (expression) => new Cron(expression, { timezone: 'UTC' }).nextRuns(3, FROM).map((d) => d.toISOString())
    for (const expression of ['0 0 0 1 1 * 2030', '0 30 9 * * MON 2027', '0 0 0 1 * * 2026-2030/2', '0 0 1 * +MON', '0 0 13 * +FRI']) {
      expect(iso(expression)).toEqual(croner(expression))
    }
    expect(iso('0 0 0 1 1 * 2030')).toEqual(['2030-01-01T00:00:00.000Z'])
  })

  test('? is "no specific value": 0 0 ? * MON runs on Mondays (croner 10 runs it daily)', () => {
    const runs = nextCronRuns('0 0 ? * MON', { tz: 'UTC', from: FROM, count: 3 })
    expect(runs.map((d) => d.getUTCDay())).toEqual([1, 1, 1])
    const theirs = new Cron('0 0 ? * MON', { timezone: 'UTC' }).nextRuns(3, FROM)
    expect(theirs.map((d) => d.getUTCDay())).not.toEqual([1, 1, 1])
  })
})
