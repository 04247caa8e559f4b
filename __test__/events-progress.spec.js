'use strict'
const { serviceTracker, waitForStatus, waitFor, sleep, recordEvents, deferred, never, isError } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const sortedKeys = (o) => Object.keys(o).sort()

describe('events', () => {
  test('completed: { jobId, name, attempt, result }', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    await service.start()
    const id = service.addCalculationJob({ name: 'sum', calculate: (d) => ({ sum: d.a + d.b }) }, { a: 1, b: 2 })
    await waitFor(() => ev.completed.length === 1)
    expect(ev.completed[0]).toEqual({ jobId: id, name: 'sum', attempt: 1, result: { sum: 3 } })
    expect(sortedKeys(ev.completed[0])).toEqual(['attempt', 'jobId', 'name', 'result'])
    expect(ev.all.map(([e]) => e)).toEqual(['completed'])
  })

  test("completed: the result reads as the stored JSON, and the job is completed when the event fires", async () => {
    const service = tracker.create()
    const seen = []
    service.on('completed', (e) => seen.push([e.result, service.getJobStatus(e.jobId).status, service.getJobStatus(e.jobId).result]))
    await service.start()
    const date = new Date(Date.UTC(2026, 0, 2))
    const results = [41, -0, NaN, Infinity, 'text', '', true, false, null, undefined, { a: [1, { b: 'c' }], skip: undefined }, [1, 'two'], date]
    const ids = results.map((r, i) => service.addCalculationJob({ name: `r${i}`, calculate: async () => r }, i))
    await waitFor(() => seen.length === results.length)
    const expected = results.map((r) => (r === undefined ? null : JSON.parse(JSON.stringify(r))))
    expect(seen.map((s) => s[0])).toEqual(expected)
    expect(Object.is(seen[1][0], 0)).toBe(true)
    for (const [result, status, stored] of seen) {
      expect(status).toBe('completed')
      expect(stored).toEqual(result)
    }
    for (const id of ids) expect(service.getJobStatus(id).status).toBe('completed')
  })

  test('failed: { jobId, name, attempt, error }', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'explode',
        calculate() {
          throw new TypeError('kaput')
        },
      },
      null,
      null,
      { retries: 0 },
    )
    await waitFor(() => ev.failed.length === 1)
    expect(sortedKeys(ev.failed[0])).toEqual(['attempt', 'error', 'jobId', 'name'])
    expect(ev.failed[0]).toMatchObject({ jobId: id, name: 'explode', attempt: 1 })
    expect(ev.failed[0].error).toMatchObject({ name: 'TypeError', message: 'kaput', attempt: 1 })
    expect(ev.failed[0].error.stack).toContain('kaput')
  })

  test('retrying: { jobId, name, attempt, delayMs, error }', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'twice',
        calculate(d, c, job) {
          if (job.attempt === 1) throw new Error('once')
          return 'second'
        },
      },
      null,
      null,
      { retries: 1, backoff: { type: 'fixed', delay: 10 } },
    )
    await waitFor(() => ev.completed.length === 1)
    expect(ev.retrying).toHaveLength(1)
    expect(sortedKeys(ev.retrying[0])).toEqual(['attempt', 'delayMs', 'error', 'jobId', 'name'])
    expect(ev.retrying[0]).toMatchObject({ jobId: id, name: 'twice', attempt: 1, delayMs: 10, error: { message: 'once' } })
    expect(ev.completed[0]).toMatchObject({ attempt: 2, result: 'second' })
    expect(ev.all.map(([e]) => e)).toEqual(['retrying', 'completed'])
  })

  test('timedOut: { jobId, name, attempt, error }', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    await service.start()
    const id = service.addCalculationJob({ name: 'hang', calculate: never }, null, null, { timeout: 20, retries: 0 })
    await waitFor(() => ev.timedOut.length === 1)
    expect(sortedKeys(ev.timedOut[0])).toEqual(['attempt', 'error', 'jobId', 'name'])
    expect(ev.timedOut[0]).toMatchObject({ jobId: id, name: 'hang', attempt: 1, error: { name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT' } })
    await sleep(20)
    expect(ev.all.map(([e]) => e)).toEqual(['timedOut'])
  })

  test('cancelled: { jobId, name, attempt }', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const id = service.addCalculationJob({ name: 'x', calculate: () => 1 }, null)
    service.cancelJob(id)
    await waitFor(() => ev.cancelled.length === 1)
    expect(ev.cancelled[0]).toEqual({ jobId: id, name: 'x', attempt: 0 })
  })

  test('events are not replayed to listeners added later; off() stops delivery', async () => {
    const service = tracker.create()
    await service.start()
    const calc = { name: 'quiet', calculate: (d) => d }
    const a = service.addCalculationJob(calc, 1)
    await waitForStatus(service, a)
    const got = []
    const listener = (p) => got.push(p.result)
    service.on('completed', listener)
    await waitForStatus(service, service.addCalculationJob(calc, 2))
    await waitFor(() => got.length === 1)
    service.off('completed', listener)
    await waitForStatus(service, service.addCalculationJob(calc, 3))
    await sleep(20)
    expect(got).toEqual([2])
    service.once('completed', listener)
    await waitForStatus(service, service.addCalculationJob(calc, 4))
    await waitForStatus(service, service.addCalculationJob(calc, 5))
    await sleep(20)
    expect(got).toEqual([2, 4])
  })

  test('a listener that throws does not break the service', async () => {
    const service = tracker.create()
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      let calls = 0
      service.on('completed', () => {
        calls++
        throw new Error('listener bug')
      })
      await service.start()
      const ids = [1, 2, 3].map((i) => service.addCalculationJob({ name: 'ok', calculate: () => i }, i))
      for (const id of ids) expect((await waitForStatus(service, id)).status).toBe('completed')
      await waitFor(() => calls === 3)
      expect(warn).toHaveBeenCalled()
      expect(String(warn.mock.calls[0][0])).toContain('listener bug')
    } finally {
      warn.mockRestore()
    }
  })
})

