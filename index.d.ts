// jobwerk: background jobs for Strapi and any Node.js app.
// Handwritten public types; binding.d.ts (generated) describes the private core.

import { EventEmitter } from 'node:events'

/** `'high'` runs before `'medium'` before `'low'` (by `priorityWeights`), or an integer weight: lower runs first. */
export type Priority = 'high' | 'medium' | 'low' | number

/** The job lifecycle. */
export type JobStatus = 'waiting' | 'pending' | 'running' | 'completed' | 'failed' | 'timeout' | 'cancelled'

/** Retry delays: a number is a fixed delay in ms. */
export type BackoffOptions =
  | number
  | {
      /** `'exponential'` (default): `delay * 2^(attempt - 1)`; `'fixed'`: `delay` every time. */
      type?: 'exponential' | 'fixed'
      /** Base delay in ms (alias `delayMs`). Default 1000. */
      delay?: number
      delayMs?: number
      /** Upper bound in ms (alias `maxDelay`). Default 60000; 0 = none. */
      maxDelayMs?: number
      maxDelay?: number
      /** 0..1: up to this fraction is taken off each delay at random. Default 0. */
      jitter?: number
    }

/** What `calculate` gets besides data and context. */
export interface JobHandle {
  /** The job's id (UUID v7). */
  readonly id: string
  /** The calculation's name. */
  readonly name: string
  /** This attempt's number, from 1. */
  readonly attempt: number
  /**
   * Aborted when the attempt times out, the job is cancelled or the service
   * stops (every such attempt, always before its worker runs another job).
   * A handler that ignores it keeps running, no longer counted in `maxWorkers`.
   */
  readonly signal: AbortSignal
  /** Records progress: a number or a JSON-serializable object (on PostgreSQL written to the database in batches, the latest value wins). */
  updateProgress(progress: number | object): void
}

/** Free-form JSON context: `contentType`, `operationId`, anything else. */
export interface CalculationContext {
  contentType?: string
  operationId?: string
  [key: string]: unknown
}

/** A calculation: the handler, found by `name` (also after a restart). */
export interface AsyncCalculation<D = any, R = any> {
  name: string
  calculate(data: D, context: CalculationContext, job: JobHandle): Promise<R> | R
  priority?: Priority
  /** Per-attempt timeout in ms (0 = none). */
  timeout?: number
  /** Retries after the first attempt. */
  retries?: number
  backoff?: BackoffOptions
  /** The default `concurrencyKey` of its jobs (a job's own wins): e.g. the calculation's name, to run one at a time. */
  concurrencyKey?: string
}

/**
 * A calculation whose `calculate(data, context, job)` is exported by a module
 * file (CommonJS or ES module). With `threads: true` (or `isolation: 'thread'`)
 * it runs in the service's worker-thread pool (`config.threads`), so the main
 * thread stays free; otherwise the module is loaded on the main thread. A
 * relative path or package name is resolved from the Strapi app's directory,
 * then its `dist` directory (`getJobManagementService(strapi)`), else from the
 * working directory.
 * In a thread, `job` has the same `id`, `name`, `attempt`, `signal` and
 * `updateProgress` as on the main thread.
 */
export interface ModuleCalculation<D = any, R = any> {
  name: string
  /** The file that exports `calculate(data: D, context, job): R | Promise<R>`. */
  module: string
  threads?: boolean
  isolation?: 'thread' | 'main'
  priority?: Priority
  timeout?: number
  retries?: number
  backoff?: BackoffOptions
  /** The default `concurrencyKey` of its jobs (a job's own wins). */
  concurrencyKey?: string
}

/** What the job methods accept: a function or a module file. */
export type Calculation<D = any, R = any> = AsyncCalculation<D, R> | ModuleCalculation<D, R>

/**
 * The worker-thread pool for calculations with `threads: true`, started by the
 * first such job.
 */
export interface ThreadPoolConfig {
  /** Threads in the pool. Default `os.availableParallelism() - 1`, at least 1. `queue.maxWorkers` still caps the jobs in flight. */
  size?: number
  /** Each thread's limits (`worker_threads` `resourceLimits`): a thread past them fails its jobs and is replaced. */
  resourceLimits?: { maxOldGenerationSizeMb?: number; maxYoungGenerationSizeMb?: number; codeRangeSizeMb?: number; stackSizeMb?: number }
  /**
   * How long (ms, default 500) a thread may stay inside an aborted job's synchronous code (after a timeout,
   * cancel or stop) before it is terminated and replaced. Its other jobs that had begun fail with
   * `ERR_THREAD_TERMINATED` (retries apply); those that had not move to another thread.
   */
  abortGraceMs?: number
}

