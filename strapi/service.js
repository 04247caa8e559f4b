'use strict'
// The plugin's service: one JobManagementService per Strapi instance, with
// what a Strapi app needs on top: calculations by name, storage beside
// Strapi's database, strapi.log, and enqueue() for lifecycle hooks (never
// throws into the hook, waits for the surrounding transaction to commit).

const fs = require('node:fs')
const path = require('node:path')
const { JobManagementService, nextCronRuns, _services } = require('../index.js')
const { CORE_KEYS } = require('./config.js')
const { chooseStorage: chooseStorageFor, describePostgres } = require('./storage.js')

const { API, codedError } = require('../lib/errors.js')

class StrapiJobManagementService extends JobManagementService {
  /**
   * @param {object} strapi the Strapi instance
   * @param {object} config the service's config (CORE_KEYS)
   * @param {object} plugin `{ alertCooldownMs }`
   */
  constructor(strapi, config, plugin) {
    super(config)
    this._strapi = strapi
    // A calculation's `module` (worker threads) is found from the app's directory.
    const appDirs = _services.appDirsOf(strapi)
    if (appDirs.length > 0) this._baseDirs = appDirs
    this._alertCooldownMs = plugin.alertCooldownMs
    this._lastLossAlert = -Infinity
    // Jobs enqueue() could not add, per error code.
    this._lost = new Map()
    this._lostTotal = 0
    // Jobs enqueue() deferred to a commit, and those whose transaction rolled back.
    this._deferred = 0
    this._dropped = 0
  }

  /** The registered calculation of that name; ERR_INVALID_ARGUMENT naming it otherwise. */
  _byNameOrThrow(calculation) {
    if (typeof calculation !== 'string') return calculation
    const known = this._byName.get(calculation)
    if (known === undefined) {
      const names = [...this._byName.keys()]
      throw codedError(
        API.InvalidArgument,
        `no calculation named "${calculation}" is registered (registered: ${names.length > 0 ? names.join(', ') : 'none'})`,
      )
    }
    return known.calc
  }

  /**
   * PostgreSQL: connects and opens the storage without starting the queue
   * (the bootstrap stores the config's cron schedules in the database before
   * jobs run). Memory and SQLite: nothing to do (SQLite opens at first use).
   * Rejects ERR_STORAGE saying why.
   */
  async openStorage() {
    if (!this._async) return
    const a = await this._core.openAsync()
    if (a.code != null) throw codedError(a.code, a.message)
  }

  /**
   * On PostgreSQL a job added while the storage is not open (before the
   * bootstrap connected, or after the connect failed) would not reach the
   * database: refused with ERR_STORAGE (enqueue() counts it as lost) rather
   * than returning an id for a job nobody will run.
   */
  _checkPostgresOpen() {
    if (!this._async || this._state !== 'idle') return
    const s = JSON.parse(this._core.storage())
    if (s.state === 'open') return
    const why = this.startError !== undefined ? `the start failed: ${this.startError && this.startError.message}` : s.error || 'the service has not connected yet (its bootstrap connects)'
    throw codedError(API.Storage, `PostgreSQL storage is not open (${why}); the job is not stored`)
  }

  addCalculationJob(calculation, data, context, options) {
    this._checkPostgresOpen()
    return super.addCalculationJob(this._byNameOrThrow(calculation), data, context, options)
  }

  addCalculationJobs(jobs) {
    this._checkPostgresOpen()
    if (Array.isArray(jobs)) {
      jobs = jobs.map((j) => (j !== null && typeof j === 'object' && typeof j.calculation === 'string' ? { ...j, calculation: this._byNameOrThrow(j.calculation) } : j))
    }
    return super.addCalculationJobs(jobs)
  }

  scheduleCalculationJob(calculation, ...rest) {
    return super.scheduleCalculationJob(this._byNameOrThrow(calculation), ...rest)
  }

  scheduleRecurringCalculationJob(calculation, ...rest) {
    return super.scheduleRecurringCalculationJob(this._byNameOrThrow(calculation), ...rest)
  }

  scheduleCronCalculationJob(calculation, ...rest) {
    return super.scheduleCronCalculationJob(this._byNameOrThrow(calculation), ...rest)
  }

