'use strict'
const { serviceTracker, waitForAll, deferred, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/** Adds [data, options] pairs before start() with one worker; returns the order the handler saw. */
async function runOrder(config, jobs, calcExtra = {}) {
  const service = tracker.create({ ...config, queue: { maxWorkers: 1, ...(config.queue || {}) } })
  const order = []
  const calc = { name: 'rec', calculate: (data) => void order.push(data), ...calcExtra }
  const ids = jobs.map(([data, options]) => service.addCalculationJob(calc, data, null, options))
  await service.start()
  const statuses = await waitForAll(service, ids)
  for (const s of statuses) expect(s.status).toBe('completed')
  return { order, ids, statuses, service }
}

describe('priority', () => {
  test('high runs before medium before low, FIFO within each level', async () => {
    const { order } = await runOrder({}, [
      ['low-1', { priority: 'low' }],
      ['med-1', { priority: 'medium' }],
      ['high-1', { priority: 'high' }],
      ['low-2', { priority: 'low' }],
      ['high-2', { priority: 'high' }],
      ['med-2', { priority: 'medium' }],
      ['high-3', { priority: 'high' }],
    ])
    expect(order).toEqual(['high-1', 'high-2', 'high-3', 'med-1', 'med-2', 'low-1', 'low-2'])
  })

  test('a job without a priority is medium, and queues FIFO with explicit medium jobs', async () => {
    const { order, statuses } = await runOrder({}, [
      ['default-1', undefined],
      ['low', { priority: 'low' }],
      ['med', { priority: 'medium' }],
      ['default-2', {}],
      ['high', { priority: 'high' }],
    ])
    expect(order).toEqual(['high', 'default-1', 'med', 'default-2', 'low'])
    expect(statuses[0].priority).toBe('medium')
    expect(statuses[1].priority).toBe('low')
    expect(statuses[4].priority).toBe('high')
  })

  test('FIFO order is kept for many jobs of the same priority', async () => {
    const jobs = Array.from({ length: 40 }, (_, i) => [i, { priority: 'medium' }])
    const { order } = await runOrder({}, jobs)
    expect(order).toEqual(jobs.map(([d]) => d))
  })

  test('integer priorities are weights compared with the named levels (1, 2, 3 by default)', async () => {
    const { order, statuses } = await runOrder({}, [
      ['w5', { priority: 5 }],
      ['low', { priority: 'low' }],
      ['w2', { priority: 2 }],
      ['med', { priority: 'medium' }],
      ['high', { priority: 'high' }],
      ['w0', { priority: 0 }],
      ['w-10', { priority: -10 }],
    ])
    // w2 and med share weight 2: FIFO between them.
    expect(order).toEqual(['w-10', 'w0', 'high', 'w2', 'med', 'low', 'w5'])
    expect(statuses[0].priority).toBe(5)
    expect(statuses[6].priority).toBe(-10)
  })

  test('custom priorityWeights change the order of the named levels', async () => {
    const { order } = await runOrder({ queue: { priorityWeights: { high: 30, medium: 20, low: 10 } } }, [
      ['high', { priority: 'high' }],
      ['med', { priority: 'medium' }],
      ['low', { priority: 'low' }],
      ['w15', { priority: 15 }],
      ['w25', { priority: 25 }],
    ])
    expect(order).toEqual(['low', 'w15', 'med', 'w25', 'high'])
  })

  test('a partial priorityWeights override keeps the other defaults', async () => {
    // low: 0 -> low (0) before high (1) before medium (2)
    const { order } = await runOrder({ queue: { priorityWeights: { low: 0 } } }, [
      ['med', { priority: 'medium' }],
      ['high', { priority: 'high' }],
      ['low', { priority: 'low' }],
    ])
    expect(order).toEqual(['low', 'high', 'med'])
  })

  test("a calculation's priority is the default of its jobs; job options override it", async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 } })
    const order = []
    const urgent = { name: 'urgent', priority: 'high', calculate: (d) => void order.push(d) }
    const normal = { name: 'normal', calculate: (d) => void order.push(d) }
    const ids = [
      service.addCalculationJob(normal, 'normal'),
      service.addCalculationJob(urgent, 'urgent-as-low', null, { priority: 'low' }),
      service.addCalculationJob(urgent, 'urgent'),
    ]
    await service.start()
    const st = await waitForAll(service, ids)
    expect(order).toEqual(['urgent', 'normal', 'urgent-as-low'])
    expect(st.map((s) => s.priority)).toEqual(['medium', 'low', 'high'])
  })

  test('jobs added while a worker is busy are still taken by priority', async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 } })
    const order = []
    const gate = deferred()
    const blocker = { name: 'blocker', calculate: () => gate.promise }
    const calc = { name: 'rec', calculate: (d) => void order.push(d) }
    await service.start()
    const b = service.addCalculationJob(blocker, null)
    await waitFor(() => service.getJobStatus(b).status === 'running')
    const ids = [
      service.addCalculationJob(calc, 'low', null, { priority: 'low' }),
      service.addCalculationJob(calc, 'med', null, { priority: 'medium' }),
      service.addCalculationJob(calc, 'high', null, { priority: 'high' }),
    ]
    gate.resolve('done')
    await waitForAll(service, [b, ...ids])
    expect(order).toEqual(['high', 'med', 'low'])
  })

  test('addCalculationJobs keeps priority order and returns ids in input order', async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 } })
    const order = []
    const calc = { name: 'rec', calculate: (d) => void order.push(d) }
    const ids = service.addCalculationJobs([
      { calculation: calc, data: 'a', options: { priority: 'low' } },
      { calculation: calc, data: 'b', options: { priority: 'high' } },
      { calculation: calc, data: 'c' },
    ])
    expect(ids).toHaveLength(3)
    expect(ids.map((id) => service.getJobStatus(id).data)).toEqual(['a', 'b', 'c'])
    await service.start()
    await waitForAll(service, ids)
    expect(order).toEqual(['b', 'c', 'a'])
  })
})
