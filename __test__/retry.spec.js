'use strict'
const { performance } = require('node:perf_hooks')
const { serviceTracker, waitForStatus, recordEvents } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

// The one real-time test: timer-based delays are never early (beyond clock
// rounding) and maybe late on a busy machine (wide: 2 cores shared by other
// work). The other delays are checked exactly on the manual clock.
const EARLY = 5
const LATE = 1000

/**
 * A calculation that fails `failures` times (Infinity: always), recording
 * attempt start times by `now` (the wall clock, or a manual service's now()).
 */
function failing(name, failures = Infinity, extra = {}, now = () => performance.now()) {
  const starts = []
  const attempts = []
  const calc = {
    name,
    ...extra,
    calculate(data, ctx, job) {
      starts.push(now())
      attempts.push(job.attempt)
      if (attempts.length <= failures) {
        const e = new Error(`boom ${job.attempt}`)
        e.code = 'E_BOOM'
        throw e
      }
      return `ok after ${job.attempt}`
    },
  }
  return { calc, starts, attempts, gaps: () => starts.slice(1).map((t, i) => t - starts[i]) }
}

function expectGaps(gaps, expected) {
  expect(gaps).toHaveLength(expected.length)
  gaps.forEach((g, i) => {
    expect(g).toBeGreaterThanOrEqual(expected[i] - EARLY)
    expect(g).toBeLessThanOrEqual(expected[i] + LATE)
  })
}

/** A started service on the manual clock, and `failing` whose start times are its clock's. */
async function manual() {
  const service = tracker.create({ clock: 'manual' })
  await service.start()
  return { service, failing: (name, failures, extra) => failing(name, failures, extra, () => service.now()) }
}

