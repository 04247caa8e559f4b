'use strict'
// PostgreSQL (preview): events that promise durability fire after the
// commit, cancelJob of a job that never ran fires `cancelled` here,
// retryJob checks maxQueueSize, progress reaches the database, and
// getQueueStatistics' counts are the cluster's. Against the server at
// 127.0.0.1:5432 (user postgres, database test), one schema per test;
// skipped with the reason printed when no server answers. Waits are
// event-driven or bounded polls, never assertions on elapsed time.
const { sleep } = require('./helpers')
const { pgSuite } = require('./helpers/pg')

const pg = pgSuite('postgres-events.spec.js', { prefix: 'jw_ev_' })
const pgTest = pg.test
const schema = () => pg.schema()
const client = () => pg.client()

function service(schemaName, queue = {}) {
  return pg.open(schemaName, { queue: { maxWorkers: 8, maxQueueSize: 100000, ...queue } })
}

/** Polls `check` (async) until it is true, at most `ms` (generous: a busy machine). */
async function eventually(check, ms = 20000) {
  const until = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > until) throw new Error('never became true')
    await sleep(25)
  }
}

/**
 * A client holding the job's row locked (in an open transaction). A job
 * added to a service that can run it starts before its insert commits, so
 * the row may not be there yet when the handler starts: try until it is.
 */
async function lockRow(schemaName, id) {
  const locker = await client()
  await eventually(async () => {
    await locker.query('BEGIN')
    const r = await locker.query(`SELECT 1 FROM "${schemaName}".job WHERE id = $1 FOR UPDATE`, [id])
    if (r.rowCount === 1) return true
    await locker.query('ROLLBACK')
    return false
  })
  return locker
}

/** A calculation whose handlers wait until released; `started` resolves at the first start. */
function gated(name) {
  let release
  const gate = new Promise((r) => (release = r))
  let onStart
  const started = new Promise((r) => (onStart = r))
  return {
    calc: {
      name,
      calculate: async (d, ctx, job) => {
        onStart(job)
        return gate
      },
    },
    started,
    release: (v) => release(v),
  }
}

pgTest('completed fires after the commit: at the event the row is committed, read by another client and another service', async () => {
  const name = schema()
  const s = service(name)
  const g = gated('slow')
  s.registerCalculation(g.calc)
  await s.start()
  const other = service(name)
  await other.start()
  const id = s.addCalculationJob(g.calc, { n: 1 })
  await g.started
  // Another connection locks the running row: the outcome's group commit waits for it.
  const locker = await lockRow(name, id)
  const seen = []
  const atEvent = []
  s.on('completed', (e) => {
    seen.push(e)
    // Started synchronously in the listener.
    atEvent.push(pg.admin.query(`SELECT status, result FROM "${name}".done WHERE id = $1`, [id]), other.getJobStatus(id))
  })
  g.release(42)
  // The handler returned and the outcome is recorded in this process...
  await eventually(async () => (await s.getJobStatus(id)).status === 'completed')
  // ...but while its commit waits, no 'completed' (whatever the wait).
  await sleep(300)
  expect(seen).toEqual([])
  expect((await pg.admin.query(`SELECT count(*)::int AS n FROM "${name}".done`)).rows[0].n).toBe(0)
  await locker.query('COMMIT')
  await eventually(() => seen.length === 1)
  expect(seen[0]).toMatchObject({ jobId: id, name: 'slow', attempt: 1, result: 42 })
  const [db, st] = await Promise.all(atEvent)
  expect(db.rows).toEqual([{ status: 3, result: '42' }])
  expect(st).toMatchObject({ status: 'completed', result: 42 })
})

pgTest('failed fires after the commit too', async () => {
  const name = schema()
  const s = service(name)
  let release
  const gate = new Promise((r) => (release = r))
  let onStart
  const started = new Promise((r) => (onStart = r))
  const calc = {
    name: 'bad',
    calculate: async () => {
      onStart()
      await gate
      throw new Error('nope')
    },
  }
  s.registerCalculation(calc)
  await s.start()
  const id = s.addCalculationJob(calc, {}, {}, { retries: 0 })
  await started
  const locker = await lockRow(name, id)
  const failed = []
  const atEvent = []
  s.on('failed', (e) => {
    failed.push(e)
    atEvent.push(pg.admin.query(`SELECT status FROM "${name}".done WHERE id = $1`, [id]))
  })
  release()
  await eventually(async () => (await s.getJobStatus(id)).status === 'failed')
  await sleep(300)
  expect(failed).toEqual([])
  await locker.query('COMMIT')
  await eventually(() => failed.length === 1)
  expect(failed[0].error.message).toBe('nope')
  expect((await atEvent[0]).rows).toEqual([{ status: 4 }])
})

