'use strict'
// The JS bridge's numbers (abort reasons, outcome kinds, flag bits, tuple
// sizes) are defined once in Rust (src/wire.rs) and exported as
// `native.wire()`; index.js reads them at load. This checks both sides agree:
// the table is the one the Rust test `wire::tests::the_wire_numbers_are_the_
// documented_ones` pins, index.js refuses a binary that speaks another, and
// every abort reason and outcome kind does what its name says end to end.

const { serviceTracker } = require('./helpers')

const native = require('../load-binding.js').loadBinding()

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

// The same table as src/wire.rs's test.
const WIRE = {
  abort: { timeout: 0, cancel: 1, stop: 2 },
  outcome: { error: 0, ok: 1, unrecoverable: 2 },
  flag: { news: 1, emitCompleted: 2, activeShift: 2 },
  takeFields: 7,
  outcomeFields: 4,
  abortFields: 3,
}

/** What loading index.js throws over a binding whose wire() returns `wire` (undefined: it loads). */
function loadWith(wire) {
  let thrown
  jest.isolateModules(() => {
    jest.doMock('../load-binding.js', () => ({ ...jest.requireActual('../load-binding.js'), loadBinding: () => ({ ...native, wire: () => wire }) }))
    try {
      require('../index.js')
    } catch (e) {
      thrown = e
    }
  })
  jest.dontMock('../load-binding.js')
  return thrown
}

describe('the bridge contract', () => {
  test('wire() returns the numbers Rust defines', () => {
    expect(native.wire()).toEqual(WIRE)
  })

  test('index.js loads over the real binding and refuses a binary whose bridge differs', () => {
    expect(loadWith(native.wire())).toBeUndefined()
    const changed = [
      { ...WIRE, abort: { ...WIRE.abort, evicted: 3 } },
      { ...WIRE, abort: { ...WIRE.abort, stop: 1 } },
      { ...WIRE, outcome: { ...WIRE.outcome, unrecoverable: 0 } },
      { ...WIRE, flag: { ...WIRE.flag, emitCompleted: 4 } },
      { ...WIRE, takeFields: 8 },
      { ...WIRE, outcomeFields: 5 },
    ]
    for (const w of changed) {
      const e = loadWith(w)
      expect(e).toBeInstanceOf(Error)
      expect(e.code).toBe('ERR_NATIVE_ADDON')
      expect(e.message).toMatch(/bridge does not match/)
    }
  })

  test('each abort reason reaches the handler as its own reason', async () => {
    const service = tracker.create({ clock: 'manual' })
    const reasons = {}
    const calc = {
      name: 'waits',
      calculate: (data, ctx, job) =>
        new Promise((resolve, reject) =>
          job.signal.addEventListener('abort', () => {
            reasons[data] = job.signal.reason
            reject(job.signal.reason)
          }),
        ),
    }
    await service.start()
    service.addCalculationJob(calc, 'timeout', null, { timeout: 1000 })
    const cancelled = service.addCalculationJob(calc, 'cancel')
    await service.advanceTime(0)
    expect(service.cancelJob(cancelled)).toBe(true)
    await service.advanceTime(1000)
    service.addCalculationJob(calc, 'stop')
    await service.advanceTime(0)
    await service.stop({ timeoutMs: 0 })
    expect(reasons.timeout).toMatchObject({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT' })
    expect(reasons.cancel).toMatchObject({ name: 'AbortError', code: 'ERR_JOB_CANCELLED' })
    expect(reasons.stop).toMatchObject({ name: 'AbortError', code: 'ERR_SERVICE_STOPPED' })
  })

  test('each outcome kind is applied as its kind', async () => {
    const { UnrecoverableError } = require('../index.js')
    const service = tracker.create({ clock: 'manual' })
    const calc = {
      name: 'outcomes',
      calculate: (kind) => {
        if (kind === 'ok') return 'done'
        if (kind === 'error') throw new Error('again')
        throw new UnrecoverableError('never again')
      },
    }
    await service.start()
    const ok = service.addCalculationJob(calc, 'ok', null, { retries: 1 })
    const error = service.addCalculationJob(calc, 'error', null, { retries: 1, backoff: { type: 'fixed', delay: 60000 } })
    const unrecoverable = service.addCalculationJob(calc, 'unrecoverable', null, { retries: 1 })
    await service.advanceTime(0)
    expect(service.getJobStatus(ok)).toMatchObject({ status: 'completed', result: 'done', attempts: 1 })
    expect(service.getJobStatus(error)).toMatchObject({ status: 'pending', attempts: 1, error: { message: 'again' } })
    expect(service.getJobStatus(unrecoverable)).toMatchObject({ status: 'failed', attempts: 1, error: { name: 'UnrecoverableError' } })
  })
})
