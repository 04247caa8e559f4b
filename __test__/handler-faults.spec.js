'use strict'
const { serviceTracker, waitForStatus, waitForAll, waitFor, sleep, never, runFixture } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

/**
 * Runs one job with `calculate` (no retries, short timeout) and returns its
 * final status. On the manual clock: however late a busy machine delivers the
 * outcome, it is not a timeout; `advanceMs` moves the clock on once the job runs.
 */
async function runOne(calculate, options = {}, advanceMs = 0) {
  const service = tracker.create({ clock: 'manual' })
  await service.start()
  const id = service.addCalculationJob({ name: 'fault', calculate }, { in: 1 }, null, { retries: 0, timeout: 200, ...options })
  if (advanceMs > 0) {
    await waitFor(() => service.getJobStatus(id).status !== 'pending')
    await service.advanceTime(advanceMs, { settleMs: 0 })
  }
  const st = await waitForStatus(service, id)
  return { st, service, id }
}

describe('handler faults', () => {
  test('a handler that throws synchronously: failed, with name, message and stack', async () => {
    class ParseError extends Error {
      constructor(m) {
        super(m)
        this.name = 'ParseError'
        this.code = 'E_PARSE'
      }
    }
    const { st } = await runOne(() => {
      throw new ParseError('bad input at 3')
    })
    expect(st.status).toBe('failed')
    expect(st.attempts).toBe(1)
    expect(st.error).toMatchObject({ name: 'ParseError', message: 'bad input at 3', code: 'E_PARSE', attempt: 1 })
    expect(st.error.stack).toContain('bad input at 3')
  })

  test('an async handler that throws after an await: failed', async () => {
    const { st } = await runOne(async () => {
      await sleep(5)
      throw new RangeError('too far')
    })
    expect(st.status).toBe('failed')
    expect(st.error).toMatchObject({ name: 'RangeError', message: 'too far' })
  })

  test('a non-string error code is not recorded as code', async () => {
    const { st } = await runOne(() => {
      const e = new Error('numeric code')
      e.code = 42
      throw e
    })
    expect(st.error.message).toBe('numeric code')
    expect(st.error.code).toBeUndefined()
  })

  test.each([
    ['a string', 'boom', 'a non-Error was thrown: boom'],
    ['a plain object', { reason: 'nope', n: 1 }, 'a non-Error was thrown: {"reason":"nope","n":1}'],
    ['undefined', undefined, 'a non-Error was thrown: undefined'],
    ['null', null, 'a non-Error was thrown: null'],
    ['a number', 42, 'a non-Error was thrown: 42'],
  ])('rejecting with %s: failed with a NonError describing it', async (_, value, message) => {
    const { st } = await runOne(() => Promise.reject(value))
    expect(st.status).toBe('failed')
    expect(st.error).toMatchObject({ name: 'NonError', message, attempt: 1 })
  })

  test('throwing a string synchronously: failed with a NonError', async () => {
    const { st } = await runOne(() => {
      // eslint-disable-next-line no-throw-literal
      throw 'sync string'
    })
    expect(st.error).toMatchObject({ name: 'NonError', message: 'a non-Error was thrown: sync string' })
  })

  test('rejecting with a non-serializable object (cycle, symbol) still records a message', async () => {
    const o = { a: 1 }
    o.self = o
    const a = await runOne(() => Promise.reject(o))
    expect(a.st.status).toBe('failed')
    expect(a.st.error.name).toBe('NonError')
    expect(typeof a.st.error.message).toBe('string')
    const b = await runOne(() => Promise.reject(Symbol('why')))
    expect(b.st.error.message).toContain('Symbol(why)')
  })

  test('an Error whose message getter throws: failed with a generic description', async () => {
    const { st } = await runOne(() => {
      const e = new Error('x')
      Object.defineProperty(e, 'message', {
        get() {
          throw new Error('getter')
        },
      })
      throw e
    })
    expect(st.status).toBe('failed')
    expect(typeof st.error.message).toBe('string')
  })

  test('a handler that never resolves ends by its timeout', async () => {
    const { st } = await runOne(never, { timeout: 30 }, 30)
    expect(st.status).toBe('timeout')
    expect(st.error).toMatchObject({ name: 'TimeoutError', code: 'ERR_JOB_TIMEOUT' })
  })

  test.each([
    ['a BigInt', () => 10n, 'BigInt'],
    ['a cycle', () => {
      const o = {}
      o.o = o
      return o
    }, 'circular'],
    ['a function', () => () => 1, 'function'],
    ['a symbol', () => Symbol('s'), 'symbol'],
    ['an object holding a function', () => ({ f() {} }), 'function'],
    ['a Promise of a BigInt', async () => 1n, 'BigInt'],
  ])('returning %s: failed attempt with ERR_NOT_SERIALIZABLE', async (_, calculate, detail) => {
    const { st } = await runOne(calculate)
    expect(st.status).toBe('failed')
    expect(st.result).toBeNull()
    expect(st.error.code).toBe('ERR_NOT_SERIALIZABLE')
    expect(st.error.message).toMatch(/result is not JSON-serializable/)
    expect(st.error.message.toLowerCase()).toContain(detail.toLowerCase())
  })

  test('a non-serializable result is an ordinary failure: it is retried', async () => {
    const service = tracker.create()
    let runs = 0
    await service.start()
    const id = service.addCalculationJob(
      { name: 'bigint-then-ok', calculate: () => (++runs === 1 ? 1n : 'ok') },
      null,
      null,
      { retries: 1, backoff: 5 },
    )
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', result: 'ok', attempts: 2 })
    expect(st.errors[0].code).toBe('ERR_NOT_SERIALIZABLE')
  })

  test('returning undefined (sync or async): completed with result null', async () => {
    const a = await runOne(() => undefined)
    expect(a.st).toMatchObject({ status: 'completed', result: null })
    const b = await runOne(async () => {})
    expect(b.st).toMatchObject({ status: 'completed', result: null })
  })

  test('a sync handler returning a value works, with data and context passed in', async () => {
    const service = tracker.create()
    await service.start()
    const seen = []
    const id = service.addCalculationJob(
      {
        name: 'sync',
        calculate(data, context) {
          seen.push([data, context])
          return { doubled: data.n * 2, ct: context.contentType }
        },
      },
      { n: 21 },
      { contentType: 'api::match.match' },
    )
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', result: { doubled: 42, ct: 'api::match.match' }, data: { n: 21 }, context: { contentType: 'api::match.match' } })
    expect(seen).toEqual([[{ n: 21 }, { contentType: 'api::match.match' }]])
    // a missing context is {}
    const id2 = service.addCalculationJob({ name: 'ctx', calculate: (d, c) => c }, null)
    expect((await waitForStatus(service, id2)).result).toEqual({})
  })

  test('returning a thenable works; a thenable whose then getter throws fails', async () => {
    const a = await runOne(() => ({ then: (res) => res('from thenable') }))
    expect(a.st).toMatchObject({ status: 'completed', result: 'from thenable' })
    const b = await runOne(() => ({
      get then() {
        throw new Error('then getter')
      },
    }))
    expect(b.st.status).toBe('failed')
    expect(b.st.error.message).toBe('then getter')
  })

  test('falsy results are kept as they are', async () => {
    for (const v of [0, false, '', null]) {
      const { st } = await runOne(() => v)
      expect(st.status).toBe('completed')
      expect(st.result).toBe(v)
    }
  })

  test('a mix of faults in one service: the service keeps going and a later job runs', async () => {
    const service = tracker.create({ queue: { maxWorkers: 4 }, clock: 'manual' })
    await service.start()
    const faults = [
      () => {
        throw new Error('sync')
      },
      () => Promise.reject('string'),
      () => Promise.reject(undefined),
      () => 1n,
      never,
      () => undefined,
    ]
    const ids = faults.map((calculate, i) => service.addCalculationJob({ name: `f${i}`, calculate }, null, null, { retries: 0, timeout: 50 }))
    await waitFor(() => ids.filter((id) => service.getJobStatus(id).finishedAt !== null).length === 5, { what: 'the five that end by themselves' })
    await service.advanceTime(50, { settleMs: 0 })
    const st = await waitForAll(service, ids)
    expect(st.map((s) => s.status)).toEqual(['failed', 'failed', 'failed', 'failed', 'timeout', 'completed'])
    const ok = service.addCalculationJob({ name: 'fine', calculate: () => 'still alive' }, null)
    expect((await waitForStatus(service, ok)).result).toBe('still alive')
  })

  // BUG: index.js _err calls isUnrecoverable(e) outside its try/catch; a thrown
  // value that throws on property access (here a revoked Proxy) makes _err throw
  // from a microtask, an uncaught exception that kills the process (exit 1).
  test.each([['sync'], ['async']])('a handler throwing a revoked Proxy (%s) fails the job without killing the process', async (mode) => {
    const r = await runFixture('exotic-throw.js', [mode], { timeout: 10000 })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout.trim())
    expect(out.status).toBe('failed')
    expect(out.after).toBe('completed')
  })
})
