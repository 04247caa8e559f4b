'use strict'
// Synchronous (CPU-bound) handlers on the main thread: the dispatcher gives the
// event loop back between batches once a turn's handlers ran for ~10 ms, so
// timers and I/O (Strapi's requests) are not held up for 16 batches at a time.
const { serviceTracker, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

function busy(ms) {
  const end = performance.now() + ms
  while (performance.now() < end);
}

test('sync handlers of 5 ms: at most two batches of maxWorkers jobs run per event-loop turn', async () => {
  const service = tracker.create({ storage: { type: 'memory' }, queue: { maxWorkers: 3, maxQueueSize: 1000 } })
  let ran = 0
  const calc = { name: 'cpu', calculate: () => (busy(5), (ran += 1)) }
  const jobs = Array.from({ length: 90 }, (_, i) => ({ calculation: calc, data: i }))
  service.addCalculationJobs(jobs)
  // One check-phase callback per event-loop turn: the jobs run between two of them.
  const perTurn = []
  let last = 0
  let done = false
  const turn = () => {
    perTurn.push(ran - last)
    last = ran
    if (!done) setImmediate(turn)
  }
  setImmediate(turn)
  await service.start()
  await waitFor(() => ran === 90, { timeout: 20000, what: "90 jobs" })
  done = true
  // Each batch (3 jobs) takes >= 15 ms, past the 10 ms budget: one batch per
  // turn, two when a turn's first pump came from a settle (before: 16 batches, 48 jobs).
  expect(Math.max(...perTurn)).toBeLessThanOrEqual(6)
  expect(perTurn.filter((n) => n > 0).length).toBeGreaterThanOrEqual(15)
})
