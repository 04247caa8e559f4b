'use strict'
// Monitoring wired into the service: alerts (default and custom rules, log
// channel, events, acknowledge, resolve, auto-resolve), health, performance
// metrics, Prometheus exposition, bad input.

const { serviceTracker } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const T0 = Date.parse('2026-02-01T00:00:00Z')

function setup(monitoring = {}, queue = {}) {
  const logs = []
  const logger = { info: (m) => logs.push(['info', m]), warn: (m) => logs.push(['warn', m]), error: (m) => logs.push(['error', m]) }
  const s = tracker.create({
    clock: { type: 'manual', now: T0 },
    queue: { maxQueueSize: 1000, maxWorkers: 2, ...queue },
    monitoring: { healthCheckInterval: 1000, logger, ...monitoring },
  })
  const events = []
  s.on('alert', (a) => events.push(['alert', a.ruleId]))
  s.on('alertResolved', (a) => events.push(['alertResolved', a.ruleId]))
  return { s, logs, events }
}

const ok = { name: 'ok', calculate: () => 1 }
const bad = { name: 'bad', retries: 0, calculate: () => { throw new Error('boom') } }

test('a high error rate fires one alert, logs it, and resolves when failures age out', async () => {
  const { s, logs, events } = setup()
  await s.start()
  for (let i = 0; i < 4; i++) s.addCalculationJob(bad, {})
  for (let i = 0; i < 4; i++) s.addCalculationJob(ok, {})
  await s.advanceTime(3000)
  expect(events).toEqual([['alert', 'highErrorRate']])
  expect(logs).toHaveLength(1)
  expect(logs[0][0]).toBe('error')
  expect(logs[0][1]).toMatch(/error rate/i)
  const [alert] = s.getActiveAlerts()
  expect(alert).toMatchObject({ ruleId: 'highErrorRate', severity: 'critical', status: 'active', acknowledged: false })
  expect(s.getSystemHealth().errors.status).toBe('critical')
  expect(s.getSystemHealth().overall).toBe('critical')
  // Still breached: no second alert.
  await s.advanceTime(3000)
  expect(events).toHaveLength(1)
  // The 5-minute window passes with only successes: it resolves itself.
  for (let i = 0; i < 4; i++) s.addCalculationJob(ok, {})
  await s.advanceTime(6 * 60e3)
  expect(events).toEqual([['alert', 'highErrorRate'], ['alertResolved', 'highErrorRate']])
  expect(s.getActiveAlerts()).toEqual([])
  const [past] = s.getAlertHistory()
  expect(past.ruleId).toBe('highErrorRate')
  expect(typeof past.resolvedAt).toBe('number')
  expect(s.getSystemHealth().overall).toBe('healthy')
  // The fifth dimension: memory storage is always healthy.
  expect(s.getSystemHealth().storage).toMatchObject({ status: 'healthy', state: 'healthy', message: null, downMs: null })
})

test('queue backlog: fires over 50 pending, not at 50; acknowledge and resolve by hand', async () => {
  const { s, events } = setup({}, { maxWorkers: 1 })
  const hold = { name: 'hold', timeout: 0, calculate: () => new Promise(() => {}) }
  await s.start()
  s.addCalculationJob(hold, {})
  for (let i = 0; i < 50; i++) s.addCalculationJob(ok, {})
  await s.advanceTime(2000)
  expect(events.filter(([, r]) => r === 'queueBacklog')).toEqual([])
  s.addCalculationJob(ok, {})
  await s.advanceTime(2000)
  expect(events).toContainEqual(['alert', 'queueBacklog'])
  const oldest = s.getSystemHealth().queue.checks.find((c) => c.metric === 'oldestWaitMs')
  expect(oldest.value).toBeGreaterThanOrEqual(3000)
  expect(s.getQueueStatistics().trends).toBeTruthy()
  const alert = s.getActiveAlerts().find((a) => a.ruleId === 'queueBacklog')
  expect(s.acknowledgeAlert(alert.id, 'ops@example.com')).toBe(true)
  expect(s.getActiveAlerts().find((a) => a.id === alert.id)).toMatchObject({ acknowledged: true, acknowledgedBy: 'ops@example.com' })
  expect(s.resolveAlert(alert.id)).toBe(true)
  expect(s.resolveAlert(alert.id)).toBe(false)
  expect(s.acknowledgeAlert('nope', 'x')).toBe(false)
  expect(s.getAlertHistory({ ruleId: 'queueBacklog' })[0].resolution).toBe('manual')
})

