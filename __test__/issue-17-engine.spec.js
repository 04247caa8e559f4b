'use strict'
// Issue 17, through the public API (the Rust tests cover the engine):
// bug 5, retryJob of a job that failed with ERR_DEPENDENCY_FAILED waits for
// its dependencies; bug 8, schedule fires respect maxQueueSize.
const { serviceTracker } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const T0 = Date.UTC(2026, 0, 5, 12, 0, 0)

function manual(queue, logger) {
  return tracker.create({ clock: { type: 'manual', now: T0 }, storage: { type: 'memory' }, queue, monitoring: logger ? { logger } : undefined })
}

test('retryJob of a job failed by its dependency waits for it: it runs once the dependency, retried, completes', async () => {
  const s = manual()
  let fail = true
  const ran = []
  const dep = { name: 'dep', retries: 0, calculate: () => { ran.push('dep'); if (fail) throw new Error('boom') } }
  const child = { name: 'child', retries: 0, calculate: () => { ran.push('child'); return 'ok' } }
  const a = s.addCalculationJob(dep, null)
  const b = s.addCalculationJob(child, null, null, { dependsOn: [a] })
  await s.start()
  await s.advanceTime(10)
  expect(s.getJobStatus(b)).toMatchObject({ status: 'failed', error: { code: 'ERR_DEPENDENCY_FAILED' } })
  expect(s.retryJob(b)).toBe(true)
  await s.advanceTime(10)
  expect(s.getJobStatus(b).status).toBe('waiting')
  expect(ran).toEqual(['dep'])
  fail = false
  expect(s.retryJob(a)).toBe(true)
  await s.advanceTime(10)
  expect(s.getJobStatus(a).status).toBe('completed')
  expect(s.getJobStatus(b)).toMatchObject({ status: 'completed', result: 'ok' })
  expect(ran).toEqual(['dep', 'dep', 'child'])
})

test('schedule fires over maxQueueSize add no job: counted in skippedFires, one warning alert', async () => {
  const logged = []
  const log = (line) => logged.push(line)
  const s = manual({ maxQueueSize: 3, maxWorkers: 1 }, { info: log, warn: log, error: log })
  const alerts = []
  s.on('alert', (a) => alerts.push(a))
  // a handler that never settles holds the only worker, so jobs pile up
  const hold = { name: 'hold', timeout: 0, calculate: () => new Promise(() => {}) }
  const tick = { name: 'tick', calculate: () => 1 }
  await s.start()
  s.addCalculationJob(hold, null)
  await s.advanceTime(1)
  s.scheduleRecurringCalculationJob(tick, null, null, new Date(T0 + 1000), 1000, { id: 'tick', overlap: 'queue' })
  await s.advanceTime(10_000)
  expect(s.getQueueStatistics().pending).toBe(3)
  const [sched] = s.getScheduledJobs()
  expect(sched).toMatchObject({ id: 'tick', runCount: 10, skippedFires: 7 })
  expect(alerts.map((a) => [a.ruleId, a.severity])).toEqual([['schedule-skipped:tick', 'warning']])
  expect(alerts[0].message).toContain("schedule 'tick' skipped a fire")
  expect(logged.filter((l) => l.includes('skipped a fire'))).toHaveLength(1)
})