  /**
   * Adds a job from a lifecycle hook or anything else that must not fail
   * because of it. Never throws: a job that cannot be added (unknown name,
   * bad data, queue full, service stopping) is logged through strapi.log,
   * counted (getSystemStatus().enqueue, jobwerk_enqueue_lost_total) and
   * raises an 'enqueue-lost' alert. Inside a Strapi database transaction
   * (a document service call, a lifecycle hook) the job is added once the
   * transaction commits and never if it rolls back. Returns the job's id, or
   * null when it waits for the commit or was lost.
   */
  enqueue(calculation, data, context, options) {
    const db = this._strapi && this._strapi.db
    let inTransaction = false
    try {
      inTransaction = db != null && typeof db.inTransaction === 'function' && db.inTransaction() === true
    } catch {}
    if (inTransaction) {
      try {
        this._afterCommit(db, () => this._enqueueNow(calculation, data, context, options))
        this._deferred++
        return null
      } catch (e) {
        // No way to wait for the commit: add it now rather than lose it.
        this._log('warn', `jobwerk: could not wait for the transaction to commit (${e && e.message}); the job is added at once`)
      }
    }
    return this._enqueueNow(calculation, data, context, options)
  }

  // Strapi 5: a nested strapi.db.transaction() joins the running one and
  // hands out its onCommit/onRollback; the callback runs synchronously.
  _afterCommit(db, fn) {
    let registered = false
    const p = db.transaction(({ onCommit, onRollback }) => {
      onCommit(() => {
        try {
          fn()
        } catch {}
      })
      if (typeof onRollback === 'function') onRollback(() => this._dropped++)
      registered = true
    })
    if (p && typeof p.catch === 'function') p.catch(() => {})
    if (!registered) throw new Error('strapi.db.transaction did not run its callback at once')
  }

  _enqueueNow(calculation, data, context, options) {
    try {
      // A service that failed to start never runs a job, and memory storage
      // keeps none for the next boot: such a job is lost, and counted so.
      if (this.startError !== undefined && this._state !== 'started' && !this._durable) {
        const why = this.startError
        throw codedError(API.Stopped, `the service failed to start (${why && why.code ? `${why.code}: ` : ''}${why && why.message}) and its storage is memory: the job would never run`)
      }
      return this.addCalculationJob(calculation, data, context, options)
    } catch (e) {
      this._lose(calculation, e)
      return null
    }
  }

  _lose(calculation, e) {
    const code = (e && typeof e.code === 'string' && e.code) || 'ERR_UNKNOWN'
    this._lost.set(code, (this._lost.get(code) || 0) + 1)
    this._lostTotal++
    const name = typeof calculation === 'string' ? calculation : calculation && calculation.name
    const message = `a job of "${String(name)}" was not added (${code}: ${e && e.message}); ${this._lostTotal} lost so far`
    this._log('error', `jobwerk: ${message}`)
    const now = Date.now()
    if (now - this._lastLossAlert < this._alertCooldownMs) return
    this._lastLossAlert = now
    const alert = {
      id: `enqueue-lost-${now}`,
      ruleId: 'enqueue-lost',
      name: 'enqueue-lost',
      metric: 'enqueueLost',
      operator: '>',
      threshold: 0,
      severity: 'critical',
      calculation: typeof name === 'string' ? name : null,
      channels: ['log'],
      message,
      value: this._lostTotal,
      lastValue: this._lostTotal,
      peakValue: this._lostTotal,
      status: 'active',
      firedAt: now,
      acknowledged: false,
      acknowledgedAt: null,
      acknowledgedBy: null,
      resolvedAt: null,
      resolution: null,
    }
    this._log('error', `jobwerk alert [critical] enqueue-lost: ${message}`)
    this._emitSafely('alert', alert)
  }

  _log(level, line) {
    try {
      this._logger[level](line)
    } catch {}
  }

  getSystemStatus() {
    const s = super.getSystemStatus()
    s.enqueue = { lost: this._lostTotal, lostByCode: Object.fromEntries(this._lost), deferred: this._deferred, rolledBack: this._dropped }
    return s
  }

