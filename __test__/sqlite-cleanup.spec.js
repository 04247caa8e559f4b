'use strict'
// Cleanup on SQLite: finished jobs older than maxJobAge are pruned from memory
// and from the file; the file does not grow without bound.
const path = require('node:path')
const { tempDirs, sqliteTracker, waitFor, sleep, fileSize, pyValue, integrityCheck } = require('./helpers/sqlite')

const dirs = tempDirs('jobwerk-cleanup-')
const services = sqliteTracker()
afterEach(() => services.stopAll())
afterAll(() => dirs.cleanup())

const ok = { name: 'ok', calculate: (d) => ({ echo: d }) }
const boom = {
  name: 'boom',
  calculate: () => {
    throw new Error('boom')
  },
}
const PRUNE = { cleanupInterval: 100, maxJobAge: 50 }

function newDb() {
  return path.join(dirs.make(), 'jobs.db')
}

describe('cleanup on SQLite', () => {
  test('finished jobs vanish from getJobStatus and from the file; pending ones stay', async () => {
    const db = newDb()
    const s = services.open(db, { queue: { ...PRUNE, maxWorkers: 8 } })
    await s.start()
    const done = s.addCalculationJobs(Array.from({ length: 40 }, (_, i) => ({ calculation: ok, data: i })))
    const failed = s.addCalculationJobs(Array.from({ length: 5 }, (_, i) => ({ calculation: boom, data: i, options: { retries: 0 } })))
    const cancelled = s.addCalculationJob(ok, 'c', null, { delay: 60000 })
    s.cancelJob(cancelled)
    const later = s.addCalculationJob(ok, 'later', null, { delay: 60000 })
    const all = [...done, ...failed, cancelled]
    await waitFor(() => all.every((id) => s.getJobStatus(id) === null), { timeout: 5000, what: 'finished jobs to be pruned' })
    expect(s.getJobStatus(later)).toMatchObject({ status: 'pending' })
    expect(s.getQueueStatistics()).toMatchObject({ total: 1, pending: 1, completed: 0, failed: 0, cancelled: 0 })
    await s.stop()

    // reopened: gone from the file too
    const again = services.open(db)
    for (const id of all) expect(again.getJobStatus(id)).toBeNull()
    expect(again.getJobStatus(later)).toMatchObject({ status: 'pending', data: 'later' })
    expect(again.getQueueStatistics().total).toBe(1)
    await again.stop()
    expect(pyValue(db, 'select count(*) from jobwerk_jobs')).toBe(1)
    expect(integrityCheck(db)).toBe('ok')
  })

  test('a job is kept until it is maxJobAge old', async () => {
    const db = newDb()
    // The manual clock: the job's age is exact, whatever the machine's load.
    const s = services.open(db, { queue: { cleanupInterval: 50, maxJobAge: 1200 }, clock: 'manual' })
    await s.start()
    const id = s.addCalculationJob(ok, 'young')
    await s.advanceTime(0)
    expect(s.getJobStatus(id)).toMatchObject({ status: 'completed', finishedAt: s.now() })
    await s.advanceTime(1199)
    expect(s.getJobStatus(id)).toMatchObject({ status: 'completed' })
    await s.advanceTime(51)
    expect(s.getJobStatus(id)).toBeNull()
    await s.flush()
    await s.stop()
    const again = services.open(db)
    expect(again.getJobStatus(id)).toBeNull()
  })

  test('jobs that finished in an earlier run are pruned by the next one (and from the file)', async () => {
    const db = newDb()
    const first = services.open(db, { queue: { maxWorkers: 8 } })
    await first.start()
    const ids = first.addCalculationJobs(Array.from({ length: 30 }, (_, i) => ({ calculation: ok, data: i })))
    await waitFor(() => first.getQueueStatistics().completed === 30)
    await first.stop()

    const second = services.open(db, { queue: PRUNE })
    expect(second.getQueueStatistics().completed).toBe(30)
    await second.start()
    await waitFor(() => second.getQueueStatistics().total === 0, { timeout: 3000, what: 'old jobs to be pruned' })
    for (const id of ids) expect(second.getJobStatus(id)).toBeNull()
    await second.stop()
    const third = services.open(db)
    expect(third.getQueueStatistics().total).toBe(0)
  })

  test('the file stays bounded over rounds of add + finish + prune (stop/start between rounds)', async () => {
    const db = newDb()
    const s = services.open(db, { queue: { ...PRUNE, maxWorkers: 16, maxQueueSize: 10000 } })
    s.registerCalculation(ok)
    const ROUNDS = 8
    const PER_ROUND = 2000
    const sizes = []
    let walMax = 0
    for (let round = 0; round < ROUNDS; round++) {
      await s.start()
      const batch = []
      for (let i = 0; i < PER_ROUND; i++) batch.push({ calculation: ok, data: { round, i, pad: 'x'.repeat(400) } })
      s.addCalculationJobs(batch)
      await waitFor(() => s.getQueueStatistics().total === 0, { timeout: 10000, interval: 10, what: `round ${round} to finish and be pruned` })
      await s.flush()
      walMax = Math.max(walMax, fileSize(`${db}-wal`))
      await s.stop() // checkpoints: the main file now holds everything
      sizes.push(fileSize(db))
    }
    console.log(`cleanup rounds: main file sizes ${sizes.join(', ')} bytes; largest WAL while running ${walMax} bytes`)
    // each round writes ~1 MB of jobs; after the first rounds the file stops growing
    const early = Math.max(...sizes.slice(0, 2))
    const late = Math.max(...sizes.slice(-3))
    expect(late).toBeLessThanOrEqual(early * 1.25 + 65536)
    expect(walMax).toBeLessThan(64 * 1024 * 1024)
    const again = services.open(db)
    expect(again.getQueueStatistics().total).toBe(0)
    await again.stop()
    expect(pyValue(db, 'select count(*) from jobwerk_jobs')).toBe(0)
    expect(integrityCheck(db)).toBe('ok')
  })

  test('the file is created with auto_vacuum = incremental', async () => {
    const db = newDb()
    const s = services.open(db)
    await s.start()
    await s.stop()
    expect(pyValue(db, 'pragma auto_vacuum')).toBe(2)
  })

  // BUG: pruning runs `PRAGMA incremental_vacuum` through rusqlite's
  // execute_batch, which steps the statement once; incremental_vacuum frees one
  // page per step, so each prune gives back a single page. After everything is
  // pruned the file keeps its peak size, nearly all of it on the freelist.
  test('after pruning everything, the freed pages are given back (the file shrinks)', async () => {
    const db = newDb()
    const s = services.open(db, { queue: { ...PRUNE, maxWorkers: 16, maxQueueSize: 10000 } })
    await s.start()
    const batch = []
    for (let i = 0; i < 4000; i++) batch.push({ calculation: ok, data: { i, pad: 'y'.repeat(500) } })
    s.addCalculationJobs(batch)
    await waitFor(() => s.getQueueStatistics().total === 0, { timeout: 10000, interval: 10, what: 'all to finish and be pruned' })
    await s.flush()
    await sleep(300) // a few more cleanup rounds
    await s.stop()
    const pages = pyValue(db, 'pragma page_count')
    const free = pyValue(db, 'pragma freelist_count')
    console.log(`after pruning 4000 jobs: ${pages} pages, ${free} of them free, file ${fileSize(db)} bytes`)
    expect(free).toBeLessThanOrEqual(Math.max(8, pages * 0.1))
  })
})
