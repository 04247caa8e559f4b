'use strict'
const { serviceTracker, waitForStatus, waitFor, recordEvents, expectCode, deferred, never } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/** Fails while `fail.on` is true; counts runs. */
function switchable(name) {
  const c = {
    name,
    fail: true,
    runs: 0,
    calculate(data, ctx, job) {
      c.runs++
      if (c.fail) throw new Error(`fail ${c.runs}`)
      return { ok: c.runs, attempt: job.attempt }
    },
  }
  return c
}

describe('retryJob', () => {
  test('re-queues a failed job with attempts reset and runs it', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const calc = switchable('failer')
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { retries: 1, backoff: { type: 'fixed', delay: 5 } })
    const failed = await waitForStatus(service, id)
    expect(failed.status).toBe('failed')
    expect(failed.attempts).toBe(2)
    calc.fail = false
    expect(service.retryJob(id)).toBe(true)
    const pending = service.getJobStatus(id)
    expect(pending.status).toBe('pending')
    expect(pending.attempts).toBe(0)
    expect(pending.finishedAt).toBeNull()
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.attempts).toBe(1)
    expect(st.result).toEqual({ ok: 3, attempt: 1 })
    expect(st.jobId).toBe(id)
    expect(ev.completed).toEqual([{ jobId: id, name: 'failer', attempt: 1, result: { ok: 3, attempt: 1 } }])
    const s = service.getQueueStatistics()
    expect(s.failed).toBe(0)
    expect(s.completed).toBe(1)
    expect(s.total).toBe(1)
  })

  test('a retried job gets its full retries again', async () => {
    const service = tracker.create()
    const calc = switchable('again')
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { retries: 2, backoff: { type: 'fixed', delay: 5 } })
    await waitForStatus(service, id, 'failed')
    expect(calc.runs).toBe(3)
    expect(service.retryJob(id)).toBe(true)
    await waitFor(() => calc.runs === 6 && service.getJobStatus(id).status === 'failed')
    const st = service.getJobStatus(id)
    expect(st.attempts).toBe(3)
    expect(st.error.message).toBe('fail 6')
  })

  test('re-queues a timed-out job', async () => {
    // The manual clock: a busy machine cannot time out the second, fast attempt.
    const service = tracker.create({ clock: 'manual' })
    let runs = 0
    const calc = {
      name: 'slow-then-fast',
      calculate: () => (++runs === 1 ? never() : 'fast'),
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { timeout: 30, retries: 0 })
    await service.advanceTime(29, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('running')
    await service.advanceTime(1, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('timeout')
    expect(service.retryJob(id)).toBe(true)
    await service.advanceTime(0)
    const st = service.getJobStatus(id)
    expect(st).toMatchObject({ status: 'completed', attempts: 1, result: 'fast' })
    expect(runs).toBe(2)
  })

  test('re-queues a job cancelled while pending', async () => {
    const service = tracker.create()
    const calc = switchable('cancelled-pending')
    calc.fail = false
    const id = service.addCalculationJob(calc, null)
    expect(service.cancelJob(id)).toBe(true)
    await service.start()
    expect(service.retryJob(id)).toBe(true)
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.attempts).toBe(1)
    expect(calc.runs).toBe(1)
  })

  test('re-queues a job cancelled while running', async () => {
    const service = tracker.create()
    const started = deferred()
    let runs = 0
    const calc = {
      name: 'cancelled-running',
      calculate: (d, c, job) => {
        runs++
        if (runs === 1) {
          started.resolve()
          return never()
        }
        return `run ${runs}`
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null)
    await started.promise
    expect(service.cancelJob(id)).toBe(true)
    expect(service.retryJob(id)).toBe(true)
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', attempts: 1, result: 'run 2' })
  })

  test('returns false for pending, running, completed and unknown jobs', async () => {
    // The manual clock: the delayed job stays pending however slow the machine.
    const service = tracker.create({ clock: 'manual' })
    const gate = deferred()
    const running = service.addCalculationJob({ name: 'gated', calculate: () => gate.promise }, null)
    const done = service.addCalculationJob({ name: 'done', calculate: () => 1 }, null)
    const delayed = service.addCalculationJob({ name: 'later', calculate: () => 1 }, null, null, { delay: 5000 })
    expect(service.retryJob(delayed)).toBe(false) // pending
    await service.start()
    await waitForStatus(service, done)
    await waitForStatus(service, running, 'running')
    expect(service.retryJob(running)).toBe(false)
    expect(service.retryJob(done)).toBe(false)
    expect(service.retryJob(delayed)).toBe(false)
    expect(service.retryJob('nope')).toBe(false)
    expect(service.retryJob('01890a5d-ac96-774b-bcce-b302099a8057')).toBe(false)
    expect(service.getJobStatus(done)).toMatchObject({ status: 'completed', attempts: 1 })
    expect(service.getJobStatus(delayed).status).toBe('pending')
    gate.resolve('ok')
    await waitForStatus(service, running)
  })

  test('non-string ids throw ERR_INVALID_ARGUMENT', () => {
    const service = tracker.create()
    for (const bad of [undefined, null, 1, {}, [], true]) {
      expectCode(() => service.retryJob(bad), 'ERR_INVALID_ARGUMENT', 'retryJob')
    }
  })

  test('retryJob on a full queue throws ERR_QUEUE_FULL and leaves the job failed', async () => {
    const service = tracker.create({ queue: { maxQueueSize: 1 }, clock: 'manual' })
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'full',
        calculate() {
          throw new Error('x')
        },
      },
      null,
      null,
      { retries: 0 },
    )
    await waitForStatus(service, id)
    service.addCalculationJob({ name: 'filler', calculate: () => 1 }, null, null, { delay: 5000 })
    expectCode(() => service.retryJob(id), 'ERR_QUEUE_FULL')
    expect(service.getJobStatus(id).status).toBe('failed')
  })

  test('retryJob on a stopped service throws ERR_STOPPED', async () => {
    const service = tracker.create()
    await service.start()
    let runs = 0
    const id = service.addCalculationJob(
      {
        name: 'stopped',
        calculate() {
          runs++
          throw new Error('x')
        },
      },
      null,
      null,
      { retries: 0 },
    )
    await waitForStatus(service, id)
    await service.stop()
    expectCode(() => service.retryJob(id), 'ERR_STOPPED')
    expect(service.getJobStatus(id).status).toBe('failed')
    // and start() again lets it be retried
    await service.start()
    expect(service.retryJob(id)).toBe(true)
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', attempts: 0 })
    await waitFor(() => runs === 2 && service.getJobStatus(id).status === 'failed')
    expect(service.getJobStatus(id).attempts).toBe(1)
  })
})
