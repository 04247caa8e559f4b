'use strict'
// jobwerk's public API: JobManagementService (its methods check the caller's
// arguments and call the native core; running the handlers is the
// dispatcher's, lib/dispatcher.js, which it extends), nextCronRuns and
// getJobManagementService. index.js re-exports them.

const { Dispatcher } = require('./dispatcher.js')
const { ThreadPool, threadOptions } = require('./threads.js')
const { monitorEventLoopDelay } = require('node:perf_hooks')
// Every code, from the binding (src/error.rs): API.InvalidArgument, JOB.JobTimeout, ...
const { API, codedError, invalid } = require('./errors.js')
const { describe, reasonOf, asCoded, isRecord, argJson, optionsReplacer, toJson, fieldAt, dataJson, isPlain, optionsJson } = require('./serialize.js')

// Throws ERR_NATIVE_ADDON naming the expected platform package when no binary fits.
const native = require('../load-binding.js').loadBinding()

// The package's version (a copy of jobwerk without its package.json says 'unknown').
let VERSION = 'unknown'
try {
  VERSION = require('../package.json').version
} catch {}

const JOB_EVENTS = new Set(['completed', 'failed', 'retrying', 'timedOut', 'cancelled'])
// The longest delay a Node timer holds (a longer one fires after 1 ms).
const MAX_TIMER_MS = 2 ** 31 - 1
// How long advanceTime waits, in real time, for running handlers to settle
// before it moves the manual clock on.
const SETTLE_MS = 2000

// The event-loop delay histogram, one per process, enabled at the first
// start() (Node samples it on an unref'd timer: it keeps nothing alive).
let loopDelay = null

function enableLoopDelay() {
  if (loopDelay !== null) return
  try {
    loopDelay = monitorEventLoopDelay({ resolution: 10 })
    loopDelay.enable()
  } catch {
    loopDelay = null
  }
}

const nsToMs = (ns) => (Number.isFinite(ns) ? Math.round(ns / 1e4) / 100 : 0)

/** The process's resource usage; `cpu.percent` since `last` (updated), of one core. */
function processResources(last) {
  const m = process.memoryUsage()
  const cpu = process.cpuUsage()
  const now = process.hrtime.bigint()
  const wallUs = Number(now - last.at) / 1000
  const usedUs = cpu.user - last.cpu.user + (cpu.system - last.cpu.system)
  last.at = now
  last.cpu = cpu
  const h = loopDelay
  return {
    memory: { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external },
    eventLoopDelayMs:
      h === null || h.count === 0
        ? null
        : { p50: nsToMs(h.percentile(50)), p99: nsToMs(h.percentile(99)), max: nsToMs(h.max), mean: nsToMs(h.mean) },
    cpu: { userMs: Math.round(cpu.user / 1000), systemMs: Math.round(cpu.system / 1000), percent: wallUs > 0 ? Math.round((usedUs / wallUs) * 1000) / 10 : 0 },
  }
}

/**
 * The constructor's config: its JSON for Rust (without the logger, which
 * stays in JS: it is where the log channel writes), the logger and `unref`.
 * Throws ERR_INVALID_CONFIG; a getter that throws or a revoked Proxy too.
 */
function readConfig(config) {
  try {
    if (config !== undefined && config !== null && !isRecord(config)) {
      throw codedError(API.InvalidConfig, `config must be an object, got ${describe(config)}`)
    }
    const cfg = config || {}
    if (cfg.unref !== undefined && typeof cfg.unref !== 'boolean') {
      throw codedError(API.InvalidConfig, 'config.unref must be true or false')
    }
    let logger = console
    let toRust = cfg
    if (cfg.monitoring && typeof cfg.monitoring === 'object' && cfg.monitoring.logger !== undefined) {
      logger = cfg.monitoring.logger
      if (logger === null || typeof logger !== 'object' || ['info', 'warn', 'error'].some((k) => typeof logger[k] !== 'function')) {
        throw codedError(API.InvalidConfig, 'monitoring.logger must be an object with info, warn and error functions (e.g. strapi.log)')
      }
      const { logger: _omit, ...monitoring } = cfg.monitoring
      toRust = { ...cfg, monitoring }
    }
    const threads = threadOptions(cfg.threads)
    if (cfg.threads !== undefined) {
      const { threads: _omit, ...rest } = toRust
      toRust = rest
    }
    const json = JSON.stringify(toRust, optionsReplacer)
    if (json === undefined) throw codedError(API.InvalidConfig, `config must be an object, got ${describe(config)}`)
    const threadsJson = cfg.threads === undefined ? undefined : JSON.stringify(cfg.threads)
    return { json, logger, unref: cfg.unref === true, threads, threadsJson }
  } catch (e) {
    throw asCoded(e, API.InvalidConfig, 'config')
  }
}

/** The value of an async core call's answer, or its error thrown with its code. */
function answer(a) {
  if (a.code != null) throw codedError(a.code, a.message)
  return a.value
}

const parsed = (v) => (v == null ? null : JSON.parse(v))

