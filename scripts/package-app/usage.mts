// The README's usage, type-checked against the installed package (ESM, `import`).
import jobwerk, {
  JobManagementService,
  UnrecoverableError,
  getJobManagementService,
  nextCronRuns,
  type Alert,
  type AsyncCalculation,
  type CalculationContext,
  type CalculationStatus,
  type JobwerkErrorCode,
  type QueueStatistics,
  type StopSummary,
} from 'jobwerk'

declare const strapi: { log: { info(m: string): void; warn(m: string): void; error(m: string): void } }
declare function computeTable(league: unknown): { rows: number }

const tablePositions: AsyncCalculation<{ leagueId: number }, { rows: number }> = {
  name: 'table-positions',
  priority: 'medium',
  timeout: 10000,
  retries: 2,
  backoff: { type: 'exponential', delay: 1000, maxDelayMs: 30000, jitter: 0.1 },
  async calculate(data, context, job) {
    job.updateProgress(10)
    const res = await fetch(`https://example.test/league/${data.leagueId}?from=${context.contentType}`, { signal: job.signal })
    if (res.status === 404) throw new UnrecoverableError('no such league')
    return computeTable(await res.json())
  },
}

const service = new JobManagementService({
  queue: { maxWorkers: 3, maxQueueSize: 100, defaultTimeout: 30000, defaultRetries: 2 },
  monitoring: { logger: strapi.log, healthCheckInterval: 30000 },
})
await service.start()
const id: string = service.addCalculationJob(tablePositions, { leagueId: 7 }, { contentType: 'api::match.match' }, { priority: 'high' })
service.on('completed', ({ jobId, name }) => strapi.log.info(`${name} ${jobId} done`))
service.on('failed', ({ error }) => strapi.log.error(error.message))
const status: CalculationStatus | null = service.getJobStatus(id)
if (status) strapi.log.info(`${status.status} ${status.attempts}`)
service.cancelJob(id)
service.retryJob(id)
const ids: string[] = service.addCalculationJobs([{ calculation: tablePositions, data: { leagueId: 8 } }])
service.registerCalculation(tablePositions)
const stats: QueueStatistics = service.getQueueStatistics()
strapi.log.info(`${stats.total} ${ids.length}`)
await service.flush()

// Schedules.
service.scheduleCronCalculationJob(tablePositions, { leagueId: 7 }, {}, '30 9 * * MON-FRI', { tz: 'Europe/Berlin', maxRuns: 100, id: 'daily-table' })
service.scheduleRecurringCalculationJob(tablePositions, { leagueId: 7 }, {}, new Date(), 15 * 60 * 1000, { endAt: new Date('2027-06-01') })
service.scheduleCalculationJob(tablePositions, { leagueId: 7 }, {}, new Date('2026-12-01T23:00:00Z'), { priority: 'low' })
const runs: Date[] = nextCronRuns('30 9 * * MON-FRI', { tz: 'Europe/Berlin', count: 3 })
strapi.log.info(runs.map((d) => d.toISOString()).join())
service.getScheduledJobs({ kind: 'cron' }).forEach((s) => strapi.log.info(`${s.id} ${s.nextRunAt}`))
service.setScheduledJobEnabled('daily-table', false)
service.cancelScheduledJob('daily-table')

// Monitoring.
strapi.log.info(`${service.getSystemHealth()?.overall}`)
service.getPerformanceMetrics()
const alerts: Alert[] = service.getActiveAlerts()
strapi.log.info(`${alerts.length}`)
service.addAlertRule({ metric: 'failedCount', operator: '>=', threshold: 3, window: 600000, severity: 'critical', calculation: 'table-positions' })
service.on('alert', (alert) => strapi.log.warn(alert.message))
const prometheus: string = service.getPrometheusMetrics()
strapi.log.info(prometheus)

// The seed app's usage (a Strapi service).
const jobs = getJobManagementService(strapi)
const calc: AsyncCalculation = { name: 'standings', calculate: async (data: { season: number }) => data.season }
const ctx: CalculationContext = { contentType: 'api::match.match', operationId: 'recalculate' }
jobs.addCalculationJob(calc, { season: 2026 }, { contentType: ctx.contentType, operationId: ctx.operationId })
jobs.scheduleRecurringCalculationJob(calc, {}, ctx, new Date(), 86400000, { maxRuns: 365 })
const overall: 'healthy' | 'warning' | 'critical' | undefined = jobs.getSystemHealth()?.overall
strapi.log.info(`${overall}`)
// The seed's line.
jobs.getActiveAlerts().forEach((a) => strapi.log.warn(a.title + a.message))

// Manual clock (tests).
const manual = new JobManagementService({ clock: { type: 'manual', now: Date.parse('2026-01-05T00:00:00Z') } })
await manual.advanceTime(60 * 60 * 1000)
const summary: StopSummary = await manual.stop({ timeoutMs: 10000 })
strapi.log.info(`${summary.aborted} ${manual.now()}`)

// Errors carry a code; the default export is the same module.
try {
  service.addCalculationJob(tablePositions, { leagueId: 7 })
} catch (e) {
  const code = (e as { code?: JobwerkErrorCode }).code
  if (code === 'ERR_QUEUE_FULL' || code === 'ERR_NATIVE_ADDON') strapi.log.warn(code)
}
const same: typeof JobManagementService = jobwerk.JobManagementService
await service.stop({ timeoutMs: 10000 })
export { same }
