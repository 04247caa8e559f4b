'use strict'
// PostgreSQL (preview) from JavaScript, end to end in one process, against
// the server at 127.0.0.1:5432 (user postgres, database test). Each test
// gets its own schema, dropped after. Skipped, with the reason printed, when
// no server answers.
const net = require('node:net')
const { JobManagementService } = require('../index.js')
const { until } = require('./helpers')
const { SERVER, pgSuite } = require('./helpers/pg')

const pg = pgSuite('postgres.spec.js')
const pgTest = pg.test
const schema = () => pg.schema()

function service(schemaName, extra = {}) {
  return pg.open(schemaName, { queue: { maxWorkers: 8, maxQueueSize: 100000, ...extra } })
}

/** A free TCP port with nothing listening on it. */
function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

pgTest('100 jobs added by this process all complete exactly once; getJobStatus is a Promise', async () => {
  const s = service(schema())
  const runs = new Map()
  const calc = {
    name: 'double',
    calculate: (d) => {
      runs.set(d.i, (runs.get(d.i) || 0) + 1)
      return d.i * 2
    },
  }
  s.registerCalculation(calc)
  await s.start()
  const completed = new Set()
  s.on('completed', (e) => completed.add(e.jobId))
  const ids = []
  for (let i = 0; i < 100; i++) ids.push(s.addCalculationJob(calc, { i }))
  await until([s], ['completed'], () => completed.size === 100)
  await s.flush()
  expect(runs.size).toBe(100)
  for (const n of runs.values()) expect(n).toBe(1)
  const p = s.getJobStatus(ids[7])
  expect(typeof p.then).toBe('function')
  const st = await p
  expect(st.status).toBe('completed')
  expect(st.result).toBe(14)
  expect(await s.getJobStatus('00000000-0000-0000-0000-000000000000')).toBe(null)
  const page = await s.getJobs({ status: 'completed', limit: 500 })
  expect(page.jobs.length).toBe(100)
  const { rows } = await pg.admin.query(`SELECT count(*)::int AS n FROM "${pg.schemas[0]}".done`)
  expect(rows[0].n).toBe(100)
})

pgTest('a job added before start() connects is refused with ERR_STORAGE, never silently lost', async () => {
  const s = service(schema())
  const calc = { name: 'early', calculate: (d) => d.i }
  s.registerCalculation(calc)
  let err = null
  try {
    s.addCalculationJob(calc, { i: 1 })
  } catch (e) {
    err = e
  }
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toMatch(/not open yet/)
  await s.start()
  const done = new Set()
  s.on('completed', (e) => done.add(e.jobId))
  const id = s.addCalculationJob(calc, { i: 2 })
  await until([s], ['completed'], () => done.has(id))
  const st = await s.getJobStatus(id)
  expect(st.status).toBe('completed')
  expect(st.result).toBe(2)
})

pgTest('a failing job is retried, then failed', async () => {
  const s = service(schema())
  let attempts = 0
  const calc = {
    name: 'boom',
    calculate: () => {
      attempts++
      throw new Error('nope')
    },
  }
  s.registerCalculation(calc)
  await s.start()
  const failed = []
  s.on('failed', (e) => failed.push(e))
  const id = s.addCalculationJob(calc, {}, {}, { retries: 2, backoff: 0 })
  await until([s], ['failed'], () => failed.length === 1)
  await s.flush()
  expect(attempts).toBe(3)
  const st = await s.getJobStatus(id)
  expect(st.status).toBe('failed')
  expect(st.attempts).toBe(3)
  // retryJob: a Promise; back in line with attempts reset, in one transaction.
  const p = s.retryJob(id)
  expect(typeof p.then).toBe('function')
  expect(await p).toBe(true)
  await until([s], ['failed'], () => failed.length === 2)
  await s.flush()
  expect(attempts).toBe(6)
  expect((await s.getJobStatus(id)).attempts).toBe(3)
  expect(await s.retryJob('00000000-0000-0000-0000-000000000000')).toBe(false)
  expect(await s.retryJob('not-an-id')).toBe(false)
})

