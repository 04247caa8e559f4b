'use strict'
// getJobs: one page of jobs at a time, newest first, by cursor; filters by
// status, name and creation time; the same on memory and SQLite (pending jobs
// kept in the file only and finished jobs included).

const path = require('node:path')
const { serviceTracker, expectCode, thrown } = require('./helpers')
const { tempDirs } = require('./helpers/sqlite')

const tracker = serviceTracker()
const dirs = tempDirs('jobwerk-getjobs-')
afterEach(async () => {
  await tracker.stopAll()
  dirs.cleanup()
})

const T0 = Date.parse('2026-03-01T00:00:00Z')
const MIN = 60 * 1000

const storages = {
  memory: () => ({ type: 'memory' }),
  sqlite: () => ({ type: 'sqlite', path: path.join(dirs.make(), 'jobs.db') }),
}

/** Every page of `filter`, following nextCursor; the ids in page order. */
function allPages(service, filter) {
  const ids = []
  let cursor
  for (let pages = 0; ; pages++) {
    const { jobs, nextCursor } = service.getJobs({ ...filter, cursor })
    if (pages > 1e6) throw new Error('getJobs never ended')
    for (const j of jobs) ids.push(j.jobId)
    if (nextCursor === null) return ids
    expect(nextCursor).toBe(jobs[jobs.length - 1].jobId)
    cursor = nextCursor
  }
}

