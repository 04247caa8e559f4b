'use strict'
// Schedules (one-time, interval, cron) under the manual clock, persisted in
// SQLite across a restart with each misfire policy, plus one real-time check.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { JobManagementService } = require('..')
const { serviceTracker, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const T0 = Date.parse('2026-01-05T00:00:00Z') // a Monday
const HOUR = 3600e3
const iso = (t) => new Date(t).toISOString()

function recording(service, name = 'calc') {
  const runs = []
  const calc = {
    name,
    calculate: (data) => {
      runs.push({ at: service.now(), data })
      return data
    },
  }
  return { runs, calc }
}

function manual(extra) {
  return tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxQueueSize: 10000, maxJobAge: 30 * 24 * HOUR }, ...extra })
}

test('interval schedule stays on its grid and stops at maxRuns', async () => {
  const s = manual()
  const { runs, calc } = recording(s)
  await s.start()
  const id = s.scheduleRecurringCalculationJob(calc, { n: 1 }, {}, new Date(T0 + 10 * 60e3), HOUR, { maxRuns: 3 })
  await s.advanceTime(6 * HOUR)
  expect(runs.map((r) => iso(r.at))).toEqual(['2026-01-05T00:10:00.000Z', '2026-01-05T01:10:00.000Z', '2026-01-05T02:10:00.000Z'])
  const [sched] = s.getScheduledJobs()
  expect(sched).toMatchObject({ id, kind: 'interval', intervalMs: HOUR, runCount: 3, maxRuns: 3, nextRunAt: null, enabled: true })
  expect(sched.lastRunAt).toBe(T0 + 10 * 60e3 + 2 * HOUR)
  expect(s.getJobStatus(sched.lastJobId).status).toBe('completed')
})

test('interval schedule respects endAt', async () => {
  const s = manual()
  const { runs, calc } = recording(s)
  await s.start()
  s.scheduleRecurringCalculationJob(calc, {}, {}, T0 + HOUR, HOUR, { endAt: T0 + 3 * HOUR })
  await s.advanceTime(10 * HOUR)
  expect(runs.map((r) => r.at)).toEqual([T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR])
})

test('cron schedule fires at its times in its zone; a day runs in milliseconds', async () => {
  const s = manual()
  const { runs, calc } = recording(s)
  await s.start()
  s.scheduleCronCalculationJob(calc, { k: 'berlin' }, {}, '30 9 * * MON-FRI', { tz: 'Europe/Berlin' })
  s.scheduleCronCalculationJob(calc, { k: 'quarter' }, {}, '*/15 * * * *', { tz: 'UTC' })
  const t = Date.now()
  await s.advanceTime(24 * HOUR)
  expect(Date.now() - t).toBeLessThan(10000)
  const berlin = runs.filter((r) => r.data.k === 'berlin').map((r) => iso(r.at))
  expect(berlin).toEqual(['2026-01-05T08:30:00.000Z'])
  // 00:00 itself counts (start is exactly on a fire time), then every 15 minutes.
  expect(runs.filter((r) => r.data.k === 'quarter')).toHaveLength(97)
  const list = s.getScheduledJobs({ kind: 'cron' })
  expect(list.map((x) => x.expression).sort()).toEqual(['*/15 * * * *', '30 9 * * MON-FRI'])
  expect(list.find((x) => x.tz === 'Europe/Berlin').nextRunAt).toBe(Date.parse('2026-01-06T08:30:00Z'))
})

test('one-time schedule runs once at its time; a past time runs at once', async () => {
  const s = manual()
  const { runs, calc } = recording(s)
  await s.start()
  s.scheduleCalculationJob(calc, { k: 'later' }, {}, new Date(T0 + 90 * 60e3))
  s.scheduleCalculationJob(calc, { k: 'past' }, {}, T0 - HOUR)
  await s.advanceTime(1)
  expect(runs.map((r) => r.data.k)).toEqual(['past'])
  await s.advanceTime(3 * HOUR)
  expect(runs.map((r) => [r.data.k, r.at])).toEqual([
    ['past', T0],
    ['later', T0 + 90 * 60e3],
  ])
  expect(s.getScheduledJobs({ kind: 'once' }).every((x) => x.nextRunAt === null && x.runCount === 1)).toBe(true)
})

