'use strict'
// The Strapi 5 plugin (strapi-server.js, strapi/) against a fake strapi
// object: config validation, storage choice, the service's identity, the
// lifecycle, calculations by name and from src/jobs, enqueue() from hooks
// (never throws, waits for the commit). The real Strapi app is
// examples/strapi-app (npm run test:strapi).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { AsyncLocalStorage } = require('node:async_hooks')
const { waitFor, waitForStatus } = require('./helpers')

const ROOT = path.join(__dirname, '..')
const plugin = require(path.join(ROOT, 'strapi-server.js'))
const { getJobManagementService } = require(ROOT)

function tmpApp(files = {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-strapi-'))
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true })
    fs.writeFileSync(path.join(root, rel), text)
  }
  return root
}

// Strapi 5's strapi.db.transaction and its transaction context
// (@strapi/database: transaction-context.js and Database#transaction), reduced
// to what enqueue() relies on.
function fakeDb() {
  const storage = new AsyncLocalStorage()
  const ctx = {
    run(trx, cb) {
      const store = storage.getStore()
      return storage.run({ trx, commitCallbacks: store?.commitCallbacks || [], rollbackCallbacks: store?.rollbackCallbacks || [] }, cb)
    },
    get: () => storage.getStore()?.trx,
    async commit() {
      const store = storage.getStore()
      store.trx = null
      await null
      store.commitCallbacks.forEach((cb) => cb())
      store.commitCallbacks = []
    },
    async rollback() {
      const store = storage.getStore()
      store.trx = null
      await null
      store.rollbackCallbacks.forEach((cb) => cb())
      store.rollbackCallbacks = []
    },
    onCommit(cb) {
      storage.getStore()?.commitCallbacks.push(cb)
    },
    onRollback(cb) {
      storage.getStore()?.rollbackCallbacks.push(cb)
    },
  }
  return {
    inTransaction: () => !!ctx.get(),
    async transaction(cb) {
      const notNested = !ctx.get()
      const trx = notNested ? {} : ctx.get()
      const commit = async () => notNested && ctx.commit(trx)
      const rollback = async () => notNested && ctx.rollback(trx)
      return ctx.run(trx, async () => {
        try {
          const res = await cb({ trx, commit, rollback, onCommit: ctx.onCommit, onRollback: ctx.onRollback })
          await commit()
          return res
        } catch (e) {
          await rollback()
          throw e
        }
      })
    },
  }
}

function logger() {
  const lines = []
  const log = {}
  for (const level of ['debug', 'info', 'warn', 'error']) log[level] = (m) => lines.push(`${level}: ${m}`)
  log.lines = lines
  return log
}

/** A fake Strapi instance: config as Strapi merges it, dirs, log, db, plugin(). */
function fakeStrapi({ root = tmpApp(), pluginConfig = {}, database = { client: 'sqlite', connection: { filename: '.tmp/data.db' } } } = {}) {
  const merged = { ...plugin.config.default, ...pluginConfig, queue: { ...plugin.config.default.queue, ...(pluginConfig.queue || {}) } }
  plugin.config.validator(merged)
  const config = { 'plugin::jobwerk': merged, 'database.connection': database }
  const strapi = {
    dirs: { app: { root } },
    config: { get: (key) => config[key] },
    log: logger(),
    db: fakeDb(),
    plugin: (name) => (name === 'jobwerk' ? { service: (s) => (s === 'jobs' ? plugin.services.jobs({ strapi }) : undefined) } : undefined),
  }
  return strapi
}

const started = []
async function boot(strapi) {
  plugin.register({ strapi })
  started.push(strapi)
  await plugin.bootstrap({ strapi })
  return strapi.plugin('jobwerk').service('jobs')
}

afterEach(async () => {
  for (const strapi of started.splice(0)) await plugin.destroy({ strapi })
})

const memory = { storage: { type: 'memory' } }

