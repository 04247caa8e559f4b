'use strict'
const { UnrecoverableError } = require('..')
const { serviceTracker, waitForStatus, recordEvents, sleep } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const OPTS = { retries: 5, backoff: { type: 'fixed', delay: 10 } }

describe('UnrecoverableError', () => {
  test('is exported, an Error subclass with its own name, message and cause', () => {
    expect(typeof UnrecoverableError).toBe('function')
    const cause = new Error('root')
    const e = new UnrecoverableError('no such league', { cause })
    expect(e).toBeInstanceOf(Error)
    expect(e).toBeInstanceOf(UnrecoverableError)
    expect(e.name).toBe('UnrecoverableError')
    expect(e.message).toBe('no such league')
    expect(e.cause).toBe(cause)
    expect(typeof e.stack).toBe('string')
  })

  test('thrown synchronously: fails at once with attempts 1 despite retries', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    let runs = 0
    const calc = {
      name: 'unrecoverable-sync',
      calculate() {
        runs++
        throw new UnrecoverableError('give up')
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, OPTS)
    const st = await waitForStatus(service, id)
    await sleep(50) // no retry shows up later either
    expect(runs).toBe(1)
    expect(st.status).toBe('failed')
    expect(st.attempts).toBe(1)
    expect(st.maxRetries).toBe(5)
    expect(st.error).toMatchObject({ name: 'UnrecoverableError', message: 'give up', attempt: 1 })
    expect(st.error.stack).toContain('give up')
    expect(service.getJobStatus(id).status).toBe('failed')
    expect(ev.retrying).toHaveLength(0)
    expect(ev.failed).toHaveLength(1)
    expect(ev.failed[0]).toMatchObject({ jobId: id, attempt: 1, error: { name: 'UnrecoverableError' } })
  })

  test('rejected from an async handler: same', async () => {
    const service = tracker.create()
    let runs = 0
    const calc = {
      name: 'unrecoverable-async',
      async calculate() {
        runs++
        await sleep(5)
        throw new UnrecoverableError('async give up')
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, OPTS)
    const st = await waitForStatus(service, id)
    await sleep(40)
    expect(runs).toBe(1)
    expect(st).toMatchObject({ status: 'failed', attempts: 1, error: { name: 'UnrecoverableError', message: 'async give up' } })
  })

  test('a subclass of UnrecoverableError is unrecoverable too', async () => {
    class NotFound extends UnrecoverableError {
      constructor(m) {
        super(m)
        this.name = 'NotFound'
        this.code = 'E_NOT_FOUND'
      }
    }
    const service = tracker.create()
    let runs = 0
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'sub',
        calculate() {
          runs++
          throw new NotFound('404')
        },
      },
      null,
      null,
      OPTS,
    )
    const st = await waitForStatus(service, id)
    await sleep(40)
    expect(runs).toBe(1)
    expect(st).toMatchObject({ status: 'failed', attempts: 1, error: { name: 'NotFound', code: 'E_NOT_FOUND', message: '404' } })
  })

  test('an unrecoverable error on a later attempt stops the retries there', async () => {
    const service = tracker.create()
    const ev = recordEvents(service)
    const calc = {
      name: 'second-fatal',
      calculate(d, c, job) {
        if (job.attempt === 1) throw new Error('transient')
        throw new UnrecoverableError('fatal now')
      },
    }
    await service.start()
    const id = service.addCalculationJob(calc, null, null, OPTS)
    const st = await waitForStatus(service, id)
    await sleep(40)
    expect(st.status).toBe('failed')
    expect(st.attempts).toBe(2)
    expect(st.errors.map((e) => e.name)).toEqual(['Error', 'UnrecoverableError'])
    expect(ev.retrying).toHaveLength(1)
    expect(ev.failed).toHaveLength(1)
    expect(service.getJobStatus(id).attempts).toBe(2)
  })

  test('an ordinary Error with the same retries is retried (control)', async () => {
    const service = tracker.create()
    let runs = 0
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'ordinary',
        calculate() {
          runs++
          throw new Error('again')
        },
      },
      null,
      null,
      { retries: 2, backoff: { type: 'fixed', delay: 5 } },
    )
    const st = await waitForStatus(service, id)
    expect(runs).toBe(3)
    expect(st.attempts).toBe(3)
  })

  test('retryJob re-runs an unrecoverably failed job once', async () => {
    const service = tracker.create()
    let runs = 0
    await service.start()
    const id = service.addCalculationJob(
      {
        name: 'retry-unrecoverable',
        calculate() {
          runs++
          if (runs === 1) throw new UnrecoverableError('first')
          return 'second'
        },
      },
      null,
      null,
      OPTS,
    )
    await waitForStatus(service, id, 'failed')
    expect(service.retryJob(id)).toBe(true)
    const st = await waitForStatus(service, id, 'completed')
    expect(st.result).toBe('second')
    expect(st.attempts).toBe(1)
    expect(runs).toBe(2)
  })
})
