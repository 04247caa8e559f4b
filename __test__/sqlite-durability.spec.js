'use strict'
// The durability contract: ids at once, committed within the group-commit
// window; flush(); durability 'full'; addCalculationJobs all or none (also
// across a crash); stop() flushes.
const fs = require('node:fs')
const path = require('node:path')
const { tempDirs, sqliteTracker, fixtureTracker, waitFor, sleep, thrown, isError, pyValue, integrityCheck } = require('./helpers/sqlite')

const dirs = tempDirs('jobwerk-durability-')
const services = sqliteTracker()
const fixtures = fixtureTracker()
afterEach(async () => {
  await fixtures.killAll()
  await services.stopAll()
})
afterAll(() => dirs.cleanup())

const calc = { name: 'sq', calculate: (d) => d * d }

function newDb() {
  return path.join(dirs.make(), 'jobs.db')
}

async function childThenKill(scenario, args) {
  const f = fixtures.start('sqlite-child.js', [scenario, ...args])
  const ready = await f.next('ready')
  const exit = await f.kill('SIGKILL')
  expect(exit.signal).toBe('SIGKILL')
  return ready
}

describe("durability: 'full'", () => {
  test('jobs run and a restart sees them', async () => {
    const db = newDb()
    const s = services.open(db, { storage: { durability: 'full' }, queue: { maxWorkers: 4 } })
    await s.start()
    const ids = s.addCalculationJobs(Array.from({ length: 50 }, (_, i) => ({ calculation: calc, data: i })))
    const delayed = s.addCalculationJob(calc, 7, null, { delay: 60000 })
    await waitFor(() => s.getQueueStatistics().completed === 50, { what: '50 jobs' })
    await s.flush()
    await s.stop()
    const again = services.open(db, { storage: { durability: 'full' } })
    ids.forEach((id, i) => expect(again.getJobStatus(id)).toMatchObject({ status: 'completed', result: i * i }))
    expect(again.getJobStatus(delayed)).toMatchObject({ status: 'pending', data: 7 })
    // the same file opens with 'normal' too (durability is not a property of the file)
    await again.stop()
    const normal = services.open(db, { storage: { durability: 'normal' } })
    expect(normal.getQueueStatistics()).toMatchObject({ completed: 50, pending: 1 })
  })

  test("with 'full', flush() then SIGKILL loses nothing", async () => {
    const db = newDb()
    const { ids } = await childThenKill('flushKill', [db, '300', 'full'])
    const s = services.open(db)
    expect(s.getQueueStatistics()).toMatchObject({ pending: 300, total: 300 })
    for (const id of ids) expect(s.getJobStatus(id)).not.toBeNull()
  })
})

describe('the group-commit window', () => {
  test('addCalculationJob returns the id at once; the job is committed shortly after without flush()', async () => {
    const db = newDb()
    const { ids } = await childThenKill('window', [db, '250'])
    const s = services.open(db)
    expect(s.getJobStatus(ids[0])).toMatchObject({ status: 'pending', data: { w: true } })
  })

  test('while started (writes wait for the dispatcher to start its handlers): adds, claims and results are committed within the window', async () => {
    const db = newDb()
    const { ids } = await childThenKill('windowStarted', [db, '250'])
    const [done, busy, ...waiting] = ids
    const s = services.open(db)
    expect(s.getJobStatus(done)).toMatchObject({ status: 'completed', result: 'done', attempts: 1 })
    // It was running when the process died: back to pending with that attempt counted.
    expect(s.getJobStatus(busy)).toMatchObject({ status: 'pending', attempts: 1 })
    for (const id of waiting) expect(s.getJobStatus(id)).toMatchObject({ status: 'pending', attempts: 0 })
  })

  test('addCalculationJob is synchronous: the id comes back before any commit, and getJobStatus sees it at once', async () => {
    const db = newDb()
    const s = services.open(db)
    // The file opens on first use (not in the constructor): open it first,
    // the add is what is measured.
    expect(s.getQueueStatistics().total).toBe(0)
    const t0 = process.hrtime.bigint()
    const id = s.addCalculationJob(calc, 3)
    const us = Number(process.hrtime.bigint() - t0) / 1000
    expect(typeof id).toBe('string')
    expect(s.getJobStatus(id)).toMatchObject({ status: 'pending' })
    // A real-time smoke bound, kept wide for a busy 2-core machine: the add
    // does not wait for the writer (an fsync per add would show in W1 of the
    // benchmark, which measures it, not here).
    expect(us).toBeLessThan(500000)
    await s.flush()
  })
})

