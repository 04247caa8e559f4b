// Types of jobwerk's Strapi 5 plugin (strapi-server.js).
import type { Calculation, CalculationStatus, JobListFilter, JobManagementConfig, JobManagementService, JobOptions, JobPage, ScheduleOptions } from '../index'

/** `config/plugins.js` → `jobwerk: { enabled: true, config }`: the service's config plus the plugin's keys. */
interface JobwerkPluginConfig extends JobManagementConfig {
  /** destroy(): how long running jobs may finish before they are aborted (ms). Default 8000. */
  shutdownTimeoutMs?: number
  /** Folder (from the app's root) whose `.js` files each export a calculation; false: none. Default 'src/jobs'. */
  jobsDir?: string | false
  /** At most one `enqueue-lost` alert per this many ms. Default 60000. */
  alertCooldownMs?: number
  /** Cron schedules `cron:<name>`, reconciled with the stored ones at boot. */
  cron?: Record<string, JobwerkCronEntry>
  /** The dashboard on Strapi's server under an admin path, behind its own gate. Off by default. */
  dashboard?: JobwerkDashboardConfig
}

/** `config.dashboard`: enabled needs a gate, `token` or `auth` (not both). */
interface JobwerkDashboardConfig {
  /** Default false. */
  enabled?: boolean
  /** Where the page and its JSON API are served. Default '/admin/jobwerk' (not '/api', '/admin', '/_health', '/uploads'). */
  path?: string
  /** A bearer token of at least 16 characters (e.g. `env('JOBWERK_DASHBOARD_TOKEN')`); a browser opens `<path>/?token=...` once, which sets an HttpOnly cookie. */
  token?: string
  /** Instead of a token: decides each request (the Node request). */
  auth?: (req: import('node:http').IncomingMessage) => boolean | Promise<boolean>
  /** No buttons; every action is refused (403). Default false. */
  readOnly?: boolean
  /** Keys masked in data, context and results, at any depth. */
  redact?: string[]
}

/** jobwerk's shape (a registered calculation) or Strapi's cron-task shape (a task called with `{ strapi }`). */
type JobwerkCronEntry =
  | { rule: string; tz?: string; calculation: string; data?: unknown; context?: Record<string, unknown>; options?: ScheduleOptions }
  | { task: (ctx: { strapi: any }) => unknown; options: ScheduleOptions & { rule: string; tz?: string } }

/** `T` on memory and SQLite, a Promise of it on PostgreSQL: the storage follows the app's database, so `await` it. */
type MaybePromise<T> = T | Promise<T>

/**
 * `strapi.plugin('jobwerk').service('jobs')`, also returned by `getJobManagementService(strapi)`:
 * a JobManagementService whose calculations may be given by their registered name. Its storage
 * follows the app's database (PostgreSQL app: PostgreSQL), known only at run time, so the reads
 * and admin calls that are Promises on PostgreSQL are typed as either: `await` them.
 */
interface StrapiJobManagementService extends Omit<JobManagementService, 'addCalculationJob' | 'getJobStatus' | 'getJobs' | 'cancelJob' | 'retryJob'> {
  /** On PostgreSQL, before the bootstrap connected (or after the connect failed): `ERR_STORAGE` (the job would not be stored). */
  addCalculationJob<D = any>(calculation: Calculation<D> | string, data: D, context?: Record<string, unknown>, options?: JobOptions): string
  getJobStatus(jobId: string): MaybePromise<CalculationStatus | null>
  getJobs<D = any, R = any>(filter?: JobListFilter | null): MaybePromise<JobPage<D, R>>
  cancelJob(jobId: string): MaybePromise<boolean>
  retryJob(jobId: string): MaybePromise<boolean>
  /** PostgreSQL: connects and opens the storage without starting the queue (the bootstrap does this before the cron is scheduled); nothing on other storages. */
  openStorage(): Promise<void>
  /**
   * For lifecycle hooks: never throws. Inside a Strapi database transaction the job is added when it commits
   * (never if it rolls back) and `null` is returned; otherwise the job's id. A job that cannot be added is
   * logged, counted (`getSystemStatus().enqueue`, `jobwerk_enqueue_lost_total`) and raises an `enqueue-lost` alert; `null`.
   */
  enqueue<D = any>(calculation: Calculation<D> | string, data: D, context?: Record<string, unknown>, options?: JobOptions): string | null
  /** Why the plugin chose its storage (also logged at register). */
  readonly storageReason: string
  /** The error of a start that failed at the plugin's bootstrap (logged and alerted; Strapi boots on). */
  readonly startError?: Error
  getSystemStatus(): ReturnType<JobManagementService['getSystemStatus']> & {
    enqueue: { lost: number; lostByCode: Record<string, number>; deferred: number; rolledBack: number }
  }
}

declare const plugin: {
  register(ctx: { strapi: any }): void
  bootstrap(ctx: { strapi: any }): Promise<void>
  destroy(ctx: { strapi: any }): Promise<void>
  config: { default: JobwerkPluginConfig; validator(config: unknown): void }
  services: { jobs(ctx: { strapi: any }): StrapiJobManagementService }
}
// strapi-server.js is CommonJS (`module.exports = plugin`): the types say so.
declare namespace plugin {
  export { JobwerkPluginConfig, JobwerkCronEntry, JobwerkDashboardConfig, StrapiJobManagementService, MaybePromise }
}
export = plugin
