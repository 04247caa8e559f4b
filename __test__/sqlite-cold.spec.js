'use strict'
// Pending jobs beyond the first 2,048 in memory stay in the SQLite file only:
// what an app does with a pending job (count it, read it, cancel it, depend
// on it, run it in order, find it again after a restart) works the same for
// them.
const path = require('node:path')
const { tempDirs, sqliteTracker, waitFor } = require('./helpers/sqlite')

const dirs = tempDirs('jobwerk-cold-')
const services = sqliteTracker()
afterEach(() => services.stopAll())
afterAll(() => dirs.cleanup())

function recorder(name) {
  const order = []
  return { order, calc: { name, calculate: (d) => (order.push(d.i), d.i * 2) } }
}

const range = (n) => Array.from({ length: n }, (_, i) => i)

test('10,000 pending jobs are counted, read, cancelled, depended on and run in order', async () => {
  const N = 10000
  const { order, calc } = recorder('rec')
  const s = services.open(path.join(dirs.make(), 'jobs.db'), { queue: { maxWorkers: 8, maxQueueSize: 20000 } })
  const ids = s.addCalculationJobs(range(N).map((i) => ({ calculation: calc, data: { i } })))
  expect(s.getQueueStatistics()).toMatchObject({ pending: N, total: N })
  expect(s.getJobStatus(ids[N - 1])).toMatchObject({ jobId: ids[N - 1], name: 'rec', status: 'pending', attempts: 0, data: { i: N - 1 } })

  expect(s.cancelJob(ids[9000])).toBe(true)
  expect(s.getJobStatus(ids[9000])).toMatchObject({ status: 'cancelled', error: { code: 'ERR_JOB_CANCELLED' } })
  const last = s.addCalculationJob(calc, { i: -1 }, null, { dependsOn: [ids[N - 1]] })
  expect(s.getJobStatus(last).status).toBe('waiting')
  expect(s.getQueueStatistics()).toMatchObject({ pending: N - 1, waiting: 1, cancelled: 1 })

  await s.start()
  await waitFor(() => s.getJobStatus(last).status === 'completed', { timeout: 20000, what: 'the dependant' })
  expect(order).toEqual([...range(N).filter((i) => i !== 9000), -1])
  expect(s.getJobStatus(ids[N - 1])).toMatchObject({ status: 'completed', result: (N - 1) * 2, attempts: 1 })
  expect(s.getQueueStatistics()).toMatchObject({ completed: N, cancelled: 1, pending: 0, waiting: 0 })
})

test('pending jobs in the file only are there after stop() and after a restart, in order', async () => {
  const N = 6000
  const db = path.join(dirs.make(), 'jobs.db')
  const first = recorder('rec')
  const s1 = services.open(db, { queue: { maxQueueSize: 20000 } })
  const ids = s1.addCalculationJobs(range(N).map((i) => ({ calculation: first.calc, data: { i } })))
  await s1.stop()
  expect(s1.getJobStatus(ids[N - 1])).toMatchObject({ status: 'pending', data: { i: N - 1 } })

  const again = recorder('rec')
  const s2 = services.open(db, { queue: { maxWorkers: 4, maxQueueSize: 20000 } })
  s2.registerCalculation(again.calc)
  expect(s2.getQueueStatistics()).toMatchObject({ pending: N, total: N })
  expect(s2.getJobStatus(ids[N - 2])).toMatchObject({ status: 'pending', data: { i: N - 2 } })
  await s2.start()
  await waitFor(() => s2.getQueueStatistics().completed === N, { timeout: 20000, what: `${N} jobs` })
  expect(again.order).toEqual(range(N))
  expect(first.order).toEqual([])
})

test('high- and low-priority jobs added after the backlog run by their priority', async () => {
  const N = 5000
  const { order, calc } = recorder('rec')
  const s = services.open(path.join(dirs.make(), 'jobs.db'), { queue: { maxWorkers: 1, maxQueueSize: 20000 } })
  s.addCalculationJobs(range(N).map((i) => ({ calculation: calc, data: { i } })))
  s.addCalculationJob(calc, { i: -1 }, null, { priority: 'high' })
  s.addCalculationJob(calc, { i: -2 }, null, { priority: 'low' })
  await s.start()
  await waitFor(() => s.getQueueStatistics().completed === N + 2, { timeout: 20000, what: 'every job' })
  expect(order).toEqual([-1, ...range(N), -2])
})
