'use strict'
// A file written by the release of SQLite schema 3 (tests/fixtures/sqlite-v3.db,
// made by tests/fixtures/make-sqlite-fixture.js 3) opens with this build: it is
// migrated to the current schema with every job, result, error, progress,
// dependency and schedule intact, read back as that release read it
// (tests/fixtures/sqlite-v3.expected.json), and keeps working.
const fs = require('node:fs')
const path = require('node:path')
const { tempDirs, sqliteTracker, rejected, expectStorageError } = require('./helpers/sqlite')

const FIXTURES = path.join(__dirname, '..', 'tests', 'fixtures')
// As 0.1.0 read the file, with the job error codes it stored as today's read
// them (src/error.rs LEGACY_JOB_CODES: jobwerk's own cancel and stop errors
// only; a handler's own code is kept).
const LEGACY = [
  ['ERR_CANCELLED', 'CancelledError', 'the job was cancelled', 'ERR_JOB_CANCELLED'],
  ['ERR_INTERRUPTED', 'InterruptedError', 'the service stopped while the job ran', 'ERR_SERVICE_STOPPED'],
]
function todaysCodes(v) {
  if (Array.isArray(v)) return v.map(todaysCodes)
  if (v === null || typeof v !== 'object') return v
  const out = {}
  for (const [k, x] of Object.entries(v)) out[k] = todaysCodes(x)
  const legacy = LEGACY.find(([code, name, message]) => out.code === code && out.name === name && out.message === message && out.stack === undefined)
  if (legacy) out.code = legacy[3]
  return out
}
const expected = todaysCodes(JSON.parse(fs.readFileSync(path.join(FIXTURES, 'sqlite-v3.expected.json'), 'utf8')))

const dirs = tempDirs('jobwerk-migration-')
const services = sqliteTracker()
afterEach(() => services.stopAll())
afterAll(() => dirs.cleanup())

function copyOfV3() {
  const db = path.join(dirs.make(), 'jobs.db')
  fs.copyFileSync(path.join(FIXTURES, 'sqlite-v3.db'), db)
  return db
}

const open = (db) => services.open(db, { clock: { type: 'manual', now: expected.readAt } })

test('every job and schedule of a schema-3 file reads as that release read it', async () => {
  const db = copyOfV3()
  const service = open(db)
  for (const [k, id] of Object.entries(expected.ids)) {
    expect({ k, job: service.getJobStatus(id) }).toEqual({ k, job: expect.objectContaining(expected.jobs[k]) })
  }
  expect(service.getJobs({ limit: 1000 }).jobs.map((j) => j.jobId)).toEqual(expected.listed)
  expect(service.getScheduledJobs()).toEqual(expected.scheduled.map((s) => expect.objectContaining(s)))
  expect(service.getQueueStatistics()).toMatchObject(
    Object.fromEntries(['waiting', 'pending', 'running', 'completed', 'failed', 'timeout', 'cancelled', 'total'].map((s) => [s, expected.stats[s]])),
  )
  await service.stop()

  // Migrated once: the next open reads the same.
  const again = open(db)
  for (const [k, id] of Object.entries(expected.ids)) {
    expect({ k, job: again.getJobStatus(id) }).toEqual({ k, job: expect.objectContaining(expected.jobs[k]) })
  }
})

test('a migrated file keeps working: its pending jobs run, dependants follow, a finished job retries', async () => {
  const db = copyOfV3()
  const service = open(db)
  const ran = []
  const calc = (name) => ({ name, calculate: (d) => (ran.push([name, d]), `${name} ran`) })
  for (const name of ['later', 'plain', 'hang', 'waiter']) service.registerCalculation(calc(name))
  await service.start()
  await service.advanceTime(1000)
  const ids = expected.ids
  for (const k of ['delayed', 'weighted', 'negative', 'retryWaiting', 'runningRetries', 'waitingFail', 'waitingIgnore', 'plain0', 'plain11']) {
    expect({ k, status: service.getJobStatus(ids[k]).status }).toEqual({ k, status: 'completed' })
  }
  expect(service.getJobStatus(ids.plain3).result).toBe('plain ran')
  expect(service.getJobStatus(ids.plain3).context).toEqual({ i: 3 })
  expect(service.retryJob(ids.cancelled)).toBe(true)
  await service.advanceTime(1000)
  expect(service.getJobStatus(ids.cancelled).status).toBe('completed')
  const stats = service.getQueueStatistics()
  expect(stats.pending + stats.running + stats.waiting).toBe(0)
  await service.stop()
  const again = open(db)
  expect(again.getJobStatus(ids.plain3)).toMatchObject({ status: 'completed', result: 'plain ran', attempts: 1 })
  expect(again.getJobStatus(ids.failed)).toEqual(expect.objectContaining(expected.jobs.failed))
})

test('a schema-4 file (tests/fixtures/sqlite-v4.db, the same jobs) reads as the schema-4 build read it, with no keys', async () => {
  const v4 = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'sqlite-v4.expected.json'), 'utf8'))
  const db = path.join(dirs.make(), 'jobs.db')
  fs.copyFileSync(path.join(FIXTURES, 'sqlite-v4.db'), db)
  const service = services.open(db, { clock: { type: 'manual', now: v4.readAt } })
  for (const [k, id] of Object.entries(v4.ids)) {
    const job = service.getJobStatus(id)
    expect({ k, job }).toEqual({ k, job: expect.objectContaining(v4.jobs[k]) })
    expect({ k, keys: [job.key, job.concurrencyKey, job.scheduleId] }).toEqual({ k, keys: [null, null, null] })
  }
  expect(service.getJobs({ limit: 1000 }).jobs.map((j) => j.jobId)).toEqual(v4.listed)
  expect(service.getScheduledJobs()).toEqual(v4.scheduled.map((s) => expect.objectContaining(s)))
  // It keeps working: a keyed job next to the migrated ones.
  const later = { name: 'later', calculate: () => 'ran' }
  const id = service.addCalculationJob(later, 1, null, { key: 'after-migration', concurrencyKey: 'c' })
  expect(service.addCalculationJob(later, 2, null, { key: 'after-migration' })).toBe(id)
  await service.stop()
  const again = services.open(db, { clock: { type: 'manual', now: v4.readAt } })
  expect(again.getJobStatus(id)).toMatchObject({ key: 'after-migration', concurrencyKey: 'c', data: 1 })
})

test('a corrupt stored value is ERR_STORAGE naming the job and the column, not a default', async () => {
  // tests/fixtures/sqlite-corrupt-status.db: two jobs written by this schema,
  // the second's status then set to 'finished' with the sqlite3 shell.
  const db = path.join(dirs.make(), 'jobs.db')
  fs.copyFileSync(path.join(FIXTURES, 'sqlite-corrupt-status.db'), db)
  const service = services.open(db)
  const e = await rejected(service.start())
  expectStorageError(e, '01a242a2-d075-7000-97e0-663ba31180a8', 'status', '"finished"')
  expect(service.getSystemStatus().storage).toMatchObject({ type: 'sqlite', state: 'error', error: expect.stringContaining('01a242a2-d075-7000-97e0-663ba31180a8') })
})
