// The dashboard's JSON API on its own: status codes, paging through getJobs
// cursors, bad query -> 400, auth (function and bearer token), CSRF on POST,
// readOnly, redact, the Content-Security-Policy header.
const http = require('node:http')
const { JobManagementService, createDashboard } = require('../index.js')

const secrets = { user: 'ann', password: 'hunter2-secret', nested: { token: 'tok-secret-value' } }
const ok = { name: 'ok', calculate: (d) => ({ echo: d.n, apiKey: 'result-secret-key' }) }
// Fails until `healed`: a retry from the dashboard then completes.
let healed = false
const bad = {
  name: 'bad',
  retries: 0,
  calculate: () => {
    if (!healed) throw new Error('the league is gone')
    return 'healed'
  },
}

let service
const servers = []

async function serve(options) {
  const handler = createDashboard(service, options)
  const server = http.createServer(handler)
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  servers.push({ server, handler })
  const base = `http://127.0.0.1:${server.address().port}${options && options.basePath ? options.basePath : ''}`
  return { base, handler }
}

beforeAll(async () => {
  service = new JobManagementService({ storage: { type: 'memory' }, clock: 'manual', queue: { maxQueueSize: 1000 } })
  await service.start()
  for (let n = 0; n < 25; n++) service.addCalculationJob(ok, { n, ...secrets }, { operationId: 'op', password: 'ctx-secret' })
  service.addCalculationJob(bad, {})
  await service.advanceTime(10)
  service.scheduleCronCalculationJob(ok, { n: -1 }, {}, '*/5 * * * *', { id: 'five', tz: 'UTC' })
})

