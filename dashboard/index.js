'use strict'

// The dashboard: one Node `(req, res)` handler serving a single page (static
// files in ./public, no build step) and its JSON API under `basePath`.
// No framework: usable from `http`, Express, Koa, Fastify and Strapi.

const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const STATUSES = ['waiting', 'pending', 'running', 'completed', 'failed', 'timeout', 'cancelled']
const JOB_QUERY_KEYS = new Set(['status', 'name', 'since', 'until', 'limit', 'cursor', 'order', 'id'])
const MAX_BODY = 16 * 1024
const REDACTED = '[redacted]'

// The page runs only the files it is served: no inline script or style, no
// other origin, no frames.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const ASSETS = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
}

class HttpError extends Error {
  constructor(status, message, field) {
    super(message)
    this.status = status
    if (field !== undefined) this.field = field
  }
}

function readAsset(name) {
  return fs.readFileSync(path.join(__dirname, 'public', name))
}

function normalizeBase(basePath) {
  if (basePath === undefined || basePath === null || basePath === '' || basePath === '/') return ''
  if (typeof basePath !== 'string' || !basePath.startsWith('/') || /[?#\s"'<>]/.test(basePath)) {
    throw optionError('basePath', `must be a path starting with '/', got ${JSON.stringify(basePath)}`)
  }
  return basePath.replace(/\/+$/, '')
}

function optionError(field, message) {
  const e = new Error(`createDashboard(service, options): options.${field} ${message}`)
  e.code = 'ERR_INVALID_ARGUMENT'
  e.field = field
  return e
}

function readOptions(options) {
  const o = options === undefined || options === null ? {} : options
  if (typeof o !== 'object' || Array.isArray(o)) throw optionError('options', 'must be an object { basePath, auth, readOnly, redact }')
  const known = ['basePath', 'auth', 'readOnly', 'redact', 'title', 'liveIntervalMs']
  for (const k of Object.keys(o)) if (!known.includes(k)) throw optionError(k, `is not a known option (known: ${known.join(', ')})`)
  const auth = o.auth
  if (auth !== undefined && auth !== null && typeof auth !== 'function' && (typeof auth !== 'string' || auth.length === 0)) {
    throw optionError('auth', 'must be a function (req) => boolean | Promise<boolean> or a bearer token (a non-empty string)')
  }
  if (o.readOnly !== undefined && typeof o.readOnly !== 'boolean') throw optionError('readOnly', 'must be true or false')
  const redact = o.redact === undefined || o.redact === null ? [] : o.redact
  if (!Array.isArray(redact) || !redact.every((k) => typeof k === 'string' && k.length > 0)) {
    throw optionError('redact', 'must be an array of key names')
  }
  const live = o.liveIntervalMs === undefined ? 1000 : o.liveIntervalMs
  if (!Number.isInteger(live) || live < 50 || live > 60000) throw optionError('liveIntervalMs', 'must be an integer from 50 to 60000')
  if (o.title !== undefined && typeof o.title !== 'string') throw optionError('title', 'must be a string')
  return {
    base: normalizeBase(o.basePath),
    auth: auth === undefined ? null : auth,
    readOnly: o.readOnly === true,
    redact: new Set(redact.map((k) => k.toLowerCase())),
    title: o.title || 'jobwerk',
    liveMs: live,
  }
}

/** Masks the values of the redacted keys, at any depth (a copy; the input is left alone). */
function redactValue(v, keys) {
  if (keys.size === 0 || v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map((x) => redactValue(x, keys))
  const out = {}
  for (const k of Object.keys(v)) out[k] = keys.has(k.toLowerCase()) ? REDACTED : redactValue(v[k], keys)
  return out
}

function safeEqual(a, b) {
  const x = Buffer.from(String(a))
  const y = Buffer.from(String(b))
  return x.length === y.length && crypto.timingSafeEqual(x, y)
}

function cookieOf(req, name) {
  const header = req.headers.cookie
  if (typeof header !== 'string') return null
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim())
  }
  return null
}

