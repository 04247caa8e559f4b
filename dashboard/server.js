'use strict'

// The standalone dashboard server: `service.startDashboard()` and `npx jobwerk dashboard`.

const http = require('node:http')
const { createDashboard } = require('./index.js')

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

function invalid(field, message) {
  const e = new Error(`startDashboard(options): ${message}`)
  e.code = 'ERR_INVALID_ARGUMENT'
  e.field = field
  return e
}

/**
 * Serves the dashboard on its own HTTP server. Listens on loopback unless
 * `host` says otherwise, which needs a `token` (bearer, or `?token=` once in
 * the browser). Resolves `{ url, port, host, close() }`.
 */
async function startDashboard(service, options) {
  const o = options === undefined || options === null ? {} : options
  if (typeof o !== 'object' || Array.isArray(o)) throw invalid('options', 'options must be an object { port, host, token, basePath, readOnly, redact }')
  const { port = 0, host = '127.0.0.1', token, ...rest } = o
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid('port', `port must be an integer from 0 to 65535, got ${String(port)}`)
  if (typeof host !== 'string' || host.length === 0) throw invalid('host', 'host must be a host name or address')
  if (token !== undefined && (typeof token !== 'string' || token.length < 8)) throw invalid('token', 'token must be a string of at least 8 characters')
  if (!LOOPBACK.has(host) && token === undefined && rest.auth === undefined) {
    throw invalid('host', `refusing to listen on ${host} (not loopback) without a token: pass { token } (or auth)`)
  }
  if (token !== undefined && rest.auth !== undefined) throw invalid('auth', 'pass either token or auth, not both')
  const handler = createDashboard(service, { ...rest, auth: token !== undefined ? token : rest.auth })
  const server = http.createServer(handler)
  await new Promise((resolve, reject) => {
    server.once('error', (e) => {
      const err = new Error(`startDashboard: cannot listen on ${host}:${port}: ${e.message}`)
      err.code = 'ERR_DASHBOARD_LISTEN'
      err.cause = e
      reject(err)
    })
    server.listen(port, host, resolve)
  })
  const addr = server.address()
  const shown = addr.family === 'IPv6' || addr.family === 6 ? `[${addr.address}]` : addr.address
  const base = rest.basePath && rest.basePath !== '/' ? rest.basePath.replace(/\/+$/, '') : ''
  return {
    url: `http://${shown}:${addr.port}${base}/`,
    port: addr.port,
    host: addr.address,
    server,
    close() {
      handler.close()
      return new Promise((resolve) => {
        server.close(() => resolve())
        if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
      })
    },
  }
}

module.exports = { startDashboard }
