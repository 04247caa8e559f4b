'use strict'
// Helpers for the PostgreSQL specs (__test__/postgres*.spec.js,
// strapi-postgres.spec.js) and their child processes (fixtures/pg-*.js):
// the shared server at 127.0.0.1:5432 (user postgres, database test, trust),
// a fresh schema (or database) per test dropped after it, services, clients
// and child processes that are always stopped, and a TCP proxy to the server
// that can be killed and brought back.
//
// pgSuite() registers the jest hooks: without a server its tests are
// skipped, with the reason printed once. SERVER, pgStorage, ident and
// PgProxy need no jest (the fixtures use pgStorage).

const crypto = require('node:crypto')
const net = require('node:net')
const path = require('node:path')
const { fork } = require('node:child_process')

const ROOT = path.join(__dirname, '..', '..')
const FIXTURES = path.join(__dirname, '..', 'fixtures')

/** The test server: pg's Client options, and jobwerk's storage keys. */
const SERVER = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' }

/** `name` quoted as an SQL identifier. */
function ident(name) {
  return `"${name.replace(/"/g, '""')}"`
}

/** jobwerk's storage config for `schema` on the test server; `extra` adds keys or overrides them. */
function pgStorage(schema, extra = {}) {
  return { type: 'postgres', ...SERVER, schema, ...extra }
}

/**
 * The PostgreSQL part of a spec file, as jest hooks (call it once, at the top
 * level of `file`). Options:
 *   prefix, bytes: schema names are `prefix` + `bytes` random bytes in hex;
 *   timeout:       pg.test's default timeout;
 *   skipped:       what the skip message says is skipped;
 *   cleanup:       the spec's own per-test cleanup, run first in afterEach
 *                  (before the services stop and the schemas are dropped).
 * Returns `pg`:
 *   pg.available   a server answered (and pg.skip was not called);
 *   pg.admin       a pg Client connected as postgres to database test;
 *   pg.schemas     this test's schemas so far, in the order made;
 *   pg.test(name, fn, timeout)  a test that needs the server (passes
 *                  without checking anything when there is none);
 *   pg.skip(reason)  skips the file's pg.tests, printing why;
 *   pg.schema(prefix)  a fresh schema name, dropped after the test;
 *   pg.database(prefix)  a fresh database (created), dropped after the test;
 *   pg.open(schema, config)  a service on `schema` (config.storage adds
 *                  storage keys), stopped after the test;
 *   pg.track(service)  stops `service` after the test;
 *   pg.client()    another connected pg Client, ended after the test;
 *   pg.fork(script, args, { onMessage, label })  fixtures/<script> as a
 *                  child process on the IPC channel, killed after the test;
 *                  child.next(type) resolves with its next message of that
 *                  type (an 'error' message or an early exit rejects it).
 */
function pgSuite(file, { prefix = 'jw_test_', bytes = 6, timeout = 60000, skipped = 'skipped', cleanup } = {}) {
  const { Client } = require('pg')
  let admin = null
  let skip = null
  const schemas = []
  const databases = []
  const services = []
  const clients = []
  const children = []

  const skipWith = (reason) => {
    skip = reason
    console.warn(`${file}: ${skipped}, ${reason}`)
  }

  beforeAll(async () => {
    const c = new Client({ ...SERVER, connectionTimeoutMillis: 3000 })
    try {
      await c.connect()
      admin = c
    } catch (e) {
      // CI must run them: a server that is down there fails the file
      // instead of passing it with nothing checked.
      if (process.env.CI) throw new Error(`no PostgreSQL at ${SERVER.host}:${SERVER.port} (${e.message}) and CI is set: the PostgreSQL tests must run in CI`)
      skipWith(`no PostgreSQL at ${SERVER.host}:${SERVER.port} (${e.message})`)
    }
  })
  afterAll(async () => {
    if (admin !== null) await admin.end()
  })
  afterEach(async () => {
    if (cleanup) await cleanup()
    for (const c of clients.splice(0)) await c.end().catch(() => {})
    for (const s of services.splice(0)) await s.stop({ timeoutMs: 2000 })
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((resolve) => c.once('exit', resolve))
        c.kill('SIGKILL')
        await gone
      }
    }
    for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS ${ident(s)} CASCADE`)
    for (const d of databases.splice(0)) await admin.query(`DROP DATABASE IF EXISTS ${ident(d)} WITH (FORCE)`)
  })

  const track = (s) => {
    services.push(s)
    return s
  }

  return {
    get available() {
      return admin !== null && skip === null
    },
    get admin() {
      return admin
    },
    get schemas() {
      return schemas
    },
    skip: skipWith,
    test(name, fn, ms = timeout) {
      test(
        name,
        async () => {
          if (admin === null || skip !== null) return
          await fn()
        },
        ms,
      )
    },
    schema(p = prefix) {
      const s = `${p}${crypto.randomBytes(bytes).toString('hex')}`
      schemas.push(s)
      return s
    },
    async database(p = prefix) {
      const d = `${p}${crypto.randomBytes(bytes).toString('hex')}`
      await admin.query(`CREATE DATABASE ${ident(d)}`)
      databases.push(d)
      return d
    },
    open(schema, config = {}) {
      const { JobManagementService } = require(ROOT)
      const { storage, ...rest } = config
      return track(new JobManagementService({ storage: pgStorage(schema, storage), ...rest }))
    },
    track,
    async client() {
      const c = new Client(SERVER)
      await c.connect()
      clients.push(c)
      return c
    },
    fork(script, args, { onMessage = () => {}, label } = {}) {
      const c = fork(path.join(FIXTURES, script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      children.push(c)
      const name = label ?? `child ${c.pid}`
      const waiters = []
      c.on('message', (m) => {
        onMessage(m)
        for (const w of waiters.splice(0)) {
          if (m.type === 'error') w.reject(new Error(`${name}: ${m.message}`))
          else if (m.type === w.type) w.resolve(m)
          else waiters.push(w)
        }
      })
      c.on('exit', (code, signal) => {
        for (const w of waiters.splice(0)) w.reject(new Error(`${name} exited (${code ?? signal}) before '${w.type}'`))
      })
      c.next = (type) => new Promise((resolve, reject) => waiters.push({ type, resolve, reject }))
      return c
    },
  }
}

/** A TCP proxy to the test server that can be killed and brought back on its port. */
class PgProxy {
  constructor() {
    this.port = 0
    this.server = null
    this.sockets = new Set()
    this.connections = 0
  }

  /** Listens (on `this.port`, or a free one the first time). */
  up() {
    return new Promise((resolve, reject) => {
      const server = net.createServer((client) => {
        this.connections++
        const upstream = net.connect(SERVER.port, SERVER.host)
        for (const s of [client, upstream]) {
          this.sockets.add(s)
          s.on('close', () => this.sockets.delete(s))
          s.on('error', () => {
            client.destroy()
            upstream.destroy()
          })
        }
        client.pipe(upstream)
        upstream.pipe(client)
      })
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => {
        this.port = server.address().port
        this.server = server
        resolve()
      })
    })
  }

  /** The outage: stops listening and destroys every connection. */
  down() {
    const server = this.server
    this.server = null
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    return new Promise((resolve) => (server === null ? resolve() : server.close(() => resolve())))
  }
}

module.exports = {
  SERVER,
  ident,
  pgStorage,
  pgSuite,
  PgProxy,
}
