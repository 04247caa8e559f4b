'use strict'
const { serviceTracker, waitForStatus, waitFor, sleep, recordEvents, never } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/** A handler that resolves only when its signal fires; records the signal. */
function signalWatcher(name, extra = {}) {
  const seen = []
  return {
    seen,
    calc: {
      name,
      ...extra,
      calculate: (data, ctx, job) =>
        new Promise((resolve, reject) => {
          const t0 = Date.now()
          job.signal.addEventListener('abort', () => {
            seen.push({ attempt: job.attempt, aborted: job.signal.aborted, reason: job.signal.reason, after: Date.now() - t0 })
            reject(job.signal.reason)
          })
        }),
    },
  }
}

describe('timeout', () => {
  test('options.timeout: the signal fires with a TimeoutError and the job ends as timeout', async () => {
    const service = tracker.create()
    const { seen, calc } = signalWatcher('slow')
    await service.start()
    const id = service.addCalculationJob(calc, 1, null, { timeout: 50, retries: 0 })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('timeout')
    expect(st.attempts).toBe(1)
    expect(st.timeout).toBe(50)
    expect(st.result).toBeNull()
    expect(st.error).toMatchObject({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT', attempt: 1 })
    expect(st.error.message).toMatch(/timed out/)
    expect(st.finishedAt).toBeGreaterThanOrEqual(st.startedAt)
    await waitFor(() => seen.length === 1)
    expect(seen[0].aborted).toBe(true)
    expect(seen[0].reason).toBeInstanceOf(Error)
    expect(seen[0].reason.name).toBe('TimeoutError')
    expect(seen[0].reason.code).toBe('ERR_JOB_TIMEOUT')
    // Not before the timeout, measured on the core's own clock (the handler's
    // Date.now() can start late when this busy machine preempts the process
    // between the claim and the handler: CI once saw 41 ms).
    expect(st.finishedAt - st.startedAt).toBeGreaterThanOrEqual(50)
  })

  test('calculation.timeout is the default for its jobs; job options override it', async () => {
    // The manual clock: the 80 ms of real time b takes never count against a timeout.
    const service = tracker.create({ clock: 'manual' })
    const { calc } = signalWatcher('calc-timeout', { timeout: 40, retries: 0 })
    await service.start()
    const a = service.addCalculationJob(calc, 1)
    const quick = { name: 'quick-with-timeout', timeout: 40, retries: 0, calculate: () => sleep(80).then(() => 'ok') }
    const b = service.addCalculationJob(quick, 2, null, { timeout: 2000 })
    await waitForStatus(service, b)
    await service.advanceTime(40, { settleMs: 0 })
    const sa = service.getJobStatus(a)
    expect(sa.status).toBe('timeout')
    expect(sa.timeout).toBe(40)
    const sb = service.getJobStatus(b)
    expect(sb.status).toBe('completed')
    expect(sb.result).toBe('ok')
    expect(sb.timeout).toBe(2000)
  })

  test('queue.defaultTimeout applies when neither job nor calculation sets one', async () => {
    const service = tracker.create({ queue: { defaultTimeout: 40, defaultRetries: 0 } })
    await service.start()
    const id = service.addCalculationJob({ name: 'hang', calculate: never }, null)
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('timeout')
    expect(st.timeout).toBe(40)
    expect(st.maxRetries).toBe(0)
  })

  test('timeout 0 means no timeout', async () => {
    const service = tracker.create({ queue: { defaultTimeout: 20 } })
    await service.start()
    const id = service.addCalculationJob({ name: 'long', calculate: () => sleep(80).then(() => 7) }, null, null, { timeout: 0 })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.result).toBe(7)
    expect(st.timeout).toBe(0)
  })

  test('with retries left a timed-out attempt is retried, and a later attempt can succeed', async () => {
    // The manual clock: attempt 2 cannot time out however busy the machine is.
    const service = tracker.create({ clock: 'manual' })
    const ev = recordEvents(service)
    const signals = []
    const calc = {
      name: 'flaky-slow',
      calculate: async (d, c, job) => {
        if (job.attempt === 1) {
          await new Promise((resolve) => job.signal.addEventListener('abort', resolve))
          signals.push(job.signal.reason.name)
          return 'too late'
        }
        return `ok on ${job.attempt}`
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { timeout: 40, retries: 2, backoff: { type: 'fixed', delay: 20 } })
    await service.advanceTime(40, { settleMs: 0 })
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', attempts: 1, runAt: service.now() + 20 })
    await service.advanceTime(20)
    const st = service.getJobStatus(id)
    expect(st.status).toBe('completed')
    expect(st.result).toBe('ok on 2')
    expect(st.attempts).toBe(2)
    expect(st.errors).toHaveLength(1)
    expect(st.errors[0]).toMatchObject({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT', attempt: 1 })
    expect(signals).toEqual(['TimeoutError'])
    expect(ev.timedOut).toHaveLength(1)
    expect(ev.timedOut[0]).toMatchObject({ jobId: id, name: 'flaky-slow', attempt: 1, error: { name: 'TimeoutError' } })
    expect(ev.retrying).toHaveLength(1)
    expect(ev.retrying[0]).toMatchObject({ jobId: id, attempt: 1, delayMs: 20, error: { name: 'TimeoutError' } })
    expect(ev.completed).toHaveLength(1)
    expect(ev.completed[0]).toMatchObject({ jobId: id, attempt: 2, result: 'ok on 2' })
    // the first attempt's late 'too late' result was ignored
    await waitFor(() => service.getQueueStatistics().lateOutcomes === 1)
    expect(service.getJobStatus(id).result).toBe('ok on 2')
  })

  test('every attempt timing out ends as timeout with attempts = retries + 1', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const { seen, calc } = signalWatcher('always-slow')
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { timeout: 30, retries: 2, backoff: { type: 'fixed', delay: 10 } })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('timeout')
    expect(st.attempts).toBe(3)
    expect(st.errors.map((e) => [e.name, e.attempt])).toEqual([
      ['TimeoutError', 1],
      ['TimeoutError', 2],
      ['TimeoutError', 3],
    ])
    await waitFor(() => seen.length === 3)
    expect(seen.map((s) => s.reason.name)).toEqual(['TimeoutError', 'TimeoutError', 'TimeoutError'])
    expect(ev.timedOut.map((p) => p.attempt)).toEqual([1, 2, 3])
    expect(ev.retrying.map((p) => p.attempt)).toEqual([1, 2])
    expect(ev.completed).toHaveLength(0)
    // a final timeout emits timedOut only, not failed as well
    expect(ev.failed).toHaveLength(0)
    const s = service.getQueueStatistics()
    expect(s.timeout).toBe(1)
    expect(s.failed).toBe(0)
  })

  test('a late result after the timeout is ignored and counted in lateOutcomes', async () => {
    const service = tracker.create({ clock: 'manual' })
    let finished = false
    const calc = {
      name: 'ignores-signal',
      calculate: async () => {
        await sleep(120)
        finished = true
        return 'late'
      },
    }
    await service.start()
    const before = service.getQueueStatistics().lateOutcomes
    const id = service.addCalculationJob(calc, null, null, { timeout: 30, retries: 0 })
    await service.advanceTime(30, { settleMs: 0 })
    const st = service.getJobStatus(id)
    expect(st.status).toBe('timeout')
    expect(finished).toBe(false)
    await waitFor(() => finished)
    await waitFor(() => service.getQueueStatistics().lateOutcomes === before + 1)
    const after = service.getJobStatus(id)
    expect(after.status).toBe('timeout')
    expect(after.result).toBeNull()
    expect(after.finishedAt).toBe(st.finishedAt)
    expect(service.getQueueStatistics().completed).toBe(0)
  })

  test('a late rejection after the timeout is ignored too', async () => {
    const service = tracker.create({ clock: 'manual' })
    let done = false
    const calc = {
      name: 'late-reject',
      calculate: async () => {
        await sleep(100)
        done = true
        throw new Error('late failure')
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { timeout: 30, retries: 0 })
    await service.advanceTime(30, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('timeout')
    expect(done).toBe(false)
    await waitFor(() => done)
    await waitFor(() => service.getQueueStatistics().lateOutcomes === 1)
    const st = service.getJobStatus(id)
    expect(st.status).toBe('timeout')
    expect(st.errors).toHaveLength(1)
    expect(st.error.name).toBe('TimeoutError')
  })

  test('a handler that never resolves ends as timeout and frees its worker', async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 } })
    const ev = recordEvents(service)
    await service.start()
    const hung = service.addCalculationJob({ name: 'never', calculate: never }, null, null, { timeout: 40, retries: 0 })
    const next = service.addCalculationJob({ name: 'after', calculate: () => 'next ran' }, null)
    const st = await waitForStatus(service, hung)
    expect(st.status).toBe('timeout')
    const sn = await waitForStatus(service, next)
    expect(sn.status).toBe('completed')
    expect(sn.result).toBe('next ran')
    expect(sn.startedAt).toBeGreaterThanOrEqual(st.finishedAt)
    expect(ev.timedOut).toHaveLength(1)
    expect(ev.timedOut[0]).toEqual({
      jobId: hung,
      name: 'never',
      attempt: 1,
      error: expect.objectContaining({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT', attempt: 1 }),
    })
  })

  test('the signal of an attempt that finished in time never fires', async () => {
    const service = tracker.create({ clock: 'manual' })
    let signal
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'fast',
        calculate: (d, c, job) => {
          signal = job.signal
          return 'fast'
        },
      },
      null,
      null,
      { timeout: 30 },
    )
    await service.advanceTime(0)
    expect(service.getJobStatus(id).status).toBe('completed')
    await service.advanceTime(80)
    expect(signal.aborted).toBe(false)
    expect(service.getJobStatus(id).status).toBe('completed')
  })
})
