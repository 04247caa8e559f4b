'use strict'
// Issue 17, bug 0: handlers (and event listeners) run in one clean async
// context, never in the context of whoever created the service, added the
// job, retried it or advanced the clock.

const { AsyncLocalStorage } = require('node:async_hooks')
const { serviceTracker, waitFor, waitForAll } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const als = new AsyncLocalStorage()

function recorder(name, seen, extra = {}) {
  return {
    name,
    ...extra,
    calculate(data, ctx, job) {
      seen.push([data, als.getStore()])
      if (data === 'fail') throw new Error('boom')
      // The signal's listeners run in the same context.
      job.signal.addEventListener('abort', () => seen.push(['abort', als.getStore()]))
      return data === 'hang' ? new Promise(() => {}) : data
    },
  }
}

test('immediate, delayed and retried jobs run outside the adding request', async () => {
  const seen = []
  const service = als.run('constructor', () => tracker.create({ queue: { maxWorkers: 4 } }))
  const calc = recorder('ctx', seen, { retries: 0 })
  await als.run('start', () => service.start())
  const ids = als.run('request', () => [
    service.addCalculationJob(calc, 'now'),
    service.addCalculationJob(calc, 'later', null, { delay: 20 }),
    ...service.addCalculationJobs([{ calculation: calc, data: 'batch' }]),
    service.addCalculationJob(calc, 'fail'),
  ])
  await waitForAll(service, ids)
  expect(als.run('retry', () => service.retryJob(ids[3]))).toBe(true)
  await waitFor(() => seen.length === 5)
  expect(seen.map((s) => s[0]).sort()).toEqual(['batch', 'fail', 'fail', 'later', 'now'])
  expect(seen.filter((s) => s[1] !== undefined)).toEqual([])
})

test('event listeners and abort listeners see the clean context too', async () => {
  const seen = []
  const events = []
  const service = als.run('constructor', () => tracker.create())
  for (const e of ['completed', 'failed', 'cancelled', 'timedOut']) service.on(e, () => events.push([e, als.getStore()]))
  const calc = recorder('ctx-events', seen, { retries: 0 })
  await service.start()
  const [ok, bad, hung, slow] = als.run('request', () => [
    service.addCalculationJob(calc, 'ok'),
    service.addCalculationJob(calc, 'fail'),
    service.addCalculationJob(calc, 'hang'),
    service.addCalculationJob(calc, 'hang', null, { timeout: 30 }),
  ])
  await waitForAll(service, [ok, bad])
  await waitFor(() => seen.length === 4)
  als.run('cancel', () => service.cancelJob(hung))
  await waitForAll(service, [hung, slow])
  await waitFor(() => events.length === 4 && seen.length === 6)
  expect(events.map((e) => e[0]).sort()).toEqual(['cancelled', 'completed', 'failed', 'timedOut'])
  expect(events.filter((e) => e[1] !== undefined)).toEqual([])
  expect(seen.filter((s) => s[1] !== undefined)).toEqual([])
})

test('on the manual clock, advanceTime inside a context does not leak it', async () => {
  const seen = []
  const service = als.run('constructor', () => tracker.create({ clock: 'manual' }))
  const calc = recorder('ctx-manual', seen)
  await service.start()
  als.run('request', () => {
    service.addCalculationJob(calc, 'now')
    service.addCalculationJob(calc, 'later', null, { delay: 60000 })
    service.scheduleCalculationJob(calc, 'scheduled', {}, service.now() + 90000)
  })
  await als.run('advance', () => service.advanceTime(120000))
  expect(seen.map((s) => s[0])).toEqual(['now', 'later', 'scheduled'])
  expect(seen.filter((s) => s[1] !== undefined)).toEqual([])
})