pgTest('cancelJob of a pending, delayed or waiting job fires cancelled in the process that cancelled it', async () => {
  const name = schema()
  const s = service(name)
  const calc = { name: 'later', calculate: () => 1 }
  s.registerCalculation(calc)
  await s.start()
  const cancelled = []
  s.on('cancelled', (e) => cancelled.push(e))
  const delayed = s.addCalculationJob(calc, { n: 1 }, {}, { delay: 3600000 })
  const waiting = s.addCalculationJob(calc, { n: 2 }, {}, { dependsOn: [delayed] })
  await s.flush()
  expect(await s.cancelJob(waiting)).toBe(true)
  expect(cancelled).toEqual([{ jobId: waiting, name: 'later', attempt: 0 }])
  expect(await s.cancelJob(delayed)).toBe(true)
  expect(cancelled.map((e) => e.jobId)).toEqual([waiting, delayed])
  expect(await s.cancelJob(delayed)).toBe(false)
  expect(cancelled.length).toBe(2)
  // Cancelled from another service: the event fires there, not here.
  const other = service(name)
  other.registerCalculation(calc)
  await other.start()
  const there = []
  other.on('cancelled', (e) => there.push(e))
  const third = s.addCalculationJob(calc, { n: 3 }, {}, { delay: 3600000 })
  await s.flush()
  expect(await other.cancelJob(third)).toBe(true)
  expect(there.map((e) => e.jobId)).toEqual([third])
  expect(cancelled.length).toBe(2)
})

