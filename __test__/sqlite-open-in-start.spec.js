'use strict'
// Issue 17, bug 3: the SQLite file is opened by start() (or the first call
// that reads or writes jobs), never by the constructor; a failed open is not
// kept: the next start() tries again; getSystemStatus().storage tells the
// truth before, after a failure and after a success.
const fs = require('node:fs')
const path = require('node:path')
const { tempDirs, sqliteTracker, rejected, thrown, expectStorageError, waitFor } = require('./helpers/sqlite')

const dirs = tempDirs('jobwerk-open-')
const services = sqliteTracker()
afterEach(() => services.stopAll())
afterAll(() => dirs.cleanup())

const calc = { name: 'opened', calculate: (d) => d * 2 }

async function runOne(service, data) {
  const id = service.addCalculationJob(calc, data)
  await waitFor(() => service.getJobStatus(id).status === 'completed', { what: `job ${data}` })
  return id
}

describe('the SQLite file is opened by start(), not by the constructor', () => {
  test('constructing a service creates and locks nothing; its status says closed', async () => {
    const dir = dirs.make()
    const db = path.join(dir, 'jobs.db')
    const idle = services.open(db)
    expect(fs.readdirSync(dir)).toEqual([])
    expect(idle.getSystemStatus().storage).toEqual({ type: 'sqlite', state: 'closed', error: null })
    // another service (the new process of a rolling restart) starts on the same file
    const other = services.open(db)
    await other.start()
    await runOne(other, 1)
    expect(other.getSystemStatus().storage).toEqual({ type: 'sqlite', state: 'open', error: null })
    await other.stop()
    expect(other.getSystemStatus().storage).toEqual({ type: 'sqlite', state: 'closed', error: null })
  })

  test('a start() refused because the file is in use is retried by the next start(), which works once the holder stopped', async () => {
    const db = path.join(dirs.make(), 'jobs.db')
    const holder = services.open(db)
    await holder.start()
    const before = await runOne(holder, 2)

    const next = services.open(db)
    const e = await rejected(next.start())
    expectStorageError(e, 'in use')
    const st = next.getSystemStatus()
    expect(st.status).toBe('idle')
    expect(st.storage).toMatchObject({ type: 'sqlite', state: 'error' })
    expect(st.storage.error).toContain('in use')
    // adds are refused (nothing goes to memory), reads see nothing
    expectStorageError(thrown(() => next.addCalculationJob(calc, 3)), 'in use')
    expectStorageError(await rejected(next.flush()), 'in use')

    await holder.stop()
    await next.start()
    expect(next.getSystemStatus().storage).toEqual({ type: 'sqlite', state: 'open', error: null })
    expect(next.getJobStatus(before)).toMatchObject({ status: 'completed', result: 4 })
    await runOne(next, 5)
  })

  test('a bad path fixed after a failed start(): the next start() opens the file', async () => {
    const dir = dirs.make()
    fs.writeFileSync(path.join(dir, 'data'), 'a file where a directory should be')
    const db = path.join(dir, 'data', 'jobs.db')
    const s = services.open(db)
    expectStorageError(await rejected(s.start()), 'cannot create the directory')
    expect(s.getSystemStatus().storage.state).toBe('error')
    fs.unlinkSync(path.join(dir, 'data'))
    await s.start()
    expect(s.getSystemStatus().storage).toEqual({ type: 'sqlite', state: 'open', error: null })
    await runOne(s, 6)
    expect(fs.statSync(db).isFile()).toBe(true)
  })

  test('jobs added before start() go to the file (opened on first use), never to memory', async () => {
    const db = path.join(dirs.make(), 'jobs.db')
    const s = services.open(db)
    const id = s.addCalculationJob(calc, 7)
    expect(s.getSystemStatus().storage.state).toBe('open')
    await s.stop()
    const again = services.open(db)
    expect(again.getJobStatus(id)).toMatchObject({ status: 'pending', data: 7 })
    again.registerCalculation(calc)
    await again.start()
    await waitFor(() => again.getJobStatus(id).status === 'completed', { what: 'the job added before start' })
  })
})
