'use strict'
// Issue 17, bug 11: hostile values that made a public function throw an Error
// without a `code` (a throwing getter, a revoked Proxy, a cycle, a
// null-prototype object whose message could not even be built). Every public
// function either succeeds or throws an Error with a JobwerkErrorCode, and a
// failed add adds nothing.

const { nextCronRuns, JobManagementService } = require('..')
const { serviceTracker, isError, thrown, rejected } = require('./helpers')
const { JOBWERK_ERROR_CODES } = require('./helpers/codes')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const calc = { name: 'ok', calculate: (d) => d }
const getter = () => ({
  get a() {
    throw new Error('getter threw')
  },
})
const revoked = () => {
  const r = Proxy.revocable({}, {})
  r.revoke()
  return r.proxy
}
const cycle = () => {
  const o = { a: 1 }
  o.self = o
  return o
}
const nullProto = () => Object.create(null)

function expectCoded(e, code) {
  expect(isError(e)).toBe(true)
  expect(JOBWERK_ERROR_CODES).toContain(e.code)
  if (code !== undefined) expect(e.code).toBe(code)
  expect(typeof e.message).toBe('string')
  return e
}

describe('adds: throwing getters and revoked Proxies at the top level', () => {
  let service
  beforeEach(() => {
    service = tracker.create({ clock: 'manual' })
  })
  afterEach(() => expect(service.getQueueStatistics().total).toBe(0))

  test.each([
    ['data with a throwing getter', () => [calc, getter()], 'ERR_NOT_SERIALIZABLE', 'data'],
    ['data as a revoked Proxy', () => [calc, revoked()], 'ERR_NOT_SERIALIZABLE', 'data'],
    ['context with a throwing getter', () => [calc, 1, getter()], 'ERR_NOT_SERIALIZABLE', 'context'],
    ['context as a revoked Proxy', () => [calc, 1, revoked()], 'ERR_INVALID_ARGUMENT', 'context'],
    ['options with a throwing getter', () => [calc, 1, {}, getter()], 'ERR_INVALID_ARGUMENT', 'options'],
    ['options as a revoked Proxy', () => [calc, 1, {}, revoked()], 'ERR_INVALID_ARGUMENT', 'options'],
    [
      'a calculation whose name getter throws',
      () => [
        {
          get name() {
            throw new Error('name getter')
          },
          calculate() {},
        },
        1,
      ],
      'ERR_INVALID_ARGUMENT',
      'calculation',
    ],
    ['a calculation that is a revoked Proxy', () => [revoked(), 1], 'ERR_INVALID_ARGUMENT', 'calculation'],
  ])('addCalculationJob: %s', (_, args, code, names) => {
    const e = expectCoded(thrown(() => service.addCalculationJob(...args())), code)
    expect(e.message).toContain(names)
  })

  test('addCalculationJobs: a revoked Proxy as the list, as an item, an item whose getter throws', () => {
    expectCoded(thrown(() => service.addCalculationJobs(revoked())), 'ERR_INVALID_ARGUMENT')
    expect(thrown(() => service.addCalculationJobs([{ calculation: calc, data: 1 }, revoked()])).message).toContain('jobs[1]')
    const item = {
      get calculation() {
        throw new Error('calculation getter')
      },
    }
    expectCoded(thrown(() => service.addCalculationJobs([{ calculation: calc, data: 1 }, item])), 'ERR_INVALID_ARGUMENT')
    const e = expectCoded(thrown(() => service.addCalculationJobs([{ calculation: calc, data: 1 }, { calculation: calc, data: getter() }])))
    expect(e.message).toContain('jobs[1].data')
  })

  test('registerCalculation with a revoked Proxy or a throwing getter', () => {
    expectCoded(thrown(() => service.registerCalculation(revoked())), 'ERR_INVALID_ARGUMENT')
    const c = {
      name: 'x',
      get calculate() {
        throw new Error('calculate getter')
      },
    }
    expectCoded(thrown(() => service.registerCalculation(c)), 'ERR_INVALID_ARGUMENT')
  })
})

describe('filters and rules: cycles, revoked Proxies', () => {
  test.each([
    ['getScheduledJobs', (s, v) => s.getScheduledJobs(v)],
    ['getAlertHistory', (s, v) => s.getAlertHistory(v)],
    ['addAlertRule', (s, v) => s.addAlertRule(v)],
  ])('%s', (name, call) => {
    const service = tracker.create({ clock: 'manual' })
    for (const v of [cycle(), revoked(), getter()]) {
      expect(thrown(() => call(service, v)).message).toContain(name)
      expectCoded(thrown(() => call(service, v)), 'ERR_INVALID_ARGUMENT')
    }
  })
})

