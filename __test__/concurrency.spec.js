'use strict'
const { serviceTracker, waitForAll, sleep, deferred, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

function inFlightCalc(name, ms) {
  const c = {
    name,
    inFlight: 0,
    max: 0,
    runs: 0,
    async calculate(data) {
      c.inFlight++
      c.runs++
      c.max = Math.max(c.max, c.inFlight)
      try {
        await sleep(typeof ms === 'function' ? ms(data) : ms)
        return data
      } finally {
        c.inFlight--
      }
    },
  }
  return c
}

describe('concurrency', () => {
  test('never more than maxWorkers (3) handlers in flight across 30 jobs', async () => {
    const service = tracker.create({ queue: { maxWorkers: 3 } })
    const calc = inFlightCalc('conc', (i) => 5 + (i % 4) * 5)
    const ids = []
    for (let i = 0; i < 30; i++) ids.push(service.addCalculationJob(calc, i))
    const samples = []
    const sampler = setInterval(() => {
      const s = service.getQueueStatistics()
      samples.push({ active: s.activeWorkers, running: s.running, util: s.workerUtilization, inFlight: calc.inFlight })
    }, 2)
    try {
      await service.start()
      const st = await waitForAll(service, ids)
      expect(st.every((s) => s.status === 'completed')).toBe(true)
    } finally {
      clearInterval(sampler)
    }
    expect(calc.runs).toBe(30)
    expect(calc.max).toBe(3)
    expect(samples.length).toBeGreaterThan(0)
    for (const s of samples) {
      expect(s.active).toBeLessThanOrEqual(3)
      expect(s.running).toBe(s.active)
      expect(s.util).toBeCloseTo(s.active / 3, 3)
    }
    expect(samples.some((s) => s.active === 3)).toBe(true)
    const end = service.getQueueStatistics()
    expect(end.activeWorkers).toBe(0)
    expect(end.workerUtilization).toBe(0)
    expect(end.completed).toBe(30)
  })

  test('activeWorkers reports exactly the handlers held open', async () => {
    const service = tracker.create({ queue: { maxWorkers: 3 } })
    const gates = []
    const calc = {
      name: 'gated',
      calculate: () => {
        const g = deferred()
        gates.push(g)
        return g.promise
      },
    }
    const ids = Array.from({ length: 5 }, (_, i) => service.addCalculationJob(calc, i))
    await service.start()
    await waitFor(() => gates.length === 3)
    await sleep(30)
    expect(gates.length).toBe(3) // no 4th handler while 3 are held
    let s = service.getQueueStatistics()
    expect(s.activeWorkers).toBe(3)
    expect(s.running).toBe(3)
    expect(s.pending).toBe(2)
    expect(s.workerUtilization).toBeCloseTo(1, 5)
    gates[0].resolve(0)
    await waitFor(() => gates.length === 4)
    s = service.getQueueStatistics()
    expect(s.activeWorkers).toBe(3)
    expect(s.completed).toBe(1)
    expect(s.pending).toBe(1)
    for (let i = 1; i < 4; i++) gates[i].resolve(i)
    await waitFor(() => gates.length === 5)
    gates[4].resolve(4)
    await waitForAll(service, ids)
    expect(service.getQueueStatistics().activeWorkers).toBe(0)
  })

  test('maxWorkers 1 runs jobs strictly one after another', async () => {
    const service = tracker.create({ queue: { maxWorkers: 1 } })
    const calc = inFlightCalc('one', 3)
    const ids = Array.from({ length: 10 }, (_, i) => service.addCalculationJob(calc, i))
    await service.start()
    await waitForAll(service, ids)
    expect(calc.max).toBe(1)
    expect(calc.runs).toBe(10)
  })

  test('a large maxWorkers runs all due jobs at once', async () => {
    const service = tracker.create({ queue: { maxWorkers: 50 } })
    const calc = inFlightCalc('wide', 40)
    const ids = Array.from({ length: 30 }, (_, i) => service.addCalculationJob(calc, i))
    await service.start()
    await waitForAll(service, ids)
    expect(calc.max).toBe(30)
    expect(service.getQueueStatistics().maxWorkers).toBe(50)
  })

  test('two services have separate worker limits', async () => {
    const a = tracker.create({ queue: { maxWorkers: 2 } })
    const b = tracker.create({ queue: { maxWorkers: 2 } })
    const ca = inFlightCalc('a', 20)
    const cb = inFlightCalc('b', 20)
    const ida = Array.from({ length: 6 }, (_, i) => a.addCalculationJob(ca, i))
    const idb = Array.from({ length: 6 }, (_, i) => b.addCalculationJob(cb, i))
    await Promise.all([a.start(), b.start()])
    await waitForAll(a, ida)
    await waitForAll(b, idb)
    expect(ca.max).toBe(2)
    expect(cb.max).toBe(2)
    expect(a.getQueueStatistics().completed).toBe(6)
    expect(b.getQueueStatistics().completed).toBe(6)
  })
})
