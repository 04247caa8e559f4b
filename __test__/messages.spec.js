'use strict'
// Issue 17, bug 12: error and log messages that said something untrue.

const path = require('node:path')
const { serviceTracker, expectCode, rejected } = require('./helpers')
const { tempDirs, sqliteTracker } = require('./helpers/sqlite')

const tracker = serviceTracker()
const dirs = tempDirs('jobwerk-messages-')
const sqlite = sqliteTracker()
afterEach(async () => {
  await tracker.stopAll()
  await sqlite.stopAll()
})
afterAll(() => dirs.cleanup())

const calc = { name: 'm', calculate: (d) => d }
const batch = (n, data = (i) => i) => Array.from({ length: n }, (_, i) => ({ calculation: calc, data: data(i) }))

test('ERR_QUEUE_FULL for a batch larger than the room left says the batch size and the room', () => {
  const s = tracker.create({ clock: 'manual', queue: { maxQueueSize: 10 } })
  const e = expectCode(() => s.addCalculationJobs(batch(12)), 'ERR_QUEUE_FULL')
  expect(e.message).not.toMatch(/\(10\) jobs are waiting/)
  expect(e.message).toContain('a batch of 12 jobs')
  expect(e.message).toContain('room for 10')
  s.addCalculationJobs(batch(7))
  const e2 = expectCode(() => s.addCalculationJobs(batch(5)), 'ERR_QUEUE_FULL')
  expect(e2.message).toContain('a batch of 5 jobs')
  expect(e2.message).toContain('room for 3')
  expect(e2.message).toContain('7 jobs are waiting')
  s.addCalculationJobs(batch(3))
  // full: a single add says how many wait
  expect(expectCode(() => s.addCalculationJob(calc, 1), 'ERR_QUEUE_FULL').message).toContain('10 jobs are waiting')
  expect(s.getQueueStatistics().total).toBe(10)
})

test('ERR_PAYLOAD_TOO_LARGE in a batch names the job', () => {
  const s = tracker.create({ clock: 'manual', queue: { maxPayloadBytes: 100 } })
  const e = expectCode(() => s.addCalculationJobs(batch(4, (i) => (i === 2 ? 'x'.repeat(200) : i))), 'ERR_PAYLOAD_TOO_LARGE')
  expect(e.message).toContain('jobs[2]')
  // (the slow path too: a job with a context)
  const jobs = batch(3, (i) => (i === 1 ? 'y'.repeat(200) : i)).map((j) => ({ ...j, context: { contentType: 'x' } }))
  expect(expectCode(() => s.addCalculationJobs(jobs), 'ERR_PAYLOAD_TOO_LARGE').message).toContain('jobs[1]')
  expect(expectCode(() => s.addCalculationJob(calc, 'z'.repeat(200)), 'ERR_PAYLOAD_TOO_LARGE').message).not.toContain('jobs[')
  expect(s.getQueueStatistics().total).toBe(0)
})

test('"file in use" names only what exists (no PostgreSQL storage type yet)', async () => {
  const db = path.join(dirs.make(), 'jobs.db')
  const first = sqlite.open(db)
  await first.start()
  let e
  try {
    const second = sqlite.open(db)
    e = await rejected(second.start())
  } catch (err) {
    e = err
  }
  expect(e.code).toBe('ERR_STORAGE')
  expect(e.message).toContain('in use')
  expect(e.message).not.toMatch(/postgres/i)
  expect(e.message).toContain('storage.path')
})

test('an alert log line says the rule name once', async () => {
  const logs = []
  const logger = { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) }
  const s = tracker.create({ clock: { type: 'manual', now: Date.parse('2026-02-01T00:00:00Z') }, monitoring: { healthCheckInterval: 1000, logger } })
  const bad = {
    name: 'bad',
    retries: 0,
    calculate: () => {
      throw new Error('boom')
    },
  }
  await s.start()
  for (let i = 0; i < 4; i++) s.addCalculationJob(bad, {})
  await s.advanceTime(3000)
  expect(logs).toHaveLength(1)
  expect(logs[0]).toMatch(/^jobwerk alert \[critical\] High error rate: errorRate is /)
  expect(logs[0].split('High error rate')).toHaveLength(2)
  const [alert] = s.getActiveAlerts()
  expect(alert.title).toBe('High error rate')
  expect(alert.message).not.toContain('High error rate')
})
