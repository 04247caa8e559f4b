'use strict'
const { serviceTracker, sleep, recordEvents, never } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const T0 = Date.UTC(2030, 0, 1) // an arbitrary start, far from the wall clock

function recorder(name) {
  const c = {
    name,
    runs: [],
    calculate(data, ctx, job) {
      c.runs.push({ data, attempt: job.attempt })
      return data
    },
  }
  return c
}

describe('manual clock', () => {
  test("clock: 'manual' starts near the wall clock and does not move by itself", async () => {
    const service = tracker.create({ clock: 'manual' })
    const t = service.now()
    expect(Math.abs(t - Date.now())).toBeLessThan(5000)
    await sleep(30)
    expect(service.now()).toBe(t)
    await service.advanceTime(1234)
    expect(service.now()).toBe(t + 1234)
  })

  test('clock: { type: manual, now } starts there (number or Date)', () => {
    expect(tracker.create({ clock: { type: 'manual', now: T0 } }).now()).toBe(T0)
    expect(tracker.create({ clock: { type: 'manual', now: new Date(T0 + 5) } }).now()).toBe(T0 + 5)
    expect(tracker.create({ clock: { type: 'manual', now: 0 } }).now()).toBe(0)
  })

  test('a system-clock service reports the wall clock', () => {
    const n = tracker.create().now()
    expect(Math.abs(n - Date.now())).toBeLessThan(1000)
  })

  test('a job delayed by 60000 ms runs only after advanceTime(60000)', async () => {
    const service = tracker.create({ clock: 'manual' })
    const calc = recorder('delayed')
    await service.start()
    const start = service.now()
    const id = service.addCalculationJob(calc, 'hour later', null, { delay: 60000 })
    expect(service.getJobStatus(id)).toMatchObject({ status: 'pending', createdAt: start, runAt: start + 60000 })
    await sleep(30)
    expect(calc.runs).toEqual([])
    await service.advanceTime(59999)
    expect(calc.runs).toEqual([])
    expect(service.getJobStatus(id).status).toBe('pending')
    await service.advanceTime(1)
    expect(calc.runs).toEqual([{ data: 'hour later', attempt: 1 }])
    const st = service.getJobStatus(id)
    expect(st).toMatchObject({ status: 'completed', result: 'hour later', startedAt: start + 60000, finishedAt: start + 60000 })
  })

  test('runAt (epoch ms or Date) on the manual clock', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const calc = recorder('at')
    await service.start()
    const a = service.addCalculationJob(calc, 'a', null, { runAt: T0 + 60000 })
    const b = service.addCalculationJob(calc, 'b', null, { runAt: new Date(T0 + 30000) })
    const past = service.addCalculationJob(calc, 'past', null, { runAt: T0 - 1000 })
    expect(service.getJobStatus(a).runAt).toBe(T0 + 60000)
    expect(service.getJobStatus(b).runAt).toBe(T0 + 30000)
    await service.advanceTime(0)
    expect(calc.runs.map((r) => r.data)).toEqual(['past'])
    await service.advanceTime(30000)
    expect(calc.runs.map((r) => r.data)).toEqual(['past', 'b'])
    await service.advanceTime(30000)
    expect(calc.runs.map((r) => r.data)).toEqual(['past', 'b', 'a'])
    expect(service.getJobStatus(a).status).toBe('completed')
  })

  test('the later of runAt and delay wins', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const calc = recorder('both')
    await service.start()
    const id = service.addCalculationJob(calc, 'x', null, { runAt: T0 + 1000, delay: 5000 })
    expect(service.getJobStatus(id).runAt).toBe(T0 + 5000)
    await service.advanceTime(4999)
    expect(calc.runs).toHaveLength(0)
    await service.advanceTime(1)
    expect(calc.runs).toHaveLength(1)
  })

  test('advanceTime runs every job that became due on the way, in due order', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { maxWorkers: 1 } })
    const calc = recorder('steps')
    await service.start()
    for (const d of [300, 100, 200]) service.addCalculationJob(calc, d, null, { delay: d })
    service.addCalculationJob(calc, 'later', null, { delay: 1000 })
    await service.advanceTime(350)
    expect(calc.runs.map((r) => r.data)).toEqual([100, 200, 300])
    expect(service.now()).toBe(T0 + 350)
  })

  test('advanceTime resolves after async handlers that became due have settled', async () => {
    const service = tracker.create({ clock: 'manual' })
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'async',
        async calculate() {
          await Promise.resolve()
          await new Promise((r) => setImmediate(r))
          return 'settled'
        },
      },
      null,
      null,
      { delay: 1000 },
    )
    await service.advanceTime(1000)
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', result: 'settled' })
  })

  test('retries with backoff follow the manual clock', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const ev = recordEvents(service)
    const runs = []
    const calc = {
      name: 'flaky',
      calculate(d, c, job) {
        runs.push([job.attempt, service.now()])
        if (job.attempt < 3) throw new Error(`fail ${job.attempt}`)
        return 'third time'
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, { retries: 3, backoff: { type: 'exponential', delay: 10000 } })
    await service.advanceTime(0)
    expect(runs).toEqual([[1, T0]])
    let st = service.getJobStatus(id)
    expect(st).toMatchObject({ status: 'pending', attempts: 1, runAt: T0 + 10000 })
    await sleep(50) // wall time does not matter
    await service.advanceTime(9999)
    expect(runs).toHaveLength(1)
    await service.advanceTime(1)
    expect(runs).toEqual([
      [1, T0],
      [2, T0 + 10000],
    ])
    expect(service.getJobStatus(id).runAt).toBe(T0 + 30000)
    await service.advanceTime(19999)
    expect(runs).toHaveLength(2)
    await service.advanceTime(1)
    expect(runs).toEqual([
      [1, T0],
      [2, T0 + 10000],
      [3, T0 + 30000],
    ])
    st = service.getJobStatus(id)
    expect(st).toMatchObject({ status: 'completed', result: 'third time', attempts: 3 })
    expect(ev.retrying.map((p) => p.delayMs)).toEqual([10000, 20000])
  })

  test('timeouts follow the manual clock, not the wall clock', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const ev = recordEvents(service)
    let signal
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'hang',
        calculate(d, c, job) {
          signal = job.signal
          return never()
        },
      },
      null,
      null,
      { timeout: 5000, retries: 0 },
    )
    await service.advanceTime(0)
    await sleep(60) // wall time passing must not time it out
    expect(service.getJobStatus(id).status).toBe('running')
    await service.advanceTime(4999)
    expect(service.getJobStatus(id).status).toBe('running')
    expect(signal.aborted).toBe(false)
    await service.advanceTime(1)
    const st = service.getJobStatus(id)
    expect(st).toMatchObject({ status: 'timeout', finishedAt: T0 + 5000 })
    expect(signal.aborted).toBe(true)
    expect(signal.reason.name).toBe('TimeoutError')
    expect(ev.timedOut).toHaveLength(1)
  })

  test('a timeout then a retry after backoff, all in one advanceTime', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 } })
    const runs = []
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'slow-first',
        calculate(d, c, job) {
          runs.push([job.attempt, service.now()])
          return job.attempt === 1 ? never() : 'second'
        },
      },
      null,
      null,
      { timeout: 1000, retries: 1, backoff: { type: 'fixed', delay: 500 } },
    )
    await service.advanceTime(0)
    await service.advanceTime(1500)
    expect(runs).toEqual([
      [1, T0],
      [2, T0 + 1500],
    ])
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', attempts: 2, result: 'second' })
    expect(service.getJobStatus(id).errors[0]).toMatchObject({ name: 'TimeoutError', attempt: 1 })
  })

  test('cleanup follows the manual clock', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: T0 }, queue: { cleanupInterval: 1000, maxJobAge: 500 } })
    await service.start()
    const id = service.addCalculationJob({ name: 'x', calculate: () => 1 }, null)
    const keep = service.addCalculationJob({ name: 'x', calculate: () => 1 }, null, null, { delay: 100000 })
    await service.advanceTime(0)
    expect(service.getJobStatus(id).status).toBe('completed')
    await sleep(50)
    await service.advanceTime(999)
    expect(service.getJobStatus(id)).not.toBeNull()
    await service.advanceTime(1001)
    expect(service.getJobStatus(id)).toBeNull()
    expect(service.getJobStatus(keep).status).toBe('pending')
  })

  test('a job added before start() on a manual clock runs at start without advancing', async () => {
    const service = tracker.create({ clock: 'manual' })
    const calc = recorder('early')
    const id = service.addCalculationJob(calc, 1)
    await service.start()
    // start() hands out due jobs; give the dispatcher a turn
    await service.advanceTime(0)
    expect(service.getJobStatus(id).status).toBe('completed')
  })
})
