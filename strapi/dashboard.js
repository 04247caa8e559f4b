'use strict'
// The dashboard inside a Strapi app: plugin config
//   dashboard: { enabled: true, path: '/admin/jobwerk', token: env('JOBWERK_DASHBOARD_TOKEN'), readOnly, redact }
// mounts createDashboard() on Strapi's own server (a Koa middleware added at
// the plugin's register, so it runs before Strapi's body parser, session and
// router: the admin panel's `/admin/*` route never sees its requests).
//
// The gate is the dashboard's own: a bearer token from the config (or an
// `auth(req)` function). Not Strapi's admin login: the admin panel keeps its
// JWT in the browser's storage and sends it as a header from its own fetches,
// so a page opened at a URL carries none. A browser opens
// `<path>/?token=<token>` once; that sets an HttpOnly, SameSite=Strict cookie
// for the path and drops the token from the address.

const { createDashboard } = require('../dashboard/index.js')

const DEFAULT_PATH = '/admin/jobwerk'
const MIN_TOKEN = 16

// The mounted dashboard per Strapi instance (closed at destroy).
const mounted = new WeakMap()

/** The dashboard's settings with their defaults (the config was validated). */
function settings(config) {
  const d = config !== null && typeof config === 'object' ? config : {}
  return {
    enabled: d.enabled === true,
    path: typeof d.path === 'string' ? d.path.replace(/\/+$/, '') : DEFAULT_PATH,
    gate: typeof d.auth === 'function' ? d.auth : d.token,
    gateKind: typeof d.auth === 'function' ? 'auth function' : 'bearer token',
    readOnly: d.readOnly === true,
    redact: Array.isArray(d.redact) ? d.redact : [],
  }
}

/**
 * Mounts the dashboard on `strapi.server` when `dashboard.enabled`; returns
 * the handler, or null when it is not enabled (or there is no server).
 */
function mountDashboard(strapi, service, config) {
  const s = settings(config)
  if (!s.enabled) return null
  const server = strapi.server
  if (server === undefined || server === null || typeof server.use !== 'function') {
    service._log('warn', 'jobwerk: dashboard.enabled, but this Strapi has no server to mount it on')
    return null
  }
  const dashboard = createDashboard(service, { basePath: s.path, auth: s.gate, readOnly: s.readOnly, redact: s.redact })
  const base = s.path
  server.use((ctx, next) => {
    const p = ctx.path
    if (p !== base && !p.startsWith(`${base}/`)) return next()
    // The handler writes the response itself.
    ctx.respond = false
    dashboard(ctx.req, ctx.res)
    return undefined
  })
  mounted.set(strapi, dashboard)
  service._log('info', `jobwerk: dashboard at ${base}/ (gate: ${s.gateKind}${s.readOnly ? ', read-only' : ''})`)
  return dashboard
}

/** Ends the dashboard's live streams (so Strapi's server can close). */
function closeDashboard(strapi) {
  const d = mounted.get(strapi)
  if (d === undefined) return
  mounted.delete(strapi)
  d.close()
}

/**
 * Checks `config.dashboard`; throws `configError(key, message)` naming the
 * key of a bad value. Enabled without a gate (token or auth) is refused.
 */
function validateDashboard(d, configError) {
  if (d === undefined || d === null) return
  if (typeof d !== 'object' || Array.isArray(d)) throw configError('dashboard', `must be an object { enabled, path, token, readOnly, redact }, got ${Array.isArray(d) ? 'an array' : typeof d}`)
  const known = ['enabled', 'path', 'token', 'auth', 'readOnly', 'redact']
  for (const k of Object.keys(d)) if (!known.includes(k)) throw configError(`dashboard.${k}`, `unknown key (known: ${known.join(', ')})`)
  if (d.enabled !== undefined && typeof d.enabled !== 'boolean') throw configError('dashboard.enabled', `must be true or false, got ${typeof d.enabled}`)
  if (d.readOnly !== undefined && typeof d.readOnly !== 'boolean') throw configError('dashboard.readOnly', `must be true or false, got ${typeof d.readOnly}`)
  const p = d.path
  if (p !== undefined) {
    if (typeof p !== 'string' || !/^\/[A-Za-z0-9._~\-/]*$/.test(p) || p.replace(/\/+$/, '') === '') {
      throw configError('dashboard.path', `must be a path such as '${DEFAULT_PATH}' (letters, digits, '-', '_', '.', '~', '/'), got ${JSON.stringify(p)}`)
    }
    const clean = p.replace(/\/+$/, '')
    for (const taken of ['/api', '/admin', '/_health', '/uploads']) {
      if (clean === taken || (taken !== '/admin' && clean.startsWith(`${taken}/`))) {
        throw configError('dashboard.path', `${JSON.stringify(p)} is Strapi's own (${taken}); use e.g. '${DEFAULT_PATH}'`)
      }
    }
  }
  if (d.redact !== undefined && (!Array.isArray(d.redact) || !d.redact.every((k) => typeof k === 'string' && k.length > 0))) {
    throw configError('dashboard.redact', 'must be an array of key names')
  }
  if (d.auth !== undefined && d.auth !== null && typeof d.auth !== 'function') throw configError('dashboard.auth', `must be a function (req) => boolean | Promise<boolean>, got ${typeof d.auth}`)
  const hasAuth = typeof d.auth === 'function'
  const t = d.token
  const hasToken = t !== undefined && t !== null && t !== ''
  if (hasToken && (typeof t !== 'string' || t.length < MIN_TOKEN)) {
    throw configError('dashboard.token', `must be a secret of at least ${MIN_TOKEN} characters (e.g. env('JOBWERK_DASHBOARD_TOKEN')), got ${typeof t === 'string' ? `${t.length} characters` : typeof t}`)
  }
  if (hasToken && hasAuth) throw configError('dashboard.token', 'give token or auth, not both')
  if (d.enabled === true && !hasToken && !hasAuth) {
    throw configError('dashboard.token', `the dashboard is enabled without a gate: set token (at least ${MIN_TOKEN} characters, e.g. env('JOBWERK_DASHBOARD_TOKEN')) or auth: (req) => boolean`)
  }
}

module.exports = { mountDashboard, closeDashboard, validateDashboard, DEFAULT_PATH }