describe('config validator', () => {
  test.each([
    [{ queu: {} }, /config\.queu: unknown key/],
    [{ shutdownTimeoutMs: -1 }, /config\.shutdownTimeoutMs: must be a number/],
    [{ shutdownTimeoutMs: '8s' }, /config\.shutdownTimeoutMs/],
    [{ jobsDir: 3 }, /config\.jobsDir/],
    [{ storage: { type: 'redis' } }, /config\.storage\.type/],
    [{ storage: { type: 'postgres', port: 'x' } }, /storage\.port must be an integer/],
    [{ storage: { path: '' } }, /config\.storage\.path/],
    [{ queue: { maxWorkers: 0 } }, /queue\.maxWorkers must be an integer/],
    [{ queue: { maxWorkerz: 1 } }, /queue\.maxWorkerz is not a known key/],
    [{ monitoring: { alerting: { cooldownMs: 'x' } } }, /monitoring\.alerting\.cooldownMs/],
    [[], /must be an object/],
    [{ cron: { daily: { rule: '0 3 * * *' } } }, /config\.cron\.daily: needs either calculation/],
    [{ cron: { daily: { rule: '0 3 * *', calculation: 'x' } } }, /config\.cron\.daily\.rule: invalid cron expression/],
    [{ cron: { daily: { task: () => {}, options: { rule: '0 3 * * *', tz: 'Mars/Base' } } } }, /config\.cron\.daily\.options\.rule: .*Mars\/Base/],
    [{ cron: { daily: { task: 'run', options: { rule: '0 3 * * *' } } } }, /config\.cron\.daily\.task: must be a function/],
    [{ dashboard: { enabled: true } }, /config\.dashboard\.token: the dashboard is enabled without a gate/],
    [{ dashboard: { enabled: true, token: 'short' } }, /config\.dashboard\.token: must be a secret of at least 16 characters/],
    [{ dashboard: { enabled: true, token: 'a-long-enough-secret', auth: () => true } }, /config\.dashboard\.token: give token or auth, not both/],
    [{ dashboard: { enabled: 'yes' } }, /config\.dashboard\.enabled: must be true or false/],
    [{ dashboard: { tokn: 'a-long-enough-secret' } }, /config\.dashboard\.tokn: unknown key/],
    [{ dashboard: { path: '/api/jobs' } }, /config\.dashboard\.path: "\/api\/jobs" is Strapi's own/],
    [{ dashboard: { path: '/admin' } }, /config\.dashboard\.path/],
    [{ dashboard: { path: 'admin/jobs' } }, /config\.dashboard\.path: must be a path/],
    [{ dashboard: { redact: 'password' } }, /config\.dashboard\.redact/],
    [{ dashboard: [] }, /config\.dashboard: must be an object/],
  ])('%j is refused naming the key', (cfg, message) => {
    let err
    try {
      plugin.config.validator(cfg)
    } catch (e) {
      err = e
    }
    expect(err).toBeDefined()
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toMatch(message)
  })

  test('the defaults and a full config pass', () => {
    expect(() => plugin.config.validator({ ...plugin.config.default })).not.toThrow()
    expect(() => plugin.config.validator({ ...plugin.config.default, queue: { maxWorkers: 4, maxQueueSize: 5000 }, storage: { path: 'data/jobs.db' }, jobsDir: false })).not.toThrow()
    expect(plugin.config.default.shutdownTimeoutMs).toBe(8000)
    expect(plugin.config.default.queue.maxQueueSize).toBeGreaterThanOrEqual(10000)
  })

  test('the package is a Strapi plugin with a .js server entry', () => {
    const pkg = require(path.join(ROOT, 'package.json'))
    expect(pkg.strapi).toEqual(expect.objectContaining({ kind: 'plugin', name: 'jobwerk' }))
    // Every file of the plugin ships (package.json lists them one by one).
    const shipped = fs.readdirSync(path.join(ROOT, 'strapi')).map((f) => `strapi/${f}`)
    expect(pkg.files).toEqual(expect.arrayContaining(['strapi-server.js', 'strapi-server.d.ts', ...shipped]))
    expect(pkg.exports['./strapi-server']).toEqual({ types: './strapi-server.d.ts', default: './strapi-server.js' })
    for (const hook of ['register', 'bootstrap', 'destroy']) expect(typeof plugin[hook]).toBe('function')
  })
})

describe('storage follows the app database', () => {
  test('SQLite app: jobwerk.db beside Strapi file, resolved from strapi.dirs.app.root, not cwd', async () => {
    const strapi = fakeStrapi()
    const jobs = await boot(strapi)
    expect(jobs.getSystemStatus().storage.type).toBe('sqlite')
    const file = path.join(strapi.dirs.app.root, '.tmp', 'jobwerk.db')
    expect(fs.existsSync(file)).toBe(true)
    expect(strapi.log.lines.some((l) => l.startsWith('info: jobwerk: storage sqlite at ' + file))).toBe(true)
  })

  test('MySQL app (config only): a SQLite file of its own, and the log says why', async () => {
    const strapi = fakeStrapi({ database: { client: 'mysql', connection: { host: 'db', database: 'app' } } })
    const jobs = await boot(strapi)
    expect(jobs.getSystemStatus().storage.type).toBe('sqlite')
    expect(fs.existsSync(path.join(strapi.dirs.app.root, '.tmp', 'jobwerk.db'))).toBe(true)
    expect(strapi.log.lines.find((l) => l.includes('storage sqlite'))).toMatch(/uses mysql/)
  })

  test('PostgreSQL app (config only, no start): PostgreSQL storage on the app\'s server and database, schema jobwerk, and the log says why', () => {
    const strapi = fakeStrapi({ database: { client: 'postgres', connection: { host: 'db.internal', port: 5432, database: 'app', user: 'strapi', password: 'pw' } } })
    plugin.register({ strapi })
    const jobs = strapi.plugin('jobwerk').service('jobs')
    expect(jobs.getSystemStatus().storage).toEqual({ type: 'postgres', state: 'closed', error: null })
    const line = strapi.log.lines.find((l) => l.includes('storage postgres'))
    expect(line).toMatch(/at db\.internal:5432\/app as strapi, schema jobwerk \(the app uses PostgreSQL/)
    expect(line).not.toMatch(/pw/)
    // Never started: nothing to stop (destroy of a service that never opened).
    started.push(strapi)
  })

  test("a configured path equal to Strapi's own SQLite file is refused", () => {
    const strapi = fakeStrapi({ pluginConfig: { storage: { path: '.tmp/data.db' } } })
    expect(() => plugin.register({ strapi })).toThrow(/Strapi's own database file/)
  })
})

describe('one service per Strapi instance', () => {
  test('getJobManagementService(strapi) and strapi.plugin(jobwerk).service(jobs) are the same object', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    expect(getJobManagementService(strapi)).toBe(jobs)
    expect(strapi.plugin('jobwerk').service('jobs')).toBe(jobs)
    expect(typeof jobs.enqueue).toBe('function')
    // Another Strapi instance gets its own.
    const other = fakeStrapi({ pluginConfig: memory })
    expect(await boot(other)).not.toBe(jobs)
  })

  test("the plugin's service finds a thread calculation's relative module from the app's directory", async () => {
    const fs = require('node:fs')
    const path = require('node:path')
    const strapi = fakeStrapi({ pluginConfig: memory })
    const root = strapi.dirs.app.root
    fs.mkdirSync(path.join(root, 'calculations'), { recursive: true })
    fs.writeFileSync(path.join(root, 'calculations', 'double.js'), 'exports.calculate = (data) => data.n * 2\n')
    const jobs = await boot(strapi)
    const id = jobs.addCalculationJob({ name: 'double', module: './calculations/double.js', threads: true }, { n: 21 })
    await waitFor(() => ['completed', 'failed'].includes(jobs.getJobStatus(id).status), { timeout: 10000, what: 'the thread job' })
    expect(jobs.getJobStatus(id).result).toBe(42)
  })

  test('getJobManagementService(strapi, config) on the plugin\'s service refuses the config (it comes from config/plugins.js)', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    expect(() => getJobManagementService(strapi, { queue: { maxWorkers: 1 } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    expect(getJobManagementService(strapi)).toBe(jobs)
  })

  test('without the plugin, getJobManagementService(strapi) makes a plain service per Strapi object as before', async () => {
    const strapi = { log: logger() }
    const s = getJobManagementService(strapi, memory)
    expect(getJobManagementService(strapi)).toBe(s)
    expect(s.enqueue).toBeUndefined()
    await s.stop()
  })

  test('strapi.log is the logger of the log channel', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    expect(jobs._logger).toBe(strapi.log)
  })
})

describe('calculations by name', () => {
  test('src/jobs/*.js are registered at register; a job is added by name and runs', async () => {
    const root = tmpApp({
      'src/jobs/table-recalculation.js': "module.exports = { calculate: (data) => ({ table: data.table, sorted: true }) }",
      'src/jobs/named.js': "module.exports = { name: 'other-name', calculate: () => 2 }",
      'src/jobs/README.md': 'not a job',
    })
    const strapi = fakeStrapi({ root, pluginConfig: memory })
    const jobs = await boot(strapi)
    const id = jobs.addCalculationJob('table-recalculation', { table: 'a' }, { by: 'test' })
    expect((await waitForStatus(jobs, id)).result).toEqual({ table: 'a', sorted: true })
    const id2 = jobs.addCalculationJob('other-name', null)
    expect((await waitForStatus(jobs, id2)).result).toBe(2)
    expect(strapi.log.lines.some((l) => /calculations from .*: named|other-name/.test(l))).toBe(true)
  })

  test('a missing src/jobs is fine (logged)', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    await boot(strapi)
    expect(strapi.log.lines.some((l) => /no .*src[/\\]jobs folder/.test(l))).toBe(true)
  })

  test('a file that exports no calculation stops the boot naming the file', () => {
    const root = tmpApp({ 'src/jobs/broken.js': 'module.exports = { run() {} }' })
    const strapi = fakeStrapi({ root, pluginConfig: memory })
    expect(() => plugin.register({ strapi })).toThrow(/broken\.js must export a calculation/)
  })

  test('an unknown name is ERR_INVALID_ARGUMENT naming it; registerCalculation from the app works by name', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    let err
    try {
      jobs.addCalculationJob('no-such-calc', {})
    } catch (e) {
      err = e
    }
    expect(err.code).toBe('ERR_INVALID_ARGUMENT')
    expect(err.message).toMatch(/"no-such-calc"/)
    jobs.registerCalculation({ name: 'late', calculate: (d) => d * 2 })
    const [id] = jobs.addCalculationJobs([{ calculation: 'late', data: 21 }])
    expect((await waitForStatus(jobs, id)).result).toBe(42)
  })
})

describe('enqueue() from hooks never throws', () => {
  test('a full queue: logged, counted in status and Prometheus, one alert', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, queue: { maxQueueSize: 2 } } })
    plugin.register({ strapi })
    started.push(strapi)
    const jobs = strapi.plugin('jobwerk').service('jobs')
    const alerts = []
    jobs.on('alert', (a) => alerts.push(a))
    jobs.registerCalculation({ name: 'recalc', calculate: () => 1 })
    // Not started: the queue fills up.
    const ids = []
    for (let i = 0; i < 5; i++) ids.push(jobs.enqueue('recalc', { i }))
    expect(ids.filter((id) => typeof id === 'string')).toHaveLength(2)
    expect(ids.slice(2)).toEqual([null, null, null])
    const status = jobs.getSystemStatus()
    expect(status.enqueue).toEqual(expect.objectContaining({ lost: 3, lostByCode: { ERR_QUEUE_FULL: 3 } }))
    expect(jobs.getPrometheusMetrics()).toMatch(/^jobwerk_enqueue_lost_total\{code="ERR_QUEUE_FULL"\} 3$/m)
    expect(strapi.log.lines.filter((l) => l.startsWith('error: jobwerk: a job of "recalc" was not added (ERR_QUEUE_FULL'))).toHaveLength(3)
    // One alert per cooldown, not one per lost job.
    expect(alerts).toHaveLength(1)
    expect(alerts[0]).toEqual(expect.objectContaining({ name: 'enqueue-lost', severity: 'critical', status: 'active' }))
  })

  test('an unknown name or bad data is lost, not thrown', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    jobs.registerCalculation({ name: 'recalc', calculate: () => 1 })
    expect(jobs.enqueue('nope', {})).toBeNull()
    expect(jobs.enqueue('recalc', { f() {} })).toBeNull()
    expect(jobs.getSystemStatus().enqueue.lostByCode).toEqual({ ERR_INVALID_ARGUMENT: 1, ERR_NOT_SERIALIZABLE: 1 })
  })

  test('while stopping and after destroy: enqueue() returns null; each loss is logged, counted in status and Prometheus, and alerted', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, shutdownTimeoutMs: 200 } })
    const jobs = await boot(strapi)
    const alerts = []
    jobs.on('alert', (a) => alerts.push(a))
    let release
    jobs.registerCalculation({ name: 'slow', calculate: () => new Promise((r) => (release = r)) })
    jobs.enqueue('slow', null)
    await waitFor(() => release)
    // A hook's transaction that commits only once destroy began.
    let commit
    const committed = strapi.db.transaction(async () => {
      expect(jobs.enqueue('slow', 'in a transaction')).toBeNull()
      await new Promise((r) => (commit = r))
    })
    const destroying = plugin.destroy({ strapi })
    expect(jobs.enqueue('slow', 'while stopping')).toBeNull()
    commit()
    await committed
    release(1)
    await destroying
    started.length = 0
    expect(jobs.getSystemStatus().status).toBe('stopped')
    expect(jobs.enqueue('slow', 'after destroy')).toBeNull()
    const status = jobs.getSystemStatus()
    expect(status.enqueue).toEqual({ lost: 3, lostByCode: { ERR_STOPPED: 3 }, deferred: 1, rolledBack: 0 })
    expect(jobs.getPrometheusMetrics()).toMatch(/^jobwerk_enqueue_lost_total\{code="ERR_STOPPED"\} 3$/m)
    const lost = strapi.log.lines.filter((l) => l.startsWith('error: jobwerk: a job of "slow" was not added (ERR_STOPPED'))
    expect(lost).toHaveLength(3)
    expect(lost[2]).toMatch(/3 lost so far$/)
    // One alert for the three (alertCooldownMs), in the log too.
    expect(alerts).toHaveLength(1)
    expect(alerts[0]).toEqual(expect.objectContaining({ name: 'enqueue-lost', severity: 'critical', status: 'active', calculation: 'slow', value: 1 }))
    expect(strapi.log.lines.filter((l) => l.startsWith('error: jobwerk alert [critical] enqueue-lost:'))).toHaveLength(1)
  })

  test('alertCooldownMs: 0 raises an alert for every lost job', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, alertCooldownMs: 0 } })
    const jobs = await boot(strapi)
    const alerts = []
    jobs.on('alert', (a) => alerts.push(a.value))
    await plugin.destroy({ strapi })
    started.length = 0
    for (let i = 0; i < 3; i++) expect(jobs.enqueue('nope', i)).toBeNull()
    expect(alerts).toEqual([1, 2, 3])
  })
})

