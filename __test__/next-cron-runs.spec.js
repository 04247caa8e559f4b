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
  const theirs = new Cron(expression, { timezone: tz, legacyMode: true }).nextRuns(6, FROM).map((d) => d.toISOString())
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
