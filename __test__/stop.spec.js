'use strict'
const { serviceTracker, waitForStatus, waitForAll, waitFor, expectCode, rejected, recordEvents, deferred } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/** A handler that resolves after `ms`, or when aborted (recording the reason) resolves 'aborted' after `lateMs`. */
function abortable(name, ms, lateMs = 0) {
  const c = {
    name,
    reasons: [],
    started: 0,
    calculate: (d, ctx, job) =>
      new Promise((resolve) => {
        c.started++
        const t = setTimeout(() => resolve(`finished ${d}`), ms)
        job.signal.addEventListener('abort', () => {
          clearTimeout(t)
          c.reasons.push(job.signal.reason)
          setTimeout(() => resolve('aborted'), lateMs)
        })
      }),
  }
  return c
}

describe('stop', () => {
  test('stop({ timeoutMs }) waits for running jobs to finish', async () => {
    const service = tracker.create()
    const gate = deferred()
    const reasons = []
    let started = 0
    const calc = {
      name: 'gated',
      calculate: (d, ctx, job) => {
        started++
        job.signal.addEventListener('abort', () => reasons.push(job.signal.reason))
        return gate.promise
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, 1)
    await waitFor(() => started === 1)
    let stopped = false
    const stopping = service.stop({ timeoutMs: 600000 }).then((summary) => {
      stopped = true
      return summary
    })
    await new Promise(setImmediate)
    expect(stopped).toBe(false)
    gate.resolve('finished 1')
    // It waited: the job completed rather than being aborted, and stop()
    // resolved once it did (long before its timeout).
    expect(await stopping).toEqual({ aborted: 0, pending: 0, dropped: 0 })
    expect(reasons).toEqual([])
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', result: 'finished 1' })
  })

  test('stop() with nothing running resolves at once (no timer: before the next event-loop turn)', async () => {
    const service = tracker.create()
    await service.start()
    let summary = null
    service.stop().then((s) => (summary = s))
    await new Promise(setImmediate)
    expect(summary).toEqual({ aborted: 0, pending: 0, dropped: 0 })
  })

  // The stop deadline is a real-time timer (stop's timeoutMs is not on the
  // service's clock): this is its one real-time test, with a wide upper bound.
  test('a job longer than the timeout is aborted (signal fires) and reported; it goes back to pending', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const calc = abortable('long', 600000)
    await service.start()
    const id = service.addCalculationJob(calc, 1, null, { retries: 2 })
    await waitFor(() => calc.started === 1)
    const t0 = Date.now()
    const summary = await service.stop({ timeoutMs: 60 })
    const took = Date.now() - t0
    expect(took).toBeGreaterThanOrEqual(50)
    expect(took).toBeLessThan(10000)
    expect(summary).toEqual({ aborted: 1, pending: 1, dropped: 1 })
    expect(calc.reasons).toHaveLength(1)
    expect(calc.reasons[0].name).toBe('AbortError')
    expect(calc.reasons[0].code).toBe('ERR_SERVICE_STOPPED')
    const st = service.getJobStatus(id)
    expect(st.status).toBe('pending')
    // a graceful stop does not count the aborted attempt against the retries
    expect(st.attempts).toBe(0)
    // one code per cause: what the handler's signal said is what is stored
    expect(st.error).toMatchObject({ name: 'InterruptedError', code: 'ERR_SERVICE_STOPPED', attempt: 1 })
    // the aborted handler's late 'aborted' result is ignored
    await waitFor(() => service.getQueueStatistics().lateOutcomes === 1)
    expect(service.getJobStatus(id).status).toBe('pending')
    expect(ev.completed).toEqual([])
  })

  test('pending jobs stay pending and are counted in pending/dropped', async () => {
    const service = tracker.create({ queue: { maxWorkers: 2 } })
    const long = abortable('long', 10000)
    const quick = { name: 'quick', calculate: () => 'q' }
    await service.start()
    const running = [service.addCalculationJob(long, 1), service.addCalculationJob(long, 2)]
    const pending = [1, 2, 3].map((n) => service.addCalculationJob(quick, n))
    const delayed = service.addCalculationJob(quick, 'd', null, { delay: 5000 })
    await waitFor(() => long.started === 2)
    const summary = await service.stop({ timeoutMs: 20 })
    expect(summary).toEqual({ aborted: 2, pending: 6, dropped: 6 })
    for (const id of [...running, ...pending, delayed]) expect(service.getJobStatus(id).status).toBe('pending')
    const s = service.getQueueStatistics()
    expect(s).toMatchObject({ pending: 6, running: 0, completed: 0, activeWorkers: 0 })
  })

  test('stop() of a never-started service reports its pending jobs', async () => {
    const service = tracker.create()
    service.addCalculationJob({ name: 'p', calculate: () => 1 }, null)
    service.addCalculationJob({ name: 'p', calculate: () => 1 }, null)
    expect(await service.stop()).toEqual({ aborted: 0, pending: 2, dropped: 2 })
  })

  test('adding during and after stop -> ERR_STOPPED, nothing is added', async () => {
    const service = tracker.create()
    const calc = abortable('long', 10000)
    await service.start()
    service.addCalculationJob(calc, 1)
    await waitFor(() => calc.started === 1)
    const stopping = service.stop({ timeoutMs: 50 })
    expectCode(() => service.addCalculationJob(calc, 2), 'ERR_STOPPED')
    await stopping
    expectCode(() => service.addCalculationJob(calc, 3), 'ERR_STOPPED')
    expectCode(() => service.addCalculationJobs([{ calculation: calc, data: 4 }]), 'ERR_STOPPED')
    expect(service.getQueueStatistics().total).toBe(1)
  })

  test('start() while stopping rejects with ERR_STOPPED', async () => {
    const service = tracker.create()
    const calc = abortable('long', 10000)
    await service.start()
    service.addCalculationJob(calc, 1)
    await waitFor(() => calc.started === 1)
    const stopping = service.stop({ timeoutMs: 50 })
    const e = await rejected(service.start())
    expect(e.code).toBe('ERR_STOPPED')
    await stopping
  })

  test('stop() twice: both resolve with the same summary', async () => {
    const service = tracker.create()
    const calc = abortable('long', 10000)
    await service.start()
    service.addCalculationJob(calc, 1)
    await waitFor(() => calc.started === 1)
    const [a, b] = await Promise.all([service.stop({ timeoutMs: 30 }), service.stop({ timeoutMs: 30 })])
    expect(a).toEqual({ aborted: 1, pending: 1, dropped: 1 })
    expect(b).toEqual(a)
    const c = await service.stop()
    expect(c).toEqual({ aborted: 0, pending: 1, dropped: 1 })
  })

  test('start() again resumes: pending and interrupted jobs run', async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 }, clock: 'manual' })
    let runs = 0
    const calc = {
      name: 'resumable',
      calculate: (d, c, job) => {
        runs++
        if (d === 'first' && runs === 1) {
          return new Promise((resolve) => job.signal.addEventListener('abort', () => resolve('aborted')))
        }
        return `ran ${d}`
      },
    }
    await service.start()
    const first = service.addCalculationJob(calc, 'first', null, { retries: 3 })
    const second = service.addCalculationJob(calc, 'second')
    const delayed = service.addCalculationJob(calc, 'delayed', null, { delay: 80 })
    await waitFor(() => runs === 1)
    expect(await service.stop({ timeoutMs: 10 })).toEqual({ aborted: 1, pending: 3, dropped: 3 })
    await service.advanceTime(120) // the delayed job comes due while stopped: it must not run
    expect(runs).toBe(1)
    expect(service.getJobStatus(delayed).status).toBe('pending')
    await service.start()
    const st = await waitForAll(service, [first, second, delayed])
    expect(st.map((s) => [s.status, s.result])).toEqual([
      ['completed', 'ran first'],
      ['completed', 'ran second'],
      ['completed', 'ran delayed'],
    ])
    // and new jobs are accepted again
    const more = service.addCalculationJob(calc, 'more')
    expect((await waitForStatus(service, more)).result).toBe('ran more')
  })

  test('timed work (timeouts, retries) works again after a restart', async () => {
    const service = tracker.create()
    await service.start()
    await service.stop()
    await service.start()
    const hung = service.addCalculationJob({ name: 'hang', calculate: () => new Promise(() => {}) }, null, null, { timeout: 30, retries: 0 })
    const flaky = service.addCalculationJob(
      {
        name: 'flaky',
        calculate(d, c, job) {
          if (job.attempt === 1) throw new Error('once')
          return 'second'
        },
      },
      null,
      null,
      { retries: 1, backoff: 30 },
    )
    expect((await waitForStatus(service, hung)).status).toBe('timeout')
    expect((await waitForStatus(service, flaky)).result).toBe('second')
  })

  // BUG: the abort reason is chosen from the service state in index.js
  // _drain ('started' -> TimeoutError, otherwise AbortError), so an attempt
  // that times out while stop() waits gets an AbortError, although the job's
  // recorded error is a TimeoutError (the same root cause as the cancel bug).
  test('an attempt that times out while stop() waits is aborted with a TimeoutError', async () => {
    const service = tracker.create({ clock: 'manual' })
    const calc = abortable('times-out', 600000)
    await service.start()
    const id = service.addCalculationJob(calc, 1, null, { timeout: 60, retries: 0 })
    await waitFor(() => calc.started === 1)
    const stopping = service.stop({ timeoutMs: 600000 })
    await service.advanceTime(60, { settleMs: 0 })
    await stopping
    expect(service.getJobStatus(id).error.name).toBe('TimeoutError')
    expect(calc.reasons.map((r) => r.name)).toEqual(['TimeoutError'])
  })

  // BUG: an attempt interrupted by stop() keeps counting (Queue::finish_stop),
  // so a job with retries: 0 that is interrupted and run again after start()
  // ends with attempts 2 > maxRetries + 1, the bound Queue::check_invariants
  // enforces (and the job could be "failed" after fewer real attempts than
  // promised when retries > 0).
  test('an attempt interrupted by stop() does not push attempts past maxRetries + 1', async () => {
    const service = tracker.create()
    let runs = 0
    const calc = {
      name: 'interrupted',
      calculate: (d, c, job) => {
        runs++
        if (runs === 1) return new Promise((resolve) => job.signal.addEventListener('abort', () => resolve('aborted')))
        return 'done'
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { retries: 0 })
    await waitFor(() => runs === 1)
    await service.stop({ timeoutMs: 10 })
    await service.start()
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.attempts).toBeLessThanOrEqual(st.maxRetries + 1)
  })
})
