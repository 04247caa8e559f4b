'use strict'
// PostgreSQL (preview): bad and hostile input (issue #12, tests): SQL-looking
// calculation names, keys and payloads are data (every statement is
// parameterised), a 1 MiB payload round trip, a schema name with quotes end
// to end, and every config error a clear code. Each test gets its own
// schema, dropped after; skipped, with the reason printed, when no server
// answers at 127.0.0.1:5432.
const crypto = require('node:crypto')
const net = require('node:net')
const { JobManagementService } = require('../index.js')
const { SERVER, ident, pgSuite } = require('./helpers/pg')

const EVIL = `'); DROP TABLE job; DROP SCHEMA public CASCADE; --`

const pg = pgSuite('postgres-input.spec.js', { prefix: 'jw_input_', bytes: 4 })
const pgTest = pg.test
/** A fresh schema name (`prefix` + random), dropped after the test. */
const schema = (prefix) => pg.schema(prefix)

function service(schemaName, queue = {}) {
  return pg.open(schemaName, { storage: { poolSize: 3 }, queue: { maxWorkers: 4, maxQueueSize: 10000, ...queue } })
}

/** Resolves with the next `completed` event of `jobId`. */
function completion(s, jobId) {
  return new Promise((resolve, reject) => {
    const ok = (e) => {
      if (e.jobId !== jobId) return
      s.off('completed', ok)
      s.off('failed', bad)
      resolve(e)
    }
    const bad = (e) => {
      if (e.jobId !== jobId) return
      s.off('completed', ok)
      s.off('failed', bad)
      reject(new Error(`job ${jobId} failed: ${JSON.stringify(e.error)}`))
    }
    s.on('completed', ok)
    s.on('failed', bad)
  })
}

/** The rejection of `p` (null if it resolves). */
function rejection(p) {
  return p.then(
    () => null,
    (e) => e,
  )
}

/** The tables of `schemaName`. */
async function tables(schemaName) {
  const { rows } = await pg.admin.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [
    schemaName,
  ])
  return rows.map((r) => r.tablename)
}

pgTest('SQL-looking calculation names, keys, concurrency keys and payloads are data', async () => {
  const name = schema()
  const s = service(name)
  const calc = { name: EVIL, calculate: (d, c) => ({ d, c }) }
  s.registerCalculation(calc)
  await s.start()
  const before = await tables(name)
  const data = { s: EVIL, [EVIL]: [EVIL, `\\'; SELECT pg_sleep(10); --`, 'a\u0000b', "O'Brien", '\ud83d\ude00'] }
  const context = { who: `${EVIL}"` }
  const options = { key: EVIL, concurrencyKey: `${EVIL}'`, onDuplicate: 'replace', delay: 3600000 }
  const id = s.addCalculationJob(calc, data, context, options)
  // A duplicate of the evil key replaces the data of the one job.
  const dup = s.addCalculationJob(calc, { ...data, n: 2 }, context, options)
  await s.flush()
  const st = await s.getJobStatus(dup)
  expect(st.jobId).toBe(id)
  expect(st.name).toBe(EVIL)
  const page = await s.getJobs({ name: EVIL, includeData: true })
  expect(page.jobs.map((j) => j.jobId)).toEqual([id])
  expect(page.jobs[0].data).toEqual({ ...data, n: 2 })
  // Runs now (retried at once, from a cancelled job), with its payload intact.
  expect(await s.cancelJob(dup)).toBe(true)
  const done = completion(s, id)
  expect(await s.retryJob(id)).toBe(true)
  await done
  await s.flush()
  const after = await s.getJobStatus(id)
  expect(after.status).toBe('completed')
  expect(after.result).toEqual({ d: { ...data, n: 2 }, c: context })
  expect(await tables(name)).toEqual(before)
  const { rows } = await pg.admin.query(`SELECT key, concurrency_key FROM ${ident(name)}.done`)
  expect(rows).toEqual([{ key: EVIL, concurrency_key: `${EVIL}'` }])
})

pgTest('a NUL in a key, a concurrency key or a calculation name is ERR_INVALID_ARGUMENT, and the storage stays usable', async () => {
  const name = schema()
  const s = service(name)
  const calc = { name: 'c', calculate: (d) => d }
  s.registerCalculation(calc)
  expect(() => s.registerCalculation({ name: 'a\u0000b', calculate: () => 1 })).toThrow(
    expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
  )
  await s.start()
  for (const options of [{ key: 'a\u0000b' }, { concurrencyKey: '\u0000' }]) {
    let err = null
    try {
      s.addCalculationJob(calc, {}, {}, options)
    } catch (e) {
      err = e
    }
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_INVALID_ARGUMENT')
    expect(err.message).toMatch(/options\.(key|concurrencyKey)/)
  }
  const id = s.addCalculationJob(calc, { nul: '\u0000' })
  await completion(s, id)
  await s.flush()
  expect((await s.getJobStatus(id)).result).toEqual({ nul: '\u0000' })
})

pgTest('a 1 MiB payload round trip', async () => {
  const name = schema()
  const s = service(name, { maxPayloadBytes: 4 * 1024 * 1024 })
  const big = crypto.randomBytes(512 * 1024).toString('hex') // 1 MiB of text
  const digest = (x) => crypto.createHash('sha256').update(x).digest('hex')
  const calc = { name: 'big', calculate: (d) => ({ n: d.big.length, sha: digest(d.big), back: d.big }) }
  s.registerCalculation(calc)
  await s.start()
  const id = s.addCalculationJob(calc, { big })
  await completion(s, id)
  await s.flush()
  const st = await s.getJobStatus(id)
  expect(st.status).toBe('completed')
  expect(st.result.n).toBe(1024 * 1024)
  expect(st.result.sha).toBe(digest(big))
  expect(st.result.back === big).toBe(true)
  const page = await s.getJobs({ includeData: true })
  expect(page.jobs[0].data.big === big).toBe(true)
})

