'use strict'
// npm run test:strapi: jobwerk as a plugin in a real Strapi 5 app
// (examples/strapi-app), installed from `npm pack` tarballs as users get it,
// booted with createStrapi().start() on 127.0.0.1 and driven over HTTP.
//
// The app's node_modules (Strapi and better-sqlite3, ~700 MB) is installed once
// per lockfile into a cache folder (JOBWERK_STRAPI_CACHE, default
// ~/.cache/jobwerk/strapi-app/<hash>) and hard-linked into each run's copy of
// the app; only the jobwerk tarballs are installed per run. It uses the addon
// the last build left in the repo's root (`npm test` leaves the release build).
//
// The copy lives under a folder `strapi develop`'s file watcher does not
// ignore (it ignores every path with a dot-folder or "tmp" in it, so not
// os.tmpdir()): the repository's target/, else the home folder, or
// JOBWERK_STRAPI_WORK.
//
// Prints "N passed, N failed" at the end; exits non-zero on a failure.
//
// `node scripts/test-strapi.js --latency [n]` measures instead (see latency()).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawn, execFileSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const APP = path.join(ROOT, 'examples', 'strapi-app')
const PORT = Number(process.env.JOBWERK_STRAPI_PORT || 41337)
const BASE = `http://127.0.0.1:${PORT}`
const SHUTDOWN_MS = 2000
const UID_PATH = '/api/tabellen-eintraege'
// The example app mounts jobwerk's dashboard at /admin/jobwerk when this is set (config/plugins.js).
const DASHBOARD = '/admin/jobwerk'
const DASHBOARD_TOKEN = 'test-strapi-dashboard-token-0123'
process.env.JOBWERK_DASHBOARD_TOKEN = DASHBOARD_TOKEN

const t0 = Date.now()
function log(line) {
  console.log(`[test:strapi +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`)
}

function run(cmd, args, options = {}) {
  log(`$ ${cmd} ${args.join(' ')}${options.cwd ? `   (in ${options.cwd})` : ''}`)
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...options })
}

// --- the app's dependencies, cached per lockfile ------------------------------

function cacheDir() {
  const h = crypto.createHash('sha256')
  for (const f of ['package.json', 'package-lock.json']) h.update(fs.readFileSync(path.join(APP, f)))
  h.update(process.version.split('.')[0])
  const base = process.env.JOBWERK_STRAPI_CACHE || path.join(os.homedir(), '.cache', 'jobwerk', 'strapi-app')
  return path.join(base, h.digest('hex').slice(0, 16))
}

/** The cached node_modules of the app's lockfile, installed if missing. */
function appModules() {
  const dir = cacheDir()
  const modules = path.join(dir, 'node_modules')
  if (fs.existsSync(path.join(dir, 'complete'))) {
    log(`app dependencies from the cache ${dir}`)
    return modules
  }
  const tmp = `${dir}.tmp-${process.pid}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(APP, f), path.join(tmp, f))
  const t = Date.now()
  run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tmp, stdio: ['ignore', 'inherit', 'inherit'] })
  fs.writeFileSync(path.join(tmp, 'complete'), `${new Date().toISOString()}\n`)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.renameSync(tmp, dir)
  log(`app dependencies installed in ${((Date.now() - t) / 1000).toFixed(0)} s, cached in ${dir}`)
  return modules
}

// --- jobwerk as users get it --------------------------------------------------

/**
 * Packs jobwerk and returns the tarballs to install. For now: the root package
 * (npm pack, no scripts) and the linux-x64-gnu platform package with the addon
 * of the last build in the repo's root. When the release flow builds the
 * platform packages (npm/), only this function changes.
 */
function packJobwerk(outDir) {
  const addon = path.join(ROOT, 'jobwerk.linux-x64-gnu.node')
  if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: run npm run build first`)
  const root = run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', outDir], { cwd: ROOT }).trim().split('\n').pop()
  const platform = path.join(outDir, 'platform')
  fs.cpSync(path.join(ROOT, 'npm', 'linux-x64-gnu'), platform, { recursive: true })
  fs.copyFileSync(addon, path.join(platform, 'jobwerk.linux-x64-gnu.node'))
  const plat = run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', outDir], { cwd: platform }).trim().split('\n').pop()
  return [path.join(outDir, root), path.join(outDir, plat)]
}

/** A fresh copy of the app with the cached dependencies and jobwerk installed. */
function prepareApp(work) {
  const modules = appModules()
  const app = path.join(work, 'app')
  fs.cpSync(APP, app, { recursive: true, filter: (src) => !/[/\\](node_modules|\.tmp)$/.test(src) })
  const t = Date.now()
  run('cp', ['-al', modules, path.join(app, 'node_modules')])
  const tarballs = packJobwerk(work)
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], { cwd: app })
  log(`jobwerk installed into the app in ${((Date.now() - t) / 1000).toFixed(1)} s`)
  return app
}

/** True when `strapi develop`'s watcher (Strapi 5.54, node/develop.js) ignores every file under `p`. */
function watcherIgnores(p) {
  return /(^|[/\\])\../.test(p) || /tmp/.test(p)
}