describe.each(Object.keys(storages))('getJobs on %s', (kind) => {
  test('paging over 100,000 jobs returns each exactly once, in order, both ways', () => {
    const service = tracker.create({ storage: storages[kind](), queue: { maxQueueSize: 200000 } })
    const calc = { name: 'many', calculate: () => null }
    const ids = []
    for (let b = 0; b < 10; b++) {
      const batch = Array.from({ length: 10000 }, (_, i) => ({ calculation: calc, data: { i: b * 10000 + i } }))
      ids.push(...service.addCalculationJobs(batch))
    }
    expect(service.getQueueStatistics().pending).toBe(100000)
    const newest = allPages(service, { limit: 1000, includeData: false })
    expect(newest).toHaveLength(100000)
    expect(newest).toEqual([...ids].reverse())
    const oldest = allPages(service, { limit: 1000, order: 'asc', includeData: false })
    expect(oldest).toEqual(ids)
    // With data, the default page size: the newest 50, with their payloads.
    const first = service.getJobs()
    expect(first.jobs).toHaveLength(50)
    expect(first.jobs.map((j) => j.data.i)).toEqual(Array.from({ length: 50 }, (_, i) => 99999 - i))
    // A page from the middle (jobs in the file only, with SQLite).
    const mid = service.getJobs({ cursor: ids[50000], limit: 3, order: 'asc' })
    expect(mid.jobs.map((j) => j.data.i)).toEqual([50001, 50002, 50003])
    expect(mid.jobs.every((j) => j.status === 'pending')).toBe(true)
  })

  test('filters by status, name and creation time; each job as getJobStatus shows it', async () => {
    const service = tracker.create({
      storage: storages[kind](),
      clock: { type: 'manual', now: T0 },
      queue: { maxWorkers: 4, maxJobAge: 24 * 60 * MIN, defaultRetries: 0 },
      monitoring: { enabled: false },
    })
    const ok = { name: 'ok', calculate: (d) => ({ doubled: d.n * 2 }) }
    const bad = {
      name: 'bad',
      calculate: () => {
        throw new Error('nope')
      },
    }
    const later = { name: 'later', calculate: () => 1 }
    const early = [service.addCalculationJob(ok, { n: 1 }), service.addCalculationJob(bad, { n: 2 }, { contentType: 'api::match.match' })]
    await service.start()
    await service.advanceTime(MIN)
    const mid = [service.addCalculationJob(ok, { n: 3 }), service.addCalculationJob(later, { n: 4 }, {}, { delay: 60 * MIN })]
    const waits = service.addCalculationJob(ok, { n: 5 }, {}, { dependsOn: [mid[1]] })
    await service.advanceTime(MIN)
    const last = service.addCalculationJob(later, { n: 6 }, {}, { delay: 60 * MIN })
    expect(service.cancelJob(last)).toBe(true)
    const all = [...early, ...mid, waits, last]

    const st = (id) => service.getJobStatus(id).status
    expect(all.map(st)).toEqual(['completed', 'failed', 'completed', 'pending', 'waiting', 'cancelled'])
    const ids = (filter) => service.getJobs(filter).jobs.map((j) => j.jobId)

    // Newest first, each job exactly as getJobStatus has it.
    const page = service.getJobs()
    expect(page.nextCursor).toBeNull()
    expect(page.jobs).toEqual([...all].reverse().map((id) => service.getJobStatus(id)))
    expect(page.jobs[4].context).toEqual({ contentType: 'api::match.match' })
    expect(page.jobs[5].result).toEqual({ doubled: 2 })

    expect(ids({ status: 'completed' })).toEqual([mid[0], early[0]])
    expect(ids({ status: ['failed', 'cancelled'] })).toEqual([last, early[1]])
    expect(ids({ status: ['waiting', 'pending'], order: 'asc' })).toEqual([mid[1], waits])
    expect(ids({ name: 'later' })).toEqual([last, mid[1]])
    expect(ids({ name: 'ok', status: 'completed', limit: 1 })).toEqual([mid[0]])
    expect(ids({ name: 'never-added' })).toEqual([])
    // since <= createdAt < until; Dates or epoch ms.
    expect(ids({ since: T0 + MIN })).toEqual([last, waits, mid[1], mid[0]])
    expect(ids({ until: new Date(T0 + MIN) })).toEqual([early[1], early[0]])
    expect(ids({ since: new Date(T0 + MIN), until: T0 + 2 * MIN, order: 'asc' })).toEqual([...mid, waits])
    expect(ids({ since: T0 + 2 * MIN, status: 'cancelled' })).toEqual([last])
    expect(ids({ since: T0 + 3 * MIN })).toEqual([])

    // Paging with a filter: the cursor continues the same filter.
    const p1 = service.getJobs({ name: 'ok', limit: 2 })
    expect(p1.jobs.map((j) => j.jobId)).toEqual([waits, mid[0]])
    const p2 = service.getJobs({ name: 'ok', limit: 2, cursor: p1.nextCursor })
    expect(p2.jobs.map((j) => j.jobId)).toEqual([early[0]])
    expect(p2.nextCursor).toBeNull()

    // includeData: false leaves out data and result, nothing else.
    const lean = service.getJobs({ includeData: false }).jobs
    lean.forEach((j, i) => {
      expect('data' in j).toBe(false)
      expect('result' in j).toBe(false)
      const { data, result, ...rest } = page.jobs[i]
      expect(j).toEqual(rest)
    })
  })
})