/** Per-job options; they override the calculation's. */
export interface JobOptions {
  priority?: Priority
  timeout?: number
  retries?: number
  backoff?: BackoffOptions
  /** Run at or after this time (Date or epoch ms). */
  runAt?: Date | number
  /** Run after this many ms. */
  delay?: number
  /**
   * Job ids that must complete first; the job is `waiting` until then. Unknown ids: `ERR_DEPENDENCY_NOT_FOUND`
   * (on PostgreSQL only malformed ones: a well-formed id naming no job is found by the insert, which records the
   * job `failed` with `ERR_DEPENDENCY_FAILED`, "not found").
   */
  dependsOn?: string[]
  /** `'fail'` (default): a failed, timed-out or cancelled dependency fails this job with `ERR_DEPENDENCY_FAILED`; `'ignore'`: run anyway. */
  onDependencyFailure?: 'fail' | 'ignore'
  /**
   * A unique key (1 to 512 bytes, no NUL): while a job with this key is waiting, pending or running, adding
   * another returns the existing job's id and adds nothing (see `onDuplicate`). Durable on SQLite and PostgreSQL.
   * On PostgreSQL (across instances) the database decides after `add` returned: a duplicate's returned id then
   * stands for the existing job (`getJobStatus(id).jobId` is that job's id; `cancelJob`, `retryJob` and
   * `dependsOn` act on it).
   */
  key?: string
  /**
   * What an add whose `key` an unfinished job holds does. `'skip'` (the default without `debounceMs`): nothing.
   * `'replace'` (the default with `debounceMs`): a job that has not started takes the new data and context
   * (its other options stay); a running job cannot, so a new job is added behind it and holds the key from then on.
   * Needs `key`.
   */
  onDuplicate?: 'skip' | 'replace'
  /**
   * The job runs this many ms after the LAST add with its `key`: each add moves the waiting job's due time
   * (and, with the default `onDuplicate: 'replace'`, gives it the newest data and context). Needs `key`;
   * not with `runAt` or `delay`, nor on schedules.
   */
  debounceMs?: number
  /**
   * At most one job per concurrency key (1 to 512 bytes, no NUL) runs at a time (in the whole cluster on PostgreSQL); the others stay pending, in order,
   * until it finishes, while jobs without it or with another key run in parallel.
   */
  concurrencyKey?: string
}

export interface QueueConfig {
  /** Handlers in flight at most. Default 3. */
  maxWorkers?: number
  /** Pending + waiting jobs at most; more is `ERR_QUEUE_FULL`. Default 100. */
  maxQueueSize?: number
  /** Per-attempt timeout in ms when none is set (0 = none). Default 30000. */
  defaultTimeout?: number
  /** Retries when none are set. Default 2. */
  defaultRetries?: number
  defaultBackoff?: BackoffOptions
  /** How often finished jobs are pruned, ms. Default 300000. */
  cleanupInterval?: number
  /** Finished jobs older than this (ms) are pruned. Default 3600000. */
  maxJobAge?: number
  /** Default `{ high: 1, medium: 2, low: 3 }`. */
  priorityWeights?: { high?: number; medium?: number; low?: number }
  /** Largest data + context of one job in bytes of JSON. Default 1 MiB. */
  maxPayloadBytes?: number
}

export interface JobManagementConfig {
  queue?: QueueConfig
  /**
   * Metrics, health and alerts (default on). `logger`: where the `log` channel writes (an object with
   * info/warn/error, e.g. `strapi.log`; default console). `healthCheckInterval` (ms, default 30000): how often
   * rules are evaluated. `performanceThresholds`, `alerting: { enabled, defaultRules, channels, cooldownMs,
   * historySize, rules }`, `retention: { seconds, minutes }`.
   */
  monitoring?: {
    enabled?: boolean
    logger?: { info(msg: string): void; warn(msg: string): void; error(msg: string): void }
    healthCheckInterval?: number
    performanceThresholds?: {
      slowJobThresholdMs?: number
      highErrorRatePercent?: number
      queueBacklogThreshold?: number
      workerUtilizationThreshold?: number
      queueWaitThresholdMs?: number
    }
    alerting?: {
      enabled?: boolean
      defaultRules?: boolean
      channels?: Array<'log' | 'webhook' | 'email'>
      cooldownMs?: number
      historySize?: number
      rules?: AlertRule[]
      webhook?: { url?: string; urls?: string[]; headers?: Record<string, string>; timeoutMs?: number; retries?: number; backoffMs?: number }
      email?: {
        host: string
        port?: number
        secure?: 'none' | 'starttls' | 'tls'
        user?: string
        pass?: string
        from: string
        to: string | string[]
        timeoutMs?: number
        retries?: number
        backoffMs?: number
      }
    }
    retention?: { seconds?: number; minutes?: number }
  }
  /** `enabled` (default true): schedules fire; `checkInterval` (ms, default 60000): the longest the timer sleeps. */
  scheduler?: { enabled?: boolean; checkInterval?: number }
  /**
   * Default `{ type: 'sqlite', path: '.tmp/jobwerk.db', durability: 'normal' }` (memory with a manual clock).
   * `{ type: 'postgres', ... }` (preview): `getJobStatus`, `getJobs`, `cancelJob` and `retryJob` then
   * return Promises (see the README, "PostgreSQL (preview)").
   */
  storage?: { type: 'memory' } | { type?: 'sqlite'; path?: string; durability?: 'normal' | 'full' } | PostgresStorageConfig
  /** `'manual'` (or `{ type: 'manual', now }`) for tests: time moves only with `advanceTime`. */
  clock?: 'system' | 'manual' | { type: 'manual' | 'system'; now?: Date | number }
  /** Never keep Node alive, even with work pending or a schedule with a next run. Default false. */
  unref?: boolean
  /** The worker-thread pool for calculations with `threads: true`. */
  threads?: ThreadPoolConfig
}