describe('transactions', () => {
  test('a job enqueued inside a transaction is added only after it commits', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    const ran = []
    jobs.registerCalculation({ name: 'recalc', calculate: (d) => ran.push(d) })
    let inside
    await strapi.db.transaction(async () => {
      expect(jobs.enqueue('recalc', 'committed')).toBeNull()
      await new Promise((r) => setTimeout(r, 20))
      inside = jobs.getQueueStatistics().total
    })
    expect(inside).toBe(0)
    await waitFor(() => ran.length === 1)
    expect(ran).toEqual(['committed'])
    expect(jobs.getSystemStatus().enqueue.deferred).toBe(1)
  })

  test('a job enqueued inside a transaction that rolls back never runs', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    const ran = []
    jobs.registerCalculation({ name: 'recalc', calculate: (d) => ran.push(d) })
    await expect(
      strapi.db.transaction(async () => {
        jobs.enqueue('recalc', 'rolled back')
        throw new Error('the write failed')
      }),
    ).rejects.toThrow('the write failed')
    // A later job runs, and the rolled-back one never did.
    jobs.enqueue('recalc', 'after')
    await waitFor(() => ran.length === 1)
    await new Promise((r) => setTimeout(r, 50))
    expect(ran).toEqual(['after'])
    expect(jobs.getQueueStatistics().total).toBe(1)
    expect(jobs.getSystemStatus().enqueue.rolledBack).toBe(1)
  })

  test('the handler of a job enqueued in a transaction does not run in its async context', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    const seen = []
    jobs.registerCalculation({ name: 'recalc', calculate: () => seen.push(strapi.db.inTransaction()) })
    await strapi.db.transaction(async () => {
      jobs.enqueue('recalc', null)
    })
    await waitFor(() => seen.length === 1)
    expect(seen).toEqual([false])
  })
})