/** A fresh work folder (see the top): the first candidate the develop watcher sees. */
function makeWork(prefix) {
  const candidates = process.env.JOBWERK_STRAPI_WORK ? [process.env.JOBWERK_STRAPI_WORK] : [path.join(ROOT, 'target'), os.homedir()]
  for (const base of candidates) {
    if (watcherIgnores(path.resolve(base))) continue
    try {
      fs.mkdirSync(base, { recursive: true })
      return fs.mkdtempSync(path.join(base, prefix))
    } catch {}
  }
  log(`no work folder out of the develop watcher's ignores among ${candidates.join(', ')}: using ${os.tmpdir()} (the develop check will fail; set JOBWERK_STRAPI_WORK)`)
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

// --- the app's process ----------------------------------------------------------

class App {
  /**
   * `args`: the node arguments (default: server.js, createStrapi().start());
   * `group`: the process leads its own process group (stopApp signals the
   * group: `strapi develop` and its cluster worker); `port`: where it listens
   * (several instances of the app: each its own port).
   */
  constructor(dir, env, { args = ['server.js'], group = false, port = PORT, tokenFile = path.join(dir, '.tmp', 'tokens.json'), label = 'app' } = {}) {
    this.dir = dir
    this.label = label
    this.port = port
    this.base = `http://127.0.0.1:${port}`
    this.tokenFile = tokenFile
    this.lines = []
    this.exit = null
    this.group = group
    this.child = spawn(process.execPath, args, {
      cwd: dir,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production', STRAPI_TELEMETRY_DISABLED: 'true', STRAPI_DISABLE_UPDATE_NOTIFICATION: 'true', EXAMPLE_TOKEN_FILE: tokenFile, JOBWERK_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: group,
    })
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() }
        resolve(this.exit)
      })
    })
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let rest = ''
      stream.setEncoding('utf8')
      stream.on('data', (d) => {
        const parts = (rest + d).split('\n')
        rest = parts.pop()
        for (const l of parts) {
          this.lines.push(l)
          if (process.env.JOBWERK_STRAPI_VERBOSE || /jobwerk|\[example\]|error/i.test(l)) console.log(`    ${this.label}| ${l}`)
        }
      })
    }
  }

  async ready(timeout = 120000) {
    await waitFor(async () => {
      if (this.exit) throw new Error(`the app exited while booting (${JSON.stringify(this.exit)})`)
      try {
        const r = await fetch(`${this.base}/_health`)
        return r.status === 204 || r.status === 200
      } catch {
        return false
      }
    }, timeout, 'the app to answer /_health')
    this.tokens = JSON.parse(fs.readFileSync(this.tokenFile, 'utf8'))
    return this
  }

  async request(method, url, body, token = this.tokens.full) {
    const headers = { 'content-type': 'application/json' }
    if (token) headers.authorization = `Bearer ${token}`
    const r = await fetch(`${this.base}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await r.text()
    let json = null
    try {
      json = JSON.parse(text)
    } catch {}
    return { status: r.status, json, text }
  }

  /** Resolves when a line of the app's output matches; returns the match. */
  waitLine(re, timeout = 60000, from = 0) {
    return waitFor(() => {
      for (let i = from; i < this.lines.length; i++) {
        const m = re.exec(this.lines[i])
        if (m) return m
      }
      if (this.exit) throw new Error(`the app exited before printing ${re}`)
      return null
    }, timeout, `a line matching ${re}`)
  }
}

async function waitFor(fn, timeout, what) {
  const until = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > until) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

// --- the checks ---------------------------------------------------------------

const results = []
async function check(name, fn) {
  const t = Date.now()
  try {
    await fn()
    results.push([name, true])
    log(`ok   ${name} (${Date.now() - t} ms)`)
  } catch (e) {
    results.push([name, false])
    log(`FAIL ${name}: ${e && e.stack}`)
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message)
}

async function table(app, league) {
  const r = await app.request('GET', `${UID_PATH}?filters[league][$eq]=${league}&sort=points:desc&pagination[pageSize]=100`)
  assert(r.status === 200, `GET ${UID_PATH}: ${r.status} ${r.text}`)
  return r.json.data
}

/** Waits until every entry of the league has the position its points give. */
async function positionsSettle(app, league, timeout = 30000) {
  let last
  await waitFor(async () => {
    last = await table(app, league)
    const sorted = [...last].sort((a, b) => b.points - a.points || a.team.localeCompare(b.team))
    return sorted.length > 0 && sorted.every((row, i) => row.position === i + 1)
  }, timeout, `the positions of ${league} (last: ${JSON.stringify(last && last.map((r) => [r.team, r.points, r.position]))})`)
  return last
}

// The dashboard the example app mounts at /admin/jobwerk (plugin config
// dashboard: { enabled, path, token }), through the running Strapi.
async function dashboardChecks(app) {
  await check(`the dashboard at ${DASHBOARD}/ through Strapi: page and JSON API with its token, 401 without it or with an API token`, async () => {
    const get = (url, headers = {}) => fetch(`${BASE}${url}`, { headers, redirect: 'manual' })
    const bearer = { authorization: `Bearer ${DASHBOARD_TOKEN}` }
    for (const url of [`${DASHBOARD}/`, `${DASHBOARD}/api/overview`, `${DASHBOARD}/api/jobs`]) {
      assert((await get(url)).status === 401, `${url} without a token`)
      assert((await get(url, { authorization: 'Bearer wrong-token-0123456789' })).status === 401, `${url} with a wrong token`)
      // Strapi's API tokens are not the dashboard's.
      assert((await get(url, { authorization: `Bearer ${app.tokens.full}` })).status === 401, `${url} with a full-access API token`)
    }
    const page = await get(`${DASHBOARD}/`, bearer)
    const html = await page.text()
    assert(page.status === 200 && html.includes(`${DASHBOARD}/assets/app.js`), `page: ${page.status} ${html.slice(0, 300)}`)
    assert(/script-src 'self'/.test(page.headers.get('content-security-policy') || ''), `CSP: ${page.headers.get('content-security-policy')}`)
    assert((await get(`${DASHBOARD}/assets/app.js`)).status === 200, 'app.js')
    const overview = await (await get(`${DASHBOARD}/api/overview`, bearer)).json()
    assert(overview.stats.completed >= 2 && overview.system.status === 'started', `overview: ${JSON.stringify(overview.stats)}`)
    const listed = await (await get(`${DASHBOARD}/api/jobs?status=completed&name=table-recalculation&limit=5`, bearer)).json()
    assert(listed.jobs.length > 0 && listed.jobs.every((j) => j.name === 'table-recalculation' && j.data === undefined), `jobs: ${JSON.stringify(listed).slice(0, 300)}`)
    const id = listed.jobs[0].jobId
    const detail = await (await get(`${DASHBOARD}/api/jobs/${id}`, bearer)).json()
    assert(detail.job.jobId === id && detail.job.status === 'completed' && typeof detail.job.data.league === 'string' && Array.isArray(detail.job.dependsOn), `detail: ${JSON.stringify(detail).slice(0, 300)}`)
    const bad = await get(`${DASHBOARD}/api/jobs?limit=0`, bearer)
    assert(bad.status === 400, `limit=0: ${bad.status}`)
    // A browser's link with ?token= sets an HttpOnly cookie for the path.
    const link = await get(`${DASHBOARD}/?token=${DASHBOARD_TOKEN}`)
    const cookie = (link.headers.get('set-cookie') || '').split(';')[0]
    assert(link.status === 303 && /HttpOnly/.test(link.headers.get('set-cookie')), `?token=: ${link.status} ${link.headers.get('set-cookie')}`)
    assert((await get(`${DASHBOARD}/api/overview`, { cookie })).status === 200, 'the cookie opens the API')
    // The dashboard's token is not an API token either.
    const api = await get('/api/jobwerk/health', bearer)
    assert(api.status === 401 || api.status === 403, `/api/jobwerk/health with the dashboard token: ${api.status}`)
    // Without a dashboard path, Strapi answers as before.
    assert((await get('/admin/jobwerk-other')).status === 404, '/admin/jobwerk-other')
  })

  await check('dashboard actions through Strapi: POST needs the token and the CSRF token; its JSON body gets through', async () => {
    const bearer = { authorization: `Bearer ${DASHBOARD_TOKEN}` }
    const html = await (await fetch(`${BASE}${DASHBOARD}/`, { headers: bearer })).text()
    const csrf = /name="jobwerk-csrf" content="([^"]+)"/.exec(html)[1]
    const post = async (url, headers, body) => {
      const r = await fetch(`${BASE}${DASHBOARD}${url}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
      return { status: r.status, json: await r.json().catch(() => null) }
    }
    const ack = '/api/alerts/no-such-alert/acknowledge'
    assert((await post(ack, { 'x-csrf-token': csrf }, { by: 'Ann' })).status === 401, 'without the token')
    assert((await post(ack, bearer, { by: 'Ann' })).status === 403, 'without the CSRF token')
    const noBody = await post(ack, { ...bearer, 'x-csrf-token': csrf })
    assert(noBody.status === 400 && noBody.json.error.field === 'by', `without a body: ${JSON.stringify(noBody)}`)
    const withBody = await post(ack, { ...bearer, 'x-csrf-token': csrf }, { by: 'Ann' })
    assert(withBody.status === 409, `with { by }: ${JSON.stringify(withBody)}`)
    // The live stream answers through Strapi (no buffering) and closes with the client.
    const ctl = new AbortController()
    const events = await fetch(`${BASE}${DASHBOARD}/api/events`, { headers: bearer, signal: ctl.signal })
    assert(events.status === 200 && /text\/event-stream/.test(events.headers.get('content-type')), `events: ${events.status}`)
    const first = await events.body.getReader().read()
    assert(/event: hello/.test(Buffer.from(first.value).toString('utf8')), 'the hello event')
    ctl.abort()
  })
}