/**
 * Codes jobwerk sets on a job's error (`JobError.code`), defined once in Rust (`src/error.rs`; the binding
 * exports the table as `JobErrorCode`). One code per cause: an aborted handler's `job.signal.reason` carries the
 * same code as the error stored on the job. A handler's own error keeps its own `code`.
 * - `ERR_JOB_TIMEOUT`: the attempt ran longer than its `timeout`.
 * - `ERR_JOB_CANCELLED`: `cancelJob` (files written by 0.1.0 stored `ERR_CANCELLED`; they read back as this).
 * - `ERR_SERVICE_STOPPED`: `stop()`'s deadline passed while the attempt ran; the job goes back to pending with
 *   this error in `errors` (0.1.0 stored `ERR_INTERRUPTED`; it reads back as this).
 * - `ERR_INTERRUPTED`: the process died while the job ran (found at the next start).
 * - `ERR_DEPENDENCY_FAILED`: a dependency failed, timed out or was cancelled (on PostgreSQL also: a `dependsOn` id
 *   named no job).
 * - A calculation in worker threads: `ERR_THREAD_EXITED` (its thread exited), `ERR_WORKER_OUT_OF_MEMORY` (its
 *   thread ran out of memory under `threads.resourceLimits`; Node's code, passed on), `ERR_THREAD_TERMINATED` (its
 *   thread was terminated because another job in it ignored an abort).
 */
export type JobErrorCode =
  | 'ERR_JOB_TIMEOUT'
  | 'ERR_JOB_CANCELLED'
  | 'ERR_SERVICE_STOPPED'
  | 'ERR_INTERRUPTED'
  | 'ERR_DEPENDENCY_FAILED'
  | 'ERR_THREAD_EXITED'
  | 'ERR_WORKER_OUT_OF_MEMORY'
  | 'ERR_THREAD_TERMINATED'

export interface JobError {
  name: string
  message: string
  stack?: string
  code?: JobErrorCode | (string & {})
  /** The attempt that failed. */
  attempt: number
}

export interface CalculationStatus<D = any, R = any> {
  jobId: string
  name: string
  status: JobStatus
  /** False while no handler is registered for `name` (a job stored by an earlier run): it waits. */
  registered: boolean
  priority: Priority
  attempts: number
  maxRetries: number
  /** Per-attempt timeout in ms (0 = none). */
  timeout: number
  progress: number | object | null
  result: R | null
  /** The last error. */
  error: JobError | null
  /** Every failed attempt, oldest first. */
  errors: JobError[]
  /** Epoch ms. */
  createdAt: number
  runAt: number
  startedAt: number | null
  finishedAt: number | null
  /** The ids of the jobs that must complete first (the `dependsOn` option); `[]` when none. */
  dependsOn: string[]
  /** What a failed, timed-out or cancelled dependency does to this job (the `onDependencyFailure` option; `'fail'` when it has no dependencies). */
  onDependencyFailure: 'fail' | 'ignore'
  data: D
  context: CalculationContext
  /** `options.key`, or null. */
  key: string | null
  /** `options.concurrencyKey`, or null. */
  concurrencyKey: string | null
  /** The schedule whose fire added the job, or null for a job added directly. */
  scheduleId: string | null
}

/** `getJobs`' filter. Absent or `null` fields take their defaults. */
export interface JobListFilter {
  /** One status or several (default: any). */
  status?: JobStatus | JobStatus[] | null
  /** The calculation's name (default: any). */
  name?: string | null
  /** Jobs with `createdAt >= since` (a Date or epoch ms). */
  since?: Date | number | null
  /** Jobs with `createdAt < until` (a Date or epoch ms; not before `since`). */
  until?: Date | number | null
  /** Jobs per page: 1 to 1000, default 50. */
  limit?: number | null
  /** The previous page's `nextCursor` (pass the same filter with it). */
  cursor?: string | null
  /** By creation (job id): `'desc'`, newest first (the default), or `'asc'`. */
  order?: 'desc' | 'asc' | null
  /** Default true; false leaves `data` and `result` out of each job. */
  includeData?: boolean | null
}

