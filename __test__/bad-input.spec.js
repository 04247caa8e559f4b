'use strict'
const { JobManagementService } = require('..')
const { serviceTracker, waitForStatus, expectCode, rejected, isError } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const calc = { name: 'ok', calculate: (d) => d }
const cycle = () => {
  const o = { a: 1 }
  o.self = o
  return o
}

async function expectRejectCode(p, code, includes) {
  const e = await rejected(p)
  expect(isError(e)).toBe(true)
  expect(e.code).toBe(code)
  if (includes !== undefined) expect(e.message).toContain(includes)
  return e
}

describe('invalid config', () => {
  test.each([
    [5, 'config'],
    ['fast', 'config'],
    [[], 'config'],
    [true, 'config'],
  ])('config %p is not an object -> ERR_INVALID_CONFIG', (cfg, key) => {
    expectCode(() => new JobManagementService(cfg), 'ERR_INVALID_CONFIG', key)
  })

  test.each([
    [{ queues: {} }, 'config.queues'],
    [{ queue: 'fast' }, 'queue'],
    [{ queue: { maxWorker: 3 } }, 'queue.maxWorker'],
    [{ queue: { maxWorkers: 0 } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: -1 } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: 1.5 } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: NaN } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: Infinity } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: '3' } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: 3n } }, 'queue.maxWorkers'],
    [{ queue: { maxWorkers: 1e9 } }, 'queue.maxWorkers'],
    [{ queue: { maxQueueSize: 0 } }, 'queue.maxQueueSize'],
    [{ queue: { maxQueueSize: -5 } }, 'queue.maxQueueSize'],
    [{ queue: { maxQueueSize: 1e300 } }, 'queue.maxQueueSize'],
    [{ queue: { defaultTimeout: -1 } }, 'queue.defaultTimeout'],
    [{ queue: { defaultTimeout: 1.5 } }, 'queue.defaultTimeout'],
    [{ queue: { defaultTimeout: 2 ** 31 } }, 'queue.defaultTimeout'],
    [{ queue: { defaultRetries: -1 } }, 'queue.defaultRetries'],
    [{ queue: { defaultRetries: 1001 } }, 'queue.defaultRetries'],
    [{ queue: { defaultBackoff: 'x' } }, 'queue.defaultBackoff'],
    [{ queue: { defaultBackoff: { type: 'linear' } } }, 'queue.defaultBackoff.type'],
    [{ queue: { defaultBackoff: { jitter: 2 } } }, 'queue.defaultBackoff.jitter'],
    [{ queue: { defaultBackoff: { delay: -1 } } }, 'queue.defaultBackoff.delay'],
    [{ queue: { defaultBackoff: { steps: 3 } } }, 'queue.defaultBackoff.steps'],
    [{ queue: { cleanupInterval: 0 } }, 'queue.cleanupInterval'],
    [{ queue: { maxJobAge: -1 } }, 'queue.maxJobAge'],
    [{ queue: { maxJobAge: 1e300 } }, 'queue.maxJobAge'],
    [{ queue: { maxPayloadBytes: 1 } }, 'queue.maxPayloadBytes'],
    [{ queue: { priorityWeights: 5 } }, 'queue.priorityWeights'],
    [{ queue: { priorityWeights: [1, 2, 3] } }, 'queue.priorityWeights'],
    [{ queue: { priorityWeights: { urgent: 1 } } }, 'queue.priorityWeights.urgent'],
    [{ queue: { priorityWeights: { high: 'x' } } }, 'queue.priorityWeights.high'],
    [{ queue: { priorityWeights: { low: 0.5 } } }, 'queue.priorityWeights.low'],
    [{ clock: 'fast' }, 'config.clock'],
    [{ clock: 5 }, 'config.clock'],
    [{ clock: { type: 'sundial' } }, 'config.clock.type'],
    [{ clock: { type: 'manual', now: -1 } }, 'config.clock.now'],
    [{ clock: { type: 'manual', now: NaN } }, 'config.clock.now'],
    [{ clock: { type: 'manual', now: new Date('nope') } }, 'config.clock.now'],
    [{ clock: { type: 'manual', speed: 2 } }, 'config.clock.speed'],
    [{ storage: { type: 'redis' } }, 'config.storage.type'],
    [{ storage: 'sqlite' }, 'config.storage'],
    [{ scheduler: 5 }, 'config.scheduler'],
    [{ monitoring: 'on' }, 'monitoring must be an object'],
    [{ unref: 'yes' }, 'unref'],
    [{ unref: 1 }, 'unref'],
  ])('%j -> ERR_INVALID_CONFIG naming %s', (cfg, key) => {
    expectCode(() => new JobManagementService(cfg), 'ERR_INVALID_CONFIG', key)
  })

  test('a config with a cycle -> ERR_INVALID_CONFIG', () => {
    const c = {}
    c.queue = c
    expectCode(() => new JobManagementService(c), 'ERR_INVALID_CONFIG')
  })

  test('a config whose getter throws -> ERR_INVALID_CONFIG', () => {
    const c = {
      get queue() {
        throw new Error('getter')
      },
    }
    expectCode(() => new JobManagementService(c), 'ERR_INVALID_CONFIG', 'getter')
  })

  // BUG: index.js serializes the config with JSON.stringify, which silently
  // drops function and symbol values, so { maxWorkers: () => 3 } is accepted
  // as "not set" instead of ERR_INVALID_CONFIG naming queue.maxWorkers.
  test('a function or symbol as a config value -> ERR_INVALID_CONFIG naming the key', () => {
    expectCode(() => new JobManagementService({ queue: { maxWorkers: () => 3 } }), 'ERR_INVALID_CONFIG', 'queue.maxWorkers')
    expectCode(() => new JobManagementService({ queue: { defaultTimeout: Symbol('t') } }), 'ERR_INVALID_CONFIG', 'queue.defaultTimeout')
  })

  test('valid edge configs are accepted', () => {
    for (const cfg of [
      undefined,
      null,
      {},
      { queue: null },
      { queue: { maxWorkers: null } },
      { queue: { maxWorkers: 1, maxQueueSize: 1, maxPayloadBytes: 2, defaultTimeout: 0, defaultRetries: 0, maxJobAge: 0 } },
      { queue: { maxWorkers: 10000, priorityWeights: { high: -1000000, low: 1000000 } } },
      { storage: { type: 'memory' } },
      { scheduler: {}, monitoring: {} },
      { clock: 'system' },
      { clock: { type: 'system' } },
      { unref: true },
      { unref: false },
    ]) {
      const s = tracker.track(new JobManagementService(cfg && typeof cfg === 'object' ? { storage: { type: 'memory' }, ...cfg } : cfg))
      // (null: the default SQLite file under the working directory, which may hold jobs of earlier runs)
      if (cfg) expect(s.getQueueStatistics().total).toBe(0)
      else expect(typeof s.getQueueStatistics().total).toBe('number')
    }
  })
})