test('disable, re-enable (no replay), cancel, and update by id', async () => {
  const s = manual()
  const { runs, calc } = recording(s)
  await s.start()
  const id = s.scheduleRecurringCalculationJob(calc, { v: 1 }, {}, T0 + HOUR, HOUR, { id: 'standings' })
  expect(id).toBe('standings')
  await s.advanceTime(HOUR)
  expect(runs).toHaveLength(1)
  expect(s.setScheduledJobEnabled('standings', false)).toBe(true)
  await s.advanceTime(5.5 * HOUR)
  expect(runs).toHaveLength(1)
  expect(s.setScheduledJobEnabled('standings', true)).toBe(true)
  await s.advanceTime(HOUR)
  expect(runs).toHaveLength(2) // the disabled hours are not replayed
  // Same id again: updated, not duplicated; run count kept.
  s.scheduleRecurringCalculationJob(calc, { v: 2 }, {}, T0 + HOUR, HOUR, { id: 'standings' })
  expect(s.getScheduledJobs()).toHaveLength(1)
  expect(s.getScheduledJobs()[0].runCount).toBe(2)
  await s.advanceTime(HOUR)
  expect(runs[runs.length - 1].data).toEqual({ v: 2 })
  expect(s.cancelScheduledJob('standings')).toBe(true)
  expect(s.cancelScheduledJob('standings')).toBe(false)
  await s.advanceTime(5 * HOUR)
  expect(runs).toHaveLength(3)
  expect(s.setScheduledJobEnabled('nope', true)).toBe(false)
  expect(s.getScheduledJobs({ name: 'calc' })).toEqual([])
})

test('overlap: skip waits for the previous run, queue does not', async () => {
  const s = manual({ queue: { maxWorkers: 4, maxQueueSize: 1000, maxJobAge: 30 * 24 * HOUR } })
  await s.start()
  const started = { skip: 0, queue: 0 }
  const slow = (k) => ({ name: `slow-${k}`, calculate: () => { started[k]++; return new Promise(() => {}) } })
  s.scheduleRecurringCalculationJob(slow('skip'), {}, {}, T0 + 60e3, 60e3, { overlap: 'skip', timeout: 0 })
  s.scheduleRecurringCalculationJob(slow('queue'), {}, {}, T0 + 60e3, 60e3, { overlap: 'queue', timeout: 0 })
  await s.advanceTime(3 * 60e3)
  expect(started.skip).toBe(1)
  expect(started.queue).toBe(3)
})

test('each misfire policy after a restart (SQLite, manual clock)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-sched-'))
  const file = path.join(dir, 'jobs.db')
  const first = new JobManagementService({ clock: { type: 'manual', now: T0 }, storage: { type: 'sqlite', path: file } })
  const noop = { name: 'noop', calculate: () => 1 }
  await first.start()
  for (const misfire of ['runOnce', 'skip', 'catchUp']) {
    first.scheduleRecurringCalculationJob(noop, { misfire }, {}, T0 + HOUR, HOUR, { id: misfire, misfire, maxCatchUp: 3 })
  }
  await first.advanceTime(HOUR)
  await first.stop()
  // Down for 5 hours and a bit: fires at 2h..6h were missed.
  const second = tracker.track(new JobManagementService({ clock: { type: 'manual', now: T0 + 6 * HOUR + 5 * 60e3 }, storage: { type: 'sqlite', path: file } }))
  const runs = []
  second.registerCalculation({ name: 'noop', calculate: (d) => { runs.push(d.misfire); return 1 } })
  await second.start()
  await second.advanceTime(1)
  const count = (m) => runs.filter((r) => r === m).length
  expect(count('runOnce')).toBe(1)
  expect(count('skip')).toBe(0)
  expect(count('catchUp')).toBe(3)
  const byId = Object.fromEntries(second.getScheduledJobs().map((x) => [x.id, x]))
  for (const m of ['runOnce', 'skip', 'catchUp']) expect(byId[m].nextRunAt).toBe(T0 + 7 * HOUR)
  await second.advanceTime(HOUR)
  expect(count('skip')).toBe(1)
  fs.rmSync(dir, { recursive: true, force: true })
})