describe('lifecycle', () => {
  test('destroy waits shutdownTimeoutMs for a running job, aborts it, keeps it for the next boot', async () => {
    const root = tmpApp()
    const strapi = fakeStrapi({ root, pluginConfig: { shutdownTimeoutMs: 100 } })
    const jobs = await boot(strapi)
    let signal
    jobs.registerCalculation({ name: 'hung', calculate: (d, c, job) => new Promise(() => (signal = job.signal)) })
    const id = jobs.enqueue('hung', null)
    await waitFor(() => signal)
    await plugin.destroy({ strapi })
    started.length = 0
    expect(signal.aborted).toBe(true)
    expect(strapi.log.lines.some((l) => /stopped \(1 running job\(s\) aborted, 1 pending kept\)/.test(l))).toBe(true)
    // The next boot of the app (same root) runs it again.
    const again = fakeStrapi({ root })
    const jobs2 = await boot(again)
    jobs2.registerCalculation({ name: 'hung', calculate: () => 'done' })
    expect((await waitForStatus(jobs2, id)).result).toBe('done')
  })

  test('a process whose Strapi destroyed the plugin exits by itself (no native handle left)', async () => {
    const root = tmpApp({ 'src/jobs/recalc.js': 'module.exports = { calculate: (d) => d + 1 }' })
    const script = `
      const plugin = require(${JSON.stringify(path.join(ROOT, 'strapi-server.js'))})
      const config = { 'plugin::jobwerk': { ...plugin.config.default }, 'database.connection': { client: 'sqlite', connection: { filename: '.tmp/data.db' } } }
      const quiet = { info() {}, warn() {}, error() {}, debug() {} }
      const strapi = { dirs: { app: { root: ${JSON.stringify(root)} } }, config: { get: (k) => config[k] }, log: quiet }
      ;(async () => {
        plugin.register({ strapi })
        await plugin.bootstrap({ strapi })
        const jobs = require(${JSON.stringify(ROOT)}).getJobManagementService(strapi)
        const id = jobs.enqueue('recalc', 41)
        jobs.scheduleRecurringCalculationJob('recalc', 1, null, Date.now() + 60000, 60000)
        while (jobs.getJobStatus(id).status !== 'completed') await new Promise((r) => setTimeout(r, 5))
        await plugin.destroy({ strapi })
        console.log('destroyed', jobs.getJobStatus(id).result)
      })()`
    const t0 = Date.now()
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000)
    const code = await new Promise((r) => child.on('exit', (c) => r(c)))
    clearTimeout(killer)
    expect(err).toBe('')
    expect(out.trim()).toBe('destroyed 42')
    expect(code).toBe(0)
    // A schedule a minute away held nothing after destroy.
    expect(Date.now() - t0).toBeLessThan(15000)
  })
})