pgTest('retryJob: false while pending or completed, or while another job holds its key; dependsOn waits again', async () => {
  const name = schema()
  const s = service(name)
  const gate = { open: false }
  const fail = { name: 'flaky', calculate: (d) => {
    if (!gate.open) throw new Error('not yet')
    return d.n
  } }
  const ok = { name: 'fine', calculate: (d) => d.n }
  s.registerCalculation(fail)
  s.registerCalculation(ok)
  await s.start()
  const done = new Set()
  const failed = new Set()
  s.on('completed', (e) => done.add(e.jobId))
  s.on('failed', (e) => failed.add(e.jobId))
  const a = s.addCalculationJob(fail, { n: 1 }, {}, { retries: 0, key: 'k1' })
  const b = s.addCalculationJob(ok, { n: 2 }, {}, { dependsOn: [a] })
  await until([s], ['failed'], () => failed.has(a))
  // b failed in the transaction that failed a (no event here: it never ran).
  await s.flush()
  expect((await s.getJobStatus(b)).error.code).toBe('ERR_DEPENDENCY_FAILED')
  // Another unfinished job holds the key: the retry is refused.
  const holder = s.addCalculationJob(ok, { n: 3 }, {}, { key: 'k1', delay: 3600000 })
  await s.flush()
  expect(holder).not.toBe(a)
  expect(await s.retryJob(a)).toBe(false)
  expect((await s.getJobStatus(a)).status).toBe('failed')
  expect(await s.cancelJob(holder)).toBe(true)
  // The dependant first: it waits for its failed dependency.
  expect(await s.retryJob(b)).toBe(true)
  expect((await s.getJobStatus(b)).status).toBe('waiting')
  expect(await s.retryJob(b)).toBe(false)
  gate.open = true
  expect(await s.retryJob(a)).toBe(true)
  await until([s], ['completed'], () => done.has(a) && done.has(b))
  await s.flush()
  expect(await s.retryJob(a)).toBe(false)
  const sb = await s.getJobStatus(b)
  expect(sb.status).toBe('completed')
  expect(sb.result).toBe(2)
  expect(sb.attempts).toBe(1)
  // The holder (cancelled while delayed) is retried: due at once, it runs.
  expect(await s.retryJob(holder)).toBe(true)
  await until([s], ['completed'], () => done.has(holder))
  await s.flush()
  expect((await s.getJobStatus(holder)).result).toBe(3)
})

pgTest('cancelJob of a pending job resolves true, then false', async () => {
  const s = service(schema())
  let ran = 0
  const calc = { name: 'later', calculate: () => ran++ }
  s.registerCalculation(calc)
  await s.start()
  const id = s.addCalculationJob(calc, {}, {}, { delay: 3600000 })
  await s.flush()
  const p = s.cancelJob(id)
  expect(typeof p.then).toBe('function')
  expect(await p).toBe(true)
  expect(await s.cancelJob(id)).toBe(false)
  expect((await s.getJobStatus(id)).status).toBe('cancelled')
  expect(ran).toBe(0)
})

/** A handler that waits for its signal and records its reason; it never resolves on its own. */
function watcher(name) {
  const w = { reasons: [], started: [] }
  w.calc = {
    name,
    calculate: (d, c, job) =>
      new Promise((resolve, reject) => {
        w.started.push(job.id)
        if (w.onStart) w.onStart(job)
        job.signal.addEventListener('abort', () => {
          w.reasons.push(job.signal.reason)
          if (w.onAbort) w.onAbort()
          reject(job.signal.reason)
        })
      }),
  }
  return w
}

pgTest('cancelJob of a job running in this process aborts its signal with ERR_JOB_CANCELLED', async () => {
  const s = service(schema(), { maxWorkers: 1 })
  const w = watcher('hang')
  const next = { name: 'next', calculate: () => 'ok' }
  s.registerCalculation(w.calc)
  s.registerCalculation(next)
  await s.start()
  const cancelled = []
  const completed = []
  s.on('cancelled', (e) => cancelled.push(e))
  s.on('completed', (e) => completed.push(e.jobId))
  const started = new Promise((r) => (w.onStart = r))
  const id = s.addCalculationJob(w.calc, {})
  await started
  expect((await s.getJobStatus(id)).status).toBe('running')
  const aborted = new Promise((r) => (w.onAbort = r))
  expect(await s.cancelJob(id)).toBe(true)
  await aborted
  expect(w.reasons.length).toBe(1)
  expect(w.reasons[0].code).toBe('ERR_JOB_CANCELLED')
  expect(cancelled).toEqual([{ jobId: id, name: 'hang', attempt: 1 }])
  // The worker is free: the next job runs in the only slot.
  const n = s.addCalculationJob(next, {})
  await until([s], ['completed'], () => completed.includes(n))
  await s.flush()
  const st = await s.getJobStatus(id)
  expect(st.status).toBe('cancelled')
  expect(st.error).toMatchObject({ code: 'ERR_JOB_CANCELLED' })
  expect(w.reasons.length).toBe(1)
})

