'use strict'
const { serviceTracker, waitForStatus, waitForAll, sleep, deferred, never } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const FAST_CLEANUP = { queue: { cleanupInterval: 100, maxJobAge: 50 } }

describe('cleanup of finished jobs', () => {
  // On the manual clock: with maxJobAge 50 a finished job is pruned so soon
  // that a poll on a busy machine could miss it finished.
  test('finished jobs disappear after a few hundred ms; a pending delayed job stays', async () => {
    const service = tracker.create({ ...FAST_CLEANUP, clock: 'manual' })
    await service.start()
    const ids = {
      completed: service.addCalculationJob({ name: 'ok', calculate: () => 1 }, null),
      failed: service.addCalculationJob(
        {
          name: 'bad',
          calculate() {
            throw new Error('x')
          },
        },
        null,
        null,
        { retries: 0 },
      ),
      timeout: service.addCalculationJob({ name: 'hang', calculate: never }, null, null, { timeout: 20, retries: 0 }),
      cancelled: service.addCalculationJob({ name: 'later', calculate: () => 1 }, null, null, { delay: 5000 }),
    }
    const delayed = service.addCalculationJob({ name: 'delayed', calculate: () => 1 }, null, null, { delay: 600000 })
    expect(service.cancelJob(ids.cancelled)).toBe(true)
    await waitForAll(service, [ids.completed, ids.failed])
    await service.advanceTime(20, { settleMs: 0 })
    const finished = Object.values(ids).map((id) => service.getJobStatus(id))
    expect(finished.map((s) => s.status)).toEqual(['completed', 'failed', 'timeout', 'cancelled'])
    expect(service.getQueueStatistics().total).toBe(5)
    await service.advanceTime(200)
    expect(Object.values(ids).map((id) => service.getJobStatus(id))).toEqual([null, null, null, null])
    const st = service.getJobStatus(delayed)
    expect(st).not.toBeNull()
    expect(st.status).toBe('pending')
    const s = service.getQueueStatistics()
    expect(s).toMatchObject({ total: 1, pending: 1, completed: 0, failed: 0, timeout: 0, cancelled: 0 })
    // pruned ids are unknown now
    expect(service.cancelJob(ids.completed)).toBe(false)
    expect(service.retryJob(ids.failed)).toBe(false)
  })

  test('a job that is still running is not pruned', async () => {
    const service = tracker.create({ ...FAST_CLEANUP, clock: 'manual' })
    const gate = deferred()
    await service.start()
    const id = service.addCalculationJob({ name: 'long', calculate: () => gate.promise }, null, null, { timeout: 0 })
    await service.advanceTime(350, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('running')
    gate.resolve('done')
    const st = await waitForStatus(service, id)
    expect(st.result).toBe('done')
    await service.advanceTime(150)
    expect(service.getJobStatus(id)).toBeNull()
  })

  test('a retried job is not pruned while it is pending or running again', async () => {
    const service = tracker.create({ ...FAST_CLEANUP, clock: 'manual' })
    const gate = deferred()
    let runs = 0
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'retry-me',
        calculate() {
          runs++
          if (runs === 1) throw new Error('first')
          return gate.promise
        },
      },
      null,
      null,
      { retries: 0 },
    )
    await waitForStatus(service, id, 'failed')
    expect(service.retryJob(id)).toBe(true)
    await service.advanceTime(300, { settleMs: 0 })
    expect(service.getJobStatus(id).status).toBe('running')
    gate.resolve('second')
    expect((await waitForStatus(service, id)).result).toBe('second')
  })

  test('with the default maxJobAge finished jobs are kept', async () => {
    const service = tracker.create({ queue: { cleanupInterval: 50 } })
    await service.start()
    const id = service.addCalculationJob({ name: 'kept', calculate: () => 'kept' }, null)
    await waitForStatus(service, id)
    await sleep(250)
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', result: 'kept' })
    expect(service.getQueueStatistics().total).toBe(1)
  })

  test('a job younger than maxJobAge survives cleanup passes (manual clock)', async () => {
    const service = tracker.create({ queue: { cleanupInterval: 50, maxJobAge: 600 }, clock: 'manual' })
    await service.start()
    const id = service.addCalculationJob({ name: 'young', calculate: () => 1 }, null)
    await service.advanceTime(0)
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed', finishedAt: service.now() })
    await service.advanceTime(599) // eleven passes, but the job is younger than 600 ms
    expect(service.getJobStatus(id)).toMatchObject({ status: 'completed' })
    await service.advanceTime(51) // the next pass after it turned 600 ms old
    expect(service.getJobStatus(id)).toBeNull()
  })
})