/** One page of `getJobs`. */
export interface JobPage<D = any, R = any> {
  /** In the page's order; each as `getJobStatus` returns it (without `data` and `result` with `includeData: false`). */
  jobs: Array<CalculationStatus<D, R>>
  /** An opaque string to pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null
}

export interface QueueStatistics {
  waiting: number
  pending: number
  running: number
  completed: number
  failed: number
  timeout: number
  cancelled: number
  total: number
  /** pending + waiting */
  queued: number
  /** Due jobs waiting for their calculation to be registered. */
  unregistered: number
  /** `'memory'`, `'sqlite'` or `'postgres'`. */
  storage: string
  /**
   * Whose figures these are: the counts (`waiting` ... `total`, `queued`) are the storage's (`'cluster'` on
   * PostgreSQL: a snapshot of the shared database read at `countsAsOf`, refreshed every second; `'process'`
   * otherwise, with `countsAsOf` null); throughput, times, workers and `lateOutcomes` are this process's.
   */
  scope: { counts: 'cluster' | 'process'; countsAsOf: number | null; figures: 'process' }
  /** Finished attempts per second over the last minute. */
  throughput: number
  /** ms from due to start, average over the last minute. */
  averageWaitTime: number
  /** ms from start to finish, average over the last minute. */
  averageRunTime: number
  activeWorkers: number
  /** activeWorkers / maxWorkers, 0..1. */
  workerUtilization: number
  maxWorkers: number
  maxQueueSize: number
  /** Outcomes that arrived after their attempt had ended (timed out, cancelled, stopped, or rescued): ignored and counted, whether this process's worker slots or the store's lease fenced them. */
  lateOutcomes: number
  /** Queue length, throughput and utilization per second and per minute (built when read; null with monitoring disabled). */
  readonly trends: QueueTrends | null
}

/** One slot of a time series; averages are null when nothing was recorded. */
export interface TrendPoint {
  /** The slot's start, epoch ms. */
  t: number
  samples: number
  queueLength: number | null
  queueLengthMax: number
  oldestWaitMs: number
  busyWorkers: number | null
  /** Percent of maxWorkers busy. */
  utilization: number | null
  /** Finished attempts per second. */
  throughput: number | null
  completed: number
  failed: number
  timedOut: number
  cancelled: number
  avgDurationMs: number | null
  maxDurationMs: number | null
}

/** `getQueueTrends()`: time series, oldest first (slots with nothing recorded are left out). */
export interface QueueTrends {
  perSecond: { intervalMs: number; points: TrendPoint[] }
  perMinute: { intervalMs: number; points: TrendPoint[] }
}

export interface StopSummary {
  /** Attempts aborted at the timeout (their jobs went back to pending). */
  aborted: number
  /** Jobs still pending or waiting. */
  pending: number
  /** Of those, jobs lost with the process (memory storage: all of them). */
  dropped: number
}

export interface JobEvent {
  jobId: string
  name: string
  attempt: number
}

/**
 * The service's events. On PostgreSQL `completed`, `failed`, `retrying` and `timedOut` fire after the
 * outcome's commit (none for an outcome the commit found fenced: the job was rescued by another instance);
 * `cancelled` fires where the job ran, or, for a job that had not started, where `cancelJob` was called.
 */
export interface JobManagementEvents {
  completed: [JobEvent & { result: unknown }]
  failed: [JobEvent & { error: JobError }]
  retrying: [JobEvent & { delayMs: number; error: JobError }]
  timedOut: [JobEvent & { error: JobError }]
  cancelled: [JobEvent]
  progress: [JobEvent & { progress: number | object }]
  alert: [Alert]
  alertResolved: [Alert]
  alertDeliveryFailed: [{ message: string }]
}

export type HealthLevel = 'healthy' | 'warning' | 'critical'

/** One health check: the metric, its value (null: no data) and the levels it is judged by. */
export interface HealthCheck {
  metric: string
  value: number | null
  warningAt: number | null
  criticalAt: number | null
  status: HealthLevel
  /** The rule in words. */
  rule: string
}

export interface HealthDimension {
  status: HealthLevel
  checks: HealthCheck[]
}

/** A failed, timed-out or cancelled attempt, newest first. */
export interface RecentError {
  at: number
  calculation: string
  outcome: 'failed' | 'timeout' | 'cancelled'
  message: string
}

/** `getSystemHealth()`. */
export interface SystemHealth {
  overall: HealthLevel
  /** The same as `overall`. */
  status: HealthLevel
  queue: HealthDimension
  workers: HealthDimension
  performance: HealthDimension
  errors: HealthDimension & { failuresLast5m: number; recentErrors: RecentError[] }
  /**
   * The storage: `degraded` (status `warning`) while PostgreSQL is unreachable or
   * writes are being retried, `unhealthy` (status `critical`) after 30 s of that or
   * when a write failed for good (SQLite too); memory is always `healthy`.
   */
  storage: HealthDimension & {
    state: 'healthy' | 'degraded' | 'unhealthy'
    /** Why it is not healthy (null when it is). */
    message: string | null
    /** How long it has not been healthy (ms; null when healthy or not known). */
    downMs: number | null
  }
  checkedAt: number
  activeAlerts: number
}

/** Webhook and e-mail deliveries so far. */
export interface AlertDeliveryStats {
  webhookSent: number
  webhookFailed: number
  emailSent: number
  emailFailed: number
  /** Alerts not queued for delivery (the queue was full). */
  dropped: number
  lastError: string | null
}