describe('content-API routes', () => {
  function call(controller, action, params = {}) {
    const strapi = started[started.length - 1]
    const ctx = { params, status: 200, body: undefined, type: undefined }
    // findOne is async (getJobStatus is a Promise on PostgreSQL); Koa awaits it as Strapi does.
    const done = plugin.controllers[controller]({ strapi })[action](ctx)
    return done && typeof done.then === 'function' ? done.then(() => ctx) : ctx
  }

  test('read routes only, named find/findOne (read-only API tokens may call them)', () => {
    const routes = plugin.routes['content-api']
    expect(routes.type).toBe('content-api')
    for (const r of routes.routes) {
      expect(r.method).toBe('GET')
      expect(r.handler).toMatch(/\.(find|findOne)$/)
      const [controller, action] = r.handler.split('.')
      expect(typeof plugin.controllers[controller]).toBe('function')
      expect(typeof plugin.controllers[controller]({ strapi: {} })[action]).toBe('function')
    }
    expect(routes.routes.map((r) => r.path).sort()).toEqual(['/health', '/jobs/:id', '/metrics', '/statistics', '/status'])
  })

  test('health, status, statistics, metrics and a job by id', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    const jobs = await boot(strapi)
    jobs.registerCalculation({ name: 'recalc', calculate: () => 7 })
    const id = jobs.enqueue('recalc', null)
    await waitForStatus(jobs, id)
    expect(call('health', 'find').body.overall).toBe('healthy')
    expect(call('status', 'find').body).toEqual(expect.objectContaining({ status: 'started', enqueue: expect.any(Object) }))
    expect(call('statistics', 'find').body.completed).toBe(1)
    const m = call('metrics', 'find')
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(m.body).toMatch(/^jobwerk_enqueue_lost_total\{code="none"\} 0$/m)
    expect((await call('jobs', 'findOne', { id })).body).toEqual(expect.objectContaining({ status: 'completed', result: 7 }))
    const missing = await call('jobs', 'findOne', { id: 'nope' })
    expect(missing.status).toBe(404)
  })
})

