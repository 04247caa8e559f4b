'use strict'
// API fuzz (issue 17): every public function called with hostile values
// (wrong types, NaN, Infinity, huge numbers and strings, throwing getters,
// Proxies, revoked Proxies, Symbols, BigInt, null-prototype objects, cycles,
// `__proto__` keys, invalid Dates, random cron strings), mixed with valid
// ones so that calls reach the deeper checks. Each call must succeed or throw
// (reject with) an Error whose code is a JobwerkErrorCode; a failed add adds
// nothing (no job, no schedule); statistics stay consistent.
//
// Fixed seed by default, so a run is reproducible:
//   FUZZ_SEED=<n>     another seed (a failure prints the seed and the path to replay)
//   FUZZ_SCALE=<k>    k times as many cases (default 1: about 2,600 cases)

const fc = require('fast-check')
const { types } = require('node:util')
const { JobManagementService, getJobManagementService, nextCronRuns, UnrecoverableError } = require('..')
const { JOBWERK_ERROR_CODES } = require('./helpers/codes')

const SEED = process.env.FUZZ_SEED === undefined ? 1717 : Number(process.env.FUZZ_SEED)
const SCALE = Math.max(1, Number(process.env.FUZZ_SCALE) || 1)
const runs = (n) => ({ seed: SEED, numRuns: Math.round(n * SCALE), endOnFailure: true })

jest.setTimeout(120000 * SCALE)

// --- hostile values ----------------------------------------------------------

function revoked() {
  const r = Proxy.revocable({}, {})
  r.revoke()
  return r.proxy
}

function cyclic() {
  const o = { a: 1, list: [] }
  o.self = o
  o.list.push(o)
  return o
}

function throwingGetter(key) {
  return Object.defineProperty({}, key, {
    enumerable: true,
    get() {
      throw new Error(`getter ${key} threw`)
    },
  })
}

// A Proxy that throws from every trap.
function trapProxy() {
  const boom = () => {
    throw new Error('trap threw')
  }
  return new Proxy({}, { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom })
}

const HUGE = 'x'.repeat(2_000_000)

// fast-check inspects and prints what it generates, which a revoked Proxy or
// a throwing getter would break: such values are generated as a recipe and
// made just before the call (materialize).
class Hostile {
  constructor(label, make) {
    this.label = label
    this.make = make
  }

  [fc.toStringMethod]() {
    return `<${this.label}>`
  }
}
const h = (label, make) => fc.constant(new Hostile(label, make))

function materialize(v) {
  if (v instanceof Hostile) return v.make()
  if (Array.isArray(v)) return v.map(materialize)
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const out = {}
    for (const k of Object.keys(v)) Object.defineProperty(out, k, { value: materialize(v[k]), enumerable: true, writable: true, configurable: true })
    return out
  }
  return v
}

const hostile = fc.oneof(
  fc.constantFrom(
    undefined,
    null,
    NaN,
    Infinity,
    -Infinity,
    -0,
    0,
    -1,
    1.5,
    2 ** 31,
    2 ** 53,
    1e300,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    '',
    ' ',
    '\u0000',
    '__proto__',
    'constructor',
    true,
    false,
    10n,
    -(2n ** 70n),
    Symbol('s'),
    Symbol.iterator,
    [],
    [1, 'a', null],
    {},
  ),
  h('function', () => () => 1),
  h('async function', () => async () => 1),
  h('invalid Date', () => new Date('nope')),
  h('max Date', () => new Date(8.64e15)),
  h('epoch Date', () => new Date(0)),
  h('RegExp', () => /re/g),
  h('Map', () => new Map([[1, 2]])),
  h('Set', () => new Set([1])),
  h('Uint8Array', () => new Uint8Array(3)),
  h('Error', () => new Error('an error')),
  h('Promise', () => Promise.resolve(1)),
  h('huge string', () => HUGE),
  h('null-prototype object', () => Object.create(null)),
  h('null-prototype object with keys', () => Object.assign(Object.create(null), { a: 1, type: 'memory' })),
  h('__proto__ key', () => JSON.parse('{"__proto__": {"polluted": true}, "a": 1}')),
  h('revoked Proxy', revoked),
  h('cyclic object', cyclic),
  h('Proxy throwing from every trap', trapProxy),
  h('transparent Proxy', () => new Proxy({ a: 1 }, {})),
  h('toJSON -> undefined', () => ({ toJSON: () => undefined })),
  h('throwing toJSON', () => ({
    toJSON() {
      throw new Error('toJSON threw')
    },
  })),
  h('valueOf 5', () => ({ valueOf: () => 5, toString: () => '5' })),
  h('throwing toPrimitive', () => ({
    [Symbol.toPrimitive]() {
      throw new Error('toPrimitive threw')
    },
  })),
  fc.constantFrom('a', 'timeout', 'name', 'type', 'queue', 'timeoutMs', 'count', 'tz').map((k) => new Hostile(`throwing getter ${k}`, () => throwingGetter(k))),
  fc.anything({ withBigInt: true, withNullPrototype: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, maxDepth: 3 }),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 40 }),
)