class JobManagementService extends Dispatcher {
  /**
   * @param {object} [config] `{ queue, scheduler, monitoring, storage, clock, unref, threads }`
   */
  constructor(config) {
    const { json, logger, unref, threads } = readConfig(config)
    super(json, logger, unref)
    // The worker-thread pool is JS's too (lib/threads.js); started by the first job that needs it.
    this._threadOptions = threads
    // PostgreSQL: reads and admin calls return Promises (docs/design/storage.md).
    this._async = this._core.isAsync()
    this._threads = null
    // Where calculation modules are found: the Strapi app's folders, else the working directory.
    this._baseDirs = [process.cwd()]
    this._startedAt = null
    // getSystemStatus(): CPU use since the previous call.
    this._cpuLast = { at: process.hrtime.bigint(), cpu: process.cpuUsage() }
    this._byName = new Map()
    // The running stop's timer, its deadline (Date.now() ms) and how it ends.
    this._stopTimer = null
    this._stopDeadline = Infinity
    this._stopEnd = null
    this.on('newListener', (event) => {
      if (JOB_EVENTS.has(event)) this._core.setEvents(true)
    })
    this.on('removeListener', (event) => {
      if (JOB_EVENTS.has(event)) this._core.setEvents(this._hasJobListeners())
    })
  }


  _hasJobListeners() {
    for (const e of JOB_EVENTS) if (this.listenerCount(e) > 0) return true
    return false
  }

  /** Starts running jobs. */
  async start() {
    if (this._state === 'started') return
    if (this._state === 'stopping') throw codedError(API.Stopped, 'the service is stopping; await stop() before start()')
    if (this._async) {
      // PostgreSQL: connect on the engine's runtime (the JS thread does not wait on the network).
      answer(await this._core.openAsync())
      if (this._state === 'started') return
    }
    this._core.start()
    enableLoopDelay()
    this._state = 'started'
    this._startedAt = Date.now()
    this._pump()
    this._afterFlags(this._core.poll())
  }