describe('addCalculationJob with bad input', () => {
  let service
  beforeEach(() => {
    service = tracker.create({ queue: { maxQueueSize: 5, maxPayloadBytes: 100 } })
  })

  test.each([
    ['null', null],
    ['undefined', undefined],
    ['a number', 5],
    ['a string', 'calc'],
    ['no name', { calculate() {} }],
    ['an empty name', { name: '', calculate() {} }],
    ['a numeric name', { name: 5, calculate() {} }],
    ['a name over 512 bytes', { name: 'x'.repeat(513), calculate() {} }],
    ['no calculate', { name: 'x' }],
    ['a non-function calculate', { name: 'x', calculate: 'run' }],
    ['an invalid priority', { name: 'bad-prio', priority: 'urgent', calculate() {} }],
    ['a negative timeout', { name: 'bad-timeout', timeout: -1, calculate() {} }],
    ['fractional retries', { name: 'bad-retries', retries: 1.5, calculate() {} }],
    ['an invalid backoff', { name: 'bad-backoff', backoff: { type: 'linear' }, calculate() {} }],
  ])('calculation: %s -> ERR_INVALID_ARGUMENT', (_, c) => {
    expectCode(() => service.addCalculationJob(c, 1), 'ERR_INVALID_ARGUMENT', 'calculation')
    expectCode(() => service.registerCalculation(c), 'ERR_INVALID_ARGUMENT', 'calculation')
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test.each([
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['a BigInt', 10n],
    ['a cycle', cycle()],
    ['an object holding a function', { f() {} }],
    ['an object holding a symbol', { s: Symbol('x') }],
    ['an object holding a BigInt', { deep: { n: 1n } }],
    ['an array holding a function', [1, () => 2]],
    ['an object whose toJSON throws', { toJSON() { throw new Error('toJSON') } }],
  ])('data: %s -> ERR_NOT_SERIALIZABLE', (_, data) => {
    expectCode(() => service.addCalculationJob(calc, data), 'ERR_NOT_SERIALIZABLE', 'data')
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test.each([
    ['a function', { f: () => 1 }],
    ['a BigInt', { n: 1n }],
    ['a cycle', cycle()],
    ['a symbol', { s: Symbol('x') }],
  ])('context holding %s -> ERR_NOT_SERIALIZABLE', (_, context) => {
    expectCode(() => service.addCalculationJob(calc, 1, context), 'ERR_NOT_SERIALIZABLE', 'context')
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test.each([
    [5, 'options'],
    ['high', 'options'],
    [[1], 'options'],
    [{ attempts: 3 }, 'options.attempts'],
    [{ priority: 'urgent' }, 'options.priority'],
    [{ priority: 1.5 }, 'options.priority'],
    [{ priority: NaN }, 'options.priority'],
    [{ priority: 2 ** 31 }, 'options.priority'],
    [{ priority: true }, 'options.priority'],
    [{ timeout: -1 }, 'options.timeout'],
    [{ timeout: NaN }, 'options.timeout'],
    [{ timeout: Infinity }, 'options.timeout'],
    [{ timeout: 2 ** 31 }, 'options.timeout'],
    [{ timeout: '100' }, 'options.timeout'],
    [{ timeout: 5n }, 'options.timeout'],
    [{ retries: -1 }, 'options.retries'],
    [{ retries: 1001 }, 'options.retries'],
    [{ retries: 0.5 }, 'options.retries'],
    [{ backoff: 'x' }, 'options.backoff'],
    [{ backoff: -5 }, 'options.backoff'],
    [{ backoff: { type: 'linear' } }, 'options.backoff.type'],
    [{ backoff: { jitter: 2 } }, 'options.backoff.jitter'],
    [{ backoff: { jitter: -0.1 } }, 'options.backoff.jitter'],
    [{ backoff: { delay: -1 } }, 'options.backoff.delay'],
    [{ backoff: { maxDelayMs: NaN } }, 'options.backoff.maxDelayMs'],
    [{ backoff: { factor: 2 } }, 'options.backoff.factor'],
    [{ runAt: 'tomorrow' }, 'options.runAt'],
    [{ runAt: new Date('nope') }, 'options.runAt'],
    [{ runAt: -1 }, 'options.runAt'],
    [{ runAt: 1e300 }, 'options.runAt'],
    [{ delay: -1 }, 'options.delay'],
    [{ delay: NaN }, 'options.delay'],
    [{ delay: 1e20 }, 'options.delay'],
  ])('options %p -> ERR_INVALID_ARGUMENT naming %s', (options, key) => {
    expectCode(() => service.addCalculationJob(calc, 1, null, options), 'ERR_INVALID_ARGUMENT', key)
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test('options with a cycle -> ERR_INVALID_ARGUMENT', () => {
    expectCode(() => service.addCalculationJob(calc, 1, null, cycle()), 'ERR_INVALID_ARGUMENT', 'options')
  })

  // BUG: options are serialized with JSON.stringify, which drops function and
  // symbol values, so { timeout: () => 1 } silently means "no timeout set"
  // (the job gets the default 30000) instead of ERR_INVALID_ARGUMENT.
  test('a function or symbol option value -> ERR_INVALID_ARGUMENT naming it', () => {
    expectCode(() => service.addCalculationJob(calc, 1, null, { timeout: () => 1 }), 'ERR_INVALID_ARGUMENT', 'options.timeout')
    expectCode(() => service.addCalculationJob(calc, 1, null, { priority: Symbol('high') }), 'ERR_INVALID_ARGUMENT', 'options.priority')
  })

  test('undefined and null option values mean "not set"', () => {
    const id = service.addCalculationJob(calc, 1, null, { timeout: undefined, priority: null, retries: undefined })
    expect(service.getJobStatus(id)).toMatchObject({ priority: 'medium', timeout: 30000, maxRetries: 2 })
  })

  test('payload over queue.maxPayloadBytes -> ERR_PAYLOAD_TOO_LARGE; exactly at the limit is fine', () => {
    // data "xxx…" (96 + 2 quotes) + context {} (2) = 100 bytes
    const atLimit = service.addCalculationJob(calc, 'x'.repeat(96))
    expect(service.getJobStatus(atLimit).data).toBe('x'.repeat(96))
    expectCode(() => service.addCalculationJob(calc, 'x'.repeat(97)), 'ERR_PAYLOAD_TOO_LARGE', 'maxPayloadBytes')
    // context counts too
    expectCode(() => service.addCalculationJob(calc, 'x'.repeat(40), { big: 'y'.repeat(60) }), 'ERR_PAYLOAD_TOO_LARGE')
    expect(service.getQueueStatistics().total).toBe(1)
  })

  test('a full queue -> ERR_QUEUE_FULL', () => {
    for (let i = 0; i < 5; i++) service.addCalculationJob(calc, i)
    expectCode(() => service.addCalculationJob(calc, 5), 'ERR_QUEUE_FULL', '5')
    expect(service.getQueueStatistics()).toMatchObject({ total: 5, pending: 5 })
  })
})

describe('addCalculationJobs with bad input: all or none', () => {
  let service
  beforeEach(() => {
    service = tracker.create({ queue: { maxQueueSize: 5 } })
  })

  test('non-arrays and non-object items -> ERR_INVALID_ARGUMENT', () => {
    for (const bad of [undefined, null, 'jobs', 5, { length: 1, 0: { calculation: calc } }]) {
      expectCode(() => service.addCalculationJobs(bad), 'ERR_INVALID_ARGUMENT', 'jobs')
    }
    expectCode(() => service.addCalculationJobs([null]), 'ERR_INVALID_ARGUMENT', 'jobs[0]')
    expectCode(() => service.addCalculationJobs([{ calculation: calc }, 7]), 'ERR_INVALID_ARGUMENT', 'jobs[1]')
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test('an empty array adds nothing and returns []', () => {
    expect(service.addCalculationJobs([])).toEqual([])
    expect(service.getQueueStatistics().total).toBe(0)
  })

  test.each([
    ['bad data', { calculation: calc, data: 1n }, 'ERR_NOT_SERIALIZABLE', 'jobs[2].data'],
    ['bad context', { calculation: calc, data: 1, context: cycle() }, 'ERR_NOT_SERIALIZABLE', 'jobs[2].context'],
    ['bad options', { calculation: calc, data: 1, options: { retries: -1 } }, 'ERR_INVALID_ARGUMENT', 'jobs[2].options.retries'],
    ['unknown option', { calculation: calc, options: { bogus: 1 } }, 'ERR_INVALID_ARGUMENT', 'jobs[2].options.bogus'],
    ['bad calculation', { calculation: { name: 'x' }, data: 1 }, 'ERR_INVALID_ARGUMENT', 'jobs[2].calculation'],
  ])('one job with %s adds none', (_, bad, code, key) => {
    service.addCalculationJob(calc, 'existing')
    const before = service.getQueueStatistics().total
    expectCode(() => service.addCalculationJobs([{ calculation: calc, data: 1 }, { calculation: calc, data: 2 }, bad, { calculation: calc, data: 4 }]), code, key)
    expect(service.getQueueStatistics().total).toBe(before)
  })

  test('a batch that does not fit -> ERR_QUEUE_FULL and none is added', () => {
    service.addCalculationJobs([1, 2, 3].map((data) => ({ calculation: calc, data })))
    expectCode(() => service.addCalculationJobs([4, 5, 6].map((data) => ({ calculation: calc, data }))), 'ERR_QUEUE_FULL')
    expect(service.getQueueStatistics().total).toBe(3)
    // two still fit
    expect(service.addCalculationJobs([4, 5].map((data) => ({ calculation: calc, data })))).toHaveLength(2)
    expect(service.getQueueStatistics().total).toBe(5)
  })
})

describe('other methods with bad input', () => {
  test('getJobStatus: unknown ids -> null, non-strings -> ERR_INVALID_ARGUMENT', () => {
    const service = tracker.create()
    expect(service.getJobStatus('nope')).toBeNull()
    expect(service.getJobStatus('')).toBeNull()
    expect(service.getJobStatus('x'.repeat(36))).toBeNull()
    expect(service.getJobStatus('zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz')).toBeNull()
    expect(service.getJobStatus('01890a5d-ac96-774b-bcce-b302099a8057')).toBeNull()
    expect(service.getJobStatus('é'.repeat(18))).toBeNull()
    for (const bad of [undefined, null, 1, {}, ['id'], Symbol('id')]) {
      expectCode(() => service.getJobStatus(bad), 'ERR_INVALID_ARGUMENT', 'getJobStatus')
    }
  })

  test('stop() with bad options rejects with ERR_INVALID_ARGUMENT and leaves the service running', async () => {
    const service = tracker.create()
    await service.start()
    await expectRejectCode(service.stop({ timeoutMs: -1 }), 'ERR_INVALID_ARGUMENT', 'timeoutMs')
    await expectRejectCode(service.stop({ timeoutMs: NaN }), 'ERR_INVALID_ARGUMENT', 'timeoutMs')
    await expectRejectCode(service.stop({ timeoutMs: Infinity }), 'ERR_INVALID_ARGUMENT', 'timeoutMs')
    await expectRejectCode(service.stop({ timeoutMs: '100' }), 'ERR_INVALID_ARGUMENT', 'timeoutMs')
    await expectRejectCode(service.stop(5), 'ERR_INVALID_ARGUMENT', 'options')
    await expectRejectCode(service.stop('soon'), 'ERR_INVALID_ARGUMENT', 'options')
    const id = service.addCalculationJob(calc, 'still running')
    expect((await waitForStatus(service, id)).result).toBe('still running')
  })

  test('advanceTime on a system clock -> ERR_INVALID_ARGUMENT', async () => {
    const service = tracker.create()
    await expectRejectCode(service.advanceTime(1000), 'ERR_INVALID_ARGUMENT', 'manual clock')
  })

  test('advanceTime with a bad ms -> ERR_INVALID_ARGUMENT, the clock does not move', async () => {
    const service = tracker.create({ clock: { type: 'manual', now: 1000 } })
    for (const bad of ['5', NaN, -1, Infinity, -Infinity, 1e16, undefined, null, 5n]) {
      await expectRejectCode(service.advanceTime(bad), 'ERR_INVALID_ARGUMENT', 'advanceTime')
    }
    expect(service.now()).toBe(1000)
    await service.advanceTime(0)
    expect(service.now()).toBe(1000)
  })

  test('after all the bad input the process is fine and a normal job still runs', async () => {
    const service = tracker.create({ queue: { maxQueueSize: 2, maxPayloadBytes: 64 } })
    const attempts = [
      () => service.addCalculationJob(null, 1),
      () => service.addCalculationJob(calc, 1n),
      () => service.addCalculationJob(calc, cycle()),
      () => service.addCalculationJob(calc, 'x'.repeat(100)),
      () => service.addCalculationJob(calc, 1, null, { priority: 'urgent' }),
      () => service.addCalculationJobs([{ calculation: calc }, { calculation: calc, data: () => 1 }]),
      () => service.addCalculationJobs([{ calculation: calc }, { calculation: calc }, { calculation: calc }]),
      () => service.getJobStatus(42),
      () => service.cancelJob({}),
      () => service.retryJob(null),
      () => service.registerCalculation({ name: '' }),
    ]
    for (const f of attempts) {
      const e = (() => {
        try {
          f()
        } catch (err) {
          return err
        }
        return null
      })()
      expect(e).not.toBeNull()
      expect(typeof e.code).toBe('string')
      expect(e.code).toMatch(/^ERR_/)
    }
    expect(service.getQueueStatistics().total).toBe(0)
    await service.start()
    await expectRejectCode(service.stop({ timeoutMs: -1 }), 'ERR_INVALID_ARGUMENT')
    await expectRejectCode(service.advanceTime(1), 'ERR_INVALID_ARGUMENT')
    const id = service.addCalculationJob(calc, { fine: true })
    const st = await waitForStatus(service, id)
    expect(st).toMatchObject({ status: 'completed', result: { fine: true } })
  })
})