afterAll(async () => {
  for (const { server, handler } of servers) {
    handler.close()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
  await service.stop()
})

test('GET pages and API answer with JSON, a CSP without unsafe-inline scripts, and 404 for unknown paths', async () => {
  const { base } = await serve({ basePath: '/jobs-ui' })
  const page = await fetch(`${base}/`)
  expect(page.status).toBe(200)
  const csp = page.headers.get('content-security-policy')
  expect(csp).toMatch(/script-src 'self'/)
  expect(csp).not.toMatch(/unsafe-inline/)
  const html = await page.text()
  expect(html).toContain('/jobs-ui/assets/app.js')
  expect(html).not.toMatch(/<script>/)
  expect((await fetch(`${base}/assets/app.js`)).status).toBe(200)
  const ov = await fetch(`${base}/api/overview`)
  expect(ov.status).toBe(200)
  expect(ov.headers.get('content-type')).toMatch(/application\/json/)
  const o = await ov.json()
  expect(o.stats.completed).toBe(25)
  expect(o.stats.failed).toBe(1)
  expect(o.health.overall).toBeDefined()
  expect((await fetch(`${base}/api/nothing`)).status).toBe(404)
  expect((await fetch(`${base}/assets/nope.js`)).status).toBe(404)
  expect((await fetch(`${base}/api/jobs/01a24283-1f89-7000-b510-448a6def41b3`)).status).toBe(404)
  // Outside the base path: not ours.
  expect((await fetch(base.replace('/jobs-ui', '/other'))).status).toBe(404)
})

test('paging through getJobs cursors visits every job once', async () => {
  const { base } = await serve()
  const seen = new Set()
  let cursor = ''
  let pages = 0
  for (;;) {
    const r = await fetch(`${base}/api/jobs?limit=10${cursor ? `&cursor=${cursor}` : ''}`)
    expect(r.status).toBe(200)
    const page = await r.json()
    for (const j of page.jobs) {
      expect(seen.has(j.jobId)).toBe(false)
      expect(j.data).toBeUndefined()
      seen.add(j.jobId)
    }
    pages++
    if (!page.nextCursor) break
    cursor = page.nextCursor
  }
  expect(seen.size).toBe(26)
  expect(pages).toBe(3)
  const failed = await (await fetch(`${base}/api/jobs?status=failed,timeout`)).json()
  expect(failed.jobs.map((j) => j.error.message)).toEqual(['the league is gone'])
  const one = await (await fetch(`${base}/api/jobs?id=${failed.jobs[0].jobId}`)).json()
  expect(one.jobs).toHaveLength(1)
})

test('bad query parameters are 400 with a message naming the field', async () => {
  const { base } = await serve()
  const cases = [
    ['status=done', 'status'],
    ['limit=0', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=5000', 'limit'],
    ['since=yesterday', 'since'],
    ['cursor=not-a-cursor', 'cursor'],
    ['order=sideways', 'order'],
    ['colour=red', 'colour'],
  ]
  // A malformed id in the path is 400 too (not a 500).
  expect((await fetch(`${base}/api/jobs/%E0%A4%A`)).status).toBe(400)
  for (const [q, field] of cases) {
    const r = await fetch(`${base}/api/jobs?${q}`)
    expect([q, r.status]).toEqual([q, 400])
    const body = await r.json()
    expect(body.error.field).toBe(field)
    expect(typeof body.error.message).toBe('string')
  }
})

test('redacted keys never appear in any response body', async () => {
  const { base } = await serve({ redact: ['password', 'token', 'apiKey'] })
  const list = await (await fetch(`${base}/api/jobs?status=completed&limit=1`)).json()
  const id = list.jobs[0].jobId
  const bodies = []
  for (const p of ['/api/overview', '/api/jobs', `/api/jobs/${id}`, '/api/schedules', '/api/alerts', '/']) {
    const r = await fetch(`${base}${p}`)
    expect(r.status).toBe(200)
    bodies.push(await r.text())
  }
  const all = bodies.join('\n')
  for (const secret of ['hunter2-secret', 'tok-secret-value', 'ctx-secret', 'result-secret-key']) expect(all).not.toContain(secret)
  const detail = JSON.parse(bodies[2])
  expect(detail.job.data.password).toBe('[redacted]')
  expect(detail.job.data.nested.token).toBe('[redacted]')
  expect(detail.job.data.user).toBe('ann')
  expect(detail.job.result.apiKey).toBe('[redacted]')
  // Without redact, the same values are there (the test can fail).
  const { base: open } = await serve()
  expect(await (await fetch(`${open}/api/jobs/${id}`)).text()).toContain('hunter2-secret')
})

test('POST actions need the CSRF token; readOnly refuses them', async () => {
  const { base, handler } = await serve()
  const failed = (await (await fetch(`${base}/api/jobs?status=failed`)).json()).jobs[0]
  const url = `${base}/api/jobs/${failed.jobId}/retry`
  expect((await fetch(url, { method: 'POST' })).status).toBe(403)
  expect((await fetch(url, { method: 'POST', headers: { 'x-csrf-token': 'wrong' } })).status).toBe(403)
  expect(service.getJobStatus(failed.jobId).status).toBe('failed')
  healed = true
  const r = await fetch(url, { method: 'POST', headers: { 'x-csrf-token': handler.csrfToken } })
  expect(r.status).toBe(200)
  await service.advanceTime(10)
  expect(service.getJobStatus(failed.jobId).status).toBe('completed')
  // A completed job cannot be retried: 409.
  expect((await fetch(url, { method: 'POST', headers: { 'x-csrf-token': handler.csrfToken } })).status).toBe(409)
  // A bad body and a missing name are 400.
  const ack = await fetch(`${base}/api/alerts/nope/acknowledge`, { method: 'POST', headers: { 'x-csrf-token': handler.csrfToken }, body: '{"by":""}' })
  expect(ack.status).toBe(400)
  const junk = await fetch(`${base}/api/alerts/nope/acknowledge`, { method: 'POST', headers: { 'x-csrf-token': handler.csrfToken }, body: 'not json' })
  expect(junk.status).toBe(400)
  expect((await fetch(`${base}/api/schedules/nope/disable`, { method: 'POST', headers: { 'x-csrf-token': handler.csrfToken } })).status).toBe(409)
  expect((await fetch(`${base}/api/overview`, { method: 'DELETE' })).status).toBe(405)

  const ro = await serve({ readOnly: true })
  const page = await (await fetch(`${ro.base}/`)).text()
  expect(page).toContain('name="jobwerk-readonly" content="true"')
  const refused = await fetch(`${ro.base}/api/schedules/five/disable`, { method: 'POST', headers: { 'x-csrf-token': ro.handler.csrfToken } })
  expect(refused.status).toBe(403)
  expect(service.getScheduledJobs().find((s) => s.id === 'five').enabled).toBe(true)
})

test('auth: a bearer token (401 without it or with a wrong one) and a function', async () => {
  const { base } = await serve({ auth: 'right-token-123' })
  expect((await fetch(`${base}/api/overview`)).status).toBe(401)
  expect((await fetch(`${base}/`)).status).toBe(401)
  expect((await fetch(`${base}/api/overview`, { headers: { authorization: 'Bearer wrong-token-123' } })).status).toBe(401)
  expect((await fetch(`${base}/api/overview`, { headers: { authorization: 'Bearer right-token-123' } })).status).toBe(200)
  // A wrong bearer token on a POST is 401 before the CSRF check.
  expect((await fetch(`${base}/api/schedules/five/disable`, { method: 'POST', headers: { authorization: 'Bearer nope' } })).status).toBe(401)
  // ?token= once sets a cookie that the page's own requests then carry.
  const link = await fetch(`${base}/?token=right-token-123`, { redirect: 'manual' })
  expect(link.status).toBe(303)
  const cookie = link.headers.get('set-cookie').split(';')[0]
  expect(link.headers.get('set-cookie')).toMatch(/HttpOnly/)
  expect(link.headers.get('set-cookie')).not.toMatch(/Secure/)
  expect((await fetch(`${base}/api/overview`, { headers: { cookie } })).status).toBe(200)
  // Behind a TLS-terminating proxy the cookie is Secure.
  const proxied = await fetch(`${base}/?token=right-token-123`, { redirect: 'manual', headers: { 'x-forwarded-proto': 'https' } })
  expect(proxied.headers.get('set-cookie')).toMatch(/; Secure$/)

  const fn = await serve({ auth: async (req) => req.headers['x-user'] === 'admin' })
  expect((await fetch(`${fn.base}/api/overview`)).status).toBe(401)
  expect((await fetch(`${fn.base}/api/overview`, { headers: { 'x-user': 'admin' } })).status).toBe(200)
  const throwing = await serve({ auth: () => { throw new Error('auth backend down') } })
  expect((await fetch(`${throwing.base}/api/overview`)).status).toBe(500)
})

test('bad options are ERR_INVALID_ARGUMENT naming the option', () => {
  expect(() => createDashboard({})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'service' }))
  expect(() => createDashboard(service, { basePath: 'x' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'basePath' }))
  expect(() => createDashboard(service, { redact: 'password' })).toThrow(expect.objectContaining({ field: 'redact' }))
  expect(() => createDashboard(service, { auth: 42 })).toThrow(expect.objectContaining({ field: 'auth' }))
  expect(() => createDashboard(service, { colour: 1 })).toThrow(expect.objectContaining({ field: 'colour' }))
})

