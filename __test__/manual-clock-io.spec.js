'use strict'
// Issue 17, bug 4: on the manual clock, advanceTime waits (in real time, up
// to a bound) for the handlers that became due to settle before it moves the
// clock past their deadlines, so handlers doing real I/O work under it.

const fs = require('node:fs')
const path = require('node:path')
const { sleep, never } = require('./helpers')
const { tempDirs, sqliteTracker, rejected } = require('./helpers/sqlite')

const dirs = tempDirs('jobwerk-manual-io-')
const services = sqliteTracker()
afterEach(async () => {
  await services.stopAll()
  dirs.cleanup()
})

const T0 = Date.parse('2026-01-05T00:00:00Z')
const HOUR = 60 * 60 * 1000

test('a day of hourly runs whose handler reads a file, waits 30 ms and queries the SQLite storage: none times out', async () => {
  const service = services.open(path.join(dirs.make(), 'jobs.db'), {
    clock: { type: 'manual', now: T0 },
    queue: { maxJobAge: 30 * 24 * HOUR },
  })
  const runs = []
  const calc = {
    name: 'io-report',
    timeout: 1000,
    retries: 0,
    async calculate(data, ctx, job) {
      const text = await fs.promises.readFile(__filename, 'utf8')
      await sleep(30)
      await service.flush()
      runs.push([service.now(), job.signal.aborted, text.length > 0])
      return runs.length
    },
  }
  await service.start()
  service.scheduleRecurringCalculationJob(calc, {}, {}, T0 + HOUR, HOUR)
  const id = service.addCalculationJob(calc, {}, {}, { delay: 30 * 60 * 1000 })
  await service.advanceTime(24 * HOUR)
  const stats = service.getQueueStatistics()
  expect(stats.timeout).toBe(0)
  expect(stats.running).toBe(0)
  expect(stats.completed).toBe(25)
  expect(runs).toHaveLength(25)
  expect(runs.every(([, aborted, read]) => !aborted && read)).toBe(true)
  expect(runs[0][0]).toBe(T0 + 30 * 60 * 1000)
  expect(runs[1][0]).toBe(T0 + HOUR)
  expect(service.getJobStatus(id).status).toBe('completed')
})

test('advanceTime resolves after the handlers that became due have settled', async () => {
  const service = services.create({ storage: { type: 'memory' }, clock: { type: 'manual', now: T0 } })
  const calc = { name: 'io-wait', calculate: () => sleep(30).then(() => 'done') }
  await service.start()
  const now = service.addCalculationJob(calc, 1)
  const later = service.addCalculationJob(calc, 2, null, { delay: 1000 })
  await service.advanceTime(0)
  expect(service.getJobStatus(now).status).toBe('completed')
  await service.advanceTime(1000)
  expect(service.getJobStatus(later)).toMatchObject({ status: 'completed', result: 'done' })
})

test('a handler that never settles is waited for at most settleMs, then times out on the manual clock', async () => {
  const service = services.create({ storage: { type: 'memory' }, clock: { type: 'manual', now: T0 } })
  let signal
  const calc = {
    name: 'io-hang',
    calculate(d, c, job) {
      signal = job.signal
      return never()
    },
  }
  await service.start()
  const id = service.addCalculationJob(calc, 1, null, { timeout: 5000, retries: 0 })
  await service.advanceTime(4999, { settleMs: 20 })
  expect(service.getJobStatus(id).status).toBe('running')
  expect(signal.aborted).toBe(false)
  await service.advanceTime(1, { settleMs: 20 })
  expect(service.getJobStatus(id)).toMatchObject({ status: 'timeout', finishedAt: T0 + 5000 })
  expect(signal.aborted).toBe(true)
})

test('advanceTime(ms, options) validates settleMs', async () => {
  const service = services.create({ storage: { type: 'memory' }, clock: 'manual' })
  await service.start()
  for (const settleMs of [-1, NaN, Infinity, '10', 2 ** 31]) {
    const e = await rejected(service.advanceTime(10, { settleMs }))
    expect(e.code).toBe('ERR_INVALID_ARGUMENT')
  }
  const e = await rejected(service.advanceTime(10, 'fast'))
  expect(e.code).toBe('ERR_INVALID_ARGUMENT')
})

test('advanceTime on a system clock rejects at once, without waiting for running handlers', async () => {
  const service = services.create({ storage: { type: 'memory' } })
  let started = false
  await service.start()
  service.addCalculationJob({ name: 'io-system', calculate: () => ((started = true), never()) }, 1)
  await new Promise(setImmediate)
  expect(started).toBe(true)
  let error = null
  service.advanceTime(1000).catch((e) => (error = e))
  await new Promise(setImmediate)
  expect(error).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
})

test('advanceTime resolves only after every due job ran, also when they take many event-loop turns', async () => {
  const service = services.create({ storage: { type: 'memory' }, clock: 'manual', queue: { maxWorkers: 1, maxQueueSize: 5000 } })
  let runs = 0
  const calc = { name: 'io-many', calculate: () => ++runs }
  await service.start()
  service.addCalculationJobs(Array.from({ length: 3000 }, (_, i) => ({ calculation: calc, data: i })))
  await service.advanceTime(0)
  expect(runs).toBe(3000)
  expect(service.getQueueStatistics()).toMatchObject({ pending: 0, completed: 3000 })
})
