'use strict'
// PostgreSQL over TLS, for real. The shared server speaks no TLS (and is not
// ours to reconfigure), so each run puts its own TLS-terminating proxy in
// front of it: the client's 8-byte SSLRequest is answered 'S', the socket
// upgraded with tls.TLSSocket (a test CA's server certificate, made here
// with `openssl`, valid for `localhost` only), and the plaintext piped to
// 127.0.0.1:5432. jobwerk's driver then does a real TLS handshake and runs
// jobs over it. Skipped, with the reason printed, without a server or
// without openssl.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const tls = require('node:tls')
const { JobManagementService } = require('../index.js')
const { SERVER, pgSuite } = require('./helpers/pg')

const SSL_REQUEST = 80877103

const pg = pgSuite('postgres-tls.spec.js', { prefix: 'jw_tls_' })
let dir = null
let proxy = null
let proxyPort = 0
let handshakes = 0
const open = new Set() // the proxy's sockets, closed at the end
const pems = {}

function openssl(args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA (`name.pem`, `name.key`). */
function makeCa(name) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=jobwerk test ${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
}

beforeAll(async () => {
  if (!pg.available) return
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
  } catch (e) {
    pg.skip(`no openssl to make the test certificates (${e.message})`)
    return
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-tls-'))
  makeCa('ca')
  makeCa('other-ca')
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'])
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'])
  for (const f of ['ca.pem', 'other-ca.pem', 'server.pem', 'server.key']) pems[f] = fs.readFileSync(path.join(dir, f), 'utf8')

  proxy = net.createServer((sock) => {
    open.add(sock)
    sock.on('close', () => open.delete(sock))
    sock.on('error', () => {})
    let buf = Buffer.alloc(0)
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk])
      if (buf.length < 8) return
      sock.off('data', onData)
      sock.pause()
      if (buf.readUInt32BE(0) !== 8 || buf.readUInt32BE(4) !== SSL_REQUEST) {
        sock.destroy() // this proxy speaks TLS only
        return
      }
      sock.write('S')
      const secure = new tls.TLSSocket(sock, { isServer: true, key: pems['server.key'], cert: pems['server.pem'] })
      const upstream = net.connect(SERVER.port, SERVER.host)
      open.add(upstream)
      upstream.on('close', () => open.delete(upstream))
      const close = () => {
        secure.destroy()
        upstream.destroy()
      }
      secure.on('secure', () => handshakes++)
      secure.on('error', close)
      upstream.on('error', close)
      secure.on('close', close)
      upstream.on('close', close)
      secure.pipe(upstream)
      upstream.pipe(secure)
    }
    sock.on('data', onData)
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  proxyPort = proxy.address().port
})