test('schedules list the next 5 runs; the event stream sends hello and closes with the client', async () => {
  const { base, handler } = await serve({ liveIntervalMs: 50 })
  const { schedules } = await (await fetch(`${base}/api/schedules`)).json()
  const five = schedules.find((s) => s.id === 'five')
  expect(five.nextRuns).toHaveLength(5)
  expect(five.nextRuns[0]).toBe(five.nextRunAt)
  expect(five.nextRuns[1] - five.nextRuns[0]).toBe(300000)
  const ac = new AbortController()
  const r = await fetch(`${base}/api/events`, { signal: ac.signal })
  expect(r.headers.get('content-type')).toMatch(/text\/event-stream/)
  const reader = r.body.getReader()
  const first = new TextDecoder().decode((await reader.read()).value)
  expect(first).toContain('event: hello')
  ac.abort()
  expect(handler).toBeDefined()
})

test('startDashboard listens on loopback and refuses another host without a token', async () => {
  await expect(service.startDashboard({ host: '0.0.0.0' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'host' })
  await expect(service.startDashboard({ port: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'port' })
  await expect(service.startDashboard({ token: 'short' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'token' })
  const dash = await service.startDashboard({ token: 'a-long-enough-token' })
  try {
    expect(dash.host).toBe('127.0.0.1')
    expect((await fetch(`${dash.url}api/overview`)).status).toBe(401)
    expect((await fetch(`${dash.url}api/overview`, { headers: { authorization: 'Bearer a-long-enough-token' } })).status).toBe(200)
  } finally {
    await dash.close()
  }
})

test('npx jobwerk dashboard serves a SQLite file; a non-loopback host without a token exits 2', async () => {
  const { spawn, spawnSync } = require('node:child_process')
  const fs = require('node:fs')
  const os = require('node:os')
  const path = require('node:path')
  const cli = path.join(__dirname, '..', 'dashboard', 'cli.js')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-cli-'))
  const file = path.join(dir, 'jobs.db')
  const refused = spawnSync(process.execPath, [cli, 'dashboard', '--storage', file, '--host', '0.0.0.0'], { encoding: 'utf8' })
  expect(refused.status).toBe(2)
  expect(refused.stderr).toMatch(/without a token/)
  expect(fs.existsSync(file)).toBe(false)
  const child = spawn(process.execPath, [cli, 'dashboard', '--storage', file, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    const url = await new Promise((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (c) => {
        out += c
        const m = /(http:\/\/\S+)/.exec(out)
        if (m) resolve(m[1])
      })
      child.on('exit', (code) => reject(new Error(`exited ${code}`)))
    })
    const r = await fetch(`${url}api/overview`)
    expect(r.status).toBe(200)
    expect((await r.json()).system.storage.type).toBe('sqlite')
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

// The README's mounts: Express (app.use with a path) and Koa (ctx.respond = false).
test('mounted in Express and in Koa, pages, API and POST actions work under the base path', async () => {
  const express = require('express')
  const Koa = require('koa')
  const listen = async (server) => {
    await new Promise((r) => server.listen(0, '127.0.0.1', r))
    servers.push({ server, handler: { close() {} } })
    return `http://127.0.0.1:${server.address().port}`
  }
  const e = createDashboard(service, { basePath: '/admin/jobs' })
  const app = express()
  app.use(express.json())
  app.use('/admin/jobs', e)
  app.get('/hello', (req, res) => res.send('app route'))
  const koa = new Koa()
  const k = createDashboard(service, { basePath: '/admin/jobs' })
  koa.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/admin/jobs')) return next()
    ctx.respond = false
    k(ctx.req, ctx.res)
  })
  koa.use((ctx) => {
    ctx.body = 'app route'
  })
  for (const [base, handler] of [[await listen(require('node:http').createServer(app)), e], [await listen(require('node:http').createServer(koa.callback())), k]]) {
    expect(await (await fetch(`${base}/hello`)).text()).toBe('app route')
    const page = await fetch(`${base}/admin/jobs/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('/admin/jobs/assets/app.js')
    expect((await fetch(`${base}/admin/jobs/assets/app.css`)).status).toBe(200)
    expect((await fetch(`${base}/admin/jobs/api/jobs?limit=2`)).status).toBe(200)
    expect((await fetch(`${base}/admin/jobs/api/jobs?limit=-2`)).status).toBe(400)
    const rule = service.addAlertRule({ metric: 'failedCount', operator: '>=', threshold: 0, severity: 'info' })
    await service.advanceTime(60000)
    const alert = service.getActiveAlerts().find((a) => a.ruleId === rule)
    expect(alert).toBeDefined()
    const ack = await fetch(`${base}/admin/jobs/api/alerts/${alert.id}/acknowledge`, {
      method: 'POST',
      headers: { 'x-csrf-token': handler.csrfToken, 'content-type': 'application/json' },
      body: JSON.stringify({ by: 'Mounted' }),
    })
    expect(ack.status).toBe(200)
    expect(service.getActiveAlerts().find((a) => a.id === alert.id).acknowledgedBy).toBe('Mounted')
    service.removeAlertRule(rule)
  }
})

test("a job's detail names the schedule that added it", async () => {
  const { base } = await serve()
  await service.advanceTime(300000)
  const five = service.getScheduledJobs().find((s) => s.id === 'five')
  expect(five.lastJobId).toEqual(expect.any(String))
  const detail = await (await fetch(`${base}/api/jobs/${five.lastJobId}`)).json()
  expect(detail.schedule).toMatchObject({ id: 'five', kind: 'cron' })
})

test("a job's detail lists its dependencies with their name and status", async () => {
  const { base } = await serve()
  const first = service.addCalculationJob(ok, { n: 100 }, {}, { delay: 3600000 })
  const second = service.addCalculationJob(ok, { n: 101 }, {}, { dependsOn: [first], onDependencyFailure: 'ignore' })
  const detail = await (await fetch(`${base}/api/jobs/${second}`)).json()
  expect(detail.job).toMatchObject({ status: 'waiting', dependsOn: [first], onDependencyFailure: 'ignore' })
  expect(detail.dependencies).toEqual([{ jobId: first, name: 'ok', status: 'pending' }])
  const none = await (await fetch(`${base}/api/jobs/${first}`)).json()
  expect(none.job.dependsOn).toEqual([])
  expect(none.dependencies).toEqual([])
  // The listing carries them too (without payloads).
  const page = await (await fetch(`${base}/api/jobs?status=waiting`)).json()
  expect(page.jobs.find((j) => j.jobId === second).dependsOn).toEqual([first])
  expect(service.cancelJob(second) && service.cancelJob(first)).toBe(true)
})
