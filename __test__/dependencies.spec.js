'use strict'
// dependsOn: a job waits for its dependencies; a failed, timed-out or
// cancelled dependency fails it with ERR_DEPENDENCY_FAILED unless
// onDependencyFailure is 'ignore'; unknown ids are refused before anything is written.

const { serviceTracker, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

function recorder() {
  const order = []
  const calc = (name, fn) => ({
    name,
    retries: 0,
    calculate: async (data) => {
      order.push(name)
      if (fn) return fn(data)
      return name
    },
  })
  return { order, calc }
}

test('a chain and a diamond run in dependency order', async () => {
  const service = tracker.create({ queue: { maxWorkers: 4 } })
  const { order, calc } = recorder()
  const a = service.addCalculationJob(calc('a'), {})
  const b = service.addCalculationJob(calc('b'), {}, {}, { dependsOn: [a] })
  const c = service.addCalculationJob(calc('c'), {}, {}, { dependsOn: [a] })
  const d = service.addCalculationJob(calc('d'), {}, {}, { dependsOn: [b, c] })
  expect(service.getJobStatus(b).status).toBe('waiting')
  expect(service.getJobStatus(d).status).toBe('waiting')
  expect(service.getQueueStatistics().waiting).toBe(3)
  await service.start()
  await waitFor(() => service.getJobStatus(d).status === 'completed')
  expect(order[0]).toBe('a')
  expect(order[3]).toBe('d')
  expect(order.slice(1, 3).sort()).toEqual(['b', 'c'])
})

test('a failed dependency fails its dependants (transitively) with ERR_DEPENDENCY_FAILED', async () => {
  const service = tracker.create()
  const failed = []
  service.on('failed', (e) => failed.push([e.name, e.error.code || null]))
  const { order, calc } = recorder()
  const a = service.addCalculationJob(calc('a', () => { throw new Error('boom') }), {})
  const b = service.addCalculationJob(calc('b'), {}, {}, { dependsOn: [a] })
  const c = service.addCalculationJob(calc('c'), {}, {}, { dependsOn: [b] })
  const ignoring = service.addCalculationJob(calc('ignoring'), {}, {}, { dependsOn: [a], onDependencyFailure: 'ignore' })
  await service.start()
  await waitFor(() => service.getJobStatus(ignoring).status === 'completed')
  await waitFor(() => service.getJobStatus(c).status === 'failed')
  expect(service.getJobStatus(b).error.code).toBe('ERR_DEPENDENCY_FAILED')
  expect(service.getJobStatus(c).error.code).toBe('ERR_DEPENDENCY_FAILED')
  expect(order).toEqual(['a', 'ignoring'])
  expect(failed).toEqual([['a', null], ['b', 'ERR_DEPENDENCY_FAILED'], ['c', 'ERR_DEPENDENCY_FAILED']])
})

test('a cancelled or timed-out dependency fails its dependants; a later add fails at once', async () => {
  const service = tracker.create()
  const { calc } = recorder()
  const slow = { name: 'slow', timeout: 30, retries: 0, calculate: (d, c, job) => new Promise((r) => job.signal.addEventListener('abort', r)) }
  const x = service.addCalculationJob(calc('x'), {})
  const y = service.addCalculationJob(calc('y'), {}, {}, { dependsOn: [x] })
  expect(service.cancelJob(x)).toBe(true)
  expect(service.getJobStatus(y).status).toBe('failed')
  const t = service.addCalculationJob(slow, {})
  const u = service.addCalculationJob(calc('u'), {}, {}, { dependsOn: [t] })
  await service.start()
  await waitFor(() => service.getJobStatus(u).status === 'failed')
  expect(service.getJobStatus(t).status).toBe('timeout')
  const late = service.addCalculationJob(calc('late'), {}, {}, { dependsOn: [t] })
  expect(service.getJobStatus(late).status).toBe('failed')
})

test('a waiting job can be cancelled; its dependency still runs', async () => {
  const service = tracker.create()
  const { order, calc } = recorder()
  const a = service.addCalculationJob(calc('a'), {})
  const b = service.addCalculationJob(calc('b'), {}, {}, { dependsOn: [a] })
  expect(service.cancelJob(b)).toBe(true)
  await service.start()
  await waitFor(() => service.getJobStatus(a).status === 'completed')
  expect(service.getJobStatus(b).status).toBe('cancelled')
  expect(order).toEqual(['a'])
})

test('unknown or malformed ids are refused and nothing is added', () => {
  const service = tracker.create()
  const { calc } = recorder()
  const a = service.addCalculationJob(calc('a'), {})
  const before = service.getQueueStatistics().total
  for (const dependsOn of [['01a22572-de9e-7000-a52f-8c5acf718cbf'], ['nope']]) {
    expect(() => service.addCalculationJobs([{ calculation: calc('ok'), data: 1 }, { calculation: calc('b'), data: 2, options: { dependsOn } }])).toThrow(
      expect.objectContaining({ code: 'ERR_DEPENDENCY_NOT_FOUND' }),
    )
  }
  for (const dependsOn of ['x', [1], {}]) {
    expect(() => service.addCalculationJob(calc('b'), {}, {}, { dependsOn })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  }
  expect(() => service.addCalculationJob(calc('b'), {}, {}, { dependsOn: [a], onDependencyFailure: 'maybe' })).toThrow(
    expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
  )
  expect(service.getQueueStatistics().total).toBe(before)
})