describe('the dashboard under an admin path', () => {
  const TOKEN = 'dashboard-token-0123456789'
  const servers = []
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })

  // Strapi's server as the plugin sees it at register: a Koa app (Strapi 5's
  // server is one) whose later middlewares stand for Strapi's own routes.
  async function withServer(strapi) {
    const Koa = require('koa')
    const koa = new Koa()
    const used = []
    strapi.server = {
      use(fn) {
        used.push(fn)
        koa.use(fn)
        return this
      },
    }
    const jobs = await boot(strapi)
    koa.use((ctx) => {
      ctx.body = `strapi route ${ctx.path}`
    })
    const server = require('node:http').createServer(koa.callback())
    await new Promise((r) => server.listen(0, '127.0.0.1', r))
    servers.push(server)
    return { jobs, used, base: `http://127.0.0.1:${server.address().port}` }
  }
  const bearer = (token) => ({ authorization: `Bearer ${token}` })

  test('off by default: nothing is mounted', async () => {
    const { used, base } = await withServer(fakeStrapi({ pluginConfig: memory }))
    expect(used).toEqual([])
    expect(await (await fetch(`${base}/admin/jobwerk/`)).text()).toBe('strapi route /admin/jobwerk/')
  })

  test('enabled: the page and its API behind the token (401 without it or with a wrong one); other paths go on to Strapi', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, dashboard: { enabled: true, token: TOKEN } } })
    const { jobs, used, base } = await withServer(strapi)
    expect(used).toHaveLength(1)
    expect(strapi.log.lines).toContain('info: jobwerk: dashboard at /admin/jobwerk/ (gate: bearer token)')
    jobs.registerCalculation({ name: 'recalc', retries: 0, calculate: () => { throw new Error('no table') } })
    const id = jobs.enqueue('recalc', { league: 'A' })
    await waitForStatus(jobs, id)
    for (const url of ['/admin/jobwerk/', '/admin/jobwerk/api/overview', `/admin/jobwerk/api/jobs/${id}`]) {
      expect([url, (await fetch(`${base}${url}`)).status]).toEqual([url, 401])
      expect([url, (await fetch(`${base}${url}`, { headers: bearer('wrong-token-0123456789') })).status]).toEqual([url, 401])
    }
    const page = await fetch(`${base}/admin/jobwerk/`, { headers: bearer(TOKEN) })
    expect(page.status).toBe(200)
    const html = await page.text()
    expect(html).toContain('/admin/jobwerk/assets/app.js')
    const csrf = /name="jobwerk-csrf" content="([^"]+)"/.exec(html)[1]
    const detail = await (await fetch(`${base}/admin/jobwerk/api/jobs/${id}`, { headers: bearer(TOKEN) })).json()
    expect(detail.job).toMatchObject({ jobId: id, status: 'failed', data: { league: 'A' } })
    expect(await (await fetch(`${base}/admin/jobwerk-not/`)).text()).toBe('strapi route /admin/jobwerk-not/')
    expect(await (await fetch(`${base}/api/jobwerk/health`)).text()).toBe('strapi route /api/jobwerk/health')
    // A browser's link with ?token= gets a cookie for the path.
    const link = await fetch(`${base}/admin/jobwerk/?token=${TOKEN}`, { redirect: 'manual' })
    expect(link.status).toBe(303)
    const cookie = link.headers.get('set-cookie')
    expect(cookie).toMatch(/HttpOnly/)
    expect(cookie).toMatch(/Path=\/admin\/jobwerk/)
    expect((await fetch(`${base}/admin/jobwerk/api/overview`, { headers: { cookie: cookie.split(';')[0] } })).status).toBe(200)
    // Actions: the token and the page's CSRF token.
    const retry = (headers) => fetch(`${base}/admin/jobwerk/api/jobs/${id}/retry`, { method: 'POST', headers })
    expect((await retry({ 'x-csrf-token': csrf })).status).toBe(401)
    expect((await retry(bearer(TOKEN))).status).toBe(403)
    expect((await retry({ ...bearer(TOKEN), 'x-csrf-token': csrf })).status).toBe(200)
  })

  test('readOnly refuses actions; an auth function gates instead of a token; destroy ends the live streams', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, dashboard: { enabled: true, path: '/ops/jobs/', auth: (req) => req.headers['x-admin'] === 'yes', readOnly: true, redact: ['secret'] } } })
    const { jobs, base } = await withServer(strapi)
    expect(strapi.log.lines).toContain('info: jobwerk: dashboard at /ops/jobs/ (gate: auth function, read-only)')
    const admin = { 'x-admin': 'yes' }
    expect((await fetch(`${base}/ops/jobs/`)).status).toBe(401)
    const html = await (await fetch(`${base}/ops/jobs/`, { headers: admin })).text()
    const csrf = /name="jobwerk-csrf" content="([^"]+)"/.exec(html)[1]
    jobs.registerCalculation({ name: 'hold', calculate: () => new Promise(() => {}) })
    const id = jobs.addCalculationJob('hold', { secret: 'do-not-show' }, {}, { delay: 60000 })
    const body = await (await fetch(`${base}/ops/jobs/api/jobs/${id}`, { headers: admin })).text()
    expect(body).not.toContain('do-not-show')
    const cancel = await fetch(`${base}/ops/jobs/api/jobs/${id}/cancel`, { method: 'POST', headers: { ...admin, 'x-csrf-token': csrf } })
    expect(cancel.status).toBe(403)
    expect((await cancel.json()).error.code).toBe('ERR_READ_ONLY')
    // An open live stream ends when Strapi destroys the plugin.
    const res = await new Promise((resolve, reject) => require('node:http').get(`${base}/ops/jobs/api/events`, { headers: admin }, resolve).on('error', reject))
    expect(res.statusCode).toBe(200)
    const ended = new Promise((r) => res.on('end', r).resume())
    await plugin.destroy({ strapi })
    started.splice(started.indexOf(strapi), 1)
    await ended
  })
})