/** `getSystemStatus()`. */
export interface SystemStatus {
  status: 'idle' | 'started' | 'stopping' | 'stopped'
  startedAt: number | null
  uptimeMs: number
  /** Opens nothing. `state`: 'closed' (SQLite not opened yet, or stopped), 'open', 'error' (the last open failed: `error`), 'ok' (memory). */
  storage: { type: 'memory' | 'sqlite' | 'postgres'; state: 'ok' | 'closed' | 'open' | 'error'; error: string | null }
  scheduler: { schedules: number }
  workers: { max: number; busy: number; utilization: number }
  jobs: Record<JobStatus | 'total', number>
  monitoring: boolean
  activeAlerts: number
  /** null unless a webhook or e-mail channel is configured. */
  alertDelivery: AlertDeliveryStats | null
  /**
   * The process's resource usage: memory in bytes (`process.memoryUsage()`), the event loop's delay in ms
   * since the first `start()` (null before), CPU time in ms since the process started and `percent` of one
   * core used since the previous `getSystemStatus()` call (or the service's creation).
   */
  resources: {
    memory: { rss: number; heapUsed: number; heapTotal: number; external: number }
    eventLoopDelayMs: { p50: number; p99: number; max: number; mean: number } | null
    cpu: { userMs: number; systemMs: number; percent: number }
  }
  version: string
}

export interface OutcomeCounts {
  count: number
  completed: number
  failed: number
  timedOut: number
  cancelled: number
}

/** Rates and averages are null while there is nothing to compute them from. */
export interface WindowSummary {
  completed: number
  failed: number
  timedOut: number
  cancelled: number
  throughput: number | null
  /** Percent. */
  errorRate: number | null
  avgDurationMs: number | null
  avgWaitMs: number | null
}

/** `getJobExecutionSummary()`. */
export interface JobExecutionSummary {
  since: number
  uptimeMs: number
  totals: OutcomeCounts & { successRate: number | null; avgDurationMs: number | null }
  lastMinute: WindowSummary
  lastHour: WindowSummary
  byCalculation: Record<string, OutcomeCounts & { successRate: number | null; avgDurationMs: number | null; lastRunAt: number | null }>
  recentErrors: RecentError[]
}

export interface CalculationPerformance extends OutcomeCounts {
  /** Percent. */
  successRate: number | null
  durationMs: { count: number; min: number | null; max: number | null; avg: number | null; p50: number | null; p95: number | null; p99: number | null }
  waitMs: { avg: number | null; p95: number | null }
  lastRunAt: number | null
  lastOutcome: 'completed' | 'failed' | 'timeout' | 'cancelled' | null
  trend: {
    direction: 'faster' | 'slower' | 'stable' | 'unknown'
    recentAvgMs: number | null
    baselineAvgMs: number | null
    changePercent: number | null
    recentRuns: number
    baselineRuns: number
  }
}

/** `getPerformanceMetrics()`. */
export interface PerformanceMetrics {
  since: number
  overall: CalculationPerformance
  calculations: Record<string, CalculationPerformance>
}

export interface AlertRule {
  id?: string
  /** Shown as the alert's title (default: the id). */
  name?: string
  metric:
    | 'errorRate' | 'timeoutRate' | 'failedCount' | 'timeoutCount' | 'completedCount' | 'throughput'
    | 'avgDurationMs' | 'maxDurationMs' | 'avgWaitMs' | 'queueLength' | 'oldestWaitMs'
    | 'workerUtilization' | 'busyWorkers' | 'availableWorkers'
    /** 0 healthy, 1 degraded, 2 unhealthy (the latest, whatever the window). */
    | 'storageHealth'
  operator: '>' | '>=' | '<' | '<=' | '==' | '!='
  threshold: number
  /** ms (default 60000; 0 = the latest sample, gauges only). */
  window?: number
  severity?: 'info' | 'warning' | 'critical'
  cooldownMs?: number
  channels?: Array<'log' | 'webhook' | 'email'>
  /** Only this calculation's jobs. */
  calculation?: string
}

/** A rule as `getAlertRules()` returns it. */
export interface AlertRuleInfo {
  id: string
  name: string
  metric: AlertRule['metric']
  operator: AlertRule['operator']
  threshold: number
  window: number
  severity: 'info' | 'warning' | 'critical'
  cooldownMs: number
  channels: Array<'log' | 'webhook' | 'email'>
  calculation: string | null
  /** One of the four default rules. */
  builtin: boolean
}

export interface Alert {
  id: string
  ruleId: string
  /** The rule's name. */
  name: string
  /** What a person reads first (the rule's name, e.g. `'High error rate'`). */
  title: string
  metric: string
  operator: string
  threshold: number
  /** The rule's window in ms. */
  window: number
  severity: 'info' | 'warning' | 'critical'
  calculation: string | null
  channels: string[]
  /** What was measured, without the title (`'errorRate is 44.44 (> 10) over 300s'`). */
  message: string
  value: number
  lastValue: number
  peakValue: number
  status: 'active' | 'resolved'
  firedAt: number
  acknowledged: boolean
  acknowledgedAt: number | null
  acknowledgedBy: string | null
  resolvedAt: number | null
  resolution: 'auto' | 'manual' | 'ruleRemoved' | null
}