test('bad schedules are coded errors naming the field', () => {
  const s = manual()
  const calc = { name: 'x', calculate: () => 1 }
  const code = (fn) => {
    try {
      fn()
    } catch (e) {
      return [e.code, e.field || e.message]
    }
    return null
  }
  expect(code(() => s.scheduleCalculationJob(calc, {}, {}, new Date('nope')))[0]).toBe('ERR_INVALID_SCHEDULE')
  expect(code(() => s.scheduleCalculationJob(calc, {}, {}, 'tomorrow'))[1]).toMatch(/scheduledAt/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, 0))[1]).toMatch(/intervalMs/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, NaN))[1]).toMatch(/intervalMs/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, -5))[1]).toMatch(/intervalMs/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, HOUR, { endAt: T0 - 1 }))[1]).toMatch(/endAt/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, HOUR, { maxRuns: 0 }))[1]).toMatch(/maxRuns/)
  expect(code(() => s.scheduleRecurringCalculationJob(calc, {}, {}, T0, HOUR, { misfire: 'always' }))[1]).toMatch(/misfire/)
  expect(code(() => s.scheduleCronCalculationJob(calc, {}, {}, '* * * *'))).toEqual(['ERR_INVALID_CRON', 'expression'])
  expect(code(() => s.scheduleCronCalculationJob(calc, {}, {}, '*/0 * * * *'))).toEqual(['ERR_INVALID_CRON', 'minute'])
  expect(code(() => s.scheduleCronCalculationJob(calc, {}, {}, '* * * * *', { tz: 'Nowhere/City' }))).toEqual(['ERR_INVALID_CRON', 'tz'])
  expect(code(() => s.scheduleCronCalculationJob(calc, {}, {}, 42))).toEqual(['ERR_INVALID_CRON', 'expression'])
  expect(code(() => s.scheduleCronCalculationJob(calc, () => 1, {}, '* * * * *'))[0]).toBe('ERR_NOT_SERIALIZABLE')
  expect(code(() => s.scheduleCronCalculationJob(calc, {}, {}, '* * * * *', { timeout: -1 }))[0]).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => s.setScheduledJobEnabled('x', 'yes'))[0]).toBe('ERR_INVALID_ARGUMENT')
  expect(code(() => s.getScheduledJobs({ kind: 'weekly' }))[0]).toBe('ERR_INVALID_ARGUMENT')
  expect(s.getScheduledJobs()).toEqual([])
})

test('a schedule with dependsOn adds jobs that wait for those jobs; unknown ids are refused', async () => {
  const s = manual()
  await s.start()
  const order = []
  let release
  const gate = new Promise((r) => (release = r))
  const first = s.addCalculationJob({ name: 'import', timeout: 0, calculate: async () => { await gate; order.push('import'); return 1 } }, {})
  s.scheduleCalculationJob({ name: 'table', calculate: () => order.push('table') }, {}, {}, T0 + 60e3, { dependsOn: [first] })
  await s.advanceTime(2 * 60e3)
  const [sched] = s.getScheduledJobs()
  expect(s.getJobStatus(sched.lastJobId).status).toBe('waiting')
  release()
  await waitFor(() => order.length === 2)
  expect(order).toEqual(['import', 'table'])
  expect(() => s.scheduleCronCalculationJob({ name: 't', calculate: () => 1 }, {}, {}, '* * * * *', { dependsOn: ['01a22572-de9e-7000-a52f-8c5acf718cbf'] })).toThrow(
    expect.objectContaining({ code: 'ERR_DEPENDENCY_NOT_FOUND' }),
  )
  expect(s.getScheduledJobs()).toHaveLength(1)
})

// The one real-time schedule test (the manual-clock tests above check exact
// fire times): never early, and late by less than a second on a busy machine.
test('real time: a job due in 200 ms starts at its time, not before', async () => {
  const s = tracker.create()
  let startedAt = 0
  await s.start()
  const due = Date.now() + 200
  s.scheduleCalculationJob({ name: 'rt', calculate: () => { startedAt = Date.now(); return 1 } }, {}, {}, new Date(due))
  await waitFor(() => startedAt > 0, { timeout: 3000 })
  expect(startedAt - due).toBeGreaterThanOrEqual(0)
  expect(startedAt - due).toBeLessThan(1000)
})