  /**
   * Stops taking jobs, waits up to `timeoutMs` for running ones, then aborts
   * what still runs (those jobs go back to pending).
   * @returns {Promise<{aborted: number, pending: number, dropped: number}>}
   */
  async stop(options) {
    let timeoutMs = 30000
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') throw invalid('stop(options): options must be an object')
      const given = readKey(options, 'timeoutMs', 'stop(options): options')
      if (given !== undefined) {
        timeoutMs = given
        if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS)) {
          throw invalid(`stop(options): timeoutMs must be a number from 0 to ${MAX_TIMER_MS} (about 24.8 days), got ${describe(timeoutMs)}`)
        }
      }
    }
    if (this._state === 'stopped' || this._state === 'stopping') {
      // A second stop() (a second Ctrl-C): the earlier deadline wins.
      if (this._stopping) this._shortenStop(timeoutMs)
      return this._stopping || this._stopSummary(0)
    }
    this._state = 'stopping'
    this._core.beginStop()
    this._stopping = this._finishStop(timeoutMs)
    return this._stopping
  }

  async _finishStop(timeoutMs) {
    const until = Date.now() + timeoutMs
    this._flush()
    if (this._core.runningCount() > 0) {
      await new Promise((resolve) => {
        this._stopEnd = resolve
        this._stopDeadline = Date.now() + timeoutMs
        this._stopTimer = setTimeout(resolve, timeoutMs)
        this._stopWaiters.push(() => {
          clearTimeout(this._stopTimer)
          resolve()
        })
      })
      this._stopTimer = null
      this._stopEnd = null
      this._stopDeadline = Infinity
    }
    this._flush()
    const aborted = this._core.finishStop()
    if (this._async) await this._commitEvents(until)
    this._drain()
    this._core.close()
    if (this._threads !== null) await this._threads.close()
    this._state = 'stopped'
    this._setKeepAlive(false)
    this._stopping = null
    return this._stopSummary(aborted)
  }

  /**
   * PostgreSQL: the events of the last outcomes fire after their commit;
   * waits for it (at most until the stop's deadline `until`), then lets
   * them out.
   */
  async _commitEvents(until) {
    let timer = null
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, Math.max(0, until - Date.now()))
      if (typeof timer.unref === 'function') timer.unref()
    })
    try {
      await Promise.race([this._core.flush(), late])
    } finally {
      clearTimeout(timer)
    }
    this._afterFlags(this._core.poll())
  }

  /** Ends the running stop's wait after `timeoutMs` if that comes before its deadline. */
  _shortenStop(timeoutMs) {
    const at = Date.now() + timeoutMs
    if (this._stopTimer === null || at >= this._stopDeadline) return
    clearTimeout(this._stopTimer)
    this._stopDeadline = at
    this._stopTimer = setTimeout(this._stopEnd, timeoutMs)
  }

  _stopSummary(aborted) {
    const s = this.getQueueStatistics()
    const pending = s.pending + s.waiting
    return { aborted, pending, dropped: s.storage === 'memory' ? pending : 0 }
  }

  /** Registers a calculation's handler by name (before its jobs run). */
  registerCalculation(calculation) {
    this._calcIndex(calculation, 'calculation')
    // Jobs of that calculation stored by an earlier run may run now.
    this._schedulePump()
  }

  /** `what` names the calculation in errors (else `jobs[i].calculation`). */
  _calcIndex(calc, what, i) {
    if (what === undefined) {
      const idx = this._knownIndex(calc)
      if (idx >= 0) return idx
      what = fieldAt(i, 'calculation')
    }
    if (calc === null || (typeof calc !== 'object' && typeof calc !== 'function')) {
      throw invalid(`${what} must be an object { name, calculate }, got ${calc === null ? 'null' : typeof calc}`)
    }
    let name
    let defaults
    let file
    let threaded
    let handler
    try {
      name = calc.name
      if (typeof name !== 'string' || name.length === 0) throw invalid(`${what}.name must be a non-empty string`)
      const known = this._byName.get(name)
      file = known !== undefined && known.calc === calc && known.module === calc.module ? known.file : calcModule(calc, what, this._baseDirs)
      if (file === null && typeof calc.calculate !== 'function') {
        throw invalid(`${what}.calculate must be a function (or ${what}.module a file that exports one)`)
      }
      if (known !== undefined && known.calc === calc && known.file === file) return known.idx
      defaults = optionsJson({ priority: calc.priority, timeout: calc.timeout, retries: calc.retries, backoff: calc.backoff, concurrencyKey: calc.concurrencyKey }, what)
      threaded = file !== null && (calc.threads === true || calc.isolation === 'thread')
      handler = threaded ? null : file === null ? calc : mainThreadModule(calc, what, file)
    } catch (e) {
      throw asCoded(e, API.InvalidArgument, what)
    }
    const idx = this._core.register(name, defaults)
    if (threaded) {
      if (this._threads === null) this._threads = new ThreadPool(this._threadOptions)
      const pool = this._threads
      pool.setModule(idx, file, name)
      // Data and context reach the pool as the JSON text the core holds.
      this._core.setRawData(idx, true)
      this._calcs[idx] = { name, calculate: (data, context, job) => pool.run(idx, data, context, job) }
    } else {
      this._calcs[idx] = handler
    }
    this._byName.set(name, { calc, idx, file, module: calc.module })
    return idx
  }

  /**
   * A batch whose jobs all have the same registered calculation, no context,
   * no options and data that JSON.stringify writes as is: the calculation's
   * index and the data, to send as one JSON array. Otherwise null (each job
   * then goes through _jobJson, which also names what is wrong).
   */
  _plainBatch(jobs) {
    try {
      return this._plainBatchOf(jobs)
    } catch {
      // a getter or a revoked Proxy: the slow path names it
      return null
    }
  }

  _plainBatchOf(jobs) {
    const first = jobs[0]
    const calc = first !== null && typeof first === 'object' ? first.calculation : undefined
    const idx = this._knownIndex(calc)
    if (idx < 0) return null
    const datas = new Array(jobs.length)
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i]
      if (j === null || typeof j !== 'object' || j.calculation !== calc) return null
      if ((j.context !== undefined && j.context !== null) || (j.options !== undefined && j.options !== null)) return null
      const d = j.data
      if (!isPlain(d)) return null
      datas[i] = d
    }
    return { idx, datas }
  }

  /** The index of `calc` when this very object is registered, else -1. */
  _knownIndex(calc) {
    if (calc === null || typeof calc !== 'object') return -1
    try {
      const known = this._byName.get(calc.name)
      return known !== undefined && known.calc === calc && (known.file !== null || typeof calc.calculate === 'function') ? known.idx : -1
    } catch {
      return -1
    }
  }

  /** One job as JSON; `i` is its index in a batch (-1: a single job), named only in errors. */
  _jobJson(calculation, data, context, options, i) {
    const idx = this._calcIndex(calculation, i < 0 ? 'calculation' : undefined, i)
    const d = dataJson(data, i, 'data')
    if (context !== undefined && context !== null && !isRecord(context)) {
      throw invalid(`${fieldAt(i, 'context')} must be an object, got ${describe(context)}`)
    }
    const c = context === undefined || context === null ? '{}' : dataJson(context, i, 'context')
    const o = options === undefined || options === null ? 'null' : optionsJson(options, fieldAt(i, 'options'))
    return `[${idx},${d},${c},${o}]`
  }

  /**
   * Adds a job; returns its id.
   * @returns {string}
   */
  addCalculationJob(calculation, data, context, options) {
    let job
    try {
      job = this._jobJson(calculation, data, context, options, -1)
    } catch (e) {
      throw asCoded(e, API.InvalidArgument, 'addCalculationJob: an argument')
    }
    const ids = this._core.add(`[${job}]`)
    this._schedulePump()
    return ids
  }

  /**
   * Adds many jobs at once, all or none: `[{ calculation, data, context, options }]`.
   * @returns {string[]}
   */
  addCalculationJobs(jobs) {
    let isList = false
    try {
      isList = Array.isArray(jobs)
    } catch {}
    if (!isList) throw invalid(`addCalculationJobs(jobs): jobs must be an array, got ${describe(jobs)}`)
    let batch
    try {
      batch = this._batchJson(jobs)
    } catch (e) {
      throw asCoded(e, API.InvalidArgument, 'addCalculationJobs(jobs): jobs')
    }
    if (batch === null) return []
    const ids = (typeof batch === 'string' ? this._core.add(batch) : this._core.addData(batch.idx, batch.datas)).split(',')
    this._schedulePump()
    return ids
  }

  /**
   * A batch as the core takes it: `{ idx, datas }` (addData) for a plain one,
   * else the JSON of `add`; null for an empty list.
   */
  _batchJson(jobs) {
    if (jobs.length === 0) return null
    const plain = this._plainBatch(jobs)
    if (plain !== null) return { idx: plain.idx, datas: JSON.stringify(plain.datas) }
    const parts = new Array(jobs.length)
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i]
      if (j === null || typeof j !== 'object') throw invalid(`jobs[${i}] must be an object { calculation, data, context, options }`)
      try {
        parts[i] = this._jobJson(j.calculation, j.data, j.context, j.options, i)
      } catch (e) {
        throw asCoded(e, API.InvalidArgument, `jobs[${i}]`)
      }
    }
    return `[${parts.join(',')}]`
  }

  /** Resolves once everything added (and every outcome) before it is committed to storage. */
  async flush() {
    const error = await this._core.flush()
    if (error != null) throw codedError(API.Storage, error)
  }

  /** The job's status, or null for an unknown id. */
  getJobStatus(jobId) {
    checkId(jobId, 'getJobStatus')
    if (this._async) return this._core.statusAsync(jobId).then((a) => parsed(answer(a)))
    const s = this._core.status(jobId)
    return s == null ? null : JSON.parse(s)
  }

  /**
   * One page of jobs, newest first (filter: `{ status, name, since, until,
   * limit, cursor, order, includeData }`): `{ jobs, nextCursor }`; pass
   * `nextCursor` back as `cursor` (with the same filter) for the next page.
   */
  getJobs(filter) {
    if (this._async) return this._core.jobsAsync(jobsFilterJson(filter)).then((a) => parsed(answer(a)))
    return JSON.parse(this._core.jobs(jobsFilterJson(filter)))
  }

  /** Cancels a waiting, pending or running job; false if unknown or finished. */
  cancelJob(jobId) {
    checkId(jobId, 'cancelJob')
    if (this._async) {
      return this._core.cancelAsync(jobId).then((a) => {
        const ok = answer(a) === 'true'
        // A handler running here was aborted when the cancel committed.
        if (ok) this._afterFlags(this._core.poll())
        return ok
      })
    }
    const ok = this._core.cancel(jobId)
    if (ok) this._afterFlags(this._core.poll())
    return ok
  }

  /** Re-queues a failed, timed-out or cancelled job with its attempts reset. */
  retryJob(jobId) {
    checkId(jobId, 'retryJob')
    if (this._async) {
      return this._core.retryAsync(jobId).then((a) => {
        const ok = answer(a) === 'true'
        if (ok) this._schedulePump()
        return ok
      })
    }
    const ok = this._core.retry(jobId)
    if (ok) this._schedulePump()
    return ok
  }

  /** Counts per status, throughput, wait and run times, worker use. */
  getQueueStatistics() {
    const stats = JSON.parse(this._core.stats())
    // Time series (per second, per minute) are built only when read.
    const core = this._core
    Object.defineProperty(stats, 'trends', {
      enumerable: false,
      configurable: true,
      get() {
        const s = core.monitor('series')
        return s == null ? null : JSON.parse(s)
      },
    })
    return stats
  }

  /**
   * With `clock: 'manual'`: moves time forward step by step (each delayed
   * job, retry, timeout and schedule fire at its own time), letting the
   * handlers that became due run between steps. Before each step, and before
   * it resolves, it waits in real time for the running handlers to settle (a
   * handler may do real I/O: read a file, query a database), at most
   * `options.settleMs` (default 2000) per step; a handler still running then
   * is not waited for again and times out when the manual clock passes its
   * deadline. Resolves when time reached `now + ms`.
   */
  async advanceTime(ms, options) {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw invalid(`advanceTime(ms): ms must be a finite number >= 0, got ${typeof ms === 'number' ? ms : typeof ms}`)
    }
    let settleMs = SETTLE_MS
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') throw invalid('advanceTime(ms, options): options must be an object { settleMs }')
      if (options.settleMs !== undefined) {
        settleMs = options.settleMs
        if (typeof settleMs !== 'number' || !(settleMs >= 0 && settleMs <= MAX_TIMER_MS)) {
          throw invalid(`advanceTime(ms, options): settleMs must be a number from 0 to ${MAX_TIMER_MS}, got ${String(settleMs)}`)
        }
      }
    }
    const now = this._core.now()
    const target = now + ms
    // A step to now: throws without a manual clock, runs what is due already.
    this._core.advanceTo(now)
    this._afterFlags(this._core.poll())
    this._pump()
    await this._settleDue(settleMs)
    for (let step = 0; step < 1e6; step++) {
      const more = this._core.advanceTo(target)
      this._afterFlags(this._core.poll())
      this._pump()
      await this._settleDue(settleMs)
      if (!more) break
    }
  }

  // --- monitoring ------------------------------------------------------------

  _monitor(what) {
    const s = this._core.monitor(what)
    return s == null ? null : JSON.parse(s)
  }

  /** State, uptime, storage, scheduler, workers, counts per status, active alerts, version. */
  getSystemStatus() {
    // Opens nothing: a service whose file is not open yet reports it closed.
    const q = JSON.parse(this._core.stats(false))
    const alerts = this._monitor('alerts')
    return {
      status: this._state,
      startedAt: this._startedAt,
      uptimeMs: this._startedAt === null || this._state !== 'started' ? 0 : Date.now() - this._startedAt,
      storage: JSON.parse(this._core.storage()),
      scheduler: { schedules: JSON.parse(this._core.schedules('null', false)).length },
      workers: { max: q.maxWorkers, busy: q.activeWorkers, utilization: q.workerUtilization },
      jobs: { waiting: q.waiting, pending: q.pending, running: q.running, completed: q.completed, failed: q.failed, timeout: q.timeout, cancelled: q.cancelled, total: q.total },
      monitoring: alerts !== null,
      activeAlerts: alerts === null ? 0 : alerts.length,
      alertDelivery: this._monitor('delivery'),
      resources: processResources(this._cpuLast),
      version: VERSION,
    }
  }

  /** `{ overall, queue, workers, performance, errors, storage }` with the figures behind each; null when monitoring is disabled. */
  getSystemHealth() {
    const h = this._monitor('health')
    if (h === null) return null
    const { dimensions, ...rest } = h
    return { overall: h.overall !== undefined ? h.overall : h.status, ...dimensions, ...rest }
  }

  /** Totals and rates over the retention window, the last minute and the last hour. */
  getJobExecutionSummary() {
    return this._monitor('summary')
  }

  /** Per calculation: counts, success rate, duration percentiles, wait times, last run, trend. */
  getPerformanceMetrics() {
    return this._monitor('performance')
  }

  /** Queue length, throughput and utilization as time series (per second, per minute). */
  getQueueTrends() {
    return this._monitor('series')
  }

  getActiveAlerts() {
    return this._monitor('alerts') || []
  }

  acknowledgeAlert(alertId, acknowledgedBy) {
    checkId(alertId, 'acknowledgeAlert')
    if (typeof acknowledgedBy !== 'string' || acknowledgedBy.length === 0) {
      throw invalid('acknowledgeAlert(alertId, acknowledgedBy): acknowledgedBy must be a non-empty string')
    }
    return this._core.acknowledgeAlert(alertId, acknowledgedBy)
  }

  resolveAlert(alertId) {
    checkId(alertId, 'resolveAlert')
    return this._core.resolveAlert(alertId)
  }

  /** Resolved and active alerts, newest first (filter: `{ ruleId, severity, calculation, status, since, until, limit }`). */
  getAlertHistory(filter) {
    const s = this._core.alertHistory(argJson(filter, 'getAlertHistory(filter): filter'))
    return s == null ? [] : JSON.parse(s)
  }

  /**
   * Per alert rule, over the alerts kept in the history (`alerting.historySize`
   * resolved ones and the active ones): how often it fired (`fired`,
   * `firedPerHour` from its first kept alert until now), `active`, `resolved`,
   * `meanTimeToResolveMs` (null before one resolved), `firstFiredAt`,
   * `lastFiredAt`; the most fired first.
   */
  getAlertStatistics() {
    const now = this._core.now()
    const byRule = new Map()
    for (const a of this.getAlertHistory({ limit: 10000 })) {
      let r = byRule.get(a.ruleId)
      if (r === undefined) {
        r = { ruleId: a.ruleId, name: a.name, fired: 0, active: 0, resolved: 0, firedPerHour: 0, meanTimeToResolveMs: null, firstFiredAt: a.firedAt, lastFiredAt: a.firedAt, resolveMs: 0 }
        byRule.set(a.ruleId, r)
      }
      r.fired++
      if (a.status === 'active') r.active++
      else if (typeof a.resolvedAt === 'number') {
        r.resolved++
        r.resolveMs += a.resolvedAt - a.firedAt
      }
      if (a.firedAt < r.firstFiredAt) r.firstFiredAt = a.firedAt
      if (a.firedAt > r.lastFiredAt) r.lastFiredAt = a.firedAt
    }
    const out = []
    for (const { resolveMs, ...r } of byRule.values()) {
      // At least a minute, so that one fresh alert is not "infinitely frequent".
      r.firedPerHour = r.fired / (Math.max(now - r.firstFiredAt, 60000) / 3600000)
      if (r.resolved > 0) r.meanTimeToResolveMs = Math.round(resolveMs / r.resolved)
      out.push(r)
    }
    return out.sort((a, b) => b.fired - a.fired)
  }

  /** Adds an alert rule `{ id?, metric, operator, threshold, window?, severity?, cooldownMs?, channels?, calculation? }`; returns its id. */
  addAlertRule(rule) {
    if (!isRecord(rule)) throw invalid(`addAlertRule(rule): rule must be an object, got ${describe(rule)}`)
    return this._core.addAlertRule(argJson(rule, 'addAlertRule(rule): rule'))
  }

  removeAlertRule(ruleId) {
    checkId(ruleId, 'removeAlertRule')
    return this._core.removeAlertRule(ruleId)
  }

  getAlertRules() {
    return this._monitor('rules') || []
  }

  /** The Prometheus text exposition format, ready to serve from a route ('' when monitoring is disabled). */
  getPrometheusMetrics() {
    return this._core.prometheus() || ''
  }

  // --- schedules -------------------------------------------------------------

  _schedule(calculation, data, context, trigger, options) {
    const calc = this._calcIndex(calculation, 'calculation')
    if (options !== undefined && options !== null && !isRecord(options)) {
      throw invalid(`options must be an object, got ${describe(options)}`)
    }
    if (context !== undefined && context !== null && !isRecord(context)) {
      throw invalid(`context must be an object, got ${describe(context)}`)
    }
    const spec = { ...trigger }
    const jobOptions = {}
    try {
      for (const [k, v] of Object.entries(options || {})) {
        if (SCHEDULE_KEYS.has(k)) spec[k] = v
        else jobOptions[k] = v
      }
    } catch (e) {
      throw asCoded(e, API.InvalidArgument, 'options')
    }
    let head
    try {
      head = JSON.stringify(spec, optionsReplacer)
    } catch (e) {
      throw codedError(API.InvalidSchedule, `the schedule cannot be read: ${reasonOf(e)}`)
    }
    const d = toJson(data, 'data')
    const c = context === undefined || context === null ? '{}' : toJson(context, 'context')
    const o = optionsJson(jobOptions, 'options')
    const json = `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"data":${d},"context":${c},"jobOptions":${o}}`
    const id = JSON.parse(this._core.schedule(calc, json)).id
    // A schedule with a next run keeps a started service's process alive.
    this._afterFlags(this._core.poll())
    return id
  }

  /**
   * Runs the calculation once at `scheduledAt` (a Date or epoch ms; a past
   * time runs at once). Returns the schedule's id.
   */
  scheduleCalculationJob(calculation, data, context, scheduledAt, options) {
    return this._schedule(calculation, data, context, { kind: 'once', scheduledAt: dateMs(scheduledAt, 'scheduledAt') }, options)
  }

  /** Runs the calculation every `intervalMs` from `startAt`. Returns the schedule's id. */
  scheduleRecurringCalculationJob(calculation, data, context, startAt, intervalMs, options) {
    const trigger = { kind: 'interval', intervalMs }
    if (startAt !== undefined && startAt !== null) trigger.startAt = dateMs(startAt, 'startAt')
    if (typeof intervalMs !== 'number') throw codedError(API.InvalidSchedule, `intervalMs must be a number > 0, got ${typeof intervalMs}`)
    return this._schedule(calculation, data, context, trigger, options)
  }

  /** Runs the calculation at a cron expression's times (`options.tz`: IANA zone). Returns the schedule's id. */
  scheduleCronCalculationJob(calculation, data, context, expression, options) {
    if (typeof expression !== 'string') {
      const e = codedError(API.InvalidCron, `invalid cron expression (expression): must be a string, got ${typeof expression}`)
      e.field = 'expression'
      throw e
    }
    return this._schedule(calculation, data, context, { kind: 'cron', expression }, options)
  }

  /** The schedules (filter: `{ kind, name, enabled }`). */
  getScheduledJobs(filter) {
    return JSON.parse(this._core.schedules(argJson(filter, 'getScheduledJobs(filter): filter')))
  }

  /** Removes a schedule (jobs it already added stay). False for an unknown id. */
  cancelScheduledJob(id) {
    checkId(id, 'cancelScheduledJob')
    const ok = this._core.unschedule(id)
    if (ok) this._afterFlags(this._core.poll())
    return ok
  }

  /** Enables or disables a schedule; re-enabling runs from now on (no replay). */
  setScheduledJobEnabled(id, enabled) {
    checkId(id, 'setScheduledJobEnabled')
    if (typeof enabled !== 'boolean') throw invalid(`setScheduledJobEnabled(id, enabled): enabled must be true or false, got ${typeof enabled}`)
    const ok = this._core.setScheduleEnabled(id, enabled)
    if (ok) this._afterFlags(this._core.poll())
    return ok
  }

  /**
   * Serves the dashboard on its own HTTP server (loopback unless `host` is
   * given, which needs `token`): resolves `{ url, port, host, server, close() }`.
   */
  startDashboard(options) {
    return require('../dashboard/server.js').startDashboard(this, options)
  }

  /** The service's current time (epoch ms): the manual clock's when there is one. */
  now() {
    return this._core.now()
  }
}

