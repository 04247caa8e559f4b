// The README's examples and the seed's usage, compiled by __test__/types.spec.js
// with `tsc --strict --noEmit` against index.d.ts. Not run.

import {
  JobManagementService,
  UnrecoverableError,
  getJobManagementService,
  nextCronRuns,
  AsyncCalculation,
  Alert,
  JobwerkErrorCode,
  JobErrorCode,
  CalculationStatus,
} from '../../index'

declare const strapi: { log: { info(m: string): void; warn(m: string): void; error(m: string): void } }
declare function computeTable(json: unknown): { rows: number[] }
declare function test(name: string, fn: () => Promise<void>): void
declare function expect(v: unknown): { toHaveLength(n: number): void; toBe(v: unknown): void }

export async function use(): Promise<void> {
  const service = new JobManagementService({
    queue: { maxWorkers: 3, maxQueueSize: 100, defaultTimeout: 30000, defaultRetries: 2 },
  })

  const tablePositions: AsyncCalculation<{ leagueId: number }, { rows: number[] }> = {
    name: 'table-positions',
    priority: 'medium',
    timeout: 10000,
    retries: 2,
    backoff: { type: 'exponential', delay: 1000, maxDelayMs: 30000, jitter: 0.1 },
    async calculate(data, context, job) {
      job.updateProgress(10)
      const res = await fetch(`https://example.test/league/${data.leagueId}`, { signal: job.signal })
      if (res.status === 404) throw new UnrecoverableError('no such league')
      return computeTable(await res.json())
    },
  }

  await service.start()
  const id = service.addCalculationJob(tablePositions, { leagueId: 7 }, { contentType: 'api::match.match' }, { priority: 'high' })
  service.on('completed', ({ jobId, name, result }) => strapi.log.info(`${name} ${jobId} done ${String(result)}`))
  service.on('failed', ({ jobId, error }) => strapi.log.error(`${jobId}: ${error.message} ${error.code ?? ''}`))
  const st: CalculationStatus | null = service.getJobStatus(id)
  if (st !== null && st.error !== null) {
    const code: JobErrorCode | string | undefined = st.error.code
    if (code === 'ERR_JOB_TIMEOUT' || code === 'ERR_DEPENDENCY_FAILED' || code === 'ERR_INTERRUPTED') strapi.log.warn(code)
  }
  const summary = await service.stop({ timeoutMs: 10000 })
  strapi.log.info(`${summary.aborted} ${summary.pending} ${summary.dropped}`)

  // Schedules
  service.scheduleCronCalculationJob(tablePositions, { leagueId: 7 }, {}, '30 9 * * MON-FRI', { tz: 'Europe/Berlin', maxRuns: 100, id: 'daily-table' })
  service.scheduleRecurringCalculationJob(tablePositions, { leagueId: 7 }, {}, new Date(), 15 * 60 * 1000, { endAt: new Date('2027-06-01') })
  service.scheduleCalculationJob(tablePositions, { leagueId: 7 }, {}, new Date('2026-12-01T23:00:00Z'), { priority: 'low' })
  const runs: Date[] = nextCronRuns('30 9 * * MON-FRI', { tz: 'Europe/Berlin', count: 3 })
  strapi.log.info(runs.map((d) => d.toISOString()).join())
  for (const s of service.getScheduledJobs({ kind: 'cron' })) strapi.log.info(`${s.id} ${s.nextRunAt ?? 'ended'}`)
  service.setScheduledJobEnabled('daily-table', false)
  service.cancelScheduledJob('daily-table')

  // Monitoring
  const monitored = new JobManagementService({
    monitoring: {
      logger: strapi.log,
      healthCheckInterval: 30000,
      alerting: {
        channels: ['log', 'webhook', 'email'],
        webhook: { url: 'https://hooks.example.com/jobwerk', headers: { authorization: 'Bearer ...' }, timeoutMs: 5000, retries: 2, backoffMs: 500 },
        email: { host: 'smtp.example.com', port: 587, secure: 'starttls', user: 'jobs', pass: '...', from: 'jobs@example.com', to: ['ops@example.com'] },
      },
    },
  })
  const health = monitored.getSystemHealth()
  strapi.log.info(`${health?.overall} ${health?.queue.checks[0]?.value ?? 'no data'} ${health?.errors.failuresLast5m}`)
  const perf = monitored.getPerformanceMetrics()
  if (perf) for (const [name, p] of Object.entries(perf.calculations)) strapi.log.info(`${name} p95 ${p.durationMs.p95} ${p.trend.direction}`)
  const execution = monitored.getJobExecutionSummary()
  strapi.log.info(`${execution?.lastMinute.errorRate ?? 0} ${execution?.totals.count}`)
  const trends = monitored.getQueueTrends()
  strapi.log.info(`${trends?.perSecond.points.length} ${monitored.getQueueStatistics().trends?.perMinute.intervalMs}`)
  const delivery = monitored.getSystemStatus().alertDelivery
  strapi.log.info(`${delivery?.webhookFailed ?? 0} ${delivery?.lastError ?? ''}`)
  monitored.addAlertRule({ metric: 'failedCount', operator: '>=', threshold: 3, window: 600000, severity: 'critical', calculation: 'table-positions' })
  for (const r of monitored.getAlertRules()) strapi.log.info(`${r.name} ${r.builtin}`)
  monitored.on('alert', (alert: Alert) => strapi.log.warn(`${alert.title}: ${alert.message} (${alert.window} ms)`))
  monitored.on('alertResolved', (alert) => strapi.log.info(alert.title))
  const text: string = monitored.getPrometheusMetrics()
  strapi.log.info(text)

  // Storage
  new JobManagementService({ storage: { type: 'sqlite', path: '.tmp/jobwerk.db', durability: 'normal' } })
  new JobManagementService({ storage: { type: 'memory' } })

  // Errors
  try {
    service.addCalculationJob(tablePositions, { leagueId: 1 })
  } catch (e) {
    const code = (e as { code?: JobwerkErrorCode }).code
    if (code === 'ERR_QUEUE_FULL') strapi.log.warn('full')
  }
}

