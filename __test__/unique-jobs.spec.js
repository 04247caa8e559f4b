'use strict'
// Unique jobs (options.key, onDuplicate), debounced jobs (debounceMs),
// per-key concurrency (concurrencyKey) and the schedule a fired job came
// from (scheduleId). Timing is the manual clock's: no wall-clock asserts.
const path = require('node:path')
const { serviceTracker, waitForStatus } = require('./helpers')
const { tempDirs, sqliteTracker } = require('./helpers/sqlite')

const tracker = serviceTracker()
const dirs = tempDirs('jobwerk-unique-')
const services = sqliteTracker()
afterEach(async () => {
  await tracker.stopAll()
  await services.stopAll()
})
afterAll(() => dirs.cleanup())

const T0 = Date.UTC(2030, 0, 1)

function recorder(name) {
  const c = {
    name,
    runs: [],
    calculate(data, ctx) {
      c.runs.push({ data, ctx })
      return data
    },
  }
  return c
}

/** A calculation whose runs wait until the test releases them. */
function gated(name) {
  const c = {
    name,
    running: new Map(),
    maxPerKey: new Map(),
    maxTotal: 0,
    started: [],
    calculate(data) {
      const key = data.table
      const now = (c.running.get(key) || 0) + 1
      c.running.set(key, now)
      c.maxPerKey.set(key, Math.max(c.maxPerKey.get(key) || 0, now))
      const total = [...c.running.values()].reduce((a, b) => a + b, 0)
      c.maxTotal = Math.max(c.maxTotal, total)
      c.started.push(data.n)
      return new Promise((resolve) => {
        c.release.set(data.n, () => {
          c.running.set(key, c.running.get(key) - 1)
          resolve(data.n)
        })
      })
    },
    release: new Map(),
  }
  return c
}

describe('options.key', () => {
  test('while a job holds the key, adding another returns its id and adds nothing', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const calc = recorder('unique')
    const first = service.addCalculationJob(calc, { v: 1 }, { who: 'a' }, { key: 'table:1' })
    expect(service.addCalculationJob(calc, { v: 2 }, null, { key: 'table:1' })).toBe(first)
    const [a, b, other] = service.addCalculationJobs([
      { calculation: calc, data: { v: 3 }, options: { key: 'table:1' } },
      { calculation: calc, data: { v: 4 }, options: { key: 'table:1', onDuplicate: 'skip' } },
      { calculation: calc, data: { v: 5 }, options: { key: 'table:2' } },
    ])
    expect([a, b]).toEqual([first, first])
    expect(other).not.toBe(first)
    expect(service.getQueueStatistics().pending).toBe(2)
    expect(service.getJobStatus(first)).toMatchObject({ data: { v: 1 }, context: { who: 'a' }, key: 'table:1', concurrencyKey: null, scheduleId: null })
    await service.start()
    await service.advanceTime(0)
    expect(calc.runs.map((r) => r.data)).toEqual([{ v: 1 }, { v: 5 }])
    // Finished: the key is free again.
    const next = service.addCalculationJob(calc, { v: 6 }, null, { key: 'table:1' })
    expect(next).not.toBe(first)
  })

  test("onDuplicate: 'replace' updates a job not started; behind a running one a new job waits", async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxWorkers: 2 } })
    const calc = gated('replace')
    const opts = { key: 'k', onDuplicate: 'replace', concurrencyKey: 'k' }
    const first = service.addCalculationJob(calc, { table: 't', n: 1 }, { c: 1 }, opts)
    expect(service.addCalculationJob(calc, { table: 't', n: 2 }, { c: 2 }, opts)).toBe(first)
    expect(service.getJobStatus(first)).toMatchObject({ data: { table: 't', n: 2 }, context: { c: 2 } })
    await service.start()
    await waitForStatus(service, first, 'running')
    // Running: it keeps its data; the new data goes to a job behind it.
    const second = service.addCalculationJob(calc, { table: 't', n: 3 }, null, opts)
    expect(second).not.toBe(first)
    expect(service.addCalculationJob(calc, { table: 't', n: 4 }, null, opts)).toBe(second)
    expect(service.getJobStatus(second)).toMatchObject({ status: 'pending', data: { table: 't', n: 4 } })
    calc.release.get(2)()
    await waitForStatus(service, second, 'running')
    calc.release.get(4)()
    await waitForStatus(service, second)
    expect(calc.started).toEqual([2, 4])
    expect(calc.maxPerKey.get('t')).toBe(1)
  })
})