describe('progress', () => {
  test('updateProgress(number) shows in getJobStatus().progress and emits progress events', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const step = deferred()
    const go = deferred()
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'prog',
        async calculate(d, c, job) {
          job.updateProgress(10)
          job.updateProgress(50)
          step.resolve()
          await go.promise
          job.updateProgress(100)
          return 'done'
        },
      },
      null,
    )
    await step.promise
    expect(service.getJobStatus(id)).toMatchObject({ status: 'running', progress: 50 })
    go.resolve()
    const st = await waitForStatus(service, id)
    expect(st.progress).toBe(100)
    expect(ev.progress.map((p) => p.progress)).toEqual([10, 50, 100])
    expect(ev.progress[0]).toEqual({ jobId: id, name: 'prog', attempt: 1, progress: 10 })
  })

  test('updateProgress(object) is stored as JSON', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    await service.start()
    const progress = { stage: 'parse', done: 3, of: 7, nested: { ok: true } }
    const id = service.addCalculationJob(
      {
        name: 'obj',
        calculate(d, c, job) {
          job.updateProgress(progress)
          progress.done = 999 // later changes of the caller's object are not seen
          job.updateProgress([1, 2])
          job.updateProgress({ stage: 'write', done: 7, of: 7 })
        },
      },
      null,
    )
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.result).toBeNull()
    expect(st.progress).toEqual({ stage: 'write', done: 7, of: 7 })
    expect(ev.progress.map((p) => p.progress)).toEqual([{ stage: 'parse', done: 3, of: 7, nested: { ok: true } }, [1, 2], { stage: 'write', done: 7, of: 7 }])
  })

  test('progress before any update is null', async () => {
    const service = tracker.create()
    const id = service.addCalculationJob({ name: 'p0', calculate: () => 1 }, null)
    expect(service.getJobStatus(id).progress).toBeNull()
  })

  test.each([
    ['NaN', NaN, 'ERR_INVALID_ARGUMENT'],
    ['Infinity', Infinity, 'ERR_INVALID_ARGUMENT'],
    ['a function', () => 1, 'ERR_INVALID_ARGUMENT'],
    ['a string', '50%', 'ERR_INVALID_ARGUMENT'],
    ['null', null, 'ERR_INVALID_ARGUMENT'],
    ['undefined', undefined, 'ERR_INVALID_ARGUMENT'],
    ['an object holding a function', { f() {} }, 'ERR_NOT_SERIALIZABLE'],
    ['an object holding a BigInt', { n: 1n }, 'ERR_NOT_SERIALIZABLE'],
  ])('updateProgress(%s) throws inside the handler, so the job fails', async (_, value, code) => {
    const service = tracker.create()
    let caught
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'bad-progress',
        calculate(d, c, job) {
          job.updateProgress(5)
          try {
            job.updateProgress(value)
          } catch (e) {
            caught = e
            throw e
          }
          return 'unreachable'
        },
      },
      null,
      null,
      { retries: 0 },
    )
    const st = await waitForStatus(service, id)
    expect(isError(caught)).toBe(true)
    expect(caught.code).toBe(code)
    expect(st.status).toBe('failed')
    expect(st.error).toMatchObject({ code, name: 'Error' })
    expect(st.progress).toBe(5) // the bad value was not stored
  })

  test('a handler that catches a bad updateProgress completes', async () => {
    const service = tracker.create()
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'catches',
        calculate(d, c, job) {
          try {
            job.updateProgress(NaN)
          } catch {
            job.updateProgress(1)
          }
          return 'fine'
        },
      },
      null,
    )
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', result: 'fine', progress: 1 })
  })

  test('updateProgress after the attempt ended is ignored', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    let handle
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'keeps-handle',
        calculate(d, c, job) {
          handle = job
          job.updateProgress(1)
          return 'ok'
        },
      },
      null,
    )
    await waitForStatus(service, id)
    expect(() => handle.updateProgress(99)).not.toThrow()
    await sleep(10)
    expect(service.getJobStatus(id).progress).toBe(1)
    expect(ev.progress.map((p) => p.progress)).toEqual([1])
  })

  test('updateProgress from a timed-out attempt is ignored', async () => {
    // The manual clock: the attempt times out after its first progress, never before.
    const service = tracker.create({ clock: 'manual' })
    let handle
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'slow-progress',
        calculate(d, c, job) {
          handle = job
          job.updateProgress(1)
          return never()
        },
      },
      null,
      null,
      { timeout: 20, retries: 0 },
    )
    await waitForStatus(service, id, 'running')
    expect(service.getJobStatus(id).progress).toBe(1)
    await service.advanceTime(20, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('timeout')
    handle.updateProgress(2)
    expect(service.getJobStatus(id).progress).toBe(1)
  })

  test('the job handle carries id, name and attempt', async () => {
    const service = tracker.create()
    const seen = []
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'handle',
        calculate(d, c, job) {
          seen.push({ id: job.id, name: job.name, attempt: job.attempt, signal: job.signal instanceof AbortSignal || typeof job.signal.aborted === 'boolean' })
          if (job.attempt === 1) throw new Error('again')
        },
      },
      null,
      null,
      { retries: 1, backoff: 5 },
    )
    await waitForStatus(service, id)
    expect(seen).toEqual([
      { id, name: 'handle', attempt: 1, signal: true },
      { id, name: 'handle', attempt: 2, signal: true },
    ])
  })
})