test('SQLite: jobs kept in the file only and finished jobs read back after a restart are listed', async () => {
  const file = path.join(dirs.make(), 'jobs.db')
  const calc = { name: 'cold', calculate: (d) => d.i }
  const first = tracker.create({ storage: { type: 'sqlite', path: file }, queue: { maxQueueSize: 10000, maxWorkers: 8 } })
  const done = first.addCalculationJobs(Array.from({ length: 10 }, (_, i) => ({ calculation: calc, data: { i } })))
  await first.start()
  for (;;) {
    if (done.every((id) => first.getJobStatus(id).status === 'completed')) break
    await new Promise((r) => setTimeout(r, 5))
  }
  await first.stop()
  // 5,000 pending jobs: beyond the first 2,048 they stay in the file only.
  const second = tracker.create({ storage: { type: 'sqlite', path: file }, queue: { maxQueueSize: 10000 } })
  const queued = second.addCalculationJobs(Array.from({ length: 5000 }, (_, i) => ({ calculation: calc, data: { i: 100 + i } })))
  await second.flush()
  const before = second.getJobs({ limit: 1000, includeData: false })
  expect(before.jobs.map((j) => j.jobId)).toEqual([...queued].reverse().slice(0, 1000))
  await tracker.stopAll()

  const again = tracker.create({ storage: { type: 'sqlite', path: file }, queue: { maxQueueSize: 10000 } })
  again.registerCalculation(calc)
  expect(again.getQueueStatistics().pending).toBe(5000)
  expect(allPages(again, { limit: 777 })).toEqual([...queued].reverse().concat([...done].reverse()))
  expect(again.getJobs({ limit: 1000, includeData: false })).toEqual(before)
  const finished = again.getJobs({ status: 'completed', order: 'asc' }).jobs
  expect(finished.map((j) => [j.jobId, j.result])).toEqual(done.map((id, i) => [id, i]))
  const cold = again.getJobs({ cursor: queued[10], order: 'asc', limit: 2 }).jobs
  expect(cold.map((j) => [j.jobId, j.status, j.data])).toEqual([
    [queued[11], 'pending', { i: 111 }],
    [queued[12], 'pending', { i: 112 }],
  ])
  expect(cold[0]).toEqual(again.getJobStatus(queued[11]))
})

describe('bad filters are ERR_INVALID_ARGUMENT naming the field', () => {
  const cases = [
    ['filter', 'pending'],
    ['filter', [1]],
    ['statuss', { statuss: 'pending' }],
    ['status', { status: 'done' }],
    ['status', { status: [] }],
    ['status', { status: ['pending', 7] }],
    ['name', { name: 42 }],
    ['name', { name: { name: 'calc' } }],
    ['since', { since: 'yesterday' }],
    ['since', { since: new Date(NaN) }],
    ['since', { since: -1 }],
    ['until', { until: Infinity }],
    ['until', { since: T0, until: T0 - 1 }],
    ['limit', { limit: 0 }],
    ['limit', { limit: 1001 }],
    ['limit', { limit: 2.5 }],
    ['limit', { limit: '10' }],
    ['cursor', { cursor: 'next' }],
    ['cursor', { cursor: 12 }],
    ['order', { order: 'newest' }],
    ['includeData', { includeData: 'yes' }],
  ]
  test.each(cases)('%s: %p', (field, filter) => {
    const service = tracker.create({ storage: { type: 'memory' } })
    const e = expectCode(() => service.getJobs(filter), 'ERR_INVALID_ARGUMENT')
    expect(e.field).toBe(field)
    expect(e.message).toContain(field)
  })

  test('a filter whose fields cannot be read', () => {
    const service = tracker.create({ storage: { type: 'memory' } })
    const getter = {
      get status() {
        throw new Error('boom')
      },
    }
    const trap = new Proxy({}, { ownKeys: () => { throw new TypeError('no keys') } })
    for (const filter of [getter, trap]) {
      const e = expectCode(() => service.getJobs(filter), 'ERR_INVALID_ARGUMENT', 'cannot be read')
      expect(e.field).toBe('filter')
    }
  })

  test('null and undefined fields are the defaults', () => {
    const service = tracker.create({ storage: { type: 'memory' } })
    const id = service.addCalculationJob({ name: 'x', calculate: () => 1 }, {})
    const all = { status: null, name: undefined, since: null, until: null, limit: null, cursor: null, order: undefined, includeData: null }
    expect(service.getJobs(all).jobs.map((j) => j.jobId)).toEqual([id])
    expect(service.getJobs(null)).toEqual(service.getJobs())
    expect(service.getJobs({ limit: 1000 }).nextCursor).toBeNull()
  })

  test('the binding checks the filter too', () => {
    const service = tracker.create({ storage: { type: 'memory' } })
    const e = thrown(() => service._core.jobs(JSON.stringify({ limit: 5000 })))
    expect(e.code).toBe('ERR_INVALID_ARGUMENT')
    expect(e.message).toContain('filter.limit')
    expect(thrown(() => service._core.jobs('{"cursor":"x"}')).message).toContain('filter.cursor')
  })
})