async function main() {
  const work = makeWork('jobwerk-test-strapi-')
  let app
  try {
    const dir = prepareApp(work)
    // JOBWERK_STRAPI_ONLY=postgres: the PostgreSQL phase only.
    if (process.env.JOBWERK_STRAPI_ONLY !== 'postgres') {
      await check("the cron rules the plugin warns about are those Strapi's own croner reads differently", async () => {
        const { Cron } = require(require.resolve('croner', { paths: [dir] }))
        const { nextCronRuns } = require(path.join(dir, 'node_modules', 'jobwerk'))
        const { croner10ReadsDaily } = require(path.join(dir, 'node_modules', 'jobwerk', 'strapi', 'service.js'))
        const from = new Date('2026-12-04T12:00:00Z')
        for (const rule of ['0 0 ? * MON', '0 0 0 1 * ?', '0 0 0 ? * 1-5', '0 3 * * *', '0 0 * * MON', '30 9 * * MON-FRI', '0 0 1,15 * ?', '0 0 ? * ?', '0 12 ? * *']) {
          const theirs = new Cron(rule, { timezone: 'UTC', paused: true }).nextRuns(8, from).map((d) => d.getTime())
          const ours = nextCronRuns(rule, { tz: 'UTC', from, count: 8 }).map((d) => d.getTime())
          const differs = theirs.join() !== ours.join()
          assert(differs === croner10ReadsDaily(rule), `${rule}: croner ${require(require.resolve('croner/package.json', { paths: [dir] })).version} ${differs ? 'differs' : 'agrees'}, the plugin says ${croner10ReadsDaily(rule) ? 'differs' : 'agrees'}`)
        }
      })

      app = await new App(dir).ready()
      log('the app answers')

      await check('creating entries recalculates the table in a background job', async () => {
        for (const [team, points] of [['Adler', 10], ['Bären', 30], ['Cobras', 20], ['Dachse', 5]]) {
          const r = await app.request('POST', UID_PATH, { data: { league: 'A', team, points } })
          assert(r.status === 201 || r.status === 200, `POST: ${r.status} ${r.text}`)
        }
        const rows = await positionsSettle(app, 'A')
        assert(rows.find((r) => r.team === 'Bären').position === 1, 'Bären first')
      })

      await check('updating an entry moves the positions', async () => {
        const rows = await table(app, 'A')
        const dachse = rows.find((r) => r.team === 'Dachse')
        const r = await app.request('PUT', `${UID_PATH}/${dachse.documentId}`, { data: { points: 50 } })
        assert(r.status === 200, `PUT: ${r.status} ${r.text}`)
        const after = await positionsSettle(app, 'A')
        assert(after.find((x) => x.team === 'Dachse').position === 1, 'Dachse first after the update')
      })

      await check('a hook in a transaction that rolls back adds no job (the write is a 500, nothing runs)', async () => {
        const before = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.enqueue
        const r = await app.request('POST', `${UID_PATH}/rollback`, { data: { league: 'R', team: 'Ghost', points: 1 } })
        assert(r.status === 500, `rollback route: ${r.status} ${r.text}`)
        assert((await table(app, 'R')).length === 0, 'the rolled-back entry is not there')
        // A later job of another league runs; the rolled-back one never did.
        const from = app.lines.length
        await app.request('POST', UID_PATH, { data: { league: 'S', team: 'Later', points: 1 } })
        await app.waitLine(/table-recalculation \S+ done: S,/, 30000, from)
        assert(!app.lines.some((l) => / for R$/.test(l)), 'a recalculation of R ran')
        const after = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.enqueue
        assert(after.rolledBack === before.rolledBack + 1, `rolledBack ${before.rolledBack} -> ${after.rolledBack}`)
      })

      await check('the content API refuses a request without a token', async () => {
        const r = await app.request('GET', UID_PATH, undefined, null)
        assert(r.status === 401 || r.status === 403, `without a token: ${r.status}`)
      })

      await dashboardChecks(app)

      await check('jobwerk routes: health and metrics with a read-only API token, 401/403 without', async () => {
        const health = await app.request('GET', '/api/jobwerk/health', undefined, app.tokens.read)
        assert(health.status === 200, `health: ${health.status} ${health.text}`)
        assert(health.json.overall === 'healthy', `health: ${health.text}`)
        const metrics = await app.request('GET', '/api/jobwerk/metrics', undefined, app.tokens.read)
        assert(metrics.status === 200 && /^jobwerk_jobs_total\{calculation="table-recalculation",outcome="completed"\} \d+$/m.test(metrics.text), `metrics: ${metrics.status} ${metrics.text.slice(0, 500)}`)
        const status = await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)
        assert(status.status === 200 && status.json.enqueue.lost === 0 && status.json.enqueue.deferred >= 5, `status: ${status.text}`)
        for (const url of ['/api/jobwerk/health', '/api/jobwerk/metrics', '/api/jobwerk/status']) {
          const r = await app.request('GET', url, undefined, null)
          assert(r.status === 401 || r.status === 403, `${url} without a token: ${r.status}`)
        }
      })

      app = await uniqueJobChecks(app, dir)
      app = await fullQueueCheck(app, dir)

      // A job held for 60 s is running when SIGTERM comes: Strapi's destroy
      // stops jobwerk within shutdownTimeoutMs, the job goes back to pending.
      // Strapi's server answers until the plugins' destroy is done: a write in
      // that window commits, and its hook's job is lost (logged, counted, alerted).
      let heldJob
      const shutdownMs = 6000
      await check(`SIGTERM during a job: the process exits within the shutdown timeout (${shutdownMs} ms); a write while it stops is a 200, its lost job logged, counted and alerted`, async () => {
        await stopApp(app)
        app = await new App(dir, { EXAMPLE_RECALC_HOLD_MS: '60000', JOBWERK_SHUTDOWN_TIMEOUT_MS: String(shutdownMs) }).ready()
        const from = app.lines.length
        const rows = await table(app, 'A')
        const r = await app.request('PUT', `${UID_PATH}/${rows.find((x) => x.team === 'Adler').documentId}`, { data: { points: 99 } })
        assert(r.status === 200, `PUT: ${r.status}`)
        heldJob = (await app.waitLine(/table-recalculation (\S+) holding/, 30000, from))[1]
        const sent = Date.now()
        app.child.kill('SIGTERM')
        const stopping = app.lines.length
        await app.waitLine(/jobwerk: stopping \(running jobs get up to/, shutdownMs, stopping)
        const put = await app.request('PUT', `${UID_PATH}/${rows.find((x) => x.team === 'Bären').documentId}`, { data: { points: 31 } })
        assert(put.status === 200, `PUT while stopping: ${put.status} ${put.text}`)
        const status = await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)
        assert(status.status === 200 && status.json.status === 'stopping', `status while stopping: ${status.status} ${status.text.slice(0, 300)}`)
        assert(status.json.enqueue.lost === 1 && status.json.enqueue.lostByCode.ERR_STOPPED === 1, `enqueue: ${JSON.stringify(status.json.enqueue)}`)
        const metrics = await app.request('GET', '/api/jobwerk/metrics', undefined, app.tokens.read)
        assert(/^jobwerk_enqueue_lost_total\{code="ERR_STOPPED"\} 1$/m.test(metrics.text), `metrics: ${metrics.status} ${metrics.text.slice(-400)}`)
        const exit = await app.exited
        const ms = exit.at - sent
        log(`exited ${ms} ms after SIGTERM (code ${exit.code}, signal ${exit.signal})`)
        assert(exit.code === 0, `exit code ${exit.code}, signal ${exit.signal}`)
        assert(ms < shutdownMs + 3000, `took ${ms} ms`)
        const after = app.lines.slice(stopping)
        assert(after.some((l) => /jobwerk: a job of "table-recalculation" was not added \(ERR_STOPPED: .*1 lost so far/.test(l)), 'the lost job in the log')
        assert(after.some((l) => /jobwerk alert \[critical\] enqueue-lost: /.test(l)), 'the enqueue-lost alert in the log')
      })

      await check('the next boot runs the job SIGTERM interrupted, and it completes', async () => {
        app = await new App(dir).ready()
        await app.waitLine(new RegExp(`table-recalculation ${heldJob} done`), 60000)
        const rows = await positionsSettle(app, 'A', 5000)
        assert(rows.find((x) => x.team === 'Adler').position === 1, 'Adler first')
        const job = await app.request('GET', `/api/jobwerk/jobs/${heldJob}`, undefined, app.tokens.read)
        assert(job.status === 200 && job.json.status === 'completed', `job ${heldJob}: ${job.status} ${job.text}`)
      })

      await check('SIGKILL during a job: the next boot runs it again and it completes', async () => {
        await stopApp(app)
        app = await new App(dir, { EXAMPLE_RECALC_HOLD_MS: '60000' }).ready()
        const from = app.lines.length
        const rows = await table(app, 'A')
        const r = await app.request('PUT', `${UID_PATH}/${rows.find((x) => x.team === 'Cobras').documentId}`, { data: { points: 200 } })
        assert(r.status === 200, `PUT: ${r.status}`)
        const killed = (await app.waitLine(/table-recalculation (\S+) holding/, 30000, from))[1]
        app.child.kill('SIGKILL')
        await app.exited
        app = await new App(dir).ready()
        await app.waitLine(new RegExp(`table-recalculation ${killed} done`), 60000)
        const after = await positionsSettle(app, 'A', 5000)
        assert(after.find((x) => x.team === 'Cobras').position === 1, 'Cobras first')
      })

      app = await developChecks(app, dir)
      await stopApp(app)
      app = undefined
    }
    await postgresChecks(dir, work)
  } catch (e) {
    results.push(['setup', false])
    log(`FAIL setup: ${e && e.stack}`)
  } finally {
    if (app) await stopApp(app)
    if (!process.env.JOBWERK_STRAPI_KEEP) fs.rmSync(work, { recursive: true, force: true })
    else log(`kept ${work}`)
  }
  const passed = results.filter((r) => r[1]).length
  const failed = results.length - passed
  log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed > 0 ? 1 : 0
}