describe('failures around the lifecycle', () => {
  test('a service that fails to start does not stop Strapi; the error is logged and alerted; enqueue() counts its jobs as lost (memory storage)', async () => {
    const strapi = fakeStrapi({ pluginConfig: memory })
    plugin.register({ strapi })
    started.push(strapi)
    const jobs = strapi.plugin('jobwerk').service('jobs')
    const alerts = []
    jobs.on('alert', (a) => alerts.push(a.name))
    const start = jobs.start
    jobs.start = async () => {
      const e = new Error('the storage is locked')
      e.code = 'ERR_STORAGE'
      throw e
    }
    await expect(plugin.bootstrap({ strapi })).resolves.toBeUndefined()
    jobs.start = start
    expect(strapi.log.lines).toContain('error: jobwerk: the service failed to start (ERR_STORAGE: the storage is locked); jobs are not run until the app restarts')
    expect(jobs.startError.code).toBe('ERR_STORAGE')
    jobs.registerCalculation({ name: 'recalc', calculate: () => 1 })
    // Nothing would run it, and memory keeps nothing for the next boot.
    expect(jobs.enqueue('recalc', null)).toBeNull()
    expect(jobs.getSystemStatus()).toEqual(expect.objectContaining({ status: 'idle', enqueue: expect.objectContaining({ lost: 1, lostByCode: { ERR_STOPPED: 1 } }) }))
    expect(jobs.getQueueStatistics().total).toBe(0)
    expect(jobs.getPrometheusMetrics()).toMatch(/^jobwerk_enqueue_lost_total\{code="ERR_STOPPED"\} 1$/m)
    expect(strapi.log.lines.some((l) => l.startsWith('error: jobwerk: a job of "recalc" was not added (ERR_STOPPED: the service failed to start (ERR_STORAGE: the storage is locked)'))).toBe(true)
    expect(alerts).toEqual(['start-failed', 'enqueue-lost'])
  })

  test("a SQLite file another service holds: the start fails; every enqueue(), before and after, is logged, counted, in Prometheus and alerted", async () => {
    const root = tmpApp()
    const first = fakeStrapi({ root })
    await boot(first)
    const strapi = fakeStrapi({ root })
    plugin.register({ strapi })
    started.push(strapi)
    const jobs = strapi.plugin('jobwerk').service('jobs')
    const alerts = []
    jobs.on('alert', (a) => alerts.push(a.name))
    jobs.registerCalculation({ name: 'recalc', calculate: () => 1 })
    // A hook before the start (the app's own bootstrap writing, say).
    expect(jobs.enqueue('recalc', 'before')).toBeNull()
    await plugin.bootstrap({ strapi })
    expect(jobs.startError.code).toBe('ERR_STORAGE')
    expect(strapi.log.lines.some((l) => /^error: jobwerk: the service failed to start \(ERR_STORAGE: .*in use by another jobwerk service/.test(l))).toBe(true)
    expect(strapi.log.lines.some((l) => /^error: jobwerk: several instances of this app\? On SQLite each needs its own file \(config storage\.path/.test(l))).toBe(true)
    // A hook after it, and one inside a transaction that commits.
    expect(jobs.enqueue('recalc', 'after')).toBeNull()
    await strapi.db.transaction(async () => {
      expect(jobs.enqueue('recalc', 'committed')).toBeNull()
    })
    expect(jobs.getSystemStatus()).toEqual(expect.objectContaining({ status: 'idle', enqueue: { lost: 3, lostByCode: { ERR_STORAGE: 3 }, deferred: 1, rolledBack: 0 } }))
    expect(jobs.getPrometheusMetrics()).toMatch(/^jobwerk_enqueue_lost_total\{code="ERR_STORAGE"\} 3$/m)
    expect(strapi.log.lines.filter((l) => l.startsWith('error: jobwerk: a job of "recalc" was not added (ERR_STORAGE'))).toHaveLength(3)
    expect(alerts).toEqual(['enqueue-lost', 'start-failed'])
    // The service that holds the file is untouched.
    const holder = first.plugin('jobwerk').service('jobs')
    holder.registerCalculation({ name: 'recalc', calculate: (d) => d })
    expect((await waitForStatus(holder, holder.enqueue('recalc', 'fine'))).result).toBe('fine')
  })

  test('destroy without a register (a boot that failed earlier) opens nothing', async () => {
    const root = tmpApp()
    const strapi = fakeStrapi({ root })
    await plugin.destroy({ strapi })
    expect(fs.existsSync(path.join(root, '.tmp'))).toBe(false)
  })
})

describe('cron from the plugin config', () => {
  test("jobwerk's shape and Strapi's cron-task shape both fire once per tick; the task gets { strapi }", async () => {
    const seen = []
    const root = tmpApp({ 'src/jobs/table-recalculation.js': 'module.exports = { calculate: (d) => global.__cronSeen.push(["calc", d.table]) }' })
    global.__cronSeen = seen
    const strapi = fakeStrapi({
      root,
      pluginConfig: {
        ...memory,
        clock: { type: 'manual', now: Date.parse('2026-01-05T02:59:00Z') },
        cron: {
          'daily-table': { rule: '0 3 * * *', tz: 'UTC', calculation: 'table-recalculation', data: { table: 'A' } },
          'strapi-task': { task: ({ strapi: s }) => seen.push(['task', s === strapi]), options: { rule: '30 3 * * *', tz: 'UTC' } },
        },
      },
    })
    const jobs = await boot(strapi)
    expect(jobs.getScheduledJobs().map((s) => s.id).sort()).toEqual(['cron:daily-table', 'cron:strapi-task'])
    await jobs.advanceTime(24 * 60 * 60 * 1000)
    expect(seen).toEqual([['calc', 'A'], ['task', true]])
    delete global.__cronSeen
  })

  test('schedules are persisted and reconciled at boot: one removed from the config is cancelled, none doubled', async () => {
    const root = tmpApp()
    const task = () => {}
    const first = fakeStrapi({ root, pluginConfig: { cron: { a: { task, options: { rule: '0 3 * * *' } }, b: { task, options: { rule: '0 4 * * *' } } } } })
    const jobs1 = await boot(first)
    expect(jobs1.getScheduledJobs().map((s) => s.id).sort()).toEqual(['cron:a', 'cron:b'])
    jobs1.scheduleRecurringCalculationJob({ name: 'mine', calculate() {} }, null, null, Date.now() + 3600000, 3600000, { id: 'app-own' })
    await plugin.destroy({ strapi: first })
    started.length = 0
    const second = fakeStrapi({ root, pluginConfig: { cron: { a: { task, options: { rule: '0 5 * * *' } } } } })
    const jobs2 = await boot(second)
    const ids = jobs2.getScheduledJobs().map((s) => s.id).sort()
    expect(ids).toEqual(['app-own', 'cron:a'])
    expect(jobs2.getScheduledJobs().find((s) => s.id === 'cron:a').expression).toBe('0 5 * * *')
    expect(second.log.lines.some((l) => /removed \(no longer in the config\): cron:b/.test(l))).toBe(true)
  })

  test('a taken-over Strapi cron task whose "?" croner 10 reads as every day gets a warning naming both readings', async () => {
    const task = () => {}
    const strapi = fakeStrapi({
      pluginConfig: {
        ...memory,
        cron: {
          mondays: { task, options: { rule: '0 0 ? * MON', tz: 'UTC' } },
          firsts: { task, options: { rule: '0 0 0 1 * ?', tz: 'UTC' } },
          plain: { task, options: { rule: '0 0 * * MON', tz: 'UTC' } },
        },
      },
    })
    await boot(strapi)
    const warnings = strapi.log.lines.filter((l) => l.startsWith('warn: jobwerk: cron.'))
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toMatch(/^warn: jobwerk: cron\.mondays rule "0 0 \? \* MON" is read differently: Strapi 5's cron \(croner 10\) reads "\?" as "\*" and fires it every day; jobwerk reads "\?" as "no specific value"/)
    // The next runs named are jobwerk's: Mondays only.
    const dates = [...warnings[0].matchAll(/\d{4}-\d\d-\d\dT[^,)]+/g)].map((m) => new Date(m[0]))
    expect(dates).toHaveLength(3)
    for (const d of dates) expect(d.getUTCDay()).toBe(1)
    expect(warnings[1]).toMatch(/cron\.firsts rule "0 0 0 1 \* \?"/)
  })

  test('a cron entry naming an unregistered calculation stops the boot naming it', async () => {
    const strapi = fakeStrapi({ pluginConfig: { ...memory, cron: { nightly: { rule: '0 3 * * *', calculation: 'missing-calc' } } } })
    plugin.register({ strapi })
    started.push(strapi)
    await expect(plugin.bootstrap({ strapi })).rejects.toThrow(/"missing-calc"/)
  })
})