// HTTPS, directly or behind a proxy that says so: the cookie is then Secure.
function overTls(req) {
  if (req.socket && req.socket.encrypted) return true
  const proto = req.headers['x-forwarded-proto']
  return typeof proto === 'string' && proto.split(',')[0].trim().toLowerCase() === 'https'
}

function send(res, status, type, body, extra) {
  if (res.headersSent) return
  res.statusCode = status
  res.setHeader('Content-Type', type)
  res.setHeader('Content-Security-Policy', CSP)
  res.setHeader('X-Content-Type-Options', 'nosniff')
  res.setHeader('Referrer-Policy', 'no-referrer')
  res.setHeader('Cache-Control', 'no-store')
  if (extra) for (const [k, v] of Object.entries(extra)) res.setHeader(k, v)
  res.end(body)
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function parseTime(v, field) {
  const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v)
  if (!Number.isFinite(n) || n < 0) throw new HttpError(400, `${field} must be epoch ms or an ISO date, got ${JSON.stringify(v)}`, field)
  return n
}

/** The Jobs page's query string as a getJobs filter (400 for anything else). */
function jobsFilter(query) {
  const filter = { includeData: false }
  for (const key of query.keys()) {
    if (!JOB_QUERY_KEYS.has(key)) throw new HttpError(400, `unknown query parameter ${JSON.stringify(key)} (known: ${[...JOB_QUERY_KEYS].join(', ')})`, key)
  }
  const get = (k) => {
    const v = query.get(k)
    return v === null || v === '' ? undefined : v
  }
  const status = get('status')
  if (status !== undefined) {
    const list = status.split(',')
    for (const s of list) {
      if (!STATUSES.includes(s)) throw new HttpError(400, `status must be one or more of ${STATUSES.join(', ')} (comma-separated), got ${JSON.stringify(s)}`, 'status')
    }
    filter.status = list
  }
  if (get('name') !== undefined) filter.name = get('name')
  for (const k of ['since', 'until']) if (get(k) !== undefined) filter[k] = parseTime(get(k), k)
  const limit = get('limit')
  if (limit !== undefined) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) throw new HttpError(400, `limit must be an integer from 1 to 1000, got ${JSON.stringify(limit)}`, 'limit')
    filter.limit = Number(limit)
  }
  if (get('cursor') !== undefined) filter.cursor = get('cursor')
  if (get('order') !== undefined) filter.order = get('order')
  return filter
}

/** Up to 5 next run times of a schedule (cron: from its expression; interval: from its next run). */
function nextRuns(s, now, nextCronRuns) {
  if (!s.enabled || s.nextRunAt == null) return []
  if (s.kind === 'cron') {
    try {
      const from = Math.max(now, s.nextRunAt - 1)
      return nextCronRuns(s.expression, { tz: s.tz || undefined, from, count: 5 }).map((d) => d.getTime())
    } catch {
      return [s.nextRunAt]
    }
  }
  if (s.kind === 'interval' && s.intervalMs > 0) {
    const out = []
    for (let i = 0; i < 5; i++) {
      const t = s.nextRunAt + i * s.intervalMs
      if (s.endAt != null && t > s.endAt) break
      out.push(t)
    }
    return out
  }
  return [s.nextRunAt]
}