// --- two instances of the app on one PostgreSQL database ---------------------
// The example app with DATABASE_CLIENT=postgres (config/database.js) on a
// fresh database of the server at 127.0.0.1:5432 (user postgres, trust),
// dropped at the end; jobwerk follows it (schema jobwerk in that database).
// Two instances of it on their own ports, booted one after the other (Strapi
// migrates its schema at the first boot). JOBWERK_STRAPI_NO_POSTGRES=1 skips
// this phase (saying so); without a server it fails.

const PG_SERVER = { host: process.env.JOBWERK_STRAPI_PGHOST || '127.0.0.1', port: Number(process.env.JOBWERK_STRAPI_PGPORT || 5432), user: 'postgres' }

/** Every run of `name` in the apps' output from their lines `from[i]`: [{ id, app, line }]. */
function dailyRuns(apps, from) {
  const out = []
  apps.forEach((app, i) => {
    for (let l = from[i]; l < app.lines.length; l++) {
      const m = / daily-table (\S+) ran: /.exec(app.lines[l])
      if (m) out.push({ id: m[1], app: app.label, line: l })
    }
  })
  return out
}

/** The recalculations of `league` in several apps' output (see recalculations()), each tagged with its app. */
function clusterRecalculations(apps, league, from) {
  return apps.flatMap((app, i) => recalculations(app, league, from[i]).map((r) => ({ ...r, app: app.label })))
}

