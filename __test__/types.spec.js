'use strict'
// Issue 17, bug 15: index.d.ts against the README and against what the
// service returns at run time.
//
// 1. The README's examples and the seed's usage (__test__/types/readme-examples.ts)
//    compile with `tsc --strict --noEmit` (the TypeScript compiler API).
// 2. Every returned object and event payload has exactly the keys its declared
//    type has (no extra, no missing: optional keys may be absent), with values
//    of the declared kinds, recursively. The declared types are read from
//    index.d.ts with the compiler API (__test__/types/shapes.ts names them).

const path = require('node:path')
const ts = require('typescript')
const { JobManagementService, nextCronRuns } = require('..')
const { serviceTracker } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const DIR = path.join(__dirname, 'types')
const OPTIONS = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  types: ['node'],
  lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  skipLibCheck: true,
}

function diagnostics(program) {
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n') + (d.file ? ` (${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1})` : ''))
}

jest.setTimeout(60000)

describe('tsc --strict', () => {
  test("the README's examples and the seed's usage compile against index.d.ts", () => {
    const program = ts.createProgram([path.join(DIR, 'readme-examples.ts')], OPTIONS)
    expect(diagnostics(program)).toEqual([])
  })

  test('a misuse does not compile (the check above can fail)', () => {
    const file = path.join(DIR, 'misuse.ts')
    const source = [
      "import { getJobManagementService } from '../../index'",
      'const s = getJobManagementService({})',
      'export const a: string = s.getActiveAlerts()[0].titel',
      'export const b: number = s.getSystemHealth()!.queue.checks[0].status',
      "import { JobManagementService } from '../../index'",
      "export const c: boolean = new JobManagementService({ storage: { type: 'postgres' } }).cancelJob('x')",
      '',
    ].join('\n')
    const host = ts.createCompilerHost(OPTIONS)
    const read = host.readFile.bind(host)
    host.readFile = (f) => (f === file ? source : read(f))
    host.fileExists = ((exists) => (f) => f === file || exists(f))(host.fileExists.bind(host))
    const getSourceFile = host.getSourceFile.bind(host)
    host.getSourceFile = (f, ...rest) => (f === file ? ts.createSourceFile(f, source, ts.ScriptTarget.ES2022) : getSourceFile(f, ...rest))
    const errors = diagnostics(ts.createProgram([file], OPTIONS, host))
    expect(errors.some((e) => e.includes("'titel'"))).toBe(true)
    expect(errors.some((e) => e.includes("is not assignable to type 'number'"))).toBe(true)
    expect(errors.some((e) => e.includes("'Promise<boolean>' is not assignable to type 'boolean'"))).toBe(true)
  })
})

// --- the runtime shape check --------------------------------------------------