afterAll(async () => {
  if (proxy !== null) {
    for (const sock of open) sock.destroy()
    await new Promise((resolve) => proxy.close(resolve))
  }
  if (dir !== null) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh schema name, dropped after the test. */
const newSchema = () => pg.schema()

/** A service on the proxy (`host` localhost: the name in its certificate); a fresh schema unless given. */
function service(storage, schema = newSchema()) {
  return pg.open(schema, { storage: { host: 'localhost', port: proxyPort, connectTimeoutMs: 10000, ...storage }, queue: { maxWorkers: 4 } })
}

/** Resolves with the jobs' results once all of `ids()` have completed (their 'completed' events). */
function results(s, add) {
  return new Promise((resolve, reject) => {
    const seen = new Set()
    let ids = null
    const check = async () => {
      if (ids === null || !ids.every((id) => seen.has(id))) return
      s.off('completed', onDone)
      try {
        resolve(await Promise.all(ids.map(async (id) => (await s.getJobStatus(id)).result)))
      } catch (e) {
        reject(e)
      }
    }
    const onDone = (e) => {
      seen.add(e.jobId)
      check()
    }
    s.on('completed', onDone)
    ids = add()
    check()
  })
}

/** start()'s error (null when it started). */
async function startError(s) {
  return s.start().then(
    () => null,
    (e) => e,
  )
}

const tlsTest = pg.test

tlsTest('ssl: { ca } with the test CA connects over TLS, and jobs run end to end over it', async () => {
  const before = handshakes
  const s = service({ ssl: { ca: pems['ca.pem'] } })
  expect(await startError(s)).toBe(null)
  expect(handshakes).toBeGreaterThan(before)
  const calc = { name: 'square', calculate: (d) => d.n * d.n }
  s.registerCalculation(calc)
  expect(await results(s, () => [1, 2, 3, 4, 5].map((n) => s.addCalculationJob(calc, { n })))).toEqual([1, 4, 9, 16, 25])
  await s.flush()
  // Stored through the proxy: the rows are on the server.
  const { rows } = await pg.admin.query(`SELECT count(*)::int AS n FROM "${pg.schemas[0]}".done`)
  expect(rows[0].n).toBe(5)
})

tlsTest('ssl: true (the public roots) is refused: ERR_STORAGE saying the certificate is not from a trusted CA', async () => {
  const s = service({ ssl: true })
  const err = await startError(s)
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toMatch(/TLS: the server's certificate is not signed by a trusted CA/)
  expect(err.message).toContain('storage.ssl')
})

tlsTest('ssl: { rejectUnauthorized: false } connects (not verified) and runs a job', async () => {
  const s = service({ ssl: { rejectUnauthorized: false } })
  expect(await startError(s)).toBe(null)
  const calc = { name: 'echo', calculate: (d) => d.v }
  s.registerCalculation(calc)
  expect(await results(s, () => [s.addCalculationJob(calc, { v: 'over tls' })])).toEqual(['over tls'])
})

tlsTest('a CA that did not sign the server certificate is refused', async () => {
  const err = await startError(service({ ssl: { ca: pems['other-ca.pem'] } }))
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toMatch(/not signed by a trusted CA/)
})

tlsTest('sslmode=verify-full on a host the certificate does not name is refused; verify-ca on it connects', async () => {
  // 127.0.0.1: the certificate names only localhost.
  const url = (mode) => `postgres://${SERVER.user}@127.0.0.1:${proxyPort}/${SERVER.database}?sslmode=${mode}`
  const full = pg.track(new JobManagementService({ storage: { type: 'postgres', connectionString: url('verify-full'), ssl: { ca: pems['ca.pem'] }, schema: 'jw_tls_never_made', connectTimeoutMs: 10000 } }))
  const err = await startError(full)
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toMatch(/certificate is not valid for the host name/)
  const schema = newSchema()
  const ca = pg.track(new JobManagementService({ storage: { type: 'postgres', connectionString: url('verify-ca'), ssl: { ca: pems['ca.pem'] }, schema, connectTimeoutMs: 10000 } }))
  expect(await startError(ca)).toBe(null)
})

tlsTest('sslmode=require without a CA encrypts without verifying (libpq); with the wrong CA it is verify-ca and refused', async () => {
  const url = `postgres://${SERVER.user}@localhost:${proxyPort}/${SERVER.database}?sslmode=require`
  const schema = newSchema()
  const plain = pg.track(new JobManagementService({ storage: { type: 'postgres', connectionString: url, schema, connectTimeoutMs: 10000 } }))
  expect(await startError(plain)).toBe(null)
  const wrong = pg.track(new JobManagementService({ storage: { type: 'postgres', connectionString: url, ssl: { ca: pems['other-ca.pem'] }, schema: 'jw_tls_never_made', connectTimeoutMs: 10000 } }))
  const err = await startError(wrong)
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
})

tlsTest('a bad certificate is a config error naming its key, without its contents', () => {
  const secret = Buffer.from('top secret bytes').toString('base64')
  let err = null
  try {
    new JobManagementService({ storage: { type: 'postgres', host: 'localhost', port: proxyPort, ssl: { ca: `-----BEGIN CERTIFICATE-----\n${secret}\n-----END CERTIFICATE-----\n` } } })
  } catch (e) {
    err = e
  }
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_INVALID_CONFIG')
  expect(err.message).toContain('storage.ssl.ca')
  expect(err.message).not.toContain(secret)
})

/** Rejects after `ms` with `what` (a wide bound: the test's own timeout would only say "timed out"). */
function within(ms, what, p) {
  let timer = null
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

// NOTIFY over TLS. The services poll every 30 s (pollMs) and sample no
// monitor (whose 1 s tick would also make an idle service claim), so only
// the LISTEN connection (through the TLS proxy too) can make these fast.
// Both services share this process, and an add here wakes the other's
// claimer at once: the job is delayed so that only the insert's NOTIFY (it
// carries the due time) or the 30 s poll can start it when due.
const quiet = () => ({ ssl: { ca: pems['ca.pem'] }, pollMs: 30000 })

/** A service on the proxy and on `schema`, without the monitor. */
function quietService(schema) {
  return pg.open(schema, {
    storage: { host: 'localhost', port: proxyPort, connectTimeoutMs: 10000, ...quiet() },
    queue: { maxWorkers: 4 },
    monitoring: { enabled: false },
  })
}

tlsTest('over TLS, a delayed job added by one service starts when due on another, idle one (NOTIFY; pollMs 30 s)', async () => {
  const schema = newSchema()
  const runner = quietService(schema)
  const adder = quietService(schema)
  let onStart = null
  const calc = { name: 'woken', calculate: (d) => {
    if (onStart) onStart(d.n)
    return d.n
  } }
  runner.registerCalculation(calc)
  // The adder cannot run 'woken' jobs (not registered there).
  adder.registerCalculation({ name: 'unrelated', calculate: () => 1 })
  expect(await startError(runner)).toBe(null)
  expect(await startError(adder)).toBe(null)
  const started = new Promise((r) => (onStart = r))
  const t0 = Date.now()
  const id = adder.addCalculationJob(calc, { n: 7 }, {}, { delay: 2000 })
  await adder.flush()
  // Due after 2 s; without the notice the next look is the 30 s poll. The
  // bound is wide for a busy machine.
  expect(await within(15000, 'the delayed job added by the other service (NOTIFY over TLS)', started)).toBe(7)
  const waited = Date.now() - t0
  expect(waited).toBeGreaterThanOrEqual(1900)
  expect(waited).toBeLessThan(15000)
  await runner.flush()
  expect((await adder.getJobStatus(id)).status).toBe('completed')
}, 90000)

tlsTest('over TLS, cancelJob in one service aborts the signal of the job running in another (NOTIFY)', async () => {
  const schema = newSchema()
  const runner = quietService(schema)
  const other = quietService(schema)
  const reasons = []
  let onStart = null
  let onAbort = null
  const calc = { name: 'hang', calculate: (d, c, job) =>
    new Promise((resolve, reject) => {
      if (onStart) onStart(job.id)
      job.signal.addEventListener('abort', () => {
        reasons.push(job.signal.reason)
        if (onAbort) onAbort()
        reject(job.signal.reason)
      })
    }) }
  runner.registerCalculation(calc)
  other.registerCalculation({ name: 'unrelated', calculate: () => 1 })
  expect(await startError(runner)).toBe(null)
  expect(await startError(other)).toBe(null)
  const started = new Promise((r) => (onStart = r))
  const id = runner.addCalculationJob(calc, {})
  await within(20000, 'the job to start', started)
  const cancelled = []
  runner.on('cancelled', (e) => cancelled.push(e.jobId))
  const aborted = new Promise((r) => (onAbort = r))
  expect(await other.cancelJob(id)).toBe(true)
  // Only the runner's LISTEN connection hears the cancel (no poll does).
  await within(20000, "the runner's job.signal to abort (NOTIFY over TLS)", aborted)
  expect(reasons.length).toBe(1)
  expect(reasons[0].code).toBe('ERR_JOB_CANCELLED')
  expect(cancelled).toEqual([id])
  expect((await runner.getJobStatus(id)).status).toBe('cancelled')
  expect(runner.getQueueStatistics().running).toBe(0)
}, 90000)
