'use strict'
// The Strapi plugin on a PostgreSQL app (strapi/storage.js, and the reads
// that are Promises there): which storage the plugin chooses for each shape
// of Strapi's database config (no server needed), then, against the server
// at 127.0.0.1:5432 (user postgres, trust), a fake Strapi whose database is
// a fresh PostgreSQL database: jobwerk opens the schema `jobwerk` in it, runs
// jobs, and the routes and the dashboard answer from it. Those tests are
// skipped, with the reason printed, when no server answers. The real Strapi
// app on PostgreSQL, two instances, is `npm run test:strapi`.

const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { Client } = require('pg')
const { SERVER, pgSuite } = require('./helpers/pg')

const ROOT = path.join(__dirname, '..')
const plugin = require(path.join(ROOT, 'strapi-server.js'))
const { postgresStorage, chooseStorage } = require(path.join(ROOT, 'strapi', 'storage.js'))
const { createDashboard } = require(path.join(ROOT, 'dashboard', 'index.js'))

// No PG* variables, no OS user: what the config alone gives.
const NO_ENV = {}

describe("PostgreSQL storage from Strapi's database config", () => {
  test("Strapi's template with DATABASE_URL unset: host, port (a string from env), database, user, password; the app's schema is not jobwerk's", () => {
    const { storage, notes } = postgresStorage(
      { connectionString: undefined, host: 'db.internal', port: '5433', database: 'strapi', user: 'strapi', password: 's3cret', ssl: false, schema: 'public' },
      NO_ENV,
    )
    expect(storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: 'db.internal', port: 5433, database: 'strapi', user: 'strapi', password: 's3cret', ssl: false })
    expect(notes).toEqual([])
  })

  test('a connection string (DATABASE_URL): its parts, %-escapes decoded, sslmode=require is TLS', () => {
    const { storage, notes } = postgresStorage('postgres://us%40er:p%3A%2Fss@db.example.com:6543/my%20app?sslmode=require', NO_ENV)
    expect(storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: 'db.example.com', port: 6543, user: 'us@er', password: 'p:/ss', database: 'my app', ssl: true })
    expect(notes).toEqual([])
  })

  test("connectionString beside the object's fields: the string's values win, the object fills the rest (as pg reads it)", () => {
    const { storage } = postgresStorage({ connectionString: 'postgresql://app@primary:5432/prod', host: 'localhost', database: 'strapi', user: 'strapi', password: 'from-object', ssl: true }, NO_ENV)
    expect(storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: 'primary', port: 5432, user: 'app', password: 'from-object', database: 'prod', ssl: true })
  })

  test.each([
    ['?sslmode=disable', false],
    ['?sslmode=prefer', true],
    ['?sslmode=verify-full', true],
    ['?ssl=true', true],
    ['?ssl=1', true],
    ['?ssl=false', false],
    ['', false],
  ])('connection string %s: ssl %s', (query, ssl) => {
    expect(postgresStorage(`postgres://u@h/d${query}`, NO_ENV).storage.ssl).toBe(ssl)
  })

  test('ssl: true, or an object: TLS; rejectUnauthorized, ca, cert, key passed on; the rest noted, never dropped silently', () => {
    expect(postgresStorage({ host: 'h', ssl: true }, NO_ENV)).toEqual({ storage: expect.objectContaining({ ssl: true }), notes: [] })
    // The template's object with DATABASE_SSL=true and nothing else set.
    const template = { rejectUnauthorized: true, ca: undefined, key: undefined, cert: undefined, capath: undefined, cipher: undefined }
    expect(postgresStorage({ host: 'h', ssl: template }, NO_ENV)).toEqual({ storage: expect.objectContaining({ ssl: true }), notes: [] })
    // Heroku: encrypted, not verified.
    expect(postgresStorage({ host: 'h', ssl: { rejectUnauthorized: false } }, NO_ENV)).toEqual({ storage: expect.objectContaining({ ssl: { rejectUnauthorized: false } }), notes: [] })
    expect(postgresStorage({ host: 'h', ssl: 'no-verify' }, NO_ENV).storage.ssl).toEqual({ rejectUnauthorized: false })
    // RDS: its CA bundle (a string, a Buffer, or an array of them); a client certificate.
    const CA = '-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n'
    const ca = postgresStorage({ host: 'h', ssl: { ca: [CA, Buffer.from(CA)], cert: Buffer.from('C'), key: 'K', rejectUnauthorized: true } }, NO_ENV)
    expect(ca).toEqual({ storage: expect.objectContaining({ ssl: { ca: `${CA}\n${CA}`, cert: 'C', key: 'K' } }), notes: [] })
    const pfx = postgresStorage({ host: 'h', ssl: { pfx: 'x', passphrase: 'secret', servername: 'db' } }, NO_ENV)
    expect(pfx.storage.ssl).toBe(true)
    expect(pfx.notes).toEqual([expect.stringMatching(/connection\.ssl sets pfx, passphrase, servername, which jobwerk does not use/)])
    expect(pfx.notes[0]).not.toMatch(/secret/)
    expect(() => postgresStorage({ host: 'h', ssl: { ca: 42 } }, NO_ENV)).toThrow(/connection\.connection\.ssl\.ca must be PEM text/)
    expect(postgresStorage('postgres://u@h/d?sslmode=no-verify', NO_ENV)).toEqual({ storage: expect.objectContaining({ ssl: { rejectUnauthorized: false } }), notes: [] })
    expect(postgresStorage('postgres://u@h/d?sslmode=require&uselibpqcompat=true', NO_ENV).notes).toEqual([expect.stringMatching(/uselibpqcompat=true: jobwerk reads sslmode=require as node-postgres does/)])
    expect(postgresStorage('postgres://u@h/d?application_name=strapi&options=x', NO_ENV).notes).toEqual([expect.stringMatching(/application_name, options are not used/)])
  })

  test("a connection URL's sslrootcert / sslcert / sslkey files are read, as pg reads them", () => {
    const fs = require('node:fs')
    const os = require('node:os')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jw-tls-'))
    try {
      fs.writeFileSync(path.join(dir, 'ca.pem'), 'CA-PEM')
      fs.writeFileSync(path.join(dir, 'c.pem'), 'CERT-PEM')
      fs.writeFileSync(path.join(dir, 'k.pem'), 'KEY-PEM')
      const q = `sslrootcert=${path.join(dir, 'ca.pem')}&sslcert=${path.join(dir, 'c.pem')}&sslkey=${path.join(dir, 'k.pem')}`
      expect(postgresStorage(`postgres://u@h/d?sslmode=verify-full&${q}`, NO_ENV)).toEqual({ storage: expect.objectContaining({ ssl: { ca: 'CA-PEM', cert: 'CERT-PEM', key: 'KEY-PEM' } }), notes: [] })
      expect(postgresStorage(`postgres://u@h/d?sslmode=no-verify&sslrootcert=${path.join(dir, 'ca.pem')}`, NO_ENV).storage.ssl).toEqual({ rejectUnauthorized: false, ca: 'CA-PEM' })
      expect(() => postgresStorage(`postgres://u@h/d?sslrootcert=${path.join(dir, 'missing.pem')}`, NO_ENV)).toThrow(/sslrootcert=.*missing\.pem, which cannot be read \(ENOENT\)/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a key=value connection string keeps its sslmode (jobwerk reads it); the object adds only certificates', () => {
    expect(postgresStorage({ connectionString: 'host=h sslmode=verify-ca', ssl: { rejectUnauthorized: false, ca: 'CA' } }, NO_ENV)).toEqual({
      storage: { type: 'postgres', schema: 'jobwerk', connectionString: 'host=h sslmode=verify-ca', ssl: { ca: 'CA' } },
      notes: [expect.stringMatching(/rejectUnauthorized is false, but the connection string's sslmode decides/)],
    })
    expect(postgresStorage({ connectionString: 'host=h', ssl: { rejectUnauthorized: false } }, NO_ENV).storage.ssl).toEqual({ rejectUnauthorized: false })
  })

  test('Unix sockets and IPv6 hosts', () => {
    expect(postgresStorage('postgres:///strapi?host=/var/run/postgresql', NO_ENV).storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: '/var/run/postgresql', database: 'strapi', ssl: false })
    expect(postgresStorage('postgresql://[::1]:5432/db', NO_ENV).storage).toEqual(expect.objectContaining({ host: '::1', port: 5432, database: 'db' }))
  })

  test("a libpq key=value string goes to jobwerk's driver as it is (with the object's password)", () => {
    expect(postgresStorage({ connectionString: 'host=db dbname=app user=u', password: 'pw' }, NO_ENV).storage).toEqual({ type: 'postgres', schema: 'jobwerk', connectionString: 'host=db dbname=app user=u', password: 'pw' })
  })

  test("pg's fallbacks: the PG* variables, then the OS user, for what the config leaves out", () => {
    const env = { PGHOST: 'envhost', PGPORT: '5999', PGUSER: 'envuser', PGPASSWORD: 'envpw', PGDATABASE: 'envdb', USER: 'os' }
    expect(postgresStorage({}, env).storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: 'envhost', port: 5999, user: 'envuser', password: 'envpw', database: 'envdb', ssl: false })
    expect(postgresStorage({ host: 'h', user: 'strapi' }, env).storage).toEqual(expect.objectContaining({ host: 'h', user: 'strapi', database: 'envdb' }))
    expect(postgresStorage({ host: 'h' }, process.platform === 'win32' ? { USERNAME: 'os' } : { USER: 'os' }).storage.user).toBe('os')
  })

  test.each([
    [{ host: 'h', port: 'abc' }, /connection\.connection\.port must be a port/],
    [{ host: 'h', port: 70000 }, /connection\.connection\.port must be a port/],
    [{ host: 'h', password: () => 'secret' }, /connection\.connection\.password is a function/],
    [{ host: 42 }, /connection\.connection\.host must be a string/],
    ['postgres://u@h/d?sslmode=bogus', /sslmode=bogus/],
    [['postgres://h/d'], /must be a connection string or an object/],
  ])('%j: ERR_INVALID_CONFIG naming the key, and how to configure it explicitly', (connection, message) => {
    let err
    try {
      postgresStorage(connection, NO_ENV)
    } catch (e) {
      err = e
    }
    expect(err && err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toMatch(message)
    expect(err.message).toMatch(/storage: \{ type: 'postgres', \.\.\. \} explicitly/)
  })

  test("the password never reaches the reason or the notes", () => {
    const r = chooseStorage('/app', { client: 'postgres', connection: 'postgres://u:hunter2@h/d?application_name=x' }, undefined, NO_ENV)
    expect(JSON.stringify([r.reason, r.notes])).not.toMatch(/hunter2/)
  })
})

describe('which storage the plugin chooses', () => {
  const pg = { client: 'postgres', connection: { host: 'db', port: 5432, database: 'app', user: 'strapi', password: 'pw', schema: 'public' } }

  test('a PostgreSQL app: its server and database, schema jobwerk; the reason says every instance shares the queue', () => {
    const r = chooseStorage('/app', pg, undefined, NO_ENV)
    expect(r.storage).toEqual({ type: 'postgres', schema: 'jobwerk', host: 'db', port: 5432, database: 'app', user: 'strapi', password: 'pw', ssl: false })
    expect(r.reason).toMatch(/the app uses PostgreSQL \(postgres\): the app's server and database, jobwerk's own schema and connection pool; every instance of the app on this database shares one queue/)
  })

  test("knex's other names for the client (postgresql, pg) too", () => {
    for (const client of ['postgresql', 'pg']) expect(chooseStorage('/app', { ...pg, client }, undefined, NO_ENV).storage.type).toBe('postgres')
  })

  test("configured storage always wins: sqlite or memory on a PostgreSQL app, PostgreSQL elsewhere", () => {
    expect(chooseStorage('/app', pg, { path: 'data/jobs.db' }, NO_ENV)).toEqual(expect.objectContaining({ storage: { type: 'sqlite', path: path.resolve('/app', 'data/jobs.db') }, reason: 'configured' }))
    expect(chooseStorage('/app', pg, { type: 'memory' }, NO_ENV).storage).toEqual({ type: 'memory' })
    const other = { type: 'postgres', connectionString: 'postgres://jobs@elsewhere/jobs', schema: 'queue' }
    expect(chooseStorage('/app', pg, other, NO_ENV)).toEqual({ storage: other, reason: 'configured', notes: [] })
    expect(chooseStorage('/app', { client: 'sqlite', connection: { filename: '.tmp/data.db' } }, other, NO_ENV).storage).toEqual(other)
  })

  test("storage: { type: 'postgres' } without connection keys: the app's connection, with the options given", () => {
    const r = chooseStorage('/app', pg, { type: 'postgres', schema: 'queue', poolSize: 4 }, NO_ENV)
    expect(r.storage).toEqual({ type: 'postgres', schema: 'queue', poolSize: 4, host: 'db', port: 5432, database: 'app', user: 'strapi', password: 'pw', ssl: false })
    expect(r.reason).toMatch(/configured, on the app's PostgreSQL connection/)
    expect(() => chooseStorage('/app', { client: 'sqlite', connection: { filename: '.tmp/data.db' } }, { type: 'postgres' }, NO_ENV)).toThrow(/without a connection .* takes the app's, but the app's database client is sqlite/)
  })

  test('MySQL and MariaDB apps: a SQLite file of its own, and the reason says so', () => {
    for (const client of ['mysql', 'mysql2', 'mariadb']) {
      const r = chooseStorage('/app', { client, connection: { host: 'db', database: 'app' } }, undefined, NO_ENV)
      expect(r.storage).toEqual({ type: 'sqlite', path: path.join('/app', '.tmp', 'jobwerk.db') })
      expect(r.reason).toMatch(new RegExp(`the app uses ${client}, which jobwerk does not store in: a SQLite file of its own`))
    }
  })

  test("the validator takes storage.type 'postgres' and checks its options", () => {
    expect(() => plugin.config.validator({ ...plugin.config.default, storage: { type: 'postgres' } })).not.toThrow()
    expect(() => plugin.config.validator({ ...plugin.config.default, storage: { type: 'postgres', schema: 'q', poolSize: 3 } })).not.toThrow()
    expect(() => plugin.config.validator({ storage: { type: 'postgres', poolSize: 0 } })).toThrow(/storage\.poolSize/)
    expect(() => plugin.config.validator({ storage: { type: 'postgres', colour: 'red' } })).toThrow(/storage\.colour is not a PostgreSQL storage option/)
    expect(() => plugin.config.validator({ storage: { type: 'redis' } })).toThrow(/config\.storage\.type: must be 'sqlite', 'memory' or 'postgres'/)
  })
})

// --- on a real server ----------------------------------------------------------

// storage: { type: 'postgres' } without connection keys: the app's connection, jobwerk's pool smaller.
const SMALL_POOL = { storage: { type: 'postgres', poolSize: 3 } }

const started = []
const servers = []
const pg = pgSuite('strapi-postgres.spec.js', {
  prefix: 'jw_strapi_',
  skipped: 'the tests on a server are skipped',
  // Before the app databases are dropped.
  cleanup: async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
    for (const strapi of started.splice(0)) await plugin.destroy({ strapi })
  },
})
const pgTest = pg.test
/** A fresh database (the app's), dropped after the test. */
const database = () => pg.database()

function logger() {
  const lines = []
  const log = {}
  for (const level of ['debug', 'info', 'warn', 'error']) log[level] = (m) => lines.push(`${level}: ${m}`)
  log.lines = lines
  return log
}

/** A Strapi as the plugin sees it, on the given database config; outside any transaction. */
function fakeStrapi(database, pluginConfig = {}) {
  const merged = { ...plugin.config.default, ...pluginConfig, jobsDir: false }
  plugin.config.validator(merged)
  const config = { 'plugin::jobwerk': merged, 'database.connection': database }
  const strapi = {
    dirs: { app: { root: fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-strapi-pg-')) } },
    config: { get: (key) => config[key] },
    log: logger(),
    db: { inTransaction: () => false },
    plugin: (name) => (name === 'jobwerk' ? { service: (s) => (s === 'jobs' ? plugin.services.jobs({ strapi }) : undefined) } : undefined),
  }
  return strapi
}

async function boot(strapi) {
  plugin.register({ strapi })
  started.push(strapi)
  await plugin.bootstrap({ strapi })
  return strapi.plugin('jobwerk').service('jobs')
}

async function until(fn, what, timeout = 30000) {
  const t0 = Date.now()
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() - t0 > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function call(strapi, controller, action, params = {}) {
  const ctx = { params, status: 200, body: undefined, type: undefined }
  await plugin.controllers[controller]({ strapi })[action](ctx)
  return ctx
}

describe('a PostgreSQL app, on the server', () => {
  pgTest('no storage configured: jobwerk opens the schema jobwerk in the app\'s database, logs why, runs jobs; the routes await the reads', async () => {
    const db = await database()
    // DATABASE_URL-style: the app's connection as a string.
    const strapi = fakeStrapi({ client: 'postgres', connection: { connectionString: `postgres://postgres@127.0.0.1:5432/${db}`, schema: 'public' } })
    const jobs = await boot(strapi)
    expect(strapi.log.lines).toContain(
      `info: jobwerk: storage postgres at 127.0.0.1:5432/${db} as postgres, schema jobwerk (the app uses PostgreSQL (postgres): the app's server and database, jobwerk's own schema and connection pool; every instance of the app on this database shares one queue)`,
    )
    expect(jobs.getSystemStatus().storage).toEqual(expect.objectContaining({ type: 'postgres', state: 'open' }))
    jobs.registerCalculation({ name: 'recalc', calculate: ({ n }) => n * 2 })
    const id = jobs.enqueue('recalc', { n: 21 })
    expect(typeof id).toBe('string')
    await until(async () => {
      const s = await jobs.getJobStatus(id)
      return s && s.status === 'completed'
    }, `job ${id} to complete`)
    // The job is in the app's database, schema jobwerk.
    const app = new Client({ ...SERVER, database: db })
    await app.connect()
    try {
      const tables = await app.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'jobwerk'")
      expect(tables.rows.length).toBeGreaterThan(0)
    } finally {
      await app.end()
    }
    const found = await call(strapi, 'jobs', 'findOne', { id })
    expect(found.status).toBe(200)
    expect(found.body).toEqual(expect.objectContaining({ jobId: id, status: 'completed', result: 42 }))
    const missing = await call(strapi, 'jobs', 'findOne', { id: 'no-such-job' })
    expect(missing.status).toBe(404)
    expect((await call(strapi, 'statistics', 'find')).body).toEqual(expect.objectContaining({ completed: expect.any(Number) }))
    expect((await call(strapi, 'health', 'find')).status).toBe(200)
  })

  pgTest('two Strapi instances on one app database share one queue: a job added by one is seen by the other', async () => {
    const db = await database()
    const database_ = { client: 'postgres', connection: { host: '127.0.0.1', port: 5432, user: 'postgres', database: db } }
    // The app's connection, a small pool (the shared test server's connections are few).
    const a = fakeStrapi(database_, SMALL_POOL)
    const b = fakeStrapi(database_, SMALL_POOL)
    const ja = await boot(a)
    const jb = await boot(b)
    const ran = []
    for (const [j, who] of [[ja, 'a'], [jb, 'b']]) j.registerCalculation({ name: 'recalc', calculate: ({ n }) => ran.push([who, n]) })
    const ids = []
    for (let n = 0; n < 20; n++) ids.push((n % 2 === 0 ? ja : jb).enqueue('recalc', { n }))
    await until(async () => {
      const page = await jb.getJobs({ status: 'completed', name: 'recalc', limit: 100 })
      return page.jobs.length === 20
    }, 'the 20 jobs to complete')
    // Each ran once, in one of the two.
    expect(ran.map(([, n]) => n).sort((x, y) => x - y)).toEqual([...Array(20).keys()])
    // One instance reads the other's job.
    const s = await ja.getJobStatus(ids[1])
    expect(s).toEqual(expect.objectContaining({ jobId: ids[1], status: 'completed' }))
  })

  pgTest('the dashboard on PostgreSQL: the job list, a job, retry and cancel are awaited', async () => {
    const db = await database()
    const strapi = fakeStrapi({ client: 'postgres', connection: `postgres://postgres@127.0.0.1:5432/${db}` }, SMALL_POOL)
    const jobs = await boot(strapi)
    jobs.registerCalculation({ name: 'fails', retries: 0, calculate: () => { throw new Error('boom') } })
    jobs.registerCalculation({ name: 'later', calculate: () => 1 })
    const failed = jobs.enqueue('fails', { x: 1 })
    const waiting = jobs.addCalculationJob('later', null, null, { delay: 3600000 })
    await until(async () => (await jobs.getJobStatus(failed))?.status === 'failed', 'the job to fail')
    const token = 'dashboard-token-0123456789'
    const dash = createDashboard(jobs, { basePath: '/admin/jobwerk', auth: token })
    const server = http.createServer(dash)
    servers.push(server)
    await new Promise((r) => server.listen(0, '127.0.0.1', r))
    const base = `http://127.0.0.1:${server.address().port}/admin/jobwerk`
    const headers = { authorization: `Bearer ${token}` }
    const list = await (await fetch(`${base}/api/jobs?name=fails`, { headers })).json()
    expect(list.jobs.map((j) => [j.jobId, j.status])).toEqual([[failed, 'failed']])
    const byId = await (await fetch(`${base}/api/jobs?id=${failed}`, { headers })).json()
    expect(byId.jobs.map((j) => j.jobId)).toEqual([failed])
    const detail = await (await fetch(`${base}/api/jobs/${failed}`, { headers })).json()
    expect(detail.job).toEqual(expect.objectContaining({ jobId: failed, status: 'failed', data: { x: 1 } }))
    expect((await fetch(`${base}/api/jobs/no-such-job`, { headers })).status).toBe(404)
    const csrf = dash.csrfToken
    const post = (url) => fetch(`${base}${url}`, { method: 'POST', headers: { ...headers, 'x-csrf-token': csrf } })
    expect((await post(`/api/jobs/${failed}/retry`)).status).toBe(200)
    // Retried: it ran again and failed again (its errors say both attempts).
    await until(async () => {
      const s = await jobs.getJobStatus(failed)
      return s.status === 'failed' && s.errors.length === 2
    }, 'the retried job to fail again')
    expect((await post(`/api/jobs/${waiting}/cancel`)).status).toBe(200)
    expect((await jobs.getJobStatus(waiting)).status).toBe('cancelled')
    // Refused actions are 409s, not a 200 for a Promise.
    expect((await post(`/api/jobs/${waiting}/cancel`)).status).toBe(409)
    expect((await post('/api/jobs/no-such-job/retry')).status).toBe(409)
  })

  pgTest("an unreachable PostgreSQL does not stop the boot: logged; each enqueue() is counted as lost (ERR_STORAGE), never an id for a job nobody stores", async () => {
    const strapi = fakeStrapi({ client: 'postgres', connection: { host: '127.0.0.1', port: 1, user: 'postgres', database: 'test' } }, { storage: { type: 'postgres', connectTimeoutMs: 2000 } })
    const jobs = await boot(strapi)
    expect(jobs.startError && jobs.startError.code).toBe('ERR_STORAGE')
    expect(strapi.log.lines.some((l) => /^error: jobwerk: the service failed to start \(ERR_STORAGE: .*127\.0\.0\.1:1/.test(l))).toBe(true)
    jobs.registerCalculation({ name: 'recalc', calculate: () => 1 })
    expect(jobs.enqueue('recalc', null)).toBeNull()
    expect(jobs.getSystemStatus().enqueue).toEqual(expect.objectContaining({ lost: 1, lostByCode: { ERR_STORAGE: 1 } }))
    expect(() => jobs.addCalculationJob('recalc', null)).toThrow(/PostgreSQL storage is not open \(the start failed: .*unreachable/)
  })

  pgTest("the config's cron is scheduled on the open PostgreSQL storage (the bootstrap connects first) and fires", async () => {
    const db = await database()
    const ticks = []
    const strapi = fakeStrapi({ client: 'postgres', connection: `postgres://postgres@127.0.0.1:5432/${db}` }, { ...SMALL_POOL, cron: { tick: { task: () => ticks.push(Date.now()), options: { rule: '* * * * * *' } } } })
    const jobs = await boot(strapi)
    expect(jobs.getScheduledJobs().map((s) => s.id)).toEqual(['cron:tick'])
    await until(() => ticks.length >= 2, 'two ticks of the cron', 15000)
  })
})