const CRON_TOKENS = ['*', '?', 'L', 'W', 'LW', '#', '/', '-', ',', '+', '0', '1', '5', '7', '12', '15', '23', '29', '30', '31', '59', '60', '99', '2026', '1969', '*/5', '5/15', 'MON', 'FRI', 'SUN', 'JAN', 'FEB', 'DEC', '5L', '5#3', 'MON#1', '0#5', '1-5', 'MON-FRI', '@daily', '@hourly', '@nope', '15W']
const cronString = fc.oneof(
  fc.array(fc.array(fc.constantFrom(...CRON_TOKENS), { minLength: 1, maxLength: 3 }).map((t) => t.join('')), { minLength: 0, maxLength: 8 }).map((f) => f.join(' ')),
  fc.constantFrom('* * * * *', '0 9 * * MON-FRI', '*/15 * * * * *', '0 0 30 2 *', '0 0 L * *', '@weekly', '0 0 0 1 1 * 2030', '0 0 ? * MON'),
  fc.string({ maxLength: 30 }),
)

const TZS = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'europe/berlin', 'Mars/Olympus', '', 'UTC+1']

// --- valid-ish building blocks, each field sometimes hostile -----------------

const maybe = (arb, p = 4) => fc.oneof({ weight: p, arbitrary: arb }, { weight: 1, arbitrary: hostile })

const jsonValue = fc.jsonValue({ maxDepth: 3 })
const handlerKinds = ['ok', 'throw', 'unrecoverable', 'async', 'never', 'progress']
// updateProgress gets these (made from the run's recipes); what it throws uncoded is kept here.
const progressValues = []
const progressFaults = []
// What the run exercised: `${name} ok|coded` -> count (checked at the end, so
// that a generator that stops reaching a function fails the suite).
const seen = new Map()
const saw = (key) => seen.set(key, (seen.get(key) || 0) + 1)
function handlerOf(kind) {
  switch (kind) {
    case 'throw':
      return () => {
        throw new Error('handler threw')
      }
    case 'unrecoverable':
      return () => {
        throw new UnrecoverableError('no')
      }
    case 'async':
      return async (d, c, job) => {
        job.updateProgress(50)
        return d
      }
    case 'progress':
      return (d, c, job) => {
        saw('progress handler')
        for (const v of progressValues) {
          try {
            job.updateProgress(v)
          } catch (e) {
            if (!isCoded(e)) progressFaults.push(describeError(e))
          }
        }
        return 1
      }
    case 'never':
      return (d, c, job) => new Promise((resolve) => job.signal.addEventListener('abort', resolve))
    default:
      return (d) => d
  }
}
const calcNames = ['alpha', 'beta', 'gamma']
const calcs = Object.fromEntries(handlerKinds.map((k, i) => [k, { name: calcNames[i % 3] + '-' + k, calculate: handlerOf(k), timeout: 5000, retries: 1, backoff: 1000 }]))
const validCalc = fc.constantFrom(...Object.values(calcs))
const calcArb = fc.oneof(
  { weight: 6, arbitrary: validCalc },
  { weight: 1, arbitrary: hostile },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        name: maybe(fc.constantFrom('fuzz-a', 'fuzz-b', 'x'.repeat(600))),
        calculate: maybe(fc.constant((d) => d)),
        priority: maybe(fc.constantFrom('high', 'medium', 'low', 3, -1)),
        timeout: maybe(fc.integer({ min: 0, max: 100000 })),
        retries: maybe(fc.integer({ min: 0, max: 5 })),
        backoff: maybe(fc.constantFrom(1000, { type: 'fixed', delay: 10 }, { type: 'exponential', delay: 100, jitter: 0.5 })),
      },
      { requiredKeys: ['name', 'calculate'] },
    ),
  },
)

