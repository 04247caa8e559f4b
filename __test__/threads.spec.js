'use strict'
// Calculations in worker threads (`threads: true`): the same semantics as
// main-thread handlers, crashes contained, the pool replaced, Node free to exit.
const path = require('node:path')
const { threadId, BroadcastChannel } = require('node:worker_threads')
const { serviceTracker, waitForStatus, waitForAll, waitFor, expectCode, recordEvents, runFixture, ROOT } = require('./helpers')
const { getJobManagementService } = require(ROOT)

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const FIXTURES = path.join(__dirname, 'fixtures', 'threads')
const MODULE = path.join(FIXTURES, 'calc.js')
const calcOf = (name, extra = {}) => ({ name, module: MODULE, threads: true, ...extra })

/** Collects what handlers in the threads report on the test channel. */
function channel() {
  const bc = new BroadcastChannel('jobwerk-threads-test')
  const seen = []
  bc.onmessage = (m) => seen.push(m.data)
  bc.unref()
  return { seen, close: () => bc.close() }
}

describe('worker-thread pool', () => {
  test('runs the module in worker threads, loaded once per thread; data, context and result cross as JSON', async () => {
    const service = tracker.create({ threads: { size: 2 } })
    await service.start()
    const calc = calcOf('echo')
    const ids = Array.from({ length: 20 }, (_, i) => service.addCalculationJob(calc, { mode: 'echo', i, s: 'ü"\n' }, { contentType: 'api::table.table' }))
    const st = await waitForAll(service, ids)
    for (let i = 0; i < ids.length; i++) {
      expect(st[i].status).toBe('completed')
      const r = st[i].result
      expect(r.data).toEqual({ mode: 'echo', i, s: 'ü"\n' })
      expect(r.context).toEqual({ contentType: 'api::table.table' })
      expect(r).toMatchObject({ id: ids[i], name: 'echo', attempt: 1, loads: 1 })
      expect(r.threadId).not.toBe(threadId)
    }
    // at most the pool's size of threads
    expect(new Set(st.map((s) => s.result.threadId)).size).toBeLessThanOrEqual(2)
  })

  test("isolation: 'thread' is the same as threads: true; an ES module works; the completed event carries the result", async () => {
    const service = tracker.create()
    const log = recordEvents(service, ['completed'])
    await service.start()
    const a = service.addCalculationJob({ name: 'iso', module: MODULE, isolation: 'thread' }, { mode: 'echo' })
    const b = service.addCalculationJob(calcOf('esm', { module: path.join(FIXTURES, 'default-export.mjs') }), { n: 21 })
    const [sa, sb] = await waitForAll(service, [a, b])
    expect(sa.result.threadId).not.toBe(threadId)
    expect(sb).toMatchObject({ status: 'completed', result: { esm: true, n: 42 } })
    await waitFor(() => log.completed.length === 2)
    expect(log.completed.find((e) => e.jobId === b).result).toEqual({ esm: true, n: 42 })
  })

  test('a busy-looping handler with timeout 100 ends as timeout at 100 ms; the thread is replaced and runs the next job', async () => {
    // The manual clock: the timeout is exact; the stuck thread cannot hold it up.
    const service = tracker.create({ threads: { size: 1 }, clock: 'manual' })
    await service.start()
    const stuck = service.addCalculationJob(calcOf('busy'), { mode: 'busy', busyAttempts: 99 }, null, { timeout: 100, retries: 0 })
    await waitForStatus(service, stuck, 'running')
    await service.advanceTime(100, { settleMs: 0 })
    const st = service.getJobStatus(stuck)
    expect(st.status).toBe('timeout')
    expect(st.error).toMatchObject({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT' })
    expect(st.finishedAt - st.startedAt).toBe(100)
    const next = service.addCalculationJob(calcOf('echo2'), { mode: 'echo' })
    const sn = await waitForStatus(service, next)
    expect(sn.status).toBe('completed')
    expect(sn.result.threadId).not.toBe(threadId)
  })

  test('retries apply to a timed-out attempt in a thread', async () => {
    // The manual clock: attempt 2 (in a new thread, however long that takes to start) cannot time out.
    const service = tracker.create({ threads: { size: 1, abortGraceMs: 50 }, clock: 'manual' })
    await service.start()
    const id = service.addCalculationJob(calcOf('busy-once'), { mode: 'busy', busyAttempts: 1 }, null, { timeout: 300, retries: 1, backoff: { type: 'fixed', delayMs: 1 } })
    await waitForStatus(service, id, 'running')
    await service.advanceTime(300, { settleMs: 0 })
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', attempts: 1, errors: [expect.objectContaining({ code: 'ERR_JOB_TIMEOUT' })] })
    await service.advanceTime(1, { settleMs: 0 })
    const st = await waitForStatus(service, id, ['completed', 'failed', 'timeout'])
    expect(st).toMatchObject({ status: 'completed', attempts: 2, result: 'ok on attempt 2' })
  })

  test("a timeout aborts job.signal inside the thread with a TimeoutError", async () => {
    const ch = channel()
    try {
      // The manual clock: the deadline passes once the handler runs in its thread (a
      // thread can take a while to start on a busy machine).
      const service = tracker.create({ clock: 'manual' })
      await service.start()
      const id = service.addCalculationJob(calcOf('wait'), { mode: 'wait-abort' }, null, { timeout: 50, retries: 0 })
      await waitFor(() => ch.seen.length === 1, { what: 'the handler to begin in its thread' })
      expect(ch.seen[0]).toEqual({ id, began: true })
      await service.advanceTime(50, { settleMs: 0 })
      expect(service.getJobStatus(id).status).toBe('timeout')
      await waitFor(() => ch.seen.length === 2, { what: 'the abort seen in the thread' })
      expect(ch.seen[1]).toMatchObject({ id, aborted: true, name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT' })
    } finally {
      ch.close()
    }
  })

  test('cancelJob aborts job.signal inside the thread', async () => {
    const ch = channel()
    try {
      const service = tracker.create()
      await service.start()
      const id = service.addCalculationJob(calcOf('wait'), { mode: 'wait-abort' })
      await waitFor(() => ch.seen.length === 1, { what: 'the handler to begin in its thread' })
      expect(service.cancelJob(id)).toBe(true)
      await waitFor(() => ch.seen.length === 2, { what: 'the abort seen in the thread' })
      expect(ch.seen[1]).toMatchObject({ id, aborted: true, name: 'AbortError', code: 'ERR_JOB_CANCELLED' })
      expect(service.getJobStatus(id).status).toBe('cancelled')
    } finally {
      ch.close()
    }
  })

  test('updateProgress from a thread reaches getJobStatus and the progress event', async () => {
    const service = tracker.create()
    const log = recordEvents(service, ['progress'])
    await service.start()
    const id = service.addCalculationJob(calcOf('progress'), { mode: 'progress' })
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', result: 'done', progress: { step: 'half', pct: 50 } })
    await waitFor(() => log.progress.length === 2)
    expect(log.progress.map((p) => p.progress)).toEqual([25, { step: 'half', pct: 50 }])
  })

  test("a thread shares the main thread's job handle and JSON code (lib/job-handle.js, lib/serialize.js) without loading the native addon", async () => {
    const service = tracker.create({ threads: { size: 1 } })
    await service.start()
    const bad = service.addCalculationJob(calcOf('bad-progress'), { mode: 'bad-progress' })
    const loaded = service.addCalculationJob(calcOf('loaded'), { mode: 'loaded' })
    const [sb, sl] = await waitForAll(service, [bad, loaded])
    expect(sb.result).toEqual([
      ['ERR_INVALID_ARGUMENT', 'updateProgress: progress must be finite, got NaN'],
      ['ERR_INVALID_ARGUMENT', 'updateProgress: progress must be a number or an object, got string'],
      ['ERR_NOT_SERIALIZABLE', 'progress is not JSON-serializable: property "f" is a function'],
    ])
    expect(sl.result.sort()).toEqual(['errors.js', 'job-handle.js', 'serialize.js', 'thread-worker.js'])
  })

  test('errors keep name, message, stack and code; sync throws and rejections alike', async () => {
    const service = tracker.create()
    await service.start()
    const a = service.addCalculationJob(calcOf('throw'), { mode: 'throw', who: 'ada' }, null, { retries: 0 })
    const b = service.addCalculationJob(calcOf('reject'), { mode: 'reject' }, null, { retries: 0 })
    const c = service.addCalculationJob(calcOf('fn'), { mode: 'function' }, null, { retries: 0 })
    const [sa, sb, sc] = await waitForAll(service, [a, b, c])
    expect(sa.status).toBe('failed')
    expect(sa.error).toMatchObject({ name: 'RateLimitError', message: 'too many requests for ada', code: 'E_RATE' })
    expect(sa.error.stack).toContain('calc.js')
    expect(sb.error).toMatchObject({ name: 'TypeError', message: 'async bad type' })
    expect(sc.error).toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' })
  })

  test('UnrecoverableError thrown in a thread fails the job without retries', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob(calcOf('unrec'), { mode: 'unrecoverable' }, null, { retries: 3 })
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'failed', attempts: 1 })
    expect(st.error).toMatchObject({ name: 'UnrecoverableError', message: 'the table is gone' })
  })

  test('a module that throws while loading fails its jobs; other calculations in the pool go on', async () => {
    const service = tracker.create({ threads: { size: 1 } })
    await service.start()
    const bad = service.addCalculationJob(calcOf('bad', { module: path.join(FIXTURES, 'top-level-throw.js') }), 1, null, { retries: 0 })
    const good = service.addCalculationJob(calcOf('good'), { mode: 'echo' })
    const [sb, sg] = await waitForAll(service, [bad, good])
    expect(sb.status).toBe('failed')
    expect(sb.error.message).toBe('this module cannot load')
    expect(sg.status).toBe('completed')
  })

  test.each([
    ['an uncaught exception', 'uncaught', {}, { message: 'thrown outside the handler' }],
    ['process.exit', 'exit', {}, { code: 'ERR_THREAD_EXITED', message: 'the worker thread exited with code 3' }],
    ['running out of memory under resourceLimits', 'oom', { resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 } }, { code: 'ERR_WORKER_OUT_OF_MEMORY' }],
  ])('a thread that crashes with %s fails only its job; the pool replaces it', async (_, mode, threads, error) => {
    const service = tracker.create({ threads: { size: 1, ...threads } })
    await service.start()
    const crash = service.addCalculationJob(calcOf(`crash-${mode}`), { mode }, null, { retries: 0 })
    // Queued behind the crashing job in the same (only) thread.
    const after = service.addCalculationJob(calcOf('after'), { mode: 'echo' })
    const [sc, sa] = await waitForAll(service, [crash, after], undefined, 15000)
    expect(sc.status).toBe('failed')
    expect(sc.error).toMatchObject(error)
    expect(sa.status).toBe('completed')
    const later = service.addCalculationJob(calcOf('later'), { mode: 'echo' })
    expect((await waitForStatus(service, later)).status).toBe('completed')
  }, 30000)

  test('stop() waits for running thread jobs, then terminates the pool', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob(calcOf('sleep'), { mode: 'sleep', ms: 200 })
    await waitForStatus(service, id, 'running')
    const summary = await service.stop({ timeoutMs: 5000 })
    expect(summary.aborted).toBe(0)
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', result: 'slept' })
    expect(service._threads.threads.length).toBe(0)
  })

  test('start() after stop() runs thread jobs again', async () => {
    const service = tracker.create()
    await service.start()
    const a = service.addCalculationJob(calcOf('echo'), { mode: 'echo', n: 1 })
    expect((await waitForStatus(service, a)).status).toBe('completed')
    await service.stop()
    await service.start()
    const b = service.addCalculationJob(calcOf('echo'), { mode: 'echo', n: 2 })
    expect(await waitForStatus(service, b)).toMatchObject({ status: 'completed', result: { data: { n: 2 } } })
  })

  test('stop() with timeoutMs 0 terminates a thread stuck in a loop', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob(calcOf('busy'), { mode: 'busy', busyAttempts: 99 })
    await waitForStatus(service, id, 'running')
    const summary = await service.stop({ timeoutMs: 0 })
    expect(summary.aborted).toBe(1)
    expect(service._threads.threads.length).toBe(0)
  })

  test('Node exits by itself when the jobs are done, stop() never called', async () => {
    const r = await runFixture('threads-idle-exit.js', [], { timeout: 15000 })
    expect(r.killed).toBe(false)
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ done: [1, 2, 3] })
  })

  test('runs with SQLite storage: results are stored like main-thread ones', async () => {
    const os = require('node:os')
    const fs = require('node:fs')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-threads-'))
    try {
      const service = tracker.create({ storage: { type: 'sqlite', path: path.join(dir, 'jobs.db') } })
      await service.start()
      const ids = [1, 2, 3].map((i) => service.addCalculationJob(calcOf('sql'), { mode: 'echo', i }))
      const st = await waitForAll(service, ids)
      expect(st.map((s) => s.result.data.i)).toEqual([1, 2, 3])
      await service.stop()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test("getJobManagementService(strapi): a relative module path is found from the app's directory", async () => {
    const strapi = { dirs: { app: { root: FIXTURES } } }
    const service = tracker.track(getJobManagementService(strapi, { storage: { type: 'memory' } }))
    await service.start()
    const id = service.addCalculationJob({ name: 'rel', module: './calc.js', threads: true }, { mode: 'echo' })
    expect((await waitForStatus(service, id)).status).toBe('completed')
    // not found from the working directory
    expectCode(() => tracker.create().registerCalculation({ name: 'rel', module: './calc.js', threads: true }), 'ERR_INVALID_ARGUMENT', 'cannot be found')
  })

  test("getJobManagementService(strapi): a TypeScript app's compiled module is found from its dist directory", async () => {
    const strapi = { dirs: { app: { root: __dirname }, dist: { root: FIXTURES } } }
    const service = tracker.track(getJobManagementService(strapi, { storage: { type: 'memory' } }))
    await service.start()
    const id = service.addCalculationJob({ name: 'dist', module: './calc.js', threads: true }, { mode: 'echo' })
    expect((await waitForStatus(service, id)).status).toBe('completed')
  })

  test('bad thread options get coded errors', () => {
    const service = tracker.create()
    expectCode(() => service.registerCalculation({ name: 'x', threads: true }), 'ERR_INVALID_ARGUMENT', 'module')
    expectCode(() => service.registerCalculation({ name: 'x', module: './nope.js', threads: true }), 'ERR_INVALID_ARGUMENT', 'cannot be found')
    expectCode(() => service.registerCalculation({ name: 'x', module: 42, threads: true }), 'ERR_INVALID_ARGUMENT', 'module')
    expectCode(() => service.registerCalculation({ name: 'x', module: MODULE, threads: 'yes' }), 'ERR_INVALID_ARGUMENT', 'threads')
    expectCode(() => service.registerCalculation({ name: 'x', module: MODULE, isolation: 'process' }), 'ERR_INVALID_ARGUMENT', 'isolation')
    expectCode(() => service.registerCalculation({ name: 'x', module: MODULE, threads: true, calculate() {} }), 'ERR_INVALID_ARGUMENT', 'not both')
    expectCode(() => service.addCalculationJob({ name: 'x', module: path.join(FIXTURES, 'top-level-throw.js') }, 1), 'ERR_INVALID_ARGUMENT', 'could not be loaded')
    const { JobManagementService } = require(ROOT)
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: { size: 0 } }), 'ERR_INVALID_CONFIG', 'size')
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: { size: 1.5 } }), 'ERR_INVALID_CONFIG', 'size')
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: { abortGraceMs: -1 } }), 'ERR_INVALID_CONFIG', 'abortGraceMs')
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: { resourceLimits: { maxOldGenerationSizeMb: 'big' } } }), 'ERR_INVALID_CONFIG', 'maxOldGenerationSizeMb')
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: { sizes: 2 } }), 'ERR_INVALID_CONFIG', 'sizes')
    expectCode(() => new JobManagementService({ storage: { type: 'memory' }, threads: 4 }), 'ERR_INVALID_CONFIG', 'threads')
    // null: the defaults
    tracker.track(new JobManagementService({ storage: { type: 'memory' }, threads: null }))
  })

  test('a module without threads runs on the main thread', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob({ name: 'main-mod', module: MODULE }, { mode: 'echo' })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.result.threadId).toBe(threadId)
  })
})