pgTest('retryJob rejects with ERR_QUEUE_FULL when maxQueueSize is reached, as on the other storages', async () => {
  const name = schema()
  const s = service(name, { maxQueueSize: 2 })
  const fail = { name: 'fail', calculate: () => { throw new Error('x') } }
  const later = { name: 'later', calculate: () => 1 }
  s.registerCalculation(fail)
  s.registerCalculation(later)
  await s.start()
  const failed = []
  s.on('failed', (e) => failed.push(e.jobId))
  const f = s.addCalculationJob(fail, {}, {}, { retries: 0 })
  await eventually(() => failed.includes(f))
  const a = s.addCalculationJob(later, {}, {}, { delay: 3600000 })
  s.addCalculationJob(later, {}, {}, { delay: 3600000 })
  await s.flush()
  // The counts maxQueueSize checks are the cluster's snapshot (refreshed each poll).
  await eventually(() => s.getQueueStatistics().queued === 2)
  await expect(s.retryJob(f)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' })
  expect((await s.getJobStatus(f)).status).toBe('failed')
  expect(await s.cancelJob(a)).toBe(true)
  await eventually(() => s.getQueueStatistics().queued === 1)
  expect(await s.retryJob(f)).toBe(true)
})

pgTest('progress is written to the database: another service sees it while the job runs', async () => {
  const name = schema()
  const s = service(name)
  const g = gated('long')
  s.registerCalculation(g.calc)
  await s.start()
  const other = service(name)
  await other.start()
  const id = s.addCalculationJob(g.calc, {})
  const job = await g.started
  for (let i = 1; i <= 50; i++) job.updateProgress({ done: i, of: 50 })
  await s.flush()
  // flush() covers the progress written so far: another instance reads it now.
  expect((await other.getJobStatus(id)).progress).toEqual({ done: 50, of: 50 })
  const { rows } = await pg.admin.query(`SELECT progress FROM "${name}".job WHERE id = $1`, [id])
  expect(JSON.parse(rows[0].progress)).toEqual({ done: 50, of: 50 })
  job.updateProgress(99)
  const completed = new Promise((r) => s.once('completed', r))
  g.release('ok')
  await completed
  const done = await other.getJobStatus(id)
  expect(done.status).toBe('completed')
  expect(done.progress).toBe(99)
})

pgTest('getQueueStatistics: two services on one schema report the cluster counts the database holds; the other figures are per process', async () => {
  const name = schema()
  const a = service(name)
  const b = service(name)
  const ok = { name: 'ok', calculate: (d) => d.i }
  const bad = { name: 'bad', calculate: () => { throw new Error('no') } }
  for (const s of [a, b]) {
    s.registerCalculation(ok)
    s.registerCalculation(bad)
  }
  await a.start()
  await b.start()
  const finished = new Set()
  for (const s of [a, b]) {
    s.on('completed', (e) => finished.add(e.jobId))
    s.on('failed', (e) => finished.add(e.jobId))
  }
  const run = []
  for (let i = 0; i < 20; i++) run.push((i % 2 ? a : b).addCalculationJob(ok, { i }))
  for (let i = 0; i < 3; i++) run.push(a.addCalculationJob(bad, {}, {}, { retries: 0 }))
  for (let i = 0; i < 5; i++) b.addCalculationJob(ok, { i }, {}, { delay: 3600000 })
  const c = a.addCalculationJob(ok, {}, {}, { delay: 3600000 })
  await a.flush()
  await b.flush()
  expect(await b.cancelJob(c)).toBe(true)
  await eventually(() => run.every((id) => finished.has(id)))
  await a.flush()
  await b.flush()
  const db = async () => {
    const live = await pg.admin.query(`SELECT state AS s, count(*)::int AS n FROM "${name}".job GROUP BY state`)
    const done = await pg.admin.query(`SELECT status AS s, count(*)::int AS n FROM "${name}".done GROUP BY status`)
    const keys = ['waiting', 'pending', 'running', 'completed', 'failed', 'timeout', 'cancelled']
    const out = Object.fromEntries(keys.map((k) => [k, 0]))
    for (const r of [...live.rows, ...done.rows]) out[keys[r.s]] += r.n
    return out
  }
  const want = await db()
  expect(want).toMatchObject({ pending: 5, completed: 20, failed: 3, cancelled: 1, running: 0 })
  const counts = (st) => ({ waiting: st.waiting, pending: st.pending, running: st.running, completed: st.completed, failed: st.failed, timeout: st.timeout, cancelled: st.cancelled })
  await eventually(() => {
    const sa = a.getQueueStatistics()
    const sb = b.getQueueStatistics()
    return JSON.stringify(counts(sa)) === JSON.stringify(want) && JSON.stringify(counts(sb)) === JSON.stringify(want)
  })
  const sa = a.getQueueStatistics()
  expect(sa.total).toBe(29)
  expect(sa.queued).toBe(5)
  expect(sa.storage).toBe('postgres')
  expect(sa.scope.counts).toBe('cluster')
  expect(sa.scope.figures).toBe('process')
  expect(typeof sa.scope.countsAsOf).toBe('number')
  expect(Math.abs(sa.scope.countsAsOf - Date.now())).toBeLessThan(10 * 60 * 1000)
  // Not the same process: each service's worker figures are its own.
  expect(sa.maxWorkers).toBe(8)
  expect(sa.activeWorkers).toBe(0)
})

pgTest('stop() lets the completed events of the last outcomes out once they commit', async () => {
  const name = schema()
  const s = service(name)
  let runs = 0
  let enough
  const ran = new Promise((r) => (enough = r))
  const calc = {
    name: 'quick',
    calculate: (d) => {
      if (++runs === 20) enough()
      return d.n
    },
  }
  s.registerCalculation(calc)
  await s.start()
  const done = []
  s.on('completed', (e) => done.push(e.jobId))
  for (let n = 0; n < 200; n++) s.addCalculationJob(calc, { n })
  // Stop right after a handler returned: its outcome is not committed yet.
  await ran
  await s.stop({ timeoutMs: 20000 })
  const { rows } = await pg.admin.query(`SELECT count(*)::int AS n FROM "${name}".done`)
  expect(rows[0].n).toBeGreaterThanOrEqual(20)
  // Every job that completed before stop() resolved has had its event, once.
  expect(done.length).toBe(rows[0].n)
  expect(new Set(done).size).toBe(done.length)
})

/** Runs fixtures/pg-exit.js on `schemaName` in a plain node process; resolves with its exit and JSON lines. */
function runExitScript(schemaName, mode) {
  const { spawn } = require('node:child_process')
  const path = require('node:path')
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'pg-exit.js'), schemaName, mode], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (b) => (out += b))
    child.stderr.on('data', (b) => (err += b))
    // Generous: a process that never exits by itself fails the test here.
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`pg-exit.js ${mode} did not exit by itself; stdout: ${out} stderr: ${err}`))
    }, 45000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l))
      resolve({ code, signal, lines, err })
    })
  })
}

pgTest('a plain script that adds a job and awaits its completed event stays alive until then, and exits by itself after', async () => {
  const name = schema()
  const r = await runExitScript(name, 'complete')
  expect(r).toMatchObject({ code: 0, signal: null })
  expect(r.lines).toEqual([{ event: 'completed', id: expect.any(String), jobId: expect.any(String), result: 42 }])
  expect(r.lines[0].jobId).toBe(r.lines[0].id)
  const { rows } = await pg.admin.query(`SELECT status FROM "${name}".done WHERE id = $1`, [r.lines[0].id])
  expect(rows).toEqual([{ status: 3 }])
}, 90000)