function optionsArb(ids) {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: hostile },
    {
      weight: 4,
      arbitrary: fc.record(
        {
          priority: maybe(fc.constantFrom('high', 'medium', 'low', 0, 7)),
          timeout: maybe(fc.integer({ min: 0, max: 60000 })),
          retries: maybe(fc.integer({ min: 0, max: 3 })),
          backoff: maybe(fc.constantFrom(500, { type: 'fixed', delay: 100 })),
          delay: maybe(fc.integer({ min: 0, max: 20000 })),
          runAt: maybe(fc.constantFrom(new Date(Date.UTC(2026, 0, 1, 0, 0, 5)), Date.UTC(2026, 0, 1))),
          dependsOn: maybe(fc.constantFrom([], ['nope'], ids)),
          onDependencyFailure: maybe(fc.constantFrom('fail', 'ignore')),
          bogus: hostile,
        },
        { requiredKeys: [] },
      ),
    },
  )
}

const contextArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.record({ contentType: fc.constantFrom('api::match.match'), operationId: fc.string({ maxLength: 8 }) }, { requiredKeys: [] }) },
  { weight: 2, arbitrary: hostile },
)
const dataArb = fc.oneof({ weight: 3, arbitrary: jsonValue }, { weight: 2, arbitrary: hostile })
const idArb = (known) => fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...known) }, { weight: 1, arbitrary: hostile }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) })
const dateArb = maybe(fc.constantFrom(new Date(Date.UTC(2026, 0, 1, 0, 0, 3)), Date.UTC(2026, 0, 1, 0, 0, 1), Date.UTC(2025, 0, 1)), 2)
const scheduleOptionsArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: hostile },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        id: maybe(fc.constantFrom('s1', 's2')),
        maxRuns: maybe(fc.integer({ min: 1, max: 5 })),
        endAt: maybe(fc.constantFrom(Date.UTC(2026, 0, 2), new Date(Date.UTC(2027, 0, 1)))),
        tz: maybe(fc.constantFrom(...TZS)),
        misfire: maybe(fc.constantFrom('runOnce', 'skip', 'catchUp')),
        maxCatchUp: maybe(fc.integer({ min: 0, max: 3 })),
        overlap: maybe(fc.constantFrom('skip', 'queue')),
        enabled: maybe(fc.boolean()),
        priority: maybe(fc.constantFrom('low', 'high')),
      },
      { requiredKeys: [] },
    ),
  },
)
const filterArb = fc.oneof(fc.constant(undefined), hostile, fc.record({ kind: maybe(fc.constantFrom('cron', 'once')), enabled: maybe(fc.boolean()), limit: maybe(fc.nat(10)) }, { requiredKeys: [] }))
// getJobs' filter: valid keys mixed with hostile values, unknown keys and bad cursors.
const jobsFilterArb = fc.oneof(
  fc.constant(undefined),
  hostile,
  fc.record(
    {
      status: maybe(fc.oneof(fc.constantFrom('pending', 'completed', 'failed', 'nope'), fc.constant(['pending', 'running']), fc.constant([]))),
      name: maybe(fc.constantFrom('alpha-ok', 'beta')),
      since: maybe(fc.oneof(fc.nat(), fc.date({ noInvalidDate: false }))),
      until: maybe(fc.oneof(fc.nat(), fc.date({ noInvalidDate: false }))),
      limit: maybe(fc.integer({ min: -1, max: 1200 })),
      cursor: maybe(fc.constantFrom('not-a-cursor', '01890000-0000-7000-8000-000000000000')),
      order: maybe(fc.constantFrom('asc', 'desc', 'up')),
      includeData: maybe(fc.boolean()),
      extra: fc.constant(undefined),
    },
    { requiredKeys: [] },
  ),
)
const ruleArb = fc.oneof(
  hostile,
  fc.record(
    {
      id: maybe(fc.constantFrom('r1', 'r2')),
      metric: maybe(fc.constantFrom('errorRate', 'failedCount', 'queueLength', 'nope')),
      operator: maybe(fc.constantFrom('>', '>=', '==')),
      threshold: maybe(fc.double({ noNaN: true, min: -10, max: 100 })),
      window: maybe(fc.constantFrom(0, 60000)),
      severity: maybe(fc.constantFrom('info', 'warning', 'critical')),
      channels: maybe(fc.constantFrom(['log'], [])),
      calculation: maybe(fc.constantFrom('alpha-ok')),
    },
    { requiredKeys: ['metric', 'operator', 'threshold'] },
  ),
)

// --- the calls -----------------------------------------------------------------