// The seed's usage (a Strapi app).
export async function seed(): Promise<void> {
  const service = getJobManagementService(strapi)
  const calc = { name: 'standings', calculate: async (data: { matchId: number }) => ({ ok: data.matchId > 0 }) }
  const id: string = service.addCalculationJob(calc, { matchId: 1 }, { contentType: 'api::match.match', operationId: 'op-1' })
  const scheduleId: string = service.scheduleRecurringCalculationJob(calc, { matchId: 1 }, {}, new Date(), 86400000, { maxRuns: 365 })
  const overall = service.getSystemHealth()?.overall
  service.getActiveAlerts().forEach((a) => strapi.log.warn(a.title + a.message))
  strapi.log.info(`${id} ${scheduleId} ${overall}`)
}

// The README's manual-clock test.
test('the table is recalculated every weekday morning', async () => {
  const service = new JobManagementService({
    clock: { type: 'manual', now: Date.parse('2026-01-05T00:00:00Z') },
    queue: { maxJobAge: 30 * 24 * 60 * 60 * 1000 },
  })
  const runs: string[] = []
  const calc = { name: 'table', calculate: () => runs.push(new Date(service.now()).toISOString()) }
  await service.start()
  service.scheduleCronCalculationJob(calc, {}, {}, '30 9 * * MON-FRI', { tz: 'Europe/Berlin' })
  const id = service.addCalculationJob(calc, {}, {}, { delay: 60 * 60 * 1000 })
  await service.advanceTime(7 * 24 * 60 * 60 * 1000)
  expect(runs).toHaveLength(6)
  expect(service.getJobStatus(id)?.status).toBe('completed')
  await service.stop()
})

// The README's unique, debounced and one-at-a-time jobs.
export function uniqueJobs(service: JobManagementService): string | null {
  const tableRecalculation: AsyncCalculation<{ table: string }> = {
    name: 'table-recalculation',
    concurrencyKey: 'tables',
    calculate: async ({ table }) => table,
  }
  const id: string = service.addCalculationJob(tableRecalculation, { table: 'A' }, undefined, {
    key: 'table:A',
    debounceMs: 500,
    concurrencyKey: 'table:A',
  })
  service.addCalculationJob(tableRecalculation, { table: 'A' }, {}, { key: 'table:A', onDuplicate: 'replace' })
  const st: CalculationStatus | null = service.getJobStatus(id)
  const names: Array<string | null> = st ? [st.key, st.concurrencyKey, st.scheduleId] : []
  return names[0] ?? null
}

// PostgreSQL (preview): reads and admin calls are Promises; `await` works on every storage.
export async function postgresPreview(): Promise<boolean> {
  const pg = new JobManagementService({ storage: { type: 'postgres', host: 'db', schema: 'jobs', poolSize: 5 } })
  await pg.start()
  const st: CalculationStatus | null = await pg.getJobStatus('id')
  const page = await pg.getJobs({ status: 'completed' })
  const sqlite = new JobManagementService({ storage: { type: 'sqlite' } })
  const st2: CalculationStatus | null = sqlite.getJobStatus('id')
  return (await pg.cancelJob('id')) && page.jobs.length > 0 && st === st2
}