describe('options.debounceMs', () => {
  test('200 adds with one key: ONE job runs, debounceMs after the last add, with the last data', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxQueueSize: 10 } })
    const calc = recorder('recalc')
    await service.start()
    const ids = new Set()
    for (let i = 0; i < 200; i++) {
      ids.add(service.addCalculationJob(calc, { row: i }, { by: `user${i}` }, { key: 'table-positions', debounceMs: 1000 }))
      await service.advanceTime(10)
    }
    expect(ids.size).toBe(1)
    const [id] = ids
    const lastAdd = T0 + 199 * 10
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', runAt: lastAdd + 1000, data: { row: 199 }, context: { by: 'user199' } })
    await service.advanceTime(lastAdd + 999 - service.now())
    expect(calc.runs).toEqual([])
    await service.advanceTime(1)
    expect(calc.runs).toEqual([{ data: { row: 199 }, ctx: { by: 'user199' } }])
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', startedAt: lastAdd + 1000 })
    await service.advanceTime(10000)
    expect(calc.runs).toHaveLength(1)
    expect(service.getQueueStatistics()).toMatchObject({ completed: 1, total: 1 })
  })

  test('on SQLite the debounced job survives a restart, once, and keeps its due time', async () => {
    const db = path.join(dirs.make(), 'jobs.db')
    const calc = recorder('durable-recalc')
    const one = services.open(db, { clock: { type: 'manual', now: T0 } })
    one.registerCalculation(calc)
    let id
    for (let i = 0; i < 20; i++) {
      id = one.addCalculationJob(calc, { i }, null, { key: 'd', debounceMs: 5000 })
      await one.advanceTime(100)
    }
    await one.stop()
    const runAt = T0 + 19 * 100 + 5000
    const two = services.open(db, { clock: { type: 'manual', now: T0 + 2000 } })
    two.registerCalculation(calc)
    expect(two.getJobs().jobs.map((j) => j.jobId)).toEqual([id])
    expect(two.getJobStatus(id)).toMatchObject({ status: 'pending', runAt, data: { i: 19 }, key: 'd' })
    // Still debounced after the restart: an add moves it again.
    expect(two.addCalculationJob(calc, { i: 20 }, null, { key: 'd', debounceMs: 5000 })).toBe(id)
    await two.start()
    await two.advanceTime(4999)
    expect(calc.runs).toEqual([])
    await two.advanceTime(1)
    expect(calc.runs.map((r) => r.data)).toEqual([{ i: 20 }])
  })
})

describe('options.concurrencyKey', () => {
  test('maxWorkers 2: two jobs of one key never overlap while a job of another key runs alongside', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxWorkers: 2 } })
    const calc = gated('table-recalculation')
    const add = (table, n) => service.addCalculationJob(calc, { table, n }, null, { concurrencyKey: `table:${table}` })
    const a1 = add('a', 1)
    const a2 = add('a', 2)
    const b1 = add('b', 3)
    await service.start()
    await waitForStatus(service, b1, 'running')
    expect(service.getJobStatus(a1)).toMatchObject({ status: 'running', concurrencyKey: 'table:a' })
    // a2 waits in line (pending, not failed) although it is due.
    expect(service.getJobStatus(a2)).toMatchObject({ status: 'pending', attempts: 0 })
    calc.release.get(3)()
    await waitForStatus(service, b1)
    // A worker is free and a2 is due: it still waits for a1.
    const b2 = add('b', 4)
    await waitForStatus(service, b2, 'running')
    expect(service.getJobStatus(a2).status).toBe('pending')
    calc.release.get(1)()
    await waitForStatus(service, a2, 'running')
    calc.release.get(2)()
    calc.release.get(4)()
    await waitForStatus(service, a2)
    await waitForStatus(service, b2)
    expect(calc.started).toEqual([1, 3, 4, 2])
    expect(calc.maxPerKey.get('a')).toBe(1)
    expect(calc.maxPerKey.get('b')).toBe(1)
    expect(calc.maxTotal).toBe(2)
    expect(service.getQueueStatistics()).toMatchObject({ completed: 4, failed: 0 })
  })
})