// Each call: [name, argsArb, how to run it]. `kind` says what a success or a
// failure must change: 'add' (jobs), 'schedule' (schedules), null (nothing checked).
function callArb(ids, alerts) {
  const c = (name, args, kind = null) => fc.tuple(fc.constant(name), args, fc.constant(kind))
  return fc.oneof(
    { weight: 8, arbitrary: c('addCalculationJob', fc.tuple(calcArb, dataArb, contextArb, optionsArb(ids)), 'add') },
    {
      weight: 4,
      arbitrary: c(
        'addCalculationJobs',
        fc.tuple(fc.oneof(hostile, fc.array(fc.oneof({ weight: 4, arbitrary: fc.record({ calculation: calcArb, data: dataArb, context: contextArb, options: optionsArb(ids) }, { requiredKeys: ['calculation'] }) }, { weight: 1, arbitrary: hostile }), { maxLength: 6 }))),
        'add',
      ),
    },
    { weight: 2, arbitrary: c('registerCalculation', fc.tuple(calcArb)) },
    { weight: 3, arbitrary: c('scheduleCalculationJob', fc.tuple(calcArb, dataArb, contextArb, dateArb, scheduleOptionsArb), 'schedule') },
    {
      weight: 3,
      arbitrary: c('scheduleRecurringCalculationJob', fc.tuple(calcArb, dataArb, contextArb, dateArb, maybe(fc.constantFrom(1000, 2500, 60000), 2), scheduleOptionsArb), 'schedule'),
    },
    { weight: 4, arbitrary: c('scheduleCronCalculationJob', fc.tuple(calcArb, dataArb, contextArb, cronString, scheduleOptionsArb), 'schedule') },
    { weight: 2, arbitrary: c('getJobStatus', fc.tuple(idArb(ids))) },
    { weight: 2, arbitrary: c('cancelJob', fc.tuple(idArb(ids))) },
    { weight: 2, arbitrary: c('retryJob', fc.tuple(idArb(ids))) },
    { weight: 1, arbitrary: c('getScheduledJobs', fc.tuple(filterArb)) },
    { weight: 2, arbitrary: c('getJobs', fc.tuple(jobsFilterArb)) },
    { weight: 1, arbitrary: c('cancelScheduledJob', fc.tuple(idArb(['s1', 's2']))) },
    { weight: 1, arbitrary: c('setScheduledJobEnabled', fc.tuple(idArb(['s1', 's2']), maybe(fc.boolean()))) },
    { weight: 2, arbitrary: c('advanceTime', fc.tuple(maybe(fc.integer({ min: 0, max: 5000 }), 3))) },
    { weight: 1, arbitrary: c('start', fc.tuple()) },
    { weight: 1, arbitrary: c('stop', fc.tuple(fc.oneof(fc.constant(undefined), hostile, fc.record({ timeoutMs: maybe(fc.nat(5)) })))) },
    { weight: 1, arbitrary: c('flush', fc.tuple()) },
    { weight: 1, arbitrary: c('getAlertHistory', fc.tuple(filterArb)) },
    { weight: 1, arbitrary: c('addAlertRule', fc.tuple(ruleArb)) },
    { weight: 1, arbitrary: c('removeAlertRule', fc.tuple(idArb(['r1', 'r2']))) },
    { weight: 1, arbitrary: c('acknowledgeAlert', fc.tuple(idArb(alerts), maybe(fc.constantFrom('ops')))) },
    { weight: 1, arbitrary: c('resolveAlert', fc.tuple(idArb(alerts))) },
    {
      weight: 2,
      arbitrary: c(
        'readers',
        fc.tuple(
          fc.constantFrom(
            'getQueueStatistics',
            'getSystemStatus',
            'getSystemHealth',
            'getJobExecutionSummary',
            'getPerformanceMetrics',
            'getQueueTrends',
            'getActiveAlerts',
            'getAlertRules',
            'getPrometheusMetrics',
            'now',
          ),
          fc.array(hostile, { maxLength: 2 }),
        ),
      ),
    },
  )
}

function isCoded(e) {
  return types.isNativeError(e) && JOBWERK_ERROR_CODES.includes(e.code)
}

function describeError(e) {
  try {
    return `${types.isNativeError(e) ? `${e.name} code=${String(e.code)}: ${e.message}` : typeof e}`
  } catch {
    return 'an unreadable throw'
  }
}

