'use strict'
// Issue 17, bugs 6 and 7: stop({ timeoutMs }) beyond what a Node timer can
// hold is refused, and a second stop() with a shorter deadline wins.

const { serviceTracker, waitFor, sleep, rejected, isError } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

function hanging(name) {
  const c = {
    name,
    started: 0,
    reasons: [],
    calculate: (d, ctx, job) =>
      new Promise((resolve) => {
        c.started++
        job.signal.addEventListener('abort', () => {
          c.reasons.push(job.signal.reason)
          resolve('aborted')
        })
      }),
  }
  return c
}

test('stop({ timeoutMs }) above 2^31 - 1 is refused with ERR_INVALID_ARGUMENT and stops nothing', async () => {
  const service = tracker.create()
  const calc = hanging('hang-big-timeout')
  await service.start()
  service.addCalculationJob(calc, 1)
  await waitFor(() => calc.started === 1)
  for (const timeoutMs of [2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    const e = await rejected(service.stop({ timeoutMs }))
    expect(isError(e)).toBe(true)
    expect(e.code).toBe('ERR_INVALID_ARGUMENT')
    expect(e.message).toContain('2147483647')
  }
  expect(service.getSystemStatus().status).toBe('started')
  expect(calc.reasons).toEqual([])
})

test('stop({ timeoutMs: 2^31 - 1 }) waits instead of aborting at once', async () => {
  const service = tracker.create()
  const calc = hanging('hang-max-timeout')
  await service.start()
  service.addCalculationJob(calc, 1)
  await waitFor(() => calc.started === 1)
  const stopping = service.stop({ timeoutMs: 2 ** 31 - 1 })
  await sleep(50)
  expect(calc.reasons).toEqual([])
  expect(service.getSystemStatus().status).toBe('stopping')
  const second = service.stop({ timeoutMs: 0 })
  expect(await stopping).toEqual({ aborted: 1, pending: 1, dropped: 1 })
  expect(await second).toEqual({ aborted: 1, pending: 1, dropped: 1 })
  expect(calc.reasons.map((r) => r.code)).toEqual(['ERR_SERVICE_STOPPED'])
})

test('a second stop() with a shorter timeout ends the stop by its own deadline', async () => {
  const service = tracker.create()
  const calc = hanging('hang-second-stop')
  await service.start()
  service.addCalculationJob(calc, 1)
  await waitFor(() => calc.started === 1)
  const first = service.stop({ timeoutMs: 60000 })
  await sleep(10)
  // A second Ctrl-C: stop now. (jest's 5 s limit fails the test if it waits the first minute.)
  const summary = await service.stop({ timeoutMs: 0 })
  expect(summary).toEqual({ aborted: 1, pending: 1, dropped: 1 })
  expect(await first).toEqual(summary)
  expect(service.getSystemStatus().status).toBe('stopped')
  // A longer second deadline does not extend a shorter first one.
  const s2 = tracker.create()
  const c2 = hanging('hang-longer-second')
  await s2.start()
  s2.addCalculationJob(c2, 1)
  await waitFor(() => c2.started === 1)
  const short = s2.stop({ timeoutMs: 20 })
  const long = s2.stop({ timeoutMs: 60000 })
  expect(await long).toEqual({ aborted: 1, pending: 1, dropped: 1 })
  expect(await short).toEqual({ aborted: 1, pending: 1, dropped: 1 })
})
