'use strict'
// getSystemStatus().resources: the process's resource usage (the seed's
// "System resource usage"): memory, event-loop delay, CPU.
const { serviceTracker } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

test('getSystemStatus() reports RSS, heap, event-loop delay percentiles and CPU use', async () => {
  const s = tracker.create()
  await s.start()
  // The sampler runs from start(); its first sample only sets its baseline.
  await new Promise((r) => setTimeout(r, 50))
  // Block the event loop for 150 ms: the delay histogram must see it.
  const until = Date.now() + 150
  while (Date.now() < until) {}
  await new Promise((r) => setTimeout(r, 60))
  const { resources } = s.getSystemStatus()
  expect(resources.memory.rss).toBeGreaterThan(0)
  expect(resources.memory.heapUsed).toBeGreaterThan(0)
  expect(resources.memory.heapTotal).toBeGreaterThanOrEqual(resources.memory.heapUsed)
  expect(resources.eventLoopDelayMs.max).toBeGreaterThanOrEqual(100)
  expect(resources.eventLoopDelayMs.p99).toBeGreaterThanOrEqual(resources.eventLoopDelayMs.p50)
  expect(resources.cpu.userMs + resources.cpu.systemMs).toBeGreaterThan(0)
  // it just spun for 150 ms
  expect(resources.cpu.percent).toBeGreaterThan(0)
})