function checkStats(service, where) {
  const s = service.getQueueStatistics()
  const sum = s.waiting + s.pending + s.running + s.completed + s.failed + s.timeout + s.cancelled
  if (s.total !== sum) throw new Error(`${where}: total ${s.total} != sum of statuses ${sum}`)
  if (s.queued !== s.pending + s.waiting) throw new Error(`${where}: queued ${s.queued} != pending + waiting`)
  if (s.queued > s.maxQueueSize) throw new Error(`${where}: ${s.queued} queued > maxQueueSize ${s.maxQueueSize}`)
  if (s.running > s.maxWorkers || s.activeWorkers > s.maxWorkers) throw new Error(`${where}: ${s.running} running > maxWorkers ${s.maxWorkers}`)
  for (const k of ['throughput', 'averageWaitTime', 'averageRunTime', 'workerUtilization']) {
    if (typeof s[k] !== 'number' || !Number.isFinite(s[k]) || s[k] < 0) throw new Error(`${where}: ${k} is ${s[k]}`)
  }
  return s
}

async function runCall(service, ids, alerts, [name, args, kind]) {
  const before = kind === null ? null : { total: service.getQueueStatistics().total, schedules: service.getScheduledJobs().length }
  let result
  let error = null
  try {
    if (name === 'readers') {
      const [method, extra] = args
      result = service[method](...materialize(extra))
    } else {
      result = service[name](...materialize(args))
    }
    if (result && typeof result.then === 'function') result = await result
  } catch (e) {
    error = e
  }
  if (error !== null && !isCoded(error)) {
    throw new Error(`${name} threw an uncoded error: ${describeError(error)}`)
  }
  saw(`${name === 'readers' ? args[0] : name} ${error === null ? 'ok' : 'coded'}`)
  if (kind === 'add') {
    const total = service.getQueueStatistics().total
    const added = error === null ? (Array.isArray(result) ? result.length : 1) : 0
    if (total !== before.total + added) throw new Error(`${name}: total went ${before.total} -> ${total}, ${added} added (${error ? describeError(error) : 'ok'})`)
    if (error === null) {
      for (const id of Array.isArray(result) ? result : [result]) {
        if (typeof id !== 'string' || service.getJobStatus(id) === null) throw new Error(`${name}: returned id ${String(id)} has no status`)
        ids.push(id)
      }
    }
  } else if (kind === 'schedule') {
    const n = service.getScheduledJobs().length
    if (error !== null && n !== before.schedules) throw new Error(`${name} failed (${describeError(error)}) but schedules went ${before.schedules} -> ${n}`)
    if (error === null && (typeof result !== 'string' || n < before.schedules || n > before.schedules + 1)) throw new Error(`${name}: schedules went ${before.schedules} -> ${n}`)
  } else if (name === 'addAlertRule' && error === null && typeof result !== 'string') {
    throw new Error('addAlertRule returned no id')
  }
  if (name === 'readers' && error === null) {
    // keep alert ids around to acknowledge/resolve
    for (const a of service.getAlertHistory()) if (!alerts.includes(a.id)) alerts.push(a.id)
  }
  checkStats(service, `after ${name}`)
}