const SCHEDULE_KEYS = new Set(['id', 'maxRuns', 'endAt', 'startAt', 'tz', 'misfire', 'maxCatchUp', 'overlap', 'enabled'])

function dateMs(v, field) {
  let t = NaN
  try {
    t = v instanceof Date ? v.getTime() : v
  } catch {}
  if (typeof t !== 'number' || !Number.isFinite(t)) {
    throw codedError(API.InvalidSchedule, `${field} must be a valid date (a Date or epoch ms), got ${describe(v)}`)
  }
  return t
}

/**
 * The resolved file of `calc.module` (null without one): a relative path or a
 * package name is resolved from each of `baseDirs` in turn (the Strapi app's
 * directory and its build output, else the working directory). Checks
 * `threads` and `isolation` too.
 */
function calcModule(calc, what, baseDirs) {
  const { module: request, threads, isolation } = calc
  if (threads !== undefined && typeof threads !== 'boolean') throw invalid(`${what}.threads must be true or false`)
  if (isolation !== undefined && isolation !== 'thread' && isolation !== 'main') throw invalid(`${what}.isolation must be 'thread' or 'main'`)
  if (request === undefined || request === null) {
    if (threads === true || isolation === 'thread') {
      throw invalid(`${what}.module is required with threads: true (the file whose calculate(data, context, job) runs in the worker threads)`)
    }
    return null
  }
  if (typeof request !== 'string' || request.length === 0) throw invalid(`${what}.module must be a non-empty string (a file path)`)
  if (typeof calc.calculate === 'function' && (threads === true || isolation === 'thread')) {
    throw invalid(`${what}: give either calculate or module with threads: true, not both (a function cannot move to another thread)`)
  }
  const path = require('node:path')
  for (const baseDir of baseDirs) {
    const attempts = [request]
    if (!request.startsWith('.') && !path.isAbsolute(request)) attempts.push(path.resolve(baseDir, request))
    for (const r of attempts) {
      try {
        return require.resolve(r, { paths: [baseDir] })
      } catch {}
    }
  }
  throw invalid(`${what}.module cannot be found: '${request}' (resolved from ${baseDirs.join(', ')})`)
}