function shapeChecker() {
  const program = ts.createProgram([path.join(DIR, 'shapes.ts')], OPTIONS)
  const errors = diagnostics(program)
  if (errors.length > 0) throw new Error(`shapes.ts does not compile: ${errors.join('; ')}`)
  const checker = program.getTypeChecker()
  const file = program.getSourceFile(path.join(DIR, 'shapes.ts'))
  const decl = file.statements.find((s) => ts.isInterfaceDeclaration(s) && s.name.text === 'Shapes')
  const shapes = checker.getDeclaredTypeOfSymbol(checker.getSymbolAtLocation(decl.name))
  const typeOf = (name) => {
    const p = shapes.getProperty(name)
    if (!p) throw new Error(`Shapes has no ${name}`)
    return checker.getTypeOfSymbol(p)
  }

  // Problems of `value` against `type` ([] when it fits).
  function check(value, type, at) {
    const f = type.flags
    if (f & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return []
    if (type.isUnion()) {
      let best = null
      for (const t of type.types) {
        const p = check(value, t, at)
        if (p.length === 0) return []
        // report the member of the same kind (an object for an object)
        if (best === null || (value !== null && typeof value === 'object' && t.flags & ts.TypeFlags.Object)) best = p
      }
      return best || [`${at}: ${show(value)} is not ${checker.typeToString(type)}`]
    }
    if (type.isIntersection() && type.types.some((t) => t.flags & ts.TypeFlags.StringLike)) {
      return typeof value === 'string' ? [] : [`${at}: ${show(value)} is not a string`]
    }
    const bad = () => [`${at}: ${show(value)} is not ${checker.typeToString(type)}`]
    if (f & ts.TypeFlags.Null) return value === null ? [] : bad()
    if (f & (ts.TypeFlags.Undefined | ts.TypeFlags.Void)) return value === undefined ? [] : bad()
    if (f & ts.TypeFlags.StringLiteral) return value === type.value ? [] : bad()
    if (f & ts.TypeFlags.NumberLiteral) return value === type.value ? [] : bad()
    if (f & ts.TypeFlags.BooleanLiteral) return typeof value === 'boolean' && String(value) === checker.typeToString(type) ? [] : bad()
    if (f & ts.TypeFlags.String) return typeof value === 'string' ? [] : bad()
    if (f & ts.TypeFlags.Number) return typeof value === 'number' ? [] : bad()
    if (f & ts.TypeFlags.Boolean) return typeof value === 'boolean' ? [] : bad()
    // `object`: any non-null object
    if (f & ts.TypeFlags.NonPrimitive) return value !== null && typeof value === 'object' ? [] : bad()
    if (!(f & ts.TypeFlags.Object) && !type.isIntersection()) return [`${at}: cannot check ${checker.typeToString(type)}`]
    if (value === null || typeof value !== 'object') return bad()
    const name = type.symbol && type.symbol.name
    if (name === 'Date') return value instanceof Date ? [] : bad()
    if (checker.isArrayType(type) || checker.isTupleType(type)) {
      if (!Array.isArray(value)) return bad()
      const args = checker.getTypeArguments(type)
      return value.flatMap((v, i) => check(v, checker.isTupleType(type) ? args[i] : args[0], `${at}[${i}]`))
    }
    if (Array.isArray(value)) return bad()
    const props = checker.getPropertiesOfType(type)
    const index = checker.getIndexInfoOfType(type, ts.IndexKind.String)
    const problems = []
    const declared = new Set(props.map((p) => p.name))
    for (const p of props) {
      const optional = (p.flags & ts.SymbolFlags.Optional) !== 0
      if (!(p.name in value)) {
        if (!optional) problems.push(`${at}.${p.name}: missing`)
        continue
      }
      problems.push(...check(value[p.name], checker.getTypeOfSymbol(p), `${at}.${p.name}`))
    }
    for (const k of Object.keys(value)) {
      if (declared.has(k)) continue
      if (index) problems.push(...check(value[k], index.type, `${at}.${k}`))
      else problems.push(`${at}.${k}: not declared`)
    }
    return problems
  }

  return { typeOf, check }
}

function show(v) {
  try {
    return JSON.stringify(v).slice(0, 80)
  } catch {
    return String(v)
  }
}

describe('runtime shapes match index.d.ts', () => {
  test('every returned object and event payload: no extra, no missing keys', async () => {
    const { typeOf, check } = shapeChecker()
    const T0 = Date.parse('2026-02-02T00:00:00Z')
    const service = tracker.create({
      clock: { type: 'manual', now: T0 },
      queue: { maxWorkers: 3, maxJobAge: 30 * 24 * 3600e3 },
      monitoring: {
        healthCheckInterval: 1000,
        logger: { info() {}, warn() {}, error() {} },
        alerting: { channels: ['log'], webhook: { url: 'http://127.0.0.1:9/hook', retries: 0, timeoutMs: 200 } },
      },
    })
    const events = {}
    for (const e of ['completed', 'failed', 'retrying', 'timedOut', 'cancelled', 'progress', 'alert', 'alertResolved']) {
      events[e] = []
      service.on(e, (p) => events[e].push(p))
    }
    const never = () => new Promise(() => {})
    const calcs = {
      ok: { name: 'ok', calculate: (d, c, job) => (job.updateProgress({ step: 1 }), { d }) },
      bad: { name: 'bad', retries: 0, calculate: () => { throw Object.assign(new Error('boom'), { code: 'E_BOOM' }) } },
      retry: { name: 'retry', retries: 1, backoff: 1000, calculate: () => { throw new Error('again') } },
      slow: { name: 'slow', retries: 0, timeout: 1000, calculate: never },
      hold: { name: 'hold', timeout: 0, calculate: never },
    }
    service.addAlertRule({ id: 'fails', name: 'Failures', metric: 'failedCount', operator: '>=', threshold: 1, window: 60000, severity: 'warning' })
    await service.start()
    const ids = {
      completed: service.addCalculationJob(calcs.ok, 1, { contentType: 'api::match.match' }),
      failed: service.addCalculationJob(calcs.bad, 2),
      retried: service.addCalculationJob(calcs.retry, 3),
      timeout: service.addCalculationJob(calcs.slow, 4),
      cancelled: service.addCalculationJob(calcs.hold, 5),
      pending: service.addCalculationJob(calcs.ok, 6, {}, { delay: 3600e3 }),
    }
    ids.waiting = service.addCalculationJob(calcs.ok, 7, {}, { dependsOn: [ids.pending] })
    ids.depFailed = service.addCalculationJob(calcs.ok, 8, {}, { dependsOn: [ids.cancelled] })
    service.scheduleCronCalculationJob(calcs.ok, {}, {}, '*/2 * * * * *', { tz: 'UTC', id: 'cron' })
    service.scheduleRecurringCalculationJob(calcs.ok, {}, {}, T0, 60000, { id: 'interval', maxRuns: 3 })
    service.scheduleCalculationJob(calcs.ok, {}, {}, T0 + 1000, { id: 'once' })
    await service.advanceTime(100)
    expect(service.cancelJob(ids.cancelled)).toBe(true)
    await service.advanceTime(5000)
    expect(service.getActiveAlerts().map((a) => a.ruleId)).toContain('fails')
    const activeAlerts = service.getActiveAlerts()
    // no failure for a minute: the 'fails' rule (window 60 s) resolves itself
    await service.advanceTime(70000)
    for (const a of service.getActiveAlerts()) service.resolveAlert(a.id)

    const runtime = {
      getSystemStatus: [service.getSystemStatus()],
      getSystemHealth: [service.getSystemHealth()],
      getJobExecutionSummary: [service.getJobExecutionSummary()],
      getPerformanceMetrics: [service.getPerformanceMetrics()],
      getQueueTrends: [service.getQueueTrends()],
      getQueueStatistics: [service.getQueueStatistics()],
      getActiveAlerts: [activeAlerts, service.getActiveAlerts()],
      getAlertHistory: [service.getAlertHistory()],
      getAlertRules: [service.getAlertRules()],
      getScheduledJobs: [service.getScheduledJobs()],
      getJobStatus: [...Object.values(ids).map((id) => service.getJobStatus(id)), service.getJobStatus('nope')],
      nextCronRuns: [nextCronRuns('0 9 * * MON', { tz: 'UTC', count: 2 })],
      ...events,
    }
    // What the check must have seen for it to mean something.
    expect(new Set(runtime.getJobStatus.filter(Boolean).map((s) => s.status))).toEqual(new Set(['completed', 'failed', 'pending', 'timeout', 'cancelled', 'waiting']))
    expect(runtime.getAlertHistory[0].some((a) => a.status === 'resolved')).toBe(true)
    expect(service.getJobStatus(ids.waiting)).toMatchObject({ dependsOn: [ids.pending], onDependencyFailure: 'fail' })
    expect(service.getJobStatus(ids.completed).dependsOn).toEqual([])
    expect(runtime.getSystemStatus[0].alertDelivery).not.toBeNull()
    for (const e of Object.keys(events)) expect(`${e}: ${events[e].length}`).not.toBe(`${e}: 0`)
    // the non-enumerable trends getter
    expect(check(runtime.getQueueStatistics[0].trends, typeOf('getQueueTrends'), 'trends')).toEqual([])

    runtime.stop = [await service.stop({ timeoutMs: 0 })]
    const disabled = tracker.create({ clock: 'manual', monitoring: { enabled: false } })
    runtime.getSystemHealth.push(disabled.getSystemHealth())
    runtime.getQueueTrends.push(disabled.getQueueTrends())
    runtime.getSystemStatus.push(disabled.getSystemStatus())

    const problems = []
    for (const [name, values] of Object.entries(runtime)) {
      const type = typeOf(name)
      for (const v of values) problems.push(...check(v, type, name))
    }
    expect(problems).toEqual([])
  })

  test('the checker itself catches an extra, a missing and a mistyped key', () => {
    const { typeOf, check } = shapeChecker()
    const stop = typeOf('stop')
    expect(check({ aborted: 0, pending: 0, dropped: 0 }, stop, 's')).toEqual([])
    expect(check({ aborted: 0, pending: 0, dropped: 0, extra: 1 }, stop, 's')).toEqual(['s.extra: not declared'])
    expect(check({ aborted: 0, pending: 0 }, stop, 's')).toEqual(['s.dropped: missing'])
    expect(check({ aborted: 0, pending: '0', dropped: 0 }, stop, 's')).toHaveLength(1)
  })
})
