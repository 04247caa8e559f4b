'use strict'
// Issue 17, bug 1: when timeouts pass while the event loop is busy and app
// code then adds a job (or retries one, or registers a calculation) in the
// same tick, every timed-out attempt's signal still fires, and no worker slot
// runs a new attempt before its old one was aborted.

const { serviceTracker, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/** Blocks the event loop until Rust recorded `n` timeouts (its timer runs on its own thread). */
function busyUntilTimedOut(service, n) {
  const t0 = Date.now()
  while (service.getQueueStatistics().timeout < n) {
    if (Date.now() - t0 > 20000) throw new Error('the timeouts were never recorded')
  }
}

test.each(['addCalculationJob', 'retryJob', 'registerCalculation'])(
  'timed-out attempts are aborted before their workers run again (%s in the same tick)',
  async (trigger) => {
    const service = tracker.create({ queue: { maxWorkers: 2 } })
    let inFlight = 0
    let maxInFlight = 0
    const aborted = []
    const begin = () => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
    }
    const slow = {
      name: `slow-${trigger}`,
      timeout: 200,
      retries: 0,
      calculate: (d, c, job) =>
        new Promise((resolve) => {
          begin()
          // Ignores everything but its signal.
          job.signal.addEventListener('abort', () => {
            inFlight--
            aborted.push(`${d}#${job.attempt}`)
            resolve()
          })
        }),
    }
    const quick = {
      name: `quick-${trigger}`,
      calculate: async (d) => {
        begin()
        await new Promise(setImmediate)
        inFlight--
        return d
      },
    }
    await service.start()
    const ids = [service.addCalculationJob(slow, 'a'), service.addCalculationJob(slow, 'b')]
    let waiting = []
    if (trigger === 'registerCalculation') {
      waiting = [service.addCalculationJob(quick, 'q1'), service.addCalculationJob(quick, 'q2')]
    }
    // Both start from a microtask; the event loop is then blocked until past their timeouts.
    await new Promise(setImmediate)
    expect(inFlight).toBe(2)
    busyUntilTimedOut(service, 2)
    if (trigger === 'addCalculationJob') {
      waiting = [service.addCalculationJob(quick, 'q1'), service.addCalculationJob(quick, 'q2')]
    } else if (trigger === 'retryJob') {
      expect(service.retryJob(ids[0])).toBe(true)
      waiting = [service.addCalculationJob(quick, 'q1')]
    } else {
      service.registerCalculation({ ...quick })
    }
    await waitFor(() => waiting.every((id) => service.getJobStatus(id).status === 'completed'), { what: 'the quick jobs' })
    await waitFor(() => aborted.length >= 2, { what: 'both aborts', timeout: 2000 })
    expect(aborted.slice(0, 2).sort()).toEqual(['a#1', 'b#1'])
    expect(maxInFlight).toBeLessThanOrEqual(2)
  },
)