/** A `{ name, module }` calculation run on the main thread: its module's calculate, loaded now. */
function mainThreadModule(calc, what, file) {
  let m
  try {
    m = require(file)
  } catch (e) {
    const err = invalid(`${what}.module could not be loaded (${file}): ${e && e.message}`)
    err.cause = e
    throw err
  }
  const target = m && typeof m.calculate === 'function' ? m : m && m.default && typeof m.default.calculate === 'function' ? m.default : null
  if (target === null) throw invalid(`${what}.module (${file}) does not export calculate(data, context, job)`)
  return { name: calc.name, calculate: (data, context, job) => target.calculate(data, context, job) }
}

// obj[key]; a getter that throws or a revoked Proxy is ERR_INVALID_ARGUMENT naming `what`.
function readKey(obj, key, what) {
  try {
    return obj[key]
  } catch (e) {
    throw asCoded(e, API.InvalidArgument, what)
  }
}

const JOB_STATUSES = ['waiting', 'pending', 'running', 'completed', 'failed', 'timeout', 'cancelled']
const JOBS_FILTER_KEYS = ['status', 'name', 'since', 'until', 'limit', 'cursor', 'order', 'includeData']
const MAX_JOBS_LIMIT = 1000

function badFilter(field, message) {
  const e = invalid(`getJobs(filter): ${message}`)
  e.field = field
  return e
}