describe('retries and backoff', () => {
  test('real time: exponential backoff doubles the delay: 50, 100, 200 ms (never early, late by < 1 s)', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const f = failing('exp')
    await service.start()
    const id = service.addCalculationJob(f.calc, null, null, { retries: 3, backoff: { type: 'exponential', delay: 50 } })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('failed')
    expect(f.attempts).toEqual([1, 2, 3, 4])
    expect(ev.retrying.map((p) => p.delayMs)).toEqual([50, 100, 200])
    expectGaps(f.gaps(), [50, 100, 200])
  })

  test('manual clock: exponential backoff runs the attempts exactly 50, 100, 200 ms apart', async () => {
    const { service, failing } = await manual()
    const ev = recordEvents(service)
    const f = failing('exp-manual')
    const id = service.addCalculationJob(f.calc, null, null, { retries: 3, backoff: { type: 'exponential', delay: 50 } })
    await service.advanceTime(349)
    expect(f.attempts).toEqual([1, 2, 3])
    expect(service.getJobStatus(id).status).toBe('pending')
    await service.advanceTime(1)
    expect(service.getJobStatus(id).status).toBe('failed')
    expect(f.attempts).toEqual([1, 2, 3, 4])
    expect(ev.retrying.map((p) => p.delayMs)).toEqual([50, 100, 200])
    expect(f.gaps()).toEqual([50, 100, 200])
  })

  test('exponential is the default backoff type; delayMs is an alias of delay', async () => {
    const { service, failing } = await manual()
    const ev = recordEvents(service)
    const f = failing('exp-default')
    const id = service.addCalculationJob(f.calc, null, null, { retries: 2, backoff: { delayMs: 20 } })
    await service.advanceTime(60)
    expect(service.getJobStatus(id).status).toBe('failed')
    expect(ev.retrying.map((p) => p.delayMs)).toEqual([20, 40])
    expect(f.gaps()).toEqual([20, 40])
  })

  test('fixed backoff waits the same delay every time (object and number forms)', async () => {
    const { service, failing } = await manual()
    const ev = recordEvents(service)
    const a = failing('fixed-obj')
    const b = failing('fixed-num')
    const ida = service.addCalculationJob(a.calc, null, null, { retries: 3, backoff: { type: 'fixed', delay: 40 } })
    const idb = service.addCalculationJob(b.calc, null, null, { retries: 2, backoff: 30 })
    await service.advanceTime(120)
    expect(service.getJobStatus(ida).status).toBe('failed')
    expect(service.getJobStatus(idb).status).toBe('failed')
    expect(ev.retrying.filter((p) => p.jobId === ida).map((p) => p.delayMs)).toEqual([40, 40, 40])
    expect(ev.retrying.filter((p) => p.jobId === idb).map((p) => p.delayMs)).toEqual([30, 30])
    expect(a.gaps()).toEqual([40, 40, 40])
    expect(b.gaps()).toEqual([30, 30])
  })

  test('maxDelayMs (and its alias maxDelay) caps the exponential delay', async () => {
    const { service, failing } = await manual()
    const ev = recordEvents(service)
    const a = failing('capped')
    const b = failing('capped-alias')
    const ida = service.addCalculationJob(a.calc, null, null, { retries: 4, backoff: { delay: 20, maxDelayMs: 50 } })
    const idb = service.addCalculationJob(b.calc, null, null, { retries: 3, backoff: { delay: 10, maxDelay: 25 } })
    await service.advanceTime(160)
    expect(service.getJobStatus(ida).status).toBe('failed')
    expect(service.getJobStatus(idb).status).toBe('failed')
    expect(ev.retrying.filter((p) => p.jobId === ida).map((p) => p.delayMs)).toEqual([20, 40, 50, 50])
    expect(ev.retrying.filter((p) => p.jobId === idb).map((p) => p.delayMs)).toEqual([10, 20, 25])
    expect(a.gaps()).toEqual([20, 40, 50, 50])
    expect(b.gaps()).toEqual([10, 20, 25])
  })

  test('jitter only shortens delays, by at most its fraction', async () => {
    const service = tracker.create({ queue: { maxWorkers: 10 }, clock: 'manual' })
    const ev = recordEvents(service)
    await service.start()
    const ids = []
    const cfgs = []
    for (let i = 0; i < 6; i++) {
      const f = failing(`jitter-${i}`, Infinity, {}, () => service.now())
      const backoff = i % 2 === 0 ? { type: 'fixed', delay: 40, jitter: 0.5 } : { type: 'exponential', delay: 10, jitter: 1 }
      cfgs.push(f)
      ids.push(service.addCalculationJob(f.calc, null, null, { retries: 3, backoff }))
    }
    await service.advanceTime(120)
    for (const id of ids) expect(service.getJobStatus(id).status).toBe('failed')
    const fixedDelays = []
    ids.forEach((id, i) => {
      const got = ev.retrying.filter((p) => p.jobId === id).map((p) => p.delayMs)
      expect(got).toHaveLength(3)
      got.forEach((d, k) => {
        const base = i % 2 === 0 ? 40 : 10 * 2 ** k
        const jitter = i % 2 === 0 ? 0.5 : 1
        expect(Number.isInteger(d)).toBe(true)
        expect(d).toBeLessThanOrEqual(base)
        expect(d).toBeGreaterThanOrEqual(Math.floor(base * (1 - jitter)))
        if (i % 2 === 0) fixedDelays.push(d)
      })
      // each attempt starts exactly the reported (jittered) delay after the last
      expect(cfgs[i].gaps()).toEqual(got)
    })
    // nine random cuts of the fixed 40 ms delay (each uniform over 20..40) are not all the same
    expect(new Set(fixedDelays).size).toBeGreaterThan(1)
  })

  test('after exhausting retries: failed, attempts = retries + 1, error and errors[] recorded', async () => {
    const service = tracker.create()
    const f = failing('exhaust')
    await service.start()
    const id = service.addCalculationJob(f.calc, { x: 1 }, null, { retries: 2, backoff: { type: 'fixed', delay: 10 } })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('failed')
    expect(st.attempts).toBe(3)
    expect(st.maxRetries).toBe(2)
    expect(st.result).toBeNull()
    expect(st.error).toMatchObject({ name: 'Error', message: 'boom 3', code: 'E_BOOM', attempt: 3 })
    expect(typeof st.error.stack).toBe('string')
    expect(st.error.stack).toContain('boom 3')
    expect(st.errors.map((e) => [e.message, e.attempt])).toEqual([
      ['boom 1', 1],
      ['boom 2', 2],
      ['boom 3', 3],
    ])
    for (const e of st.errors) {
      expect(e.name).toBe('Error')
      expect(typeof e.stack).toBe('string')
    }
    expect(st.finishedAt).toBeGreaterThanOrEqual(st.startedAt)
    expect(service.getQueueStatistics().failed).toBe(1)
  })

  test('a job that succeeds on a later attempt completes and keeps its failed attempts in errors[]', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const f = failing('eventually', 2)
    await service.start()
    const id = service.addCalculationJob(f.calc, null, null, { retries: 5, backoff: { type: 'fixed', delay: 10 } })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('completed')
    expect(st.result).toBe('ok after 3')
    expect(st.attempts).toBe(3)
    expect(st.errors.map((e) => e.attempt)).toEqual([1, 2])
    expect(ev.retrying).toHaveLength(2)
    expect(ev.failed).toHaveLength(0)
    expect(ev.completed).toEqual([{ jobId: id, name: 'eventually', attempt: 3, result: 'ok after 3' }])
  })

  test("'retrying' and 'failed' events carry attempt, delayMs and error", async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const f = failing('evented')
    await service.start()
    const id = service.addCalculationJob(f.calc, null, null, { retries: 1, backoff: { type: 'fixed', delay: 15 } })
    await waitForStatus(service, id)
    expect(ev.retrying).toHaveLength(1)
    expect(ev.retrying[0]).toEqual({
      jobId: id,
      name: 'evented',
      attempt: 1,
      delayMs: 15,
      error: expect.objectContaining({ name: 'Error', message: 'boom 1', code: 'E_BOOM', attempt: 1, stack: expect.any(String) }),
    })
    expect(ev.failed).toHaveLength(1)
    expect(ev.failed[0]).toEqual({
      jobId: id,
      name: 'evented',
      attempt: 2,
      error: expect.objectContaining({ name: 'Error', message: 'boom 2', attempt: 2 }),
    })
    // order: retrying comes before the final failed
    expect(ev.all.map(([e]) => e)).toEqual(['retrying', 'failed'])
  })

  test('a job between attempts is pending with runAt at the failure + the delay', async () => {
    const { service, failing } = await manual()
    const f = failing('between')
    const id = service.addCalculationJob(f.calc, null, null, { retries: 1, backoff: { type: 'fixed', delay: 300 } })
    await service.advanceTime(299)
    const st = service.getJobStatus(id)
    expect(f.attempts).toEqual([1])
    expect(st.status).toBe('pending')
    expect(st.attempts).toBe(1)
    expect(st.runAt).toBe(f.starts[0] + 300)
    expect(st.runAt).toBe(service.now() + 1)
    expect(st.error).toMatchObject({ message: 'boom 1' })
    await service.advanceTime(1)
    expect(f.attempts).toEqual([1, 2])
  })

  test('calculation.backoff/retries and queue.defaultRetries/defaultBackoff are defaults', async () => {
    const service = tracker.create({ queue: { defaultRetries: 1, defaultBackoff: { type: 'fixed', delay: 15 } } })
    const ev = recordEvents(service)
    const q = failing('queue-defaults')
    const c = failing('calc-defaults', Infinity, { retries: 2, backoff: { type: 'fixed', delay: 25 } })
    await service.start()
    const idq = service.addCalculationJob(q.calc, null)
    const idc = service.addCalculationJob(c.calc, null)
    const sq = await waitForStatus(service, idq)
    const sc = await waitForStatus(service, idc)
    expect(sq.maxRetries).toBe(1)
    expect(sq.attempts).toBe(2)
    expect(sc.maxRetries).toBe(2)
    expect(sc.attempts).toBe(3)
    expect(ev.retrying.filter((p) => p.jobId === idq).map((p) => p.delayMs)).toEqual([15])
    expect(ev.retrying.filter((p) => p.jobId === idc).map((p) => p.delayMs)).toEqual([25, 25])
  })

  test('retries: 0 fails after one attempt', async () => {
    const service = tracker.create()
    const f = failing('once')
    await service.start()
    const id = service.addCalculationJob(f.calc, null, null, { retries: 0 })
    const st = await waitForStatus(service, id)
    expect(st.status).toBe('failed')
    expect(st.attempts).toBe(1)
    expect(st.errors).toHaveLength(1)
  })
})