pgTest('a script whose service holds a delayed job of its own exits by itself after stop()', async () => {
  const name = schema()
  const r = await runExitScript(name, 'stop')
  expect(r).toMatchObject({ code: 0, signal: null })
  expect(r.lines.map((l) => l.event)).toEqual(['added', 'stopped'])
}, 90000)

pgTest('dependants failed in SQL fire failed events in the process whose commit failed them, after it', async () => {
  const name = schema()
  const s = service(name)
  const boom = { name: 'boom', calculate: () => { throw new Error('boom') } }
  const after = { name: 'after', calculate: () => 'ran' }
  const later = { name: 'later', calculate: () => 'ran' }
  s.registerCalculation(boom)
  s.registerCalculation(after)
  s.registerCalculation(later)
  await s.start()
  const failed = []
  const atEvent = []
  s.on('failed', (e) => {
    failed.push(e)
    atEvent.push(pg.admin.query(`SELECT status FROM "${name}".done WHERE id = $1`, [e.jobId]))
  })
  const a = s.addCalculationJob(boom, {}, {}, { retries: 0 })
  const b = s.addCalculationJob(after, {}, {}, { dependsOn: [a] })
  const c = s.addCalculationJob(after, {}, {}, { dependsOn: [b] })
  const ignoring = s.addCalculationJob(after, {}, {}, { dependsOn: [a], onDependencyFailure: 'ignore' })
  const completed = new Promise((r) => s.on('completed', (e) => e.jobId === ignoring && r()))
  await eventually(() => failed.length === 3)
  await completed
  const byId = Object.fromEntries(failed.map((e) => [e.jobId, e]))
  expect(Object.keys(byId).sort()).toEqual([a, b, c].sort())
  expect(byId[a].error.message).toBe('boom')
  for (const id of [b, c]) {
    expect(byId[id]).toMatchObject({ jobId: id, name: 'after', attempt: 0, error: { code: 'ERR_DEPENDENCY_FAILED' } })
  }
  // Each fired once its row was committed.
  for (const q of atEvent) expect((await q).rows).toEqual([{ status: 4 }])
  // A cancel fails a waiting job's dependants in its transaction: their
  // events fire in the process that cancelled.
  const x = s.addCalculationJob(later, {}, {}, { delay: 3600000 })
  const y = s.addCalculationJob(later, {}, {}, { dependsOn: [x] })
  await s.flush()
  const other = service(name)
  other.registerCalculation(later)
  await other.start()
  const there = []
  other.on('failed', (e) => there.push(e))
  expect(await other.cancelJob(x)).toBe(true)
  expect(there).toEqual([{ jobId: y, name: 'later', attempt: 0, error: expect.objectContaining({ code: 'ERR_DEPENDENCY_FAILED' }) }])
  expect((await s.getJobStatus(y)).status).toBe('failed')
  expect(failed.length).toBe(3)
})

pgTest('dependsOn naming no job: add answers at once, the job fails with ERR_DEPENDENCY_FAILED (not found) and its failed event fires; the batch and the store go on', async () => {
  const name = schema()
  const s = service(name)
  const calc = { name: 'dep', calculate: (d) => d }
  s.registerCalculation(calc)
  await s.start()
  const failed = []
  s.on('failed', (e) => failed.push(e))
  const done = []
  s.on('completed', (e) => done.push(e.jobId))
  const nowhere = '01a22572-de9e-7000-a52f-8c5acf718cbf'
  const [ok, bad] = s.addCalculationJobs([
    { calculation: calc, data: 1 },
    { calculation: calc, data: 2, options: { dependsOn: [nowhere] } },
  ])
  await eventually(() => failed.length === 1 && done.includes(ok))
  expect(failed[0]).toMatchObject({ jobId: bad, name: 'dep', attempt: 0, error: { code: 'ERR_DEPENDENCY_FAILED' } })
  expect(failed[0].error.message).toContain(`dependency ${nowhere} not found`)
  const st = await s.getJobStatus(bad)
  expect(st.status).toBe('failed')
  expect(st.error.code).toBe('ERR_DEPENDENCY_FAILED')
  // Not the whole batch, not the store: later adds and flush() work.
  const later = s.addCalculationJob(calc, 3)
  await s.flush()
  await eventually(() => done.includes(later))
  // A malformed id is still refused at once, as on every storage.
  expect(() => s.addCalculationJob(calc, 4, {}, { dependsOn: ['nope'] })).toThrow(expect.objectContaining({ code: 'ERR_DEPENDENCY_NOT_FOUND' }))
})