// getJobs' filter, checked (each bad value is ERR_INVALID_ARGUMENT with
// `err.field`) and sent as JSON with times as epoch ms.
function jobsFilterJson(filter) {
  try {
    return readJobsFilter(filter)
  } catch (e) {
    if (e && e.code === API.InvalidArgument && typeof e.field === 'string') throw e
    // A getter or proxy trap that throws.
    throw badFilter('filter', `filter cannot be read: ${e && e.message}`)
  }
}

function readJobsFilter(filter) {
  if (filter === undefined || filter === null) return 'null'
  if (typeof filter !== 'object' || Array.isArray(filter) || filter instanceof Date) {
    throw badFilter('filter', `filter must be an object { status, name, since, until, limit, cursor, order, includeData }, got ${describe(filter)}`)
  }
  const out = {}
  for (const key of Object.keys(filter)) {
    if (!JOBS_FILTER_KEYS.includes(key)) throw badFilter(key, `filter.${key} is not a known key (known: ${JOBS_FILTER_KEYS.join(', ')})`)
  }
  const given = (k) => filter[k] !== undefined && filter[k] !== null
  if (given('status')) {
    const st = filter.status
    const list = Array.isArray(st) ? st : [st]
    if (list.length === 0) throw badFilter('status', 'filter.status must name at least one status, got []')
    for (const s of list) {
      if (typeof s !== 'string' || !JOB_STATUSES.includes(s)) {
        throw badFilter('status', `filter.status must be a status (${JOB_STATUSES.join(', ')}) or an array of them, got ${describe(s)}`)
      }
    }
    out.status = list
  }
  if (given('name')) {
    if (typeof filter.name !== 'string') throw badFilter('name', `filter.name must be a calculation's name (a string), got ${describe(filter.name)}`)
    out.name = filter.name
  }
  for (const k of ['since', 'until']) {
    if (!given(k)) continue
    const v = filter[k]
    const t = v instanceof Date ? v.getTime() : v
    if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 8.64e15) {
      throw badFilter(k, `filter.${k} must be a Date or epoch ms (a number >= 0), got ${describe(v)}`)
    }
    out[k] = Math.ceil(t)
  }
  if (out.since !== undefined && out.until !== undefined && out.until < out.since) {
    throw badFilter('until', `filter.until (${out.until}) is before filter.since (${out.since})`)
  }
  if (given('limit')) {
    const l = filter.limit
    if (!Number.isInteger(l) || l < 1 || l > MAX_JOBS_LIMIT) throw badFilter('limit', `filter.limit must be an integer from 1 to ${MAX_JOBS_LIMIT}, got ${describe(l)}`)
    out.limit = l
  }
  if (given('cursor')) {
    const c = filter.cursor
    if (typeof c !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(c)) {
      throw badFilter('cursor', `filter.cursor must be a nextCursor returned by getJobs, got ${describe(c)}`)
    }
    out.cursor = c
  }
  if (given('order')) {
    if (filter.order !== 'desc' && filter.order !== 'asc') throw badFilter('order', `filter.order must be 'desc' or 'asc', got ${describe(filter.order)}`)
    out.order = filter.order
  }
  if (given('includeData')) {
    if (typeof filter.includeData !== 'boolean') throw badFilter('includeData', `filter.includeData must be true or false, got ${describe(filter.includeData)}`)
    out.includeData = filter.includeData
  }
  return JSON.stringify(out)
}

