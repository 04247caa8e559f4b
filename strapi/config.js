'use strict'
// The plugin's config: `config/plugins.js` → `jobwerk: { enabled: true, config: { ... } }`.
// The same keys as `new JobManagementService(config)`, plus the plugin's own.
// Strapi merges the user's config onto `default` (user values win), then calls
// `validator(merged)`; a throw stops the boot with "Error regarding jobwerk
// config: <message>".
const { API } = require('../lib/errors.js')
const { validateDashboard, DEFAULT_PATH } = require('./dashboard.js')

// Keys JobManagementService reads.
const CORE_KEYS = ['queue', 'monitoring', 'scheduler', 'storage', 'clock', 'unref', 'threads']
// Keys only the plugin reads.
const PLUGIN_KEYS = ['shutdownTimeoutMs', 'jobsDir', 'alertCooldownMs', 'cron', 'dashboard']

const MAX_TIMER_MS = 2 ** 31 - 1

const defaults = {
  // Below Docker's 10 s grace period between SIGTERM and SIGKILL.
  shutdownTimeoutMs: 8000,
  // Each file exports a calculation ({ name?, calculate }); false: none loaded.
  jobsDir: 'src/jobs',
  // One 'enqueue-lost' alert at most per this many ms (every loss is logged and counted).
  alertCooldownMs: 60000,
  // A Strapi app's hooks can add many jobs at once (a bulk update); the
  // library's default of 100 is for a bounded in-process queue.
  queue: { maxQueueSize: 100000 },
  // The dashboard under an admin path, behind its own token (strapi/dashboard.js); off by default.
  dashboard: { enabled: false, path: DEFAULT_PATH, readOnly: false },
}

function configError(key, message) {
  const e = new Error(`jobwerk config.${key}: ${message}`)
  e.code = API.InvalidConfig
  e.key = key
  return e
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/**
 * Throws an `ERR_INVALID_CONFIG` error naming the key for a value the plugin
 * or the service would refuse. The service's own keys are checked by the
 * service's constructor (the same checks as `new JobManagementService`), on
 * memory storage so that nothing is opened here.
 */
function validator(config) {
  if (!isObject(config)) throw configError('(root)', `must be an object, got ${Array.isArray(config) ? 'an array' : typeof config}`)
  for (const key of Object.keys(config)) {
    if (!CORE_KEYS.includes(key) && !PLUGIN_KEYS.includes(key)) {
      throw configError(key, `unknown key (known: ${[...CORE_KEYS, ...PLUGIN_KEYS].join(', ')})`)
    }
  }
  const t = config.shutdownTimeoutMs
  if (t !== undefined && (typeof t !== 'number' || !(t >= 0 && t <= MAX_TIMER_MS))) {
    throw configError('shutdownTimeoutMs', `must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${String(t)}`)
  }
  const c = config.alertCooldownMs
  if (c !== undefined && (typeof c !== 'number' || !(c >= 0 && c <= MAX_TIMER_MS))) {
    throw configError('alertCooldownMs', `must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${String(c)}`)
  }
  const d = config.jobsDir
  if (d !== undefined && d !== false && (typeof d !== 'string' || d.length === 0)) {
    throw configError('jobsDir', `must be a non-empty path or false, got ${d === null ? 'null' : typeof d}`)
  }
  validateCron(config.cron)
  validateDashboard(config.dashboard, configError)
  const s = config.storage
  if (s !== undefined && s !== null) {
    if (!isObject(s)) throw configError('storage', `must be an object, got ${Array.isArray(s) ? 'an array' : typeof s}`)
    if (s.type !== undefined && s.type !== 'sqlite' && s.type !== 'memory' && s.type !== 'postgres') {
      throw configError('storage.type', `must be 'sqlite', 'memory' or 'postgres', got ${JSON.stringify(s.type)}`)
    }
    if (s.type !== 'postgres' && s.path !== undefined && (typeof s.path !== 'string' || s.path.length === 0)) {
      throw configError('storage.path', 'must be a non-empty path')
    }
  }
  // The rest as the service reads it: construct one on memory storage (opens
  // nothing) and close it again.
  const { JobManagementService } = require('../index.js')
  const probe = {}
  for (const key of CORE_KEYS) if (config[key] !== undefined) probe[key] = config[key]
  // PostgreSQL's options are checked by the probe too (constructing a service
  // connects to nothing); without connection keys it takes the app's
  // connection at register (strapi/storage.js), checked there.
  probe.storage = s !== undefined && s !== null && s.type === 'postgres' ? s : { type: 'memory' }
  probe.unref = true
  let service
  try {
    service = new JobManagementService(probe)
  } catch (e) {
    if (e && e.code === API.InvalidConfig) {
      const err = new Error(`jobwerk config: ${e.message}`)
      err.code = API.InvalidConfig
      err.cause = e
      throw err
    }
    throw e
  }
  service._core.close()
}

/**
 * `cron: { <name>: entry }`, an entry being jobwerk's shape
 * `{ rule, tz?, calculation: 'registered-name', data?, context?, options? }` or
 * Strapi's cron-task shape `{ task: ({ strapi }) => ..., options: { rule, tz? } }`.
 */
function validateCron(cron) {
  if (cron === undefined || cron === null) return
  if (!isObject(cron)) throw configError('cron', `must be an object { name: { rule, calculation } }, got ${Array.isArray(cron) ? 'an array' : typeof cron}`)
  const { nextCronRuns } = require('../index.js')
  for (const [name, entry] of Object.entries(cron)) {
    const key = `cron.${name}`
    if (!isObject(entry)) throw configError(key, `must be an object, got ${entry === null ? 'null' : typeof entry}`)
    const hasTask = entry.task !== undefined
    const hasCalc = entry.calculation !== undefined
    if (hasTask === hasCalc) throw configError(key, 'needs either calculation (a registered name) or task (a function, as in Strapi cron tasks)')
    if (hasTask && typeof entry.task !== 'function') throw configError(`${key}.task`, `must be a function ({ strapi }) => ..., got ${typeof entry.task}`)
    if (hasCalc && (typeof entry.calculation !== 'string' || entry.calculation.length === 0)) throw configError(`${key}.calculation`, 'must be the name of a registered calculation')
    const options = entry.options === undefined ? {} : entry.options
    if (!isObject(options)) throw configError(`${key}.options`, 'must be an object')
    const rule = entry.rule !== undefined ? entry.rule : options.rule
    const ruleKey = entry.rule !== undefined ? `${key}.rule` : `${key}.options.rule`
    if (typeof rule !== 'string') throw configError(ruleKey, `must be a cron expression, got ${rule === undefined ? 'nothing' : typeof rule}`)
    const tz = entry.tz !== undefined ? entry.tz : options.tz
    try {
      nextCronRuns(rule, { tz, count: 1 })
    } catch (e) {
      throw configError(ruleKey, `${e && e.message}`)
    }
  }
}

module.exports = { default: defaults, validator, CORE_KEYS, PLUGIN_KEYS }