test('custom rules can be added and removed at run time; invalid rules are coded errors', async () => {
  const { s, events } = setup()
  await s.start()
  const id = s.addAlertRule({ id: 'bad-fails', metric: 'failedCount', operator: '>=', threshold: 2, window: 60000, severity: 'warning', calculation: 'bad' })
  expect(id).toBe('bad-fails')
  expect(s.getAlertRules().map((r) => r.id)).toContain('bad-fails')
  s.addCalculationJob(bad, {})
  s.addCalculationJob(bad, {})
  await s.advanceTime(2000)
  expect(events).toContainEqual(['alert', 'bad-fails'])
  expect(s.removeAlertRule('bad-fails')).toBe(true)
  expect(s.removeAlertRule('bad-fails')).toBe(false)
  expect(s.getActiveAlerts().some((a) => a.ruleId === 'bad-fails')).toBe(false)
  const code = (rule) => {
    try {
      s.addAlertRule(rule)
    } catch (e) {
      return [e.code, e.message]
    }
    return null
  }
  expect(code({ metric: 'nope', operator: '>', threshold: 1 })[1]).toMatch(/metric/)
  expect(code({ metric: 'errorRate', operator: '>', threshold: NaN })[1]).toMatch(/threshold/)
  expect(code({ metric: 'errorRate', operator: '>', threshold: 1, channels: ['pager'] })[1]).toMatch(/channels/)
  expect(code({ metric: 'errorRate', operator: '~', threshold: 1 })[1]).toMatch(/operator/)
  expect(code({ metric: 'errorRate', operator: '>', threshold: 1 })).toBeNull()
  expect(() => s.addAlertRule(null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  expect(() => s.acknowledgeAlert(5, 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  expect(() => s.acknowledgeAlert('a', '')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
})

test('performance metrics per calculation, summary, status, trends', async () => {
  const { s } = setup()
  await s.start()
  for (let i = 0; i < 3; i++) s.addCalculationJob(ok, {})
  s.addCalculationJob(bad, {})
  await s.advanceTime(2000)
  const p = s.getPerformanceMetrics()
  expect(p.calculations.ok).toMatchObject({ count: 3, completed: 3, failed: 0, successRate: 100 })
  expect(p.calculations.bad).toMatchObject({ count: 1, failed: 1, successRate: 0 })
  expect(p.calculations.ok.durationMs).toEqual(expect.objectContaining({ p50: expect.any(Number), p95: expect.any(Number), p99: expect.any(Number) }))
  expect(s.getJobExecutionSummary()).toBeTruthy()
  expect(s.getQueueTrends()).toBeTruthy()
  const st = s.getSystemStatus()
  expect(st).toMatchObject({ status: 'started', storage: { type: 'memory' }, workers: { max: 2 }, monitoring: true, version: require('../package.json').version })
  expect(st.jobs.completed).toBe(3)
})

test('Prometheus exposition is valid text format', async () => {
  const { s } = setup()
  await s.start()
  s.addCalculationJob({ name: 'we"ird\\name', calculate: () => 1 }, {})
  s.addCalculationJob(bad, {})
  await s.advanceTime(2000)
  const text = s.getPrometheusMetrics()
  const typed = new Map()
  for (const line of text.split('\n')) {
    if (line === '') continue
    let m
    if ((m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line))) {
      if (m[1] === 'TYPE') typed.set(m[2], m[3])
      continue
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line)
    expect(m).not.toBeNull()
    const base = m[1].replace(/_(bucket|sum|count)$/, '')
    expect(typed.has(m[1]) || typed.has(base)).toBe(true)
  }
  expect(text).toContain('jobwerk_jobs_total{calculation="bad",outcome="failed"} 1')
  expect(text).toContain('calculation="we\\"ird\\\\name"')
  expect(text).toMatch(/jobwerk_jobs_pending \d/)
})

test('monitoring disabled: health is null, no metrics, no alerts; bad config is coded', async () => {
  const s = tracker.create({ clock: 'manual', monitoring: { enabled: false } })
  await s.start()
  s.addCalculationJob(bad, {})
  await s.advanceTime(60000)
  expect(s.getSystemHealth()).toBeNull()
  expect(s.getPrometheusMetrics()).toBe('')
  expect(s.getActiveAlerts()).toEqual([])
  expect(() => s.addAlertRule({ metric: 'errorRate', operator: '>', threshold: 1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  const bad1 = () => tracker.create({ monitoring: { performanceThresholds: { highErrorRatePercent: 'x' } } })
  expect(bad1).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  expect(() => tracker.create({ monitoring: { logger: {} } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  expect(() => tracker.create({ monitoring: { healthCheckInterval: -1 } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
})