pgTest(`a schema name with quotes (we"ird'schema) works end to end`, async () => {
  const name = schema(`we"ird'schema `)
  const s = service(name)
  const ran = []
  const calc = { name: 'q', calculate: (d) => ran.push(d.n) }
  s.registerCalculation(calc)
  await s.start()
  expect(await tables(name)).toEqual(expect.arrayContaining(['alias', 'job', 'done', 'process', 'schedule', 'meta']))
  const id = s.addCalculationJob(calc, { n: 1 }, {}, { key: 'k' })
  const done = completion(s, id)
  await done
  await s.flush()
  expect((await s.getJobStatus(id)).status).toBe('completed')
  const later = s.addCalculationJob(calc, { n: 2 }, {}, { key: 'k', delay: 3600000 })
  const dup = s.addCalculationJob(calc, { n: 3 }, {}, { key: 'k', delay: 3600000 })
  await s.flush()
  expect((await s.getJobStatus(dup)).jobId).toBe(later)
  expect(await s.cancelJob(dup)).toBe(true)
  expect((await s.getJobStatus(later)).status).toBe('cancelled')
  expect(ran).toEqual([1])
  // A second service on the same schema (migrations found, not redone).
  const t = service(name)
  await t.start()
  expect((await t.getJobStatus(id)).status).toBe('completed')
})

test('bad schema values are ERR_INVALID_CONFIG naming config.storage.schema', () => {
  for (const bad of ['x'.repeat(64), 5, 'a\u0000b']) {
    let err = null
    try {
      new JobManagementService({ storage: { type: 'postgres', ...SERVER, schema: bad } })
    } catch (e) {
      err = e
    }
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain('config.storage.schema')
  }
})

test('bad ports are ERR_INVALID_CONFIG naming config.storage.port', () => {
  for (const port of [-1, 0, 65536, 1.5, '5432', true]) {
    let err = null
    try {
      new JobManagementService({ storage: { type: 'postgres', ...SERVER, port } })
    } catch (e) {
      err = e
    }
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain('config.storage.port')
  }
})

pgTest('a schema PostgreSQL refuses to create: start() rejects with ERR_STORAGE naming it', async () => {
  const name = schema('pg_jobwerk_')
  const s = new JobManagementService({ storage: { type: 'postgres', ...SERVER, schema: name, poolSize: 3 } })
  const err = await rejection(s.start())
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toContain(name)
  await s.stop()
})

pgTest('a host that does not resolve: start() rejects with ERR_STORAGE naming it', async () => {
  const s = new JobManagementService({
    storage: { type: 'postgres', ...SERVER, host: 'no-such-host.invalid', connectTimeoutMs: 3000 },
  })
  const err = await rejection(s.start())
  expect(err).not.toBe(null)
  expect(err.code).toBe('ERR_STORAGE')
  expect(err.message).toContain('no-such-host.invalid')
  await s.stop()
})

/**
 * A wrong password. The shared server trusts every local connection, so a
 * minimal server speaking the protocol's startup asks for a cleartext
 * password and refuses it with SQLSTATE 28P01, as PostgreSQL does.
 * Resolves with { port, password: Promise<string> }.
 */
function refusingServer() {
  return new Promise((resolve) => {
    let gotPassword
    const password = new Promise((r) => (gotPassword = r))
    const srv = net.createServer((sock) => {
      let buf = Buffer.alloc(0)
      let stage = 'startup'
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk])
        if (stage === 'startup' && buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
          const len = buf.readUInt32BE(0)
          const code = buf.readUInt32BE(4)
          buf = buf.subarray(len)
          if (code === 80877103) {
            // SSLRequest: no.
            sock.write('N')
            return
          }
          stage = 'password'
          sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])) // AuthenticationCleartextPassword
        }
        if (stage === 'password' && buf.length >= 5 && buf.length >= 1 + buf.readUInt32BE(1)) {
          const len = buf.readUInt32BE(1)
          gotPassword(buf.subarray(5, 1 + len - 1).toString())
          stage = 'done'
          const fields = [
            ['S', 'FATAL'],
            ['V', 'FATAL'],
            ['C', '28P01'],
            ['M', 'password authentication failed for user "app"'],
          ]
          const body = Buffer.concat([...fields.map(([f, v]) => Buffer.from(`${f}${v}\0`)), Buffer.from([0])])
          const head = Buffer.alloc(5)
          head.write('E', 0)
          head.writeUInt32BE(body.length + 4, 1)
          sock.end(Buffer.concat([head, body]))
        }
      })
      sock.on('error', () => {})
    })
    srv.listen(0, '127.0.0.1', () => resolve({ srv, port: srv.address().port, password }))
  })
}

test('a wrong password: start() rejects with ERR_STORAGE naming the user, not the password', async () => {
  const { srv, port, password } = await refusingServer()
  try {
    const s = new JobManagementService({
      storage: { type: 'postgres', host: '127.0.0.1', port, user: 'app', password: 'hunter2', database: 'x', connectTimeoutMs: 5000 },
    })
    const err = await rejection(s.start())
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_STORAGE')
    expect(err.message).toContain("'app'")
    expect(err.message).toContain('storage.password')
    expect(err.message).not.toContain('hunter2')
    expect(await password).toBe('hunter2')
    await s.stop()
  } finally {
    srv.close()
  }
})