function checkId(jobId, method) {
  if (typeof jobId !== 'string') throw invalid(`${method}(jobId): jobId must be a string, got ${jobId === null ? 'null' : typeof jobId}`)
}

/**
 * The next `count` (default 5) fire times of a cron expression strictly after
 * `from` (default now), in `tz` (IANA name; default the process's zone), as
 * Dates. A malformed expression throws ERR_INVALID_CRON with `err.field`.
 */
function nextCronRuns(expression, options) {
  if (typeof expression !== 'string') {
    const e = codedError(API.InvalidCron, `nextCronRuns: expression must be a string, got ${typeof expression}`)
    e.field = 'expression'
    throw e
  }
  const o = options === undefined || options === null ? {} : options
  if (typeof o !== 'object') throw invalid('nextCronRuns(expression, options): options must be an object { tz, from, count }')
  const what = 'nextCronRuns(expression, options): options'
  const tz = readKey(o, 'tz', what)
  const from = readKey(o, 'from', what)
  const given = readKey(o, 'count', what)
  const count = given === undefined ? 5 : given
  if (tz !== undefined && tz !== null && typeof tz !== 'string') throw invalid('nextCronRuns: tz must be an IANA time zone name')
  let fromMs = Date.now()
  if (from !== undefined && from !== null) {
    try {
      fromMs = from instanceof Date ? from.getTime() : from
    } catch {
      fromMs = NaN
    }
    if (typeof fromMs !== 'number' || !Number.isFinite(fromMs)) throw invalid(`nextCronRuns: from must be a valid Date or epoch ms, got ${describe(from)}`)
  }
  if (!Number.isInteger(count) || count < 1 || count > 10000) throw invalid(`nextCronRuns: count must be an integer from 1 to 10000, got ${describe(count)}`)
  return native.nextCronRuns(expression, tz == null ? undefined : tz, fromMs, count).map((t) => new Date(t))
}

