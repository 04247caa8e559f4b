'use strict'
const { getJobManagementService, JobManagementService } = require('..')
const { serviceTracker, waitForStatus, waitForAll, UUID_RE } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const STATUS_KEYS = [
  'registered',
  'jobId',
  'name',
  'status',
  'priority',
  'attempts',
  'maxRetries',
  'timeout',
  'progress',
  'result',
  'error',
  'errors',
  'createdAt',
  'runAt',
  'startedAt',
  'finishedAt',
  'dependsOn',
  'onDependencyFailure',
  'data',
  'context',
  'key',
  'concurrencyKey',
  'scheduleId',
]

describe('adding jobs and reading their status', () => {
  test('addCalculationJob returns a UUID v7; ids are unique and ordered by creation', () => {
    const service = tracker.create({ queue: { maxQueueSize: 1000 } })
    const calc = { name: 'id', calculate: () => 1 }
    const ids = Array.from({ length: 300 }, (_, i) => service.addCalculationJob(calc, i))
    for (const id of ids) expect(id).toMatch(UUID_RE)
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
  })

  test('addCalculationJobs returns the ids in input order', async () => {
    const service = tracker.create({ queue: { maxQueueSize: 1000, maxWorkers: 8 } })
    const a = { name: 'a', calculate: (d) => `a${d}` }
    const b = { name: 'b', calculate: (d) => `b${d}` }
    const jobs = Array.from({ length: 500 }, (_, i) => ({ calculation: i % 2 ? b : a, data: i, context: { i } }))
    const ids = service.addCalculationJobs(jobs)
    expect(ids).toHaveLength(500)
    for (const id of ids) expect(id).toMatch(UUID_RE)
    expect(new Set(ids).size).toBe(500)
    expect([...ids].sort()).toEqual(ids)
    ids.forEach((id, i) => {
      const st = service.getJobStatus(id)
      expect(st.data).toBe(i)
      expect(st.context).toEqual({ i })
      expect(st.name).toBe(i % 2 ? 'b' : 'a')
    })
    await service.start()
    const st = await waitForAll(service, ids)
    expect(st.map((s) => s.result)).toEqual(jobs.map((j, i) => `${i % 2 ? 'b' : 'a'}${i}`))
  })

  test('a batch of plain data (sent as one JSON array) stores the same data as the general path', async () => {
    const service = tracker.create({ queue: { maxQueueSize: 1000 } })
    const seen = []
    const calc = { name: 'echo', calculate: (d) => (seen.push(d), d) }
    const datas = [0, -0, 1.5, 1e300, -7, '', 'x', 'quote " backslash \\ é 🎉', {}, { a: 1, b: 'two', c: true, d: null }, { 'key with space': -0 }]
    service.registerCalculation(calc)
    const plain = service.addCalculationJobs(datas.map((data) => ({ calculation: calc, data })))
    // A context sends each job on its own.
    const general = service.addCalculationJobs(datas.map((data) => ({ calculation: calc, data, context: { k: 1 } })))
    expect(plain).toHaveLength(datas.length)
    expect([...plain, ...general].sort()).toEqual([...plain, ...general])
    datas.forEach((d, i) => {
      expect(service.getJobStatus(plain[i]).data).toEqual(service.getJobStatus(general[i]).data)
      expect(service.getJobStatus(plain[i]).data).toEqual(JSON.parse(JSON.stringify(d)))
      expect(service.getJobStatus(plain[i]).context).toEqual({})
    })
    await service.start()
    await waitForAll(service, [...plain, ...general])
    expect(seen.slice(0, datas.length)).toEqual(seen.slice(datas.length))
  })

  test('getJobStatus of a pending job has every field, with null for what did not happen yet', () => {
    const service = tracker.create()
    const before = Date.now()
    const id = service.addCalculationJob({ name: 'fields', priority: 'low', timeout: 1234, retries: 4, calculate: () => 1 }, { x: [1, 2] }, { contentType: 'api::a.a' })
    const st = service.getJobStatus(id)
    expect(Object.keys(st).sort()).toEqual([...STATUS_KEYS].sort())
    expect(st).toEqual({
      jobId: id,
      name: 'fields',
      status: 'pending',
      registered: true,
      priority: 'low',
      attempts: 0,
      maxRetries: 4,
      timeout: 1234,
      progress: null,
      result: null,
      error: null,
      errors: [],
      createdAt: expect.any(Number),
      runAt: st.createdAt,
      startedAt: null,
      finishedAt: null,
      dependsOn: [],
      onDependencyFailure: 'fail',
      data: { x: [1, 2] },
      context: { contentType: 'api::a.a' },
      key: null,
      concurrencyKey: null,
      scheduleId: null,
    })
    expect(st.createdAt).toBeGreaterThanOrEqual(before - 1)
    expect(st.createdAt).toBeLessThanOrEqual(Date.now() + 1)
  })

  test('getJobStatus after completion: times are ordered, result set', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob({ name: 'done', calculate: (d) => ({ echo: d }) }, 'hi')
    const st = await waitForStatus(service, id)
    expect(Object.keys(st).sort()).toEqual([...STATUS_KEYS].sort())
    expect(st).toMatchObject({ jobId: id, name: 'done', status: 'completed', priority: 'medium', attempts: 1, maxRetries: 2, timeout: 30000, result: { echo: 'hi' }, error: null, errors: [] })
    expect(typeof st.startedAt).toBe('number')
    expect(typeof st.finishedAt).toBe('number')
    expect(st.createdAt).toBeLessThanOrEqual(st.runAt)
    expect(st.runAt).toBeLessThanOrEqual(st.startedAt)
    expect(st.startedAt).toBeLessThanOrEqual(st.finishedAt)
  })

  test('getJobStatus returns a fresh copy each time', () => {
    const service = tracker.create()
    const id = service.addCalculationJob({ name: 'copy', calculate: () => 1 }, { a: 1 })
    const st = service.getJobStatus(id)
    st.status = 'hacked'
    st.data.a = 2
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', data: { a: 1 } })
  })

  test('data is stored as JSON: later changes to the caller object are not seen', async () => {
    const service = tracker.create()
    const seen = []
    const data = { n: 1 }
    const id = service.addCalculationJob({ name: 'snap', calculate: (d) => seen.push(d) }, data)
    data.n = 2
    await service.start()
    await waitForStatus(service, id)
    expect(seen).toEqual([{ n: 1 }])
  })

  test('registerCalculation, then jobs of that calculation run', async () => {
    const service = tracker.create()
    const calc = { name: 'registered', calculate: (d) => d + 1 }
    expect(service.registerCalculation(calc)).toBeUndefined()
    service.registerCalculation(calc) // twice is fine
    await service.start()
    const id = service.addCalculationJob(calc, 1)
    expect((await waitForStatus(service, id)).result).toBe(2)
  })

  test('flush() resolves', async () => {
    const service = tracker.create()
    service.addCalculationJob({ name: 'f', calculate: () => 1 }, null)
    await expect(service.flush()).resolves.toBeUndefined()
  })

  test('getJobManagementService returns one service per key', async () => {
    const strapiA = {}
    const strapiB = {}
    const a1 = tracker.track(getJobManagementService(strapiA, { queue: { maxWorkers: 2 } }))
    const a2 = getJobManagementService(strapiA)
    const b = tracker.track(getJobManagementService(strapiB))
    expect(a1).toBeInstanceOf(JobManagementService)
    expect(a2).toBe(a1)
    expect(b).not.toBe(a1)
    expect(a1.getQueueStatistics().maxWorkers).toBe(2)
    const p1 = tracker.track(getJobManagementService())
    expect(getJobManagementService()).toBe(p1)
  })
})