/** Options of a schedule; the job options (priority, timeout, retries, backoff) apply to the jobs it adds. */
export interface ScheduleOptions extends Omit<JobOptions, 'runAt' | 'delay'> {
  /** Your id: scheduling the same id again updates the schedule instead of adding another. */
  id?: string
  /** Stop after this many runs (>= 1). */
  maxRuns?: number
  /** No run after this time. */
  endAt?: Date | number
  /** Cron: no run before this time. */
  startAt?: Date | number
  /** Cron: IANA time zone (default: the process's zone). */
  tz?: string
  /** Runs missed while the process was down: `'runOnce'` (default), `'skip'`, `'catchUp'` (at most `maxCatchUp` runs in all, default 10). A run less than 1 s late counts as on time, not missed. */
  misfire?: 'runOnce' | 'skip' | 'catchUp'
  maxCatchUp?: number
  /** Due while its previous job is still pending or running: `'skip'` (default) or `'queue'`. */
  overlap?: 'skip' | 'queue'
  /** Default true. */
  enabled?: boolean
}

export interface ScheduledJob {
  id: string
  /** The calculation's name. */
  name: string
  kind: 'once' | 'interval' | 'cron'
  expression?: string
  tz?: string
  intervalMs?: number
  scheduledAt?: number
  enabled: boolean
  runCount: number
  maxRuns: number | null
  startAt: number | null
  endAt: number | null
  lastRunAt: number | null
  /** null once the schedule has ended (or while disabled). */
  nextRunAt: number | null
  lastJobId: string | null
  lastStatus: JobStatus | null
  /**
   * Fires that added no job: `maxQueueSize` jobs were queued (each such fire
   * raised a warning alert), the stored job options could not be read (a
   * damaged file), or the storage had failed.
   */
  skippedFires: number
  misfire: 'runOnce' | 'skip' | 'catchUp'
  overlap: 'skip' | 'queue'
}

/** `storage` for PostgreSQL (preview). Bad values are `ERR_INVALID_CONFIG` naming the key. */
/** `storage.ssl` as an object (PEM text; read files yourself, e.g. `fs.readFileSync(path, 'utf8')`). */
export interface PostgresTlsOptions {
  /** Default true. false: DANGEROUS, any certificate is accepted (the handshake's signatures are still checked). */
  rejectUnauthorized?: boolean
  /** PEM: the CA certificate(s) trusted instead of the public roots (e.g. RDS's bundle). */
  ca?: string
  /** PEM: a client certificate (chain), with `key`. */
  cert?: string
  /** PEM: the client certificate's unencrypted private key (PKCS#8, PKCS#1 or SEC1). */
  key?: string
}

export interface PostgresStorageConfig {
  type: 'postgres'
  /**
   * `postgres://user:password@host:port/database`; not with `host`, `port`,
   * `database`, `user`. Its `sslmode` has libpq's meanings: `disable`;
   * `prefer`/`allow` (TLS if offered, not verified); `require` (encrypted,
   * not verified, unless `ssl.ca` is given: then as `verify-ca`);
   * `verify-ca` (the chain, not the host name); `verify-full`; and
   * node-postgres's `no-verify` (encrypted, not verified).
   */
  connectionString?: string
  /** Default `localhost`, 5432, user `postgres`, database the user's name. */
  host?: string
  port?: number
  database?: string
  user?: string
  password?: string
  /**
   * TLS (rustls). Default false. `true`: the server's certificate verified
   * against the public (Mozilla) roots and its host name. An object, as
   * node-postgres takes it: `ca` (PEM, one or more certificates) trusted
   * instead of the public roots; `cert` + `key` (PEM) a client certificate;
   * `rejectUnauthorized: false` accepts ANY certificate (encrypted but not
   * authenticated: dangerous). With `sslmode` in `connectionString`, only
   * `{ ca, cert, key }` may be given here (the sslmode decides the rest).
   */
  ssl?: boolean | PostgresTlsOptions
  /** Where the tables are; created on first start. Default `jobwerk`. */
  schema?: string
  /** Connections at most (1 to 100, default 10). */
  poolSize?: number
  /** How long `start()` waits for the first connection (ms, default 5000). */
  connectTimeoutMs?: number
  /** How often this process heartbeats and rescues dead processes' jobs (ms, 100 to 600000, default 5000). */
  heartbeatMs?: number
  /** A process silent this long is dead; its running jobs go back to pending (ms, 1000 to 3600000, at least twice `heartbeatMs`, default 30000). */
  deadAfterMs?: number
  /**
   * How often an idle service looks for due jobs when no NOTIFY woke it
   * (behind a transaction-mode PgBouncer, or while its LISTEN connection is
   * being opened again), and re-reads the cluster's counts and schedules
   * (ms, 100 to 600000, default 1000).
   */
  pollMs?: number
  /**
   * How long one statement (a group commit, an insert, a claim, a
   * heartbeat, a read such as `getJobStatus` or `getJobs`, the LISTEN
   * connection's connect and `LISTEN`) may wait for the server's answer
   * (ms, 100 to 3600000, default 30000). Past it a write's try counts as
   * failed: a server that keeps the connection open but stops answering is
   * then waited out like an outage (storage degraded, retried with backoff)
   * instead of holding the write forever. A read is not retried: it
   * rejects with `ERR_STORAGE` saying which read timed out.
   */
  statementTimeoutMs?: number
}