async function dashboardJobs(app, query) {
  const r = await fetch(`${app.base}${DASHBOARD}/api/jobs?${query}`, { headers: { authorization: `Bearer ${DASHBOARD_TOKEN}` } })
  const json = await r.json()
  assert(r.status === 200, `${DASHBOARD}/api/jobs?${query} on ${app.label}: ${r.status} ${JSON.stringify(json).slice(0, 300)}`)
  return json.jobs
}

async function postgresChecks(dir, work) {
  if (process.env.JOBWERK_STRAPI_NO_POSTGRES === '1') {
    log('skipped: the PostgreSQL phase (two instances on one database): JOBWERK_STRAPI_NO_POSTGRES=1')
    return
  }
  const { Client } = require(require.resolve('pg', { paths: [dir] }))
  const admin = new Client({ ...PG_SERVER, database: 'postgres', connectionTimeoutMillis: 5000 })
  try {
    await admin.connect()
  } catch (e) {
    results.push([`PostgreSQL at ${PG_SERVER.host}:${PG_SERVER.port}`, false])
    log(`FAIL no PostgreSQL at ${PG_SERVER.host}:${PG_SERVER.port} for the two-instance phase (${e.message}); JOBWERK_STRAPI_NO_POSTGRES=1 skips it`)
    return
  }
  const db = `jobwerk_strapi_${crypto.randomBytes(6).toString('hex')}`
  await admin.query(`CREATE DATABASE "${db}"`)
  log(`PostgreSQL: database ${db} on ${PG_SERVER.host}:${PG_SERVER.port}`)
  // Shorter than the burst of writes below (several seconds), longer than
  // the gap between two writes of a league: one run only if every write,
  // through either instance, moves the league's job.
  const DEBOUNCE = 3000
  const env = {
    DATABASE_CLIENT: 'postgres',
    DATABASE_URL: `postgres://${PG_SERVER.user}@${PG_SERVER.host}:${PG_SERVER.port}/${db}`,
    EXAMPLE_DEBOUNCE_MS: String(DEBOUNCE),
    // The nightly cron of config/plugins.js, every second.
    EXAMPLE_DAILY_RULE: '* * * * * *',
  }
  const tokens = path.join(work, 'pg-tokens')
  fs.mkdirSync(tokens, { recursive: true })
  const apps = []
  try {
    // One after the other: the first boot creates Strapi's tables.
    for (const [i, label] of ['pg-a', 'pg-b'].entries()) {
      const app = new App(dir, { ...env, EXAMPLE_INSTANCE: label }, { port: PORT + 1 + i, label, tokenFile: path.join(tokens, `${label}.json`) })
      apps.push(app)
      await app.ready(180000)
      log(`${label} answers on ${app.base}`)
    }
    const [a, b] = apps

    await check('PostgreSQL app: both instances keep their jobs in the app\'s database, schema jobwerk, and log why', async () => {
      for (const app of apps) {
        const line = app.lines.find((l) => /jobwerk: storage /.test(l))
        assert(line && new RegExp(`jobwerk: storage postgres at ${PG_SERVER.host.replace(/\./g, '\\.')}:${PG_SERVER.port}/${db} as postgres, schema jobwerk \\(the app uses PostgreSQL \\(postgres\\)`).test(line), `${app.label}: ${line}`)
        const status = await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)
        assert(status.status === 200 && status.json.storage.type === 'postgres' && status.json.storage.state === 'open' && status.json.status === 'started', `${app.label} status: ${status.text.slice(0, 300)}`)
      }
      const c = new Client({ ...PG_SERVER, database: db })
      await c.connect()
      try {
        const t = await c.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'jobwerk'")
        assert(t.rows[0].n > 0, 'no jobwerk tables in the app database')
      } finally {
        await c.end()
      }
    })

    await check('the daily cron (a 1-second rule here) fires once per tick across the two instances over 10 ticks, each fire run once', async () => {
      const from = apps.map((x) => x.lines.length)
      // Whole seconds, both instances up for all of them.
      const first = Math.ceil((Date.now() + 1000) / 1000) * 1000
      const last = first + 9000
      await new Promise((r) => setTimeout(r, last + 3000 - Date.now()))
      let fired
      await waitFor(async () => {
        // A fired job's runAt is its fire time.
        fired = (await dashboardJobs(a, 'name=daily-table&limit=1000')).filter((j) => j.scheduleId === 'cron:daily-table' && j.runAt >= first && j.runAt <= last)
        return fired.every((j) => j.status === 'completed')
      }, 30000, 'the fired daily-table jobs to complete')
      const perTick = new Map()
      for (let t = first; t <= last; t += 1000) perTick.set(t, 0)
      for (const j of fired) perTick.set(j.runAt, (perTick.get(j.runAt) || 0) + 1)
      const runs = dailyRuns(apps, from)
      const ranById = new Map()
      for (const r of runs) ranById.set(r.id, (ranById.get(r.id) || []).concat(r.app))
      const seen = [...perTick].map(([t, n]) => `${new Date(t).toISOString().slice(17, 19)}s:${n}`).join(' ')
      const ok = [...perTick.values()].every((n) => n === 1) && fired.every((j) => (ranById.get(j.jobId) || []).length === 1)
      assert(ok, `fires per tick (want 1 each): ${seen}; runs per fired job: ${JSON.stringify(fired.map((j) => [j.jobId, ranById.get(j.jobId) || []]))}`)
      const where = new Set(fired.map((j) => ranById.get(j.jobId)[0]))
      log(`daily-table: ${fired.length} ticks, one fire each, run by ${[...where].sort().join(' and ')}`)
    })

    await check('writes through both instances: each league\'s debounced recalculation runs once, in one of them, after the last write; the positions are right', async () => {
      const leagues = ['P', 'R2']
      const names = ['Puma', 'Pirol', 'Pinguin', 'Pudel', 'Panda', 'Python']
      for (let i = 0; i < names.length; i++) {
        for (const league of leagues) {
          const app = apps[i % 2]
          const r = await app.request('POST', UID_PATH, { data: { league, team: `${names[i]} ${league}`, points: i } })
          assert(r.status === 201 || r.status === 200, `POST on ${app.label}: ${r.status} ${r.text}`)
        }
      }
      for (const league of leagues) await positionsSettle(a, league, 60000)
      const fromCreates = [0, 0]
      await waitFor(() => leagues.every((l) => clusterRecalculations(apps, l, fromCreates).every((r) => r.done !== null)), 60000, "the creates' recalculations")
      const from = apps.map((x) => x.lines.length)
      const since = Date.now()
      const rows = {}
      for (const league of leagues) rows[league] = await table(b, league)
      const puts = 30
      let lastPutSent = 0
      for (let i = 0; i < puts; i++) {
        lastPutSent = Date.now()
        for (const league of leagues) {
          const app = apps[i % 2]
          const row = rows[league][i % rows[league].length]
          const r = await app.request('PUT', `${UID_PATH}/${row.documentId}`, { data: { points: 100 + i } })
          assert(r.status === 200, `PUT ${i} on ${app.label}: ${r.status} ${r.text}`)
        }
        // Paced: the burst outlasts the debounce (30 x 150 ms), a league's writes stay closer than it.
        await new Promise((r) => setTimeout(r, 150))
      }
      const lastPut = Date.now()
      log(`${puts * leagues.length} updates through both instances in ${lastPut - since} ms (debounce ${DEBOUNCE} ms)`)
      for (const league of leagues) {
        const settled = await positionsSettle(a, league, 60000)
        assert(settled.find((x) => x.points === 100 + puts - 1).position === 1, `${league}: the last update counts`)
        await positionsSettle(b, league, 5000)
      }
      // Nothing else is due: wait out one more debounce, then count.
      await new Promise((r) => setTimeout(r, Math.max(0, lastPut + DEBOUNCE + 2000 - Date.now())))
      const ran = {}
      for (const league of leagues) {
        const runs = clusterRecalculations(apps, league, from)
        assert(runs.length === 1 && runs[0].done !== null, `${league}: ${runs.length} recalculations for ${puts} updates through both instances: ${JSON.stringify(runs)}`)
        ran[league] = runs[0]
      }
      // The cluster's job list says the same, and either instance reads the job the other ran.
      const listed = (await dashboardJobs(a, 'name=table-recalculation&limit=1000')).filter((j) => j.createdAt >= since)
      assert(listed.length === leagues.length && listed.every((j) => j.status === 'completed'), `jobs since the updates: ${JSON.stringify(listed.map((j) => [j.jobId, j.status]))}`)
      for (const league of leagues) {
        for (const app of apps) {
          const job = await app.request('GET', `/api/jobwerk/jobs/${ran[league].id}`, undefined, app.tokens.read)
          assert(job.status === 200 && job.json.status === 'completed' && job.json.data.league === league, `job ${ran[league].id} on ${app.label}: ${job.status} ${job.text.slice(0, 300)}`)
          // Debounced across the instances: due DEBOUNCE after the league's last write, whichever instance took it.
          const debounced = job.json.runAt >= lastPutSent + DEBOUNCE && job.json.startedAt >= job.json.runAt
          assert(debounced, `${league}: runAt ${job.json.runAt}, startedAt ${job.json.startedAt}, the last write sent at ${lastPutSent}`)
        }
      }
      log(`recalculations: ${leagues.map((l) => `${l} ran once, in ${ran[l].app}`).join('; ')}`)
    })
  } finally {
    for (const app of apps) await stopApp(app)
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
    } catch (e) {
      log(`could not drop the database ${db}: ${e.message}`)
    }
    await admin.end()
  }
}