pgTest('cancelJob in one service aborts the signal of the job running in another (NOTIFY)', async () => {
  const name = schema()
  const runner = service(name, { maxWorkers: 1 })
  const other = service(name)
  const w = watcher('hang')
  runner.registerCalculation(w.calc)
  // The other service cannot run 'hang' jobs (not registered there).
  other.registerCalculation({ name: 'unrelated', calculate: () => 1 })
  await runner.start()
  await other.start()
  const started = new Promise((r) => (w.onStart = r))
  const id = runner.addCalculationJob(w.calc, {})
  await started
  const cancelled = []
  runner.on('cancelled', (e) => cancelled.push(e.jobId))
  const aborted = new Promise((r) => (w.onAbort = r))
  expect(await other.cancelJob(id)).toBe(true)
  await aborted
  expect(w.reasons.length).toBe(1)
  expect(w.reasons[0].code).toBe('ERR_JOB_CANCELLED')
  expect(cancelled).toEqual([id])
  expect((await runner.getJobStatus(id)).status).toBe('cancelled')
  expect(runner.getQueueStatistics().running).toBe(0)
})

test('a bad PostgreSQL config is ERR_INVALID_CONFIG naming the key', () => {
  for (const [storage, key] of [
    [{ type: 'postgres', port: 'x' }, 'config.storage.port'],
    [{ type: 'postgres', port: 70000 }, 'config.storage.port'],
    [{ type: 'postgres', poolSize: 0 }, 'config.storage.poolSize'],
    [{ type: 'postgres', ssl: 'yes' }, 'config.storage.ssl'],
    [{ type: 'postgres', hots: 'x' }, 'config.storage.hots'],
    [{ type: 'postgres', connectionString: 'postgres://a', host: 'b' }, 'config.storage.host'],
  ]) {
    let err = null
    try {
      new JobManagementService({ storage })
    } catch (e) {
      err = e
    }
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain(key)
  }
})

pgTest('an unreachable server: start() rejects with ERR_STORAGE, the process survives', async () => {
  const port = await closedPort()
  const s = new JobManagementService({
    storage: { type: 'postgres', host: '127.0.0.1', port, user: 'postgres', database: 'test', connectTimeoutMs: 2000 },
  })
  const err = await s.start().then(
    () => null,
    (e) => e,
  )
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toContain(String(port))
  expect(s.getSystemStatus().storage).toMatchObject({ type: 'postgres', state: 'error' })
  await s.stop()
})

pgTest('a missing database: start() rejects with ERR_STORAGE naming it', async () => {
  const s = new JobManagementService({
    storage: { type: 'postgres', ...SERVER, database: 'jobwerk_no_such_db' },
  })
  const err = await s.start().then(
    () => null,
    (e) => e,
  )
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toContain('jobwerk_no_such_db')
  await s.stop()
})

pgTest(
  'two services (two owners) on one schema share 1,000 jobs, each run exactly once',
  async () => {
    const name = schema()
    const a = service(name)
    const b = service(name)
    const runs = new Map()
    const by = [0, 0]
    const mk = (k) => ({
      name: 'shared',
      calculate: async (d) => {
        runs.set(d.i, (runs.get(d.i) || 0) + 1)
        by[k]++
        await new Promise((r) => setImmediate(r))
        return d.i
      },
    })
    a.registerCalculation(mk(0))
    b.registerCalculation(mk(1))
    await a.start()
    await b.start()
    let done = 0
    a.on('completed', () => done++)
    b.on('completed', () => done++)
    const calcA = mk(0)
    // Half added by each.
    for (let i = 0; i < 1000; i++) (i % 2 === 0 ? a : b).addCalculationJob(calcA, { i })
    await until([a, b], ['completed'], () => done === 1000)
    await a.flush()
    await b.flush()
    expect(runs.size).toBe(1000)
    for (const n of runs.values()) expect(n).toBe(1)
    expect(by[0] + by[1]).toBe(1000)
    const { rows } = await pg.admin.query(`SELECT count(*)::int AS n FROM "${name}".done`)
    expect(rows[0].n).toBe(1000)
  },
  120000,
)

pgTest('stop() then start() again reconnects and runs new jobs', async () => {
  const s = service(schema())
  const ran = []
  const calc = { name: 'again', calculate: (d) => ran.push(d.n) }
  s.registerCalculation(calc)
  await s.start()
  const done = []
  s.on('completed', (e) => done.push(e.jobId))
  s.addCalculationJob(calc, { n: 1 })
  await until([s], ['completed'], () => done.length === 1)
  await s.stop()
  expect(s.getSystemStatus().storage).toMatchObject({ type: 'postgres', state: 'closed' })
  await s.start()
  expect(s.getSystemStatus().storage).toMatchObject({ type: 'postgres', state: 'open' })
  const id = s.addCalculationJob(calc, { n: 2 })
  await until([s], ['completed'], () => done.length === 2)
  expect(ran).toEqual([1, 2])
  await s.flush()
  expect((await s.getJobStatus(id)).status).toBe('completed')
})