/** `T`, or a Promise of it when the service's config has `storage: { type: 'postgres' }`. */
export type OnStorage<C, T> = C extends { storage: { type: 'postgres' } } ? Promise<T> : T

/**
 * The service. `C` is its config's type, inferred by the constructor: with
 * `storage: { type: 'postgres' }` the reads and admin calls return Promises
 * (`OnStorage`); `await` works on every storage.
 */
export declare class JobManagementService<C extends JobManagementConfig = JobManagementConfig> extends EventEmitter {
  constructor(config?: C)
  start(): Promise<void>
  /**
   * Waits up to `timeoutMs` (default 30000; 0 to 2147483647, else
   * `ERR_INVALID_ARGUMENT`) for running jobs, then aborts them. A second call
   * while stopping returns the same promise; its deadline wins when earlier.
   */
  stop(options?: { timeoutMs?: number }): Promise<StopSummary>
  registerCalculation(calculation: Calculation): void
  addCalculationJob<D, R>(calculation: Calculation<D, R>, data: D, context?: CalculationContext, options?: JobOptions): string
  addCalculationJobs(
    jobs: Array<{ calculation: Calculation; data?: unknown; context?: CalculationContext; options?: JobOptions }>,
  ): string[]
  /**
   * Resolves once everything added and every outcome reported before the
   * call is committed to storage. It does not wait for jobs still to run: a
   * job added just before completes later, and its outcome is covered by a
   * `flush()` called after its `completed` event.
   */
  flush(): Promise<void>
  /** A Promise on PostgreSQL. */
  getJobStatus(jobId: string): OnStorage<C, CalculationStatus | null>
  /**
   * One page of jobs matching `filter`, newest first, finished and pending
   * ones alike; `nextCursor` continues it. A bad filter throws
   * `ERR_INVALID_ARGUMENT` with `err.field` naming the field.
   */
  getJobs<D = any, R = any>(filter?: JobListFilter | null): OnStorage<C, JobPage<D, R>>
  /** A Promise on PostgreSQL, where it cancels the job anywhere in the cluster: a handler running in this process has its `job.signal` aborted (`ERR_JOB_CANCELLED`) once the cancel commits, one running in another process when that process hears the NOTIFY. The `cancelled` event fires in the process that ran the job (or, for a job not running, in none on PostgreSQL). */
  cancelJob(jobId: string): OnStorage<C, boolean>
  /** Puts a failed, timed-out or cancelled job back in line, attempts reset (a Promise on PostgreSQL, one transaction); a job with `dependsOn` goes back to `waiting` until its dependencies completed. False for other states, unknown ids, or while another unfinished job holds its `key`. */
  retryJob(jobId: string): OnStorage<C, boolean>
  getQueueStatistics(): QueueStatistics
  /** Runs once at `scheduledAt` (a past time runs at once). Returns the schedule's id. */
  scheduleCalculationJob<D>(calculation: Calculation<D>, data: D, context: CalculationContext | undefined, scheduledAt: Date | number, options?: ScheduleOptions): string
  /** Runs every `intervalMs` from `startAt` (on a fixed grid: no drift). Returns the schedule's id. */
  scheduleRecurringCalculationJob<D>(
    calculation: Calculation<D>,
    data: D,
    context: CalculationContext | undefined,
    startAt: Date | number,
    intervalMs: number,
    options?: ScheduleOptions,
  ): string
  /**
   * Runs at a cron expression's times (5 fields, 6 with seconds, 7 with seconds and a year; names, L, W, #, +, @daily...).
   * Returns the schedule's id. An expression no date fits (`0 0 30 2 *`) is `ERR_INVALID_CRON` (field `expression`).
   */
  scheduleCronCalculationJob<D>(calculation: Calculation<D>, data: D, context: CalculationContext | undefined, expression: string, options?: ScheduleOptions): string
  /** Synchronous on every storage; on PostgreSQL the cluster's schedules, as last read (at most a second old). */
  getScheduledJobs(filter?: { kind?: 'once' | 'interval' | 'cron'; name?: string; enabled?: boolean }): ScheduledJob[]
  cancelScheduledJob(id: string): boolean
  setScheduledJobEnabled(id: string, enabled: boolean): boolean
  /**
   * Manual clock: moves time `ms` forward deadline by deadline. Before each
   * step and before resolving it waits, in real time, for running handlers to
   * settle, at most `settleMs` (default 2000) per step; a handler still
   * running then is not waited for again (it times out on the manual clock).
   */
  advanceTime(ms: number, options?: { settleMs?: number }): Promise<void>
  now(): number
  /**
   * Serves the dashboard on its own HTTP server. Listens on `127.0.0.1` by
   * default; any other (non-loopback) host needs `token`. See the README's Dashboard.
   */
  startDashboard(options?: StartDashboardOptions): Promise<DashboardServer>
  getSystemStatus(): SystemStatus
  /** Each dimension with its checks; null when monitoring is disabled. */
  getSystemHealth(): SystemHealth | null
  /** null when monitoring is disabled. */
  getJobExecutionSummary(): JobExecutionSummary | null
  /** null when monitoring is disabled. */
  getPerformanceMetrics(): PerformanceMetrics | null
  /** null when monitoring is disabled. */
  getQueueTrends(): QueueTrends | null
  getActiveAlerts(): Alert[]
  acknowledgeAlert(alertId: string, acknowledgedBy: string): boolean
  resolveAlert(alertId: string): boolean
  getAlertHistory(filter?: { ruleId?: string; severity?: string; calculation?: string; status?: string; since?: number; until?: number; limit?: number }): Alert[]
  /**
   * Per alert rule, over the kept alert history: how often it fired (`firedPerHour` from its first kept alert
   * until now, at least over a minute) and how long its alerts took to resolve; the most fired first.
   */
  getAlertStatistics(): Array<{
    ruleId: string
    name: string
    fired: number
    active: number
    resolved: number
    firedPerHour: number
    meanTimeToResolveMs: number | null
    firstFiredAt: number
    lastFiredAt: number
  }>
  addAlertRule(rule: AlertRule): string
  removeAlertRule(ruleId: string): boolean
  getAlertRules(): AlertRuleInfo[]
  getPrometheusMetrics(): string
  on<K extends keyof JobManagementEvents>(event: K, listener: (...args: JobManagementEvents[K]) => void): this
  once<K extends keyof JobManagementEvents>(event: K, listener: (...args: JobManagementEvents[K]) => void): this
  off<K extends keyof JobManagementEvents>(event: K, listener: (...args: JobManagementEvents[K]) => void): this
}