const services = new WeakMap()

/**
 * One service per Strapi instance (or per process without one). A later call
 * with a config that differs from the first one's (none counts as `{}`) throws
 * ERR_INVALID_CONFIG naming the first key that differs; an equal config or
 * none returns the service.
 */
function getJobManagementService(strapi, config) {
  const key = strapi && typeof strapi === 'object' ? strapi : getJobManagementService
  const known = services.get(key)
  if (known === undefined) {
    const service = new JobManagementService(config)
    const appDirs = appDirsOf(strapi)
    if (appDirs.length > 0) service._baseDirs = appDirs
    services.set(key, { service, config: readConfig(config) })
    return service
  }
  if (config !== undefined) {
    if (known.config === null) {
      throw codedError(
        API.InvalidConfig,
        'getJobManagementService(strapi, config): the jobwerk plugin made this service from config/plugins.js; call getJobManagementService(strapi) without a config',
      )
    }
    const given = readConfig(config)
    const at =
      given.logger !== known.config.logger
        ? 'monitoring.logger'
        : given.unref !== known.config.unref
          ? 'unref'
          : given.threadsJson !== known.config.threadsJson
            ? 'threads'
            : jsonDiff(JSON.parse(known.config.json), JSON.parse(given.json), '')
    if (at !== null) {
      throw codedError(
        API.InvalidConfig,
        `getJobManagementService(strapi, config): the service already exists with another config (${at || 'config'} differs); pass the same config, or none`,
      )
    }
  }
  return known.service
}

// Where calculation modules are found in a Strapi app: its directory, then
// (a TypeScript app's compiled files) its dist directory.
function appDirsOf(strapi) {
  const dirs = strapi && typeof strapi === 'object' ? strapi.dirs : undefined
  const found = dirs ? [(dirs.app && dirs.app.root) || dirs.root, dirs.dist && dirs.dist.root] : []
  return found.filter((d) => typeof d === 'string' && d.length > 0)
}

// The first path at which two JSON values differ ('' for the whole), or null.
function jsonDiff(a, b, at) {
  if (a === b) return null
  const objects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object'
  if (!objects || Array.isArray(a) !== Array.isArray(b)) return at
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  for (const k of keys) {
    const d = jsonDiff(a[k], b[k], at ? `${at}.${k}` : k)
    if (d !== null) return d
  }
  return null
}

module.exports = { JobManagementService, getJobManagementService, nextCronRuns, services, appDirsOf }