async function readBody(req) {
  if (req.body !== undefined && typeof req.body === 'object' && req.body !== null) return req.body
  let size = 0
  const chunks = []
  for await (const c of req) {
    size += c.length
    if (size > MAX_BODY) throw new HttpError(413, `the request body is larger than ${MAX_BODY} bytes`)
    chunks.push(c)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return {}
  try {
    const v = JSON.parse(text)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object')
    return v
  } catch {
    throw new HttpError(400, 'the request body must be a JSON object')
  }
}

/**
 * The dashboard as a Node request handler `(req, res, next?)`. Requests outside
 * `basePath` go to `next` when given (Express, Connect), else get 404.
 */
function createDashboard(service, options) {
  if (service === null || typeof service !== 'object' || typeof service.getJobs !== 'function') {
    const e = new Error('createDashboard(service, options): service must be a JobManagementService')
    e.code = 'ERR_INVALID_ARGUMENT'
    e.field = 'service'
    throw e
  }
  const opts = readOptions(options)
  const { nextCronRuns } = require('../index.js')
  const csrf = crypto.randomBytes(24).toString('base64url')
  const assets = {}
  for (const name of Object.keys(ASSETS)) assets[name] = readAsset(name)
  const page = readAsset('index.html')
    .toString('utf8')
    .replaceAll('{{base}}', escapeHtml(opts.base))
    .replace('{{title}}', escapeHtml(opts.title))
    .replace('{{csrf}}', escapeHtml(csrf))
    .replace('{{readOnly}}', opts.readOnly ? 'true' : 'false')
  const live = liveFeed(service, opts.liveMs)
  const cookieName = 'jobwerk_dashboard'

  const json = (res, status, value, extra) => {
    const body = JSON.stringify(redactValue(value, opts.redact))
    send(res, status, 'application/json; charset=utf-8', body, extra)
  }

  async function allowed(req) {
    if (opts.auth === null) return true
    if (typeof opts.auth === 'function') return (await opts.auth(req)) === true
    const h = req.headers.authorization
    if (typeof h === 'string' && h.startsWith('Bearer ') && safeEqual(h.slice(7).trim(), opts.auth)) return true
    const c = cookieOf(req, cookieName)
    return c !== null && safeEqual(c, opts.auth)
  }

  // getJobStatus, getJobs, cancelJob and retryJob are Promises on PostgreSQL
  // (read where the data is, off the JavaScript thread): every read and
  // action is awaited, so the same code serves every storage.
  const api = {
    overview() {
      const stats = service.getQueueStatistics()
      let trends = null
      try {
        trends = service.getQueueTrends()
      } catch {
        trends = null
      }
      return {
        now: service.now(),
        system: service.getSystemStatus(),
        health: service.getSystemHealth(),
        stats,
        trends,
        alerts: service.getActiveAlerts(),
      }
    },
    async jobs(query) {
      const id = query.get('id')
      if (id !== null && id !== '') {
        if (query.has('cursor') && query.get('cursor') !== '') throw new HttpError(400, 'id and cursor cannot be combined', 'id')
        const job = await service.getJobStatus(id.trim())
        if (job) {
          delete job.data
          delete job.result
        }
        return { jobs: job ? [job] : [], nextCursor: null }
      }
      return service.getJobs(jobsFilter(query))
    },
    async job(id) {
      const job = await service.getJobStatus(id)
      if (job === null) throw new HttpError(404, `no job with id ${JSON.stringify(id)}`)
      const sid = job.scheduleId
      // The schedule that added the job: by the job's scheduleId when getJobStatus
      // gives one, else the schedule whose last job this is (null: none, or removed).
      const all = service.getScheduledJobs()
      const schedule = (typeof sid === 'string' ? all.find((s) => s.id === sid) : all.find((s) => s.lastJobId === id)) || null
      const deps = Array.isArray(job.dependsOn)
        ? await Promise.all(
            job.dependsOn.map(async (d) => {
              const s = await service.getJobStatus(d)
              return { jobId: d, name: s ? s.name : null, status: s ? s.status : 'unknown' }
            }),
          )
        : []
      return { job, schedule, dependencies: deps }
    },
    schedules() {
      const now = service.now()
      return { now, schedules: service.getScheduledJobs().map((s) => ({ ...s, nextRuns: nextRuns(s, now, nextCronRuns) })) }
    },
    alerts() {
      return { active: service.getActiveAlerts(), history: service.getAlertHistory({ limit: 100 }) }
    },
  }

  // POST actions: [path pattern, handler(id, body) => boolean, what refused means].
  const actions = [
    [/^\/api\/jobs\/([^/]+)\/retry$/, (id) => service.retryJob(id), 'not retried: only a failed, timed-out or cancelled job can be retried'],
    [/^\/api\/jobs\/([^/]+)\/cancel$/, (id) => service.cancelJob(id), 'not cancelled: the job is unknown or already finished'],
    [/^\/api\/schedules\/([^/]+)\/enable$/, (id) => service.setScheduledJobEnabled(id, true), 'no schedule with this id'],
    [/^\/api\/schedules\/([^/]+)\/disable$/, (id) => service.setScheduledJobEnabled(id, false), 'no schedule with this id'],
    [/^\/api\/schedules\/([^/]+)\/cancel$/, (id) => service.cancelScheduledJob(id), 'no schedule with this id'],
    [
      /^\/api\/alerts\/([^/]+)\/acknowledge$/,
      (id, body) => {
        const by = body.by
        if (typeof by !== 'string' || by.trim() === '' || by.length > 200) throw new HttpError(400, 'by must be a name (1 to 200 characters)', 'by')
        return service.acknowledgeAlert(id, by.trim())
      },
      'no active alert with this id',
    ],
    [/^\/api\/alerts\/([^/]+)\/resolve$/, (id) => service.resolveAlert(id), 'no active alert with this id'],
  ]

  async function route(req, res, rel, query) {
    const method = req.method
    if (method === 'GET' || method === 'HEAD') {
      if (rel === '/' || rel === '') {
        if (opts.auth !== null && typeof opts.auth === 'string' && query.has('token') && safeEqual(query.get('token'), opts.auth)) {
          // A link with ?token= sets a cookie (the page's own requests then carry it) and drops the token from the address.
          return send(res, 303, 'text/plain; charset=utf-8', 'see the dashboard', {
            'Set-Cookie': `${cookieName}=${encodeURIComponent(opts.auth)}; Path=${opts.base || '/'}; HttpOnly; SameSite=Strict${overTls(req) ? '; Secure' : ''}`,
            Location: `${opts.base}/`,
          })
        }
        if (!(await allowed(req))) return unauthorized(res)
        return send(res, 200, 'text/html; charset=utf-8', page)
      }
      const asset = /^\/assets\/([a-z.]+)$/.exec(rel)
      if (asset && ASSETS[asset[1]]) return send(res, 200, ASSETS[asset[1]], assets[asset[1]], { 'Cache-Control': 'no-cache' })
    }
    if (!rel.startsWith('/api/')) return json(res, 404, { error: { message: `not found: ${rel}` } })
    if (!(await allowed(req))) return unauthorized(res)
    if (method === 'GET') {
      if (rel === '/api/overview') return json(res, 200, api.overview())
      if (rel === '/api/jobs') return json(res, 200, await api.jobs(query))
      const one = /^\/api\/jobs\/([^/]+)$/.exec(rel)
      if (one) return json(res, 200, await api.job(decodeURIComponent(one[1])))
      if (rel === '/api/schedules') return json(res, 200, api.schedules())
      if (rel === '/api/alerts') return json(res, 200, api.alerts())
      if (rel === '/api/events') return live.open(req, res)
      return json(res, 404, { error: { message: `not found: ${rel}` } })
    }
    if (method !== 'POST') return json(res, 405, { error: { message: `method ${method} not allowed` } }, { Allow: 'GET, POST' })
    const action = actions.find(([re]) => re.test(rel))
    if (!action) return json(res, 404, { error: { message: `no action at ${rel}` } })
    if (opts.readOnly) return json(res, 403, { error: { code: 'ERR_READ_ONLY', message: 'the dashboard is read-only' } })
    const token = req.headers['x-csrf-token']
    if (typeof token !== 'string' || !safeEqual(token, csrf)) {
      return json(res, 403, { error: { code: 'ERR_CSRF', message: 'missing or wrong CSRF token (header x-csrf-token)' } })
    }
    const body = await readBody(req)
    const id = decodeURIComponent(action[0].exec(rel)[1])
    const ok = await action[1](id, body)
    if (!ok) return json(res, 409, { ok: false, error: { message: action[2] } })
    live.poke()
    return json(res, 200, { ok: true })
  }

  function unauthorized(res) {
    const extra = typeof opts.auth === 'string' ? { 'WWW-Authenticate': 'Bearer realm="jobwerk"' } : undefined
    json(res, 401, { error: { code: 'ERR_UNAUTHORIZED', message: 'not authorized' } }, extra)
  }

  function fail(res, e) {
    if (e instanceof HttpError) return json(res, e.status, { error: { message: e.message, field: e.field } })
    if (e instanceof URIError) return json(res, 400, { error: { message: 'malformed percent-encoding in the path' } })
    const code = e && typeof e.code === 'string' ? e.code : undefined
    const message = e && typeof e.message === 'string' ? e.message : String(e)
    if (code === 'ERR_INVALID_ARGUMENT' || code === 'ERR_INVALID_CRON' || code === 'ERR_INVALID_SCHEDULE') {
      return json(res, 400, { error: { code, message, field: e.field } })
    }
    if (!res.headersSent) return json(res, 500, { error: { code, message } })
    res.destroy()
  }

  function handler(req, res, next) {
    let url
    try {
      // Express mounts (app.use('/jobs', handler)) strip the mount path from req.url: originalUrl keeps it.
      const raw = typeof req.originalUrl === 'string' ? req.originalUrl : req.url
      url = new URL(raw, 'http://dashboard.local')
    } catch {
      return json(res, 400, { error: { message: 'bad request URL' } })
    }
    const p = url.pathname
    const inside = opts.base === '' || p === opts.base || p.startsWith(`${opts.base}/`)
    if (!inside) {
      if (typeof next === 'function') return next()
      return json(res, 404, { error: { message: 'not found' } })
    }
    if (opts.base !== '' && p === opts.base) {
      return send(res, 308, 'text/plain; charset=utf-8', '', { Location: `${opts.base}/${url.search}` })
    }
    const rel = p.slice(opts.base.length)
    Promise.resolve()
      .then(() => route(req, res, rel, url.searchParams))
      .catch((e) => fail(res, e))
  }
  handler.csrfToken = csrf
  handler.close = () => live.close()
  return handler
}

/**
 * Live updates: one timer while at least one page listens, sending a `change`
 * event when the counts, the workers or the alerts changed (never one event
 * per job), and every 15 s a comment so proxies keep the stream open.
 */
function liveFeed(service, intervalMs) {
  const clients = new Set()
  let timer = null
  let last = ''
  let quiet = 0
  const snapshot = () => {
    try {
      const s = service.getQueueStatistics()
      const alerts = service.getActiveAlerts()
      const sched = service.getScheduledJobs()
      return JSON.stringify([
        s.waiting, s.pending, s.running, s.completed, s.failed, s.timeout, s.cancelled, s.activeWorkers,
        alerts.map((a) => `${a.id}:${a.acknowledgedAt || ''}`).join(','),
        sched.map((x) => `${x.id}:${x.enabled}:${x.runCount}:${x.lastStatus}`).join(','),
      ])
    } catch (e) {
      return `error:${e && e.message}`
    }
  }
  const tick = () => {
    const now = snapshot()
    quiet++
    if (now !== last) {
      last = now
      quiet = 0
      for (const res of clients) res.write(`event: change\ndata: ${Date.now()}\n\n`)
    } else if (quiet * intervalMs >= 15000) {
      quiet = 0
      for (const res of clients) res.write(': keep-alive\n\n')
    }
  }
  return {
    open(req, res) {
      res.statusCode = 200
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8')
      res.setHeader('Cache-Control', 'no-store')
      res.setHeader('Connection', 'keep-alive')
      res.setHeader('X-Accel-Buffering', 'no')
      res.setHeader('Content-Security-Policy', CSP)
      res.write(`retry: 3000\nevent: hello\ndata: ${Date.now()}\n\n`)
      clients.add(res)
      if (timer === null) {
        last = snapshot()
        timer = setInterval(tick, intervalMs)
        timer.unref()
      }
      const done = () => {
        clients.delete(res)
        if (clients.size === 0 && timer !== null) {
          clearInterval(timer)
          timer = null
        }
      }
      req.on('close', done)
      res.on('close', done)
    },
    poke() {
      if (timer !== null) tick()
    },
    count: () => clients.size,
    close() {
      for (const res of clients) res.end()
      clients.clear()
      if (timer !== null) clearInterval(timer)
      timer = null
    },
  }
}

module.exports = { createDashboard, redactValue }