/** Thrown by a handler: the job fails at once, without retries. */
export declare class UnrecoverableError extends Error {
  constructor(message?: string, options?: { cause?: unknown })
}

/**
 * One service per Strapi instance (or per process without one), made with `config` on the first call; with the
 * Strapi plugin enabled, the plugin's service (see strapi/index.d.ts). A later call with a config that differs
 * from the first one's (no config counts as `{}`; the logger is compared by identity) throws `ERR_INVALID_CONFIG`
 * naming the key; the same config, or none, returns the service.
 */
export declare function getJobManagementService(strapi?: object, config?: JobManagementConfig): JobManagementService

/**
 * The next `count` (default 5) fire times of a cron expression strictly after `from` (default now),
 * in `tz` (IANA name; default the process's zone). Throws `ERR_INVALID_CRON` with `err.field` naming the field.
 */
/** Options of `createDashboard`. */
export interface DashboardOptions {
  /** Where the dashboard is mounted ('/' by default), e.g. `'/admin/jobs'`. */
  basePath?: string
  /** A function deciding per request (a throw or rejection is a 500), or a bearer token. */
  auth?: ((req: import('node:http').IncomingMessage) => boolean | Promise<boolean>) | string
  /** Hides the action buttons and refuses every POST with 403. */
  readOnly?: boolean
  /** Keys (any depth, case-insensitive) whose values are shown as `'[redacted]'` in data, context and results. */
  redact?: string[]
  /** The page title (default 'jobwerk'). */
  title?: string
  /** How often (ms, 50 to 60000, default 1000) open pages are told that counts or alerts changed. */
  liveIntervalMs?: number
}

/** A Node request handler serving the dashboard page and its JSON API under `basePath`. */
export interface DashboardHandler {
  (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, next?: () => void): void
  /** The token the page sends in `x-csrf-token` with every action. */
  readonly csrfToken: string
  /** Ends the open live-update streams. */
  close(): void
}

/** Options of `startDashboard`: the dashboard's, plus where to listen. */
export interface StartDashboardOptions extends DashboardOptions {
  /** 0 (default) picks a free port. */
  port?: number
  /** Default `'127.0.0.1'`; a non-loopback host needs `token` (or `auth`). */
  host?: string
  /** A bearer token (at least 8 characters); in a browser open `url?token=...` once. */
  token?: string
}

export interface DashboardServer {
  url: string
  port: number
  host: string
  server: import('node:http').Server
  close(): Promise<void>
}

/** The dashboard as a Node `(req, res, next?)` handler, for `http`, Express, Koa, Fastify or Strapi. */
export declare function createDashboard(service: JobManagementService<any>, options?: DashboardOptions): DashboardHandler

export declare function nextCronRuns(expression: string, options?: { tz?: string; from?: Date | number; count?: number }): Date[]

/**
 * Error codes thrown by jobwerk (`err.code`): every public function either succeeds or throws (rejects with)
 * an `Error` with one of these codes, also for hostile input (throwing getters, revoked Proxies, cycles...).
 * Defined once in Rust (`src/error.rs`; the binding exports the table as `ErrorCode`); `ERR_NATIVE_ADDON`
 * is thrown before the binary loads. `ERR_INVALID_CRON` carries `err.field` (`'minute'`, `'tz'`, `'expression'`, ...).
 */
export type JobwerkErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_CONFIG'
  | 'ERR_QUEUE_FULL'
  | 'ERR_STOPPED'
  | 'ERR_NOT_SERIALIZABLE'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_INVALID_CRON'
  | 'ERR_INVALID_SCHEDULE'
  | 'ERR_DEPENDENCY_NOT_FOUND'
  | 'ERR_STORAGE'
  | 'ERR_NATIVE_ADDON'