  getPrometheusMetrics() {
    let text = super.getPrometheusMetrics()
    text += '# HELP jobwerk_enqueue_lost_total Jobs enqueue() could not add (Strapi plugin), by error code.\n'
    text += '# TYPE jobwerk_enqueue_lost_total counter\n'
    if (this._lost.size === 0) text += 'jobwerk_enqueue_lost_total{code="none"} 0\n'
    for (const [code, n] of this._lost) text += `jobwerk_enqueue_lost_total{code="${code}"} ${n}\n`
    return text
  }
}

/**
 * Where jobs are stored (strapi/storage.js): the configured storage, else
 * the app's database decides. Returns `{ storage, reason, notes }`.
 */
function chooseStorage(strapi, configured) {
  return chooseStorageFor(appRoot(strapi), readConfig(strapi, 'database.connection'), configured)
}

function readConfig(strapi, key) {
  try {
    return strapi.config && typeof strapi.config.get === 'function' ? strapi.config.get(key) : undefined
  } catch {
    return undefined
  }
}

function appRoot(strapi) {
  const root = strapi && strapi.dirs && strapi.dirs.app && strapi.dirs.app.root
  if (typeof root !== 'string' || root.length === 0) {
    throw codedError(API.InvalidConfig, "jobwerk: strapi.dirs.app.root is not set; the plugin resolves its files from the app's root")
  }
  return root
}

/** The plugin's config as merged and validated by Strapi. */
function pluginConfig(strapi) {
  const c = readConfig(strapi, 'plugin::jobwerk')
  return c !== null && typeof c === 'object' ? c : {}
}

/**
 * The Strapi instance's service, made on first use: the object
 * `getJobManagementService(strapi)` and `strapi.plugin('jobwerk').service('jobs')`
 * both return.
 */
function serviceFor(strapi) {
  const known = _services.get(strapi)
  if (known instanceof StrapiJobManagementService) return known
  const cfg = pluginConfig(strapi)
  const config = {}
  for (const key of CORE_KEYS) if (cfg[key] !== undefined) config[key] = cfg[key]
  const { storage, reason, notes } = chooseStorage(strapi, cfg.storage)
  config.storage = storage
  const logger = strapi.log
  if (logger && ['info', 'warn', 'error'].every((k) => typeof logger[k] === 'function')) {
    const monitoring = config.monitoring && typeof config.monitoring === 'object' ? config.monitoring : {}
    if (monitoring.logger === undefined) config.monitoring = { ...monitoring, logger }
  }
  const service = new StrapiJobManagementService(strapi, config, { alertCooldownMs: cfg.alertCooldownMs === undefined ? 60000 : cfg.alertCooldownMs })
  service.storageReason = reason
  if (known !== undefined) service._log('warn', 'jobwerk: getJobManagementService(strapi) was called before the plugin registered; that service is replaced by the plugin\'s')
  _services.set(strapi, service)
  const where = storage.type === 'postgres' ? ` at ${describePostgres(storage)}` : storage.path ? ` at ${storage.path}` : ''
  service._log('info', `jobwerk: storage ${storage.type}${where} (${reason})`)
  for (const note of notes) service._log('warn', `jobwerk: ${note}`)
  return service
}

/**
 * Registers every calculation exported by a `.js` file in `dir` (relative to
 * the app's root). A file exports `{ name?, calculate, ...defaults }` (or it
 * as `default`); the name defaults to the file's name. A missing folder is
 * not an error. Returns the names registered.
 */