describe('scheduleId', () => {
  test('a job a schedule fired names the schedule; an added one has null', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const calc = recorder('nightly')
    const added = service.addCalculationJob(calc, 1)
    const sid = service.scheduleRecurringCalculationJob(calc, 2, null, T0 + 1000, 60000)
    await service.start()
    await service.advanceTime(1000)
    const jobs = service.getJobs({ order: 'asc' }).jobs
    expect(jobs.map((j) => [j.jobId === added, j.scheduleId])).toEqual([
      [true, null],
      [false, sid],
    ])
    expect(service.getJobStatus(jobs[1].jobId).scheduleId).toBe(sid)
  })
})

describe('bad options are ERR_INVALID_ARGUMENT naming the field', () => {
  const cases = [
    [{ key: '' }, 'options.key'],
    [{ key: 42 }, 'options.key'],
    [{ key: 'x'.repeat(513) }, 'options.key'],
    [{ concurrencyKey: '' }, 'options.concurrencyKey'],
    [{ concurrencyKey: { a: 1 } }, 'options.concurrencyKey'],
    [{ key: 'k', onDuplicate: 'merge' }, 'options.onDuplicate'],
    [{ onDuplicate: 'replace' }, 'options.onDuplicate'],
    [{ debounceMs: 100 }, 'options.debounceMs'],
    [{ key: 'k', debounceMs: -5 }, 'options.debounceMs'],
    [{ key: 'k', debounceMs: Infinity }, 'options.debounceMs'],
    [{ key: 'k', debounceMs: 100, delay: 10 }, 'options.debounceMs'],
  ]
  const label = (o) => JSON.stringify(o, (k, v) => (typeof v === 'string' && v.length > 20 ? `<${v.length} bytes>` : v === Infinity ? 'Infinity' : v))
  test.each(cases.map(([o, f]) => [label(o), f, o]))('%s names %s', (_, field, options) => {
    const service = tracker.create()
    const calc = recorder('bad')
    let e
    try {
      service.addCalculationJob(calc, 1, null, options)
    } catch (err) {
      e = err
    }
    expect(e).toBeDefined()
    expect(e.code).toBe('ERR_INVALID_ARGUMENT')
    expect(e.message).toContain(field)
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test('debounceMs does not apply to a schedule', () => {
    const service = tracker.create()
    expect(() => service.scheduleCronCalculationJob(recorder('c'), 1, null, '0 3 * * *', { key: 'k', debounceMs: 10 })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('options.debounceMs') }),
    )
  })

  test('in a batch the message names the job', () => {
    const service = tracker.create()
    const calc = recorder('batch')
    expect(() =>
      service.addCalculationJobs([
        { calculation: calc, data: 1, options: { key: 'ok' } },
        { calculation: calc, data: 2, options: { key: '' } },
      ]),
    ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('jobs[1].options.key') }))
    expect(service.getQueueStatistics().total).toBe(0)
  })
})

describe('a calculation-wide concurrencyKey', () => {
  test("a calculation's concurrencyKey is its jobs' default; a job's own wins; a bad one names calculation.concurrencyKey", async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxWorkers: 3 } })
    const calc = gated('one-at-a-time')
    calc.concurrencyKey = 'singleton'
    const a = service.addCalculationJob(calc, { table: 's', n: 1 })
    const b = service.addCalculationJob(calc, { table: 's', n: 2 })
    const own = service.addCalculationJob(calc, { table: 'o', n: 3 }, null, { concurrencyKey: 'own' })
    expect(service.getJobStatus(b).concurrencyKey).toBe('singleton')
    await service.start()
    await waitForStatus(service, own, 'running')
    await waitForStatus(service, a, 'running')
    expect(service.getJobStatus(b).status).toBe('pending')
    calc.release.get(1)()
    await waitForStatus(service, b, 'running')
    calc.release.get(2)()
    calc.release.get(3)()
    await waitForStatus(service, b)
    expect(calc.maxPerKey.get('s')).toBe(1)
    const bad = { name: 'bad-key', calculate: () => 1, concurrencyKey: '' }
    expect(() => service.addCalculationJob(bad, 1)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('calculation.concurrencyKey') }),
    )
  })
})