describe('API fuzz', () => {
  test('every service method: success or a coded error, nothing half-added, statistics consistent', async () => {
    const ids = ['01890a5d-ac96-774b-bcce-b302099a8057']
    const alerts = ['highErrorRate-1']
    await fc.assert(
      fc.asyncProperty(fc.array(callArb(ids, alerts), { minLength: 1, maxLength: 8 }), fc.array(hostile, { maxLength: 3 }), async (calls, progress) => {
        ids.length = 1
        progressValues.length = 0
        progressValues.push(...materialize(progress))
        const service = new JobManagementService({
          storage: { type: 'memory' },
          clock: { type: 'manual', now: Date.UTC(2026, 0, 1) },
          queue: { maxQueueSize: 20, maxPayloadBytes: 4096, maxWorkers: 2, maxJobAge: 3.15e11 },
          monitoring: { logger: { info() {}, warn() {}, error() {} }, healthCheckInterval: 1000 },
        })
        try {
          for (const call of calls) await runCall(service, ids, alerts, call)
          if (service.getSystemStatus().status === 'started') {
            await service.advanceTime(2000)
            checkStats(service, 'after advancing')
          }
        } finally {
          await service.stop({ timeoutMs: 0 })
        }
        checkStats(service, 'after stop')
        if (progressFaults.length > 0) throw new Error(`updateProgress threw uncoded: ${progressFaults.splice(0).join('; ')}`)
      }),
      runs(1200),
    )
    const missing = []
    for (const name of ['addCalculationJob', 'addCalculationJobs', 'scheduleCalculationJob', 'scheduleRecurringCalculationJob', 'scheduleCronCalculationJob', 'registerCalculation', 'stop', 'advanceTime', 'getScheduledJobs', 'getJobs', 'addAlertRule', 'retryJob', 'cancelJob']) {
      for (const outcome of ['ok', 'coded']) if (!seen.get(`${name} ${outcome}`)) missing.push(`${name} ${outcome}`)
    }
    for (const name of ['start ok', 'flush ok', 'getJobStatus ok', 'setScheduledJobEnabled ok', 'getAlertHistory ok', 'removeAlertRule ok', 'acknowledgeAlert coded', 'resolveAlert coded', 'progress handler', 'getSystemHealth ok', 'getPrometheusMetrics ok']) {
      if (!seen.get(name)) missing.push(name)
    }
    expect(missing).toEqual([])
  })

  test('nextCronRuns: Dates strictly after `from`, increasing, or a coded error', () => {
    const from = Date.UTC(2026, 0, 1)
    fc.assert(
      fc.property(
        fc.oneof({ weight: 5, arbitrary: cronString }, { weight: 1, arbitrary: hostile }),
        fc.oneof(
          fc.constant(undefined),
          hostile,
          fc.record({ tz: maybe(fc.constantFrom(...TZS), 5), from: maybe(fc.constant(from), 5), count: maybe(fc.integer({ min: 1, max: 20 }), 5) }, { requiredKeys: ['from'] }),
        ),
        (expressionRecipe, optionsRecipe) => {
          const expression = materialize(expressionRecipe)
          const options = materialize(optionsRecipe)
          let runs
          try {
            runs = nextCronRuns(expression, options)
          } catch (e) {
            if (!isCoded(e)) throw new Error(`nextCronRuns threw an uncoded error: ${describeError(e)}`)
            return
          }
          if (!Array.isArray(runs)) throw new Error('not an array')
          let last = options && typeof options === 'object' && options.from === from ? from : -Infinity
          for (const d of runs) {
            if (!(d instanceof Date) || !(d.getTime() > last)) throw new Error(`${String(expression)}: runs not strictly increasing after from`)
            last = d.getTime()
          }
        },
      ),
      runs(1000),
    )
  })

  test('the constructor and getJobManagementService: a service or ERR_INVALID_CONFIG', async () => {
    const section = (keys) =>
      fc.oneof(hostile, fc.dictionary(fc.constantFrom(...keys), hostile, { maxKeys: 3 }), fc.record(Object.fromEntries(keys.map((k) => [k, hostile])), { requiredKeys: [] }))
    const configArb = fc.record(
      {
        queue: section(['maxWorkers', 'maxQueueSize', 'defaultTimeout', 'defaultRetries', 'defaultBackoff', 'cleanupInterval', 'maxJobAge', 'priorityWeights', 'maxPayloadBytes', 'nope']),
        scheduler: section(['enabled', 'checkInterval']),
        monitoring: section(['enabled', 'logger', 'healthCheckInterval', 'performanceThresholds', 'alerting', 'retention']),
        unref: hostile,
        clock: fc.oneof(fc.constant('manual'), hostile, fc.record({ type: fc.constantFrom('manual'), now: hostile })),
        bogus: hostile,
      },
      { requiredKeys: [] },
    )
    const made = []
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof({ weight: 1, arbitrary: hostile }, { weight: 6, arbitrary: configArb }), fc.boolean(), async (recipe, viaGetter) => {
          const config = materialize(recipe)
          // Always memory storage (never the default SQLite file) unless the
          // config is not an object at all.
          let cfg = config
          if (config !== null && typeof config === 'object') {
            try {
              if (!Array.isArray(config)) cfg = { ...config, storage: { type: 'memory' } }
            } catch {
              // unreadable: the constructor must say so
            }
          }
          let service
          try {
            service = viaGetter ? getJobManagementService({}, cfg) : new JobManagementService(cfg)
          } catch (e) {
            if (!isCoded(e) || (e.code !== 'ERR_INVALID_CONFIG' && e.code !== 'ERR_STORAGE')) throw new Error(`config threw ${describeError(e)}`)
            return
          }
          made.push(service)
          checkStats(service, 'a new service')
          if (!(service instanceof JobManagementService)) throw new Error('not a service')
        }),
        runs(400),
      )
    } finally {
      for (const s of made) await s.stop({ timeoutMs: 0 })
    }
  })
})