describe('addCalculationJobs is all or none', () => {
  const good = (i) => ({ calculation: calc, data: i })
  test.each([
    ['an invalid option', (b) => b.splice(2, 0, { calculation: calc, data: 1, options: { priority: 'urgent' } }), 'ERR_INVALID_ARGUMENT', 'jobs[2].options'],
    ['a negative delay', (b) => b.push({ calculation: calc, data: 1, options: { delay: -5 } }), 'ERR_INVALID_ARGUMENT', 'delay'],
    ['data that is not JSON', (b) => b.splice(1, 0, { calculation: calc, data: { f: () => 1 } }), 'ERR_NOT_SERIALIZABLE', 'jobs[1].data'],
    ['a BigInt in the data', (b) => b.splice(3, 0, { calculation: calc, data: { n: 10n } }), 'ERR_NOT_SERIALIZABLE', 'jobs[3].data'],
    ['a calculation without a handler', (b) => b.splice(4, 0, { calculation: { name: 'nohandler' }, data: 1 }), 'ERR_INVALID_ARGUMENT', 'calculate'],
    ['a payload over maxPayloadBytes', (b) => b.push({ calculation: calc, data: 'x'.repeat(5000) }), 'ERR_PAYLOAD_TOO_LARGE', undefined],
    ['a null entry', (b) => b.splice(1, 0, null), 'ERR_INVALID_ARGUMENT', 'jobs[1]'],
    ['more jobs than the queue has room for', (b) => b.push(...Array.from({ length: 20 }, (_, i) => good(100 + i))), 'ERR_QUEUE_FULL', undefined],
  ])('a batch with %s adds none (also after a restart)', async (_label, spoil, code, names) => {
    const db = newDb()
    const cfg = { queue: { maxQueueSize: 20, maxPayloadBytes: 1000 } }
    const s = services.open(db, cfg)
    const kept = s.addCalculationJobs([good(0), good(1)])
    const batch = Array.from({ length: 6 }, (_, i) => good(10 + i))
    spoil(batch)
    const e = thrown(() => s.addCalculationJobs(batch))
    expect(isError(e)).toBe(true)
    expect(e.code).toBe(code)
    if (names) expect(e.message).toContain(names)
    expect(s.getQueueStatistics()).toMatchObject({ total: 2, pending: 2 })
    await s.flush()
    await s.stop()
    const again = services.open(db, cfg)
    expect(again.getQueueStatistics()).toMatchObject({ total: 2, pending: 2 })
    for (const id of kept) expect(again.getJobStatus(id)).toMatchObject({ status: 'pending' })
    await again.stop()
    expect(pyValue(db, 'select count(*) from jobwerk_jobs')).toBe(2)
  })

  test('a batch is one transaction: a SIGKILL right after it returns leaves all of it or none of it', async () => {
    const N = 2000
    const outcomes = []
    // killed 0-80 ms after the batch returned: before, during or after its commit
    const delays = [0, 30, 80]
    for (const delay of delays) {
      const db = newDb()
      const f = fixtures.start('sqlite-child.js', ['batchKill', db, String(N)])
      const ready = await f.next('ready')
      if (delay > 0) await sleep(delay)
      await f.kill('SIGKILL')
      const s = services.open(db)
      const total = s.getQueueStatistics().total
      outcomes.push(total)
      expect([0, N]).toContain(total)
      if (total === N) {
        expect(s.getJobStatus(ready.first)).not.toBeNull()
        expect(s.getJobStatus(ready.last)).not.toBeNull()
      }
      await s.stop()
      expect([0, N]).toContain(pyValue(db, 'select count(*) from jobwerk_jobs'))
      expect(integrityCheck(db)).toBe('ok')
    }
    console.log(`batch of ${N} killed right after addCalculationJobs returned: jobs found after restart with kill delays ${delays.join('/')} ms: ${outcomes.join(', ')}`)
  })
})

describe('stop()', () => {
  test('stop() commits everything (no flush needed) and releases the file', async () => {
    const db = newDb()
    const s = services.open(db, { queue: { maxQueueSize: 5000 } })
    const ids = s.addCalculationJobs(Array.from({ length: 2000 }, (_, i) => ({ calculation: calc, data: i, options: { delay: 60000 } })))
    const summary = await s.stop()
    expect(summary).toMatchObject({ pending: 2000, dropped: 0 })
    expect(pyValue(db, 'select count(*) from jobwerk_jobs')).toBe(2000)
    // checkpointed on close: no WAL content left behind
    expect(fs.existsSync(`${db}-wal`) ? fs.statSync(`${db}-wal`).size : 0).toBe(0)
    const again = services.open(db)
    expect(again.getJobStatus(ids[1999])).toMatchObject({ status: 'pending', data: 1999 })
  })
})