function loadJobsDir(strapi, service, dir) {
  const abs = path.resolve(appRoot(strapi), dir)
  let files
  try {
    files = fs.readdirSync(abs).filter((f) => f.endsWith('.js')).sort()
  } catch (e) {
    if (e && e.code === 'ENOENT') {
      service._log('debug' in service._logger ? 'debug' : 'info', `jobwerk: no ${abs} folder, no calculations loaded from files`)
      return []
    }
    throw codedError(API.InvalidConfig, `jobwerk config.jobsDir: ${abs} cannot be read (${e && e.message})`)
  }
  const names = []
  for (const f of files) {
    const file = path.join(abs, f)
    let mod = require(file)
    if (mod && mod.__esModule && mod.default !== undefined) mod = mod.default
    if (mod === null || typeof mod !== 'object' || typeof mod.calculate !== 'function') {
      throw codedError(API.InvalidArgument, `jobwerk: ${file} must export a calculation { name?, calculate(data, context, job) }`)
    }
    const calc = typeof mod.name === 'string' && mod.name.length > 0 ? mod : { ...mod, name: path.basename(f, '.js') }
    service.registerCalculation(calc)
    names.push(calc.name)
  }
  if (names.length > 0) service._log('info', `jobwerk: calculations from ${abs}: ${names.join(', ')}`)
  return names
}

const CRON_PREFIX = 'cron:'

/**
 * True when Strapi 5.54's croner (10.x) fires `rule` on other days than
 * jobwerk: croner 10 replaces `?` by `*` but still counts that day field as
 * restricted, so with the other day field restricted too (OR of the two) the
 * rule fires every day (`0 0 ? * MON`: daily there, Mondays here).
 */
function croner10ReadsDaily(rule) {
  const f = rule.trim().split(/\s+/)
  if (f.length < 5 || f.length > 7) return false
  const [dom, dow] = f.length === 5 ? [f[2], f[4]] : [f[3], f[5]]
  const free = (x) => x === '*' || x === '?'
  return (dom === '?' && !free(dow)) || (dow === '?' && !free(dom))
}

/**
 * Makes the stored schedules match `config.cron`: each entry becomes (or
 * updates) the cron schedule with id `cron:<name>`, persisted with the jobs;
 * a stored `cron:` schedule whose entry left the config is cancelled. A
 * Strapi-style `task` becomes the calculation `cron:<name>`, called with
 * `{ strapi }` as Strapi's cron does. A `calculation` must be registered by
 * then (src/jobs, or the app's register()). Returns `{ added, removed }`.
 */
function reconcileCron(strapi, service, cron) {
  const wanted = new Set()
  for (const [name, entry] of Object.entries(cron || {})) {
    const id = `${CRON_PREFIX}${name}`
    wanted.add(id)
    const options = { ...(entry.options || {}) }
    const rule = entry.rule !== undefined ? entry.rule : options.rule
    const tz = entry.tz !== undefined ? entry.tz : options.tz
    delete options.rule
    delete options.tz
    for (const k of ['start', 'end']) delete options[k]
    let calculation = entry.calculation
    if (typeof entry.task === 'function' && croner10ReadsDaily(rule)) {
      let next = ''
      try {
        next = nextCronRuns(rule, { tz, count: 3 })
          .map((d) => d.toISOString())
          .join(', ')
      } catch {}
      service._log(
        'warn',
        `jobwerk: cron.${name} rule "${rule}" is read differently: Strapi 5's cron (croner 10) reads "?" as "*" and fires it every day; jobwerk reads "?" as "no specific value" and fires it only on the days the other day field names (next: ${next})`,
      )
    }
    if (typeof entry.task === 'function') {
      const task = entry.task
      calculation = { name: id, calculate: () => task({ strapi }) }
      service.registerCalculation(calculation)
    }
    service.scheduleCronCalculationJob(calculation, entry.data === undefined ? null : entry.data, entry.context, rule, { ...options, ...(tz === undefined ? {} : { tz }), id })
  }
  const removed = []
  for (const s of service.getScheduledJobs()) {
    if (typeof s.id === 'string' && s.id.startsWith(CRON_PREFIX) && !wanted.has(s.id)) {
      service.cancelScheduledJob(s.id)
      removed.push(s.id)
    }
  }
  if (wanted.size > 0 || removed.length > 0) {
    service._log('info', `jobwerk: cron from the config: ${[...wanted].join(', ') || 'none'}${removed.length > 0 ? `; removed (no longer in the config): ${removed.join(', ')}` : ''}`)
  }
  return { added: [...wanted], removed }
}

module.exports = { StrapiJobManagementService, chooseStorage, serviceFor, loadJobsDir, pluginConfig, reconcileCron, croner10ReadsDaily }