// --- unique, debounced and one-at-a-time jobs ---------------------------------
// The example's hook adds each league's recalculation with key, debounceMs and
// concurrencyKey (EXAMPLE_DEBOUNCE_MS sets the debounce). Boots the app twice
// with its own settings and returns a normal app again.

/** The recalculations of `league` in the app's output from line `from`: [{ id, start, done }] by line index. */
function recalculations(app, league, from = 0) {
  const runs = new Map()
  for (let i = from; i < app.lines.length; i++) {
    const start = / table-recalculation (\S+) attempt \d+ for (\S+)$/.exec(app.lines[i])
    if (start && start[2] === league) runs.set(start[1], { id: start[1], start: i, done: null })
    const done = / table-recalculation (\S+) done: ([^,]+),/.exec(app.lines[i])
    if (done && done[2] === league && runs.has(done[1])) runs.get(done[1]).done = i
  }
  return [...runs.values()]
}

async function uniqueJobChecks(app, dir) {
  const DEBOUNCE = 3000
  await stopApp(app)
  app = await new App(dir, { EXAMPLE_DEBOUNCE_MS: String(DEBOUNCE) }).ready()
  await check('200 bulk updates of one league give ONE recalculation, after the last one', async () => {
    for (const [team, points] of [['Uhu', 1], ['Unke', 2], ['Ur', 3], ['Uakari', 4], ['Urmel', 5]]) {
      const r = await app.request('POST', UID_PATH, { data: { league: 'U', team, points } })
      assert(r.status === 201 || r.status === 200, `POST: ${r.status} ${r.text}`)
    }
    await positionsSettle(app, 'U')
    await waitFor(() => recalculations(app, 'U').every((r) => r.done !== null), 30000, 'the creates\' recalculation')
    const from = app.lines.length
    const rows = await table(app, 'U')
    for (let i = 0; i < 200; i++) {
      const row = rows[i % rows.length]
      const r = await app.request('PUT', `${UID_PATH}/${row.documentId}`, { data: { points: 10 + i } })
      assert(r.status === 200, `PUT ${i}: ${r.status} ${r.text}`)
    }
    const lastPut = Date.now()
    const settled = await positionsSettle(app, 'U')
    assert(settled.find((x) => x.points === 209).position === 1, 'the last update counts')
    // Nothing else is due: wait out one more debounce, then count.
    await new Promise((r) => setTimeout(r, Math.max(0, lastPut + DEBOUNCE + 1000 - Date.now())))
    const runs = recalculations(app, 'U', from)
    assert(runs.length === 1 && runs[0].done !== null, `${runs.length} recalculations of U for 200 updates: ${JSON.stringify(runs)}`)
    // Its position writes (strapi.db.query) ran the hook, which skipped them: no loop.
    const changed = Number(/ (\d+) changed$/.exec(app.lines[runs[0].done])[1])
    const skipped = app.lines.slice(runs[0].start).filter((l) => /\[example\] hook skipped a position-only write of U \(/.test(l))
    assert(changed > 0 && skipped.length === changed, `the recalculation changed ${changed} positions, the hook skipped ${skipped.length} writes`)
  })
  await stopApp(app)
  app = await new App(dir, { EXAMPLE_DEBOUNCE_MS: '0', EXAMPLE_RECALC_HOLD_MS: '3000' }).ready()
  await check('overlapping writes of one league never run two recalculations at once; another league runs alongside', async () => {
    const from = app.lines.length
    const post = async (league, team, points) => {
      const r = await app.request('POST', UID_PATH, { data: { league, team, points } })
      assert(r.status === 201 || r.status === 200, `POST: ${r.status} ${r.text}`)
      return r.json.data
    }
    const first = await post('V', 'Vogel', 1)
    await app.waitLine(/table-recalculation \S+ holding/, 30000, from)
    // While V's recalculation runs (held 3 s): two more writes of V, one of W.
    await post('V', 'Viper', 2)
    const r = await app.request('PUT', `${UID_PATH}/${first.documentId}`, { data: { points: 7 } })
    assert(r.status === 200, `PUT: ${r.status} ${r.text}`)
    await post('W', 'Wal', 1)
    await positionsSettle(app, 'V', 60000)
    await positionsSettle(app, 'W', 60000)
    await waitFor(() => recalculations(app, 'V', from).every((x) => x.done !== null), 60000, 'V done')
    const v = recalculations(app, 'V', from)
    const w = recalculations(app, 'W', from)
    assert(v.length === 2, `V ran ${v.length} times (want 2: the first, and one for both writes during it): ${JSON.stringify(v)}`)
    assert(v[1].start > v[0].done, `V's second recalculation started (line ${v[1].start}) before the first finished (line ${v[0].done})`)
    assert(w.length === 1 && w[0].start < v[0].done, `W did not run alongside V: ${JSON.stringify({ v, w })}`)
  })
  await stopApp(app)
  app = await new App(dir, { EXAMPLE_NO_LOOP_GUARD: '1', EXAMPLE_DEBOUNCE_MS: '300' }).ready()
  await check("without the hook's guard, the job's own writes enqueue one more recalculation, which changes nothing and ends the chain", async () => {
    const from = app.lines.length
    for (const [team, points] of [['Nashorn', 1], ['Natter', 9], ['Nerz', 5], ['Nandu', 7]]) {
      const r = await app.request('POST', UID_PATH, { data: { league: 'N', team, points } })
      assert(r.status === 201 || r.status === 200, `POST: ${r.status} ${r.text}`)
    }
    await positionsSettle(app, 'N')
    // Quiet: every run done, none started for 3 s (ten debounces).
    let quietSince = Date.now()
    let seen = 0
    await waitFor(() => {
      const runs = recalculations(app, 'N', from)
      if (runs.length !== seen || runs.some((x) => x.done === null)) {
        seen = runs.length
        quietSince = Date.now()
      }
      return Date.now() - quietSince > 3000
    }, 60000, 'the recalculations of N to stop')
    const runs = recalculations(app, 'N', from).map((x) => Number(/ (\d+) changed$/.exec(app.lines[x.done])[1]))
    const retriggered = app.lines.slice(from).filter((l) => /\[example\] hook \(no guard\) enqueues for a position-only write of N$/.test(l)).length
    assert(retriggered > 0, "the job's writes did not run the hook")
    assert(runs.length >= 2 && runs[0] > 0 && runs[runs.length - 1] === 0, `positions changed per run of N: ${JSON.stringify(runs)}`)
  })
  await stopApp(app)
  return new App(dir).ready()
}

// --- a full queue ---------------------------------------------------------------
// maxQueueSize 2, one job per create (no key), each held 4 s by two workers:
// the creates past the queue's room are still 201s, and each job that did not
// fit is logged, counted (status, Prometheus) and alerted.

async function fullQueueCheck(app, dir) {
  await stopApp(app)
  app = await new App(dir, { EXAMPLE_NO_KEY: '1', JOBWERK_MAX_QUEUE_SIZE: '2', EXAMPLE_RECALC_HOLD_MS: '4000' }).ready()
  await check('a full queue never turns a write into a 500: every create is a 201; each job that did not fit is logged, counted and alerted', async () => {
    const from = app.lines.length
    const before = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json
    const creates = 8
    for (let i = 0; i < creates; i++) {
      const r = await app.request('POST', UID_PATH, { data: { league: 'Q', team: `Quokka ${i}`, points: i } })
      assert(r.status === 201 || r.status === 200, `POST ${i}: ${r.status} ${r.text}`)
    }
    const status = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json
    const lost = status.enqueue.lost
    const added = status.jobs.total - before.jobs.total
    // Two run (held), two wait: the rest did not fit (fewer only if the creates took longer than a hold).
    assert(lost >= 1 && lost === status.enqueue.lostByCode.ERR_QUEUE_FULL && lost + added === creates, `${creates} creates: ${added} jobs added, ${JSON.stringify(status.enqueue)}`)
    const metrics = await app.request('GET', '/api/jobwerk/metrics', undefined, app.tokens.read)
    assert(new RegExp(`^jobwerk_enqueue_lost_total\\{code="ERR_QUEUE_FULL"\\} ${lost}$`, 'm').test(metrics.text), `metrics: ${metrics.text.slice(-300)}`)
    const lines = app.lines.slice(from)
    assert(lines.filter((l) => /jobwerk: a job of "table-recalculation" was not added \(ERR_QUEUE_FULL/.test(l)).length === lost, 'a log line per lost job')
    assert(lines.filter((l) => /jobwerk alert \[critical\] enqueue-lost: /.test(l)).length === 1, 'one alert (alertCooldownMs)')
    // The jobs that fit run; none is left for the next boot.
    await waitFor(async () => (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.jobs.completed === before.jobs.completed + added, 60000, 'the added jobs to complete')
  })
  await stopApp(app)
  return new App(dir).ready()
}

// --- strapi develop: a file change reloads the app ----------------------------
// Strapi's develop runs the app in a cluster worker; on a file change the
// worker destroys Strapi (jobwerk's destroy: stop, close the SQLite file) and
// the primary forks a new worker on the same files. The old worker must exit
// by itself (no native handle left) and the new one open jobwerk.db at once.

async function developChecks(app, dir) {
  await stopApp(app)
  const strapiBin = path.join(dir, 'node_modules', '@strapi', 'strapi', 'bin', 'strapi.js')
  // No admin build (--no-watch-admin --no-build-admin), no dependency install.
  const args = [strapiBin, 'develop', '--no-watch-admin', '--no-build-admin', '--no-install-deps']
  // The held job outlasts the reload's shutdownTimeoutMs (2 s) by far: the reload aborts it.
  app = new App(dir, { NODE_ENV: 'development', EXAMPLE_RECALC_HOLD_MS: '8000' }, { args, group: true })
  await check('strapi develop: a change under src/ reloads the app; the old process exits, the new one opens jobwerk.db at once and runs the job the reload interrupted', async () => {
    assert(!watcherIgnores(dir), `${dir} is ignored by Strapi's develop watcher (a dot-folder or "tmp" in the path): set JOBWERK_STRAPI_WORK`)
    await app.ready(180000)
    const pid1 = Number((await app.waitLine(/\[example\] booted, pid (\d+)/, 30000))[1])
    const from = app.lines.length
    const rows = await table(app, 'A')
    const r = await app.request('PUT', `${UID_PATH}/${rows.find((x) => x.team === 'Dachse').documentId}`, { data: { points: 500 } })
    assert(r.status === 200, `PUT: ${r.status} ${r.text}`)
    const held = (await app.waitLine(/table-recalculation (\S+) holding/, 30000, from))[1]
    fs.appendFileSync(path.join(dir, 'src', 'index.js'), `// changed by test:strapi at ${new Date().toISOString()}\n`)
    const booted = await app.waitLine(/\[example\] booted, pid (\d+)/, 120000, from)
    const pid2 = Number(booted[1])
    assert(pid2 !== pid1, `the same process booted again (${pid1})`)
    await app.ready(60000)
    await app.waitLine(new RegExp(`table-recalculation ${held} done`), 60000, app.lines.indexOf(booted.input))
    await waitFor(() => !alive(pid1), 30000, `the old worker (pid ${pid1}) to exit`)
    const lines = app.lines.slice(from)
    assert(lines.some((l) => /File changed: .*src[/\\]index\.js/.test(l)), 'a reload by the watcher')
    assert(lines.some((l) => /jobwerk: stopped \(1 running job\(s\) aborted/.test(l)), 'the old worker stopped jobwerk, aborting the held job')
    const bad = lines.filter((l) => /failed to start|ERR_STORAGE|in use by another/.test(l))
    assert(bad.length === 0, `the new worker: ${bad.join(' | ')}`)
    const after = await positionsSettle(app, 'A', 10000)
    assert(after.find((x) => x.team === 'Dachse').position === 1, 'Dachse first')
    const status = await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)
    assert(status.status === 200 && status.json.status === 'started', `status: ${status.status} ${status.text.slice(0, 200)}`)
  })
  return app
}

// --latency [n]: what a create request gains from its hook adding a job. One
// boot per row, each on a fresh database (.tmp removed); 200 creates in a
// league of their own to warm up (V8 compiles Strapi's request path), a wait
// until their jobs are done, then n sequential creates spread over 10
// leagues, p50/p99 of the request's round trip as the client sees it:
//   - no hook (EXAMPLE_NO_HOOK),
//   - the hook adds one job per create that does nothing (EXAMPLE_NO_KEY,
//     EXAMPLE_RECALC_SKIP): the cost of adding (and running) a job,
//   - the example's hook: the league's recalculation, keyed and debounced,
//   - one full recalculation per create (EXAMPLE_NO_KEY: no key, no debounce).
// A measurement, not a test (not in CI): prints the figures only. Use the
// release build (npm run build) for figures worth quoting.
async function latency(n) {
  const work = makeWork('jobwerk-strapi-latency-')
  try {
    const dir = prepareApp(work)
    const out = []
    const runs = [
      ['none', { EXAMPLE_NO_HOOK: '1' }],
      ['adds a job that does nothing (one per create)', { EXAMPLE_NO_KEY: '1', EXAMPLE_RECALC_SKIP: '1' }],
      ["adds the league's recalculation, keyed and debounced (the example)", {}],
      ['adds a full recalculation per create (no key, no debounce)', { EXAMPLE_NO_KEY: '1' }],
    ]
    for (const [label, env] of runs) {
      fs.rmSync(path.join(dir, '.tmp'), { recursive: true, force: true })
      const app = await new App(dir, env).ready()
      const post = async (league, i) => {
        const t = process.hrtime.bigint()
        const r = await app.request('POST', UID_PATH, { data: { league, team: `T${i}`, points: i % 37 } })
        if (r.status !== 201 && r.status !== 200) throw new Error(`POST: ${r.status} ${r.text}`)
        return Number(process.hrtime.bigint() - t) / 1e6
      }
      const idle = async () => {
        const s = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.jobs
        return s.waiting + s.pending + s.running === 0
      }
      for (let i = 0; i < 200; i++) await post('warm-up', i)
      await waitFor(idle, 300000, 'the warm-up jobs')
      const warmJobs = (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.jobs.total
      const ms = []
      for (let i = 0; i < n; i++) ms.push(await post(`L${i % 10}`, i))
      await waitFor(idle, 300000, 'the jobs')
      const stats = { total: (await app.request('GET', '/api/jobwerk/status', undefined, app.tokens.read)).json.jobs.total - warmJobs }
      await stopApp(app)
      ms.sort((a, b) => a - b)
      const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]
      const row = { label, p50: +q(0.5).toFixed(1), p99: +q(0.99).toFixed(1), mean: +(ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(1), jobs: stats && stats.total }
      out.push(row)
      log(`${label}: ${n} creates, p50 ${row.p50} ms, p99 ${row.p99} ms, mean ${row.mean} ms, ${row.jobs} jobs`)
    }
    console.log(JSON.stringify({ requests: n, node: process.version, rows: out }))
    console.log(`\n| the create's hook | p50 | p99 | jobs |\n|---|---|---|---|`)
    for (const r of out) console.log(`| ${r.label} | ${r.p50} ms | ${r.p99} ms | ${r.jobs} |`)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

async function stopApp(app) {
  const signal = (sig) => {
    try {
      process.kill(app.group ? -app.child.pid : app.child.pid, sig)
    } catch {}
  }
  const t = Date.now()
  if (!app.exit) {
    signal('SIGTERM')
    const timer = setTimeout(() => {
      log('the app did not exit within 20 s of SIGTERM: SIGKILL')
      signal('SIGKILL')
    }, 20000)
    await app.exited
    clearTimeout(timer)
  }
  // The rest of its group (a develop worker): gone within the bound, or killed.
  if (app.group) {
    const until = Date.now() + 20000
    while (groupAlive(app.child.pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    if (groupAlive(app.child.pid)) {
      log(`the app's process group outlived it by 20 s: SIGKILL`)
      signal('SIGKILL')
    }
  }
  if (Date.now() - t > 5000) log(`stopping the app took ${Date.now() - t} ms`)
}

// Linux's /proc: a process is alive unless gone or a zombie (a worker whose
// parent died is reparented, and not every container's pid 1 reaps it).
function procStat(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state, pgrp: Number(pgrp) }
  } catch {
    return null
  }
}

function alive(pid) {
  const s = procStat(pid)
  return s !== null && s.state !== 'Z'
}

function groupAlive(pgid) {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = procStat(name)
    if (s !== null && s.pgrp === pgid && s.state !== 'Z') return true
  }
  return false
}

if (process.argv[2] === '--latency') latency(Number(process.argv[3] || 500))
else main()