describe('null-prototype objects where a number or a Date belongs', () => {
  test('scheduledAt, startAt -> ERR_INVALID_SCHEDULE', () => {
    const service = tracker.create({ clock: 'manual' })
    const e1 = expectCoded(thrown(() => service.scheduleCalculationJob(calc, 1, {}, nullProto())), 'ERR_INVALID_SCHEDULE')
    expect(e1.message).toContain('scheduledAt')
    const e2 = expectCoded(thrown(() => service.scheduleRecurringCalculationJob(calc, 1, {}, nullProto(), 1000)), 'ERR_INVALID_SCHEDULE')
    expect(e2.message).toContain('startAt')
    expect(service.getScheduledJobs()).toEqual([])
  })

  test('nextCronRuns count, from', () => {
    expect(expectCoded(thrown(() => nextCronRuns('* * * * *', { count: nullProto() })), 'ERR_INVALID_ARGUMENT').message).toContain('count')
    expect(expectCoded(thrown(() => nextCronRuns('* * * * *', { from: nullProto() })), 'ERR_INVALID_ARGUMENT').message).toContain('from')
    expectCoded(thrown(() => nextCronRuns('* * * * *', revoked())), 'ERR_INVALID_ARGUMENT')
    const tzGetter = {
      get tz() {
        throw new Error('tz getter')
      },
    }
    expectCoded(thrown(() => nextCronRuns('* * * * *', tzGetter)), 'ERR_INVALID_ARGUMENT')
  })

  test('stop({ timeoutMs }) rejects coded and leaves the service running', async () => {
    const service = tracker.create()
    await service.start()
    const e = expectCoded(await rejected(service.stop({ timeoutMs: nullProto() })), 'ERR_INVALID_ARGUMENT')
    expect(e.message).toContain('timeoutMs')
    expectCoded(await rejected(service.stop(revoked())), 'ERR_INVALID_ARGUMENT')
    const tm = {
      get timeoutMs() {
        throw new Error('timeoutMs getter')
      },
    }
    expectCoded(await rejected(service.stop(tm)), 'ERR_INVALID_ARGUMENT')
    expect(service.getSystemStatus().status).toBe('started')
  })
})

describe('schedules: hostile options, context, data', () => {
  test('each is coded and adds no schedule', () => {
    const service = tracker.create({ clock: 'manual' })
    expectCoded(thrown(() => service.scheduleCronCalculationJob(calc, 1, {}, '* * * * *', revoked())), 'ERR_INVALID_ARGUMENT')
    expectCoded(thrown(() => service.scheduleCronCalculationJob(calc, 1, {}, '* * * * *', getter())), 'ERR_INVALID_ARGUMENT')
    expectCoded(thrown(() => service.scheduleCronCalculationJob(calc, 1, revoked(), '* * * * *')))
    expectCoded(thrown(() => service.scheduleCronCalculationJob(calc, revoked(), {}, '* * * * *')), 'ERR_NOT_SERIALIZABLE')
    expectCoded(thrown(() => service.scheduleRecurringCalculationJob(calc, 1, {}, new Date(), nullProto())), 'ERR_INVALID_SCHEDULE')
    expect(service.getScheduledJobs()).toEqual([])
  })
})

describe('the constructor', () => {
  test.each([
    ['a revoked Proxy', () => revoked()],
    ['monitoring as a revoked Proxy', () => ({ monitoring: revoked() })],
    ['a logger that is a revoked Proxy', () => ({ monitoring: { logger: revoked() } })],
    ['a throwing unref getter', () => ({
      get unref() {
        throw new Error('unref getter')
      },
    })],
  ])('%s -> ERR_INVALID_CONFIG', (_, cfg) => {
    expectCoded(thrown(() => new JobManagementService(cfg())), 'ERR_INVALID_CONFIG')
  })
})

test('a getter that throws something unreadable is still reported coded', () => {
  const service = tracker.create({ clock: 'manual' })
  const evil = {
    get a() {
      throw revoked()
    },
  }
  expectCoded(thrown(() => service.addCalculationJob(calc, 1, {}, evil)), 'ERR_INVALID_ARGUMENT')
  expectCoded(thrown(() => service.addCalculationJob(calc, evil)), 'ERR_NOT_SERIALIZABLE')
  expect(service.getQueueStatistics().total).toBe(0)
})
