'use strict'
// jobwerk on the local PostgreSQL (`storage: { type: 'postgres' }`), each run
// in a fresh schema (`jw_bench_<pid>_<random>`) that close() drops. The
// server's settings (fsync, synchronous_commit, autovacuum, shared_buffers,
// version) are read and recorded with the result: durability is the
// server's, as configured.
//
// W1 adds its jobs before processing starts. On PostgreSQL `add` needs the
// connection, which start() opens; the adapter opens it first through the
// same call start() makes (`_core.openAsync()`, idempotent), so the jobs go
// in with no worker running and start() then only starts the dispatcher.
//
// Completions are counted from the 'completed' event, which fires when the
// outcome is recorded in the process (before its group commit): like SQLite,
// W1 awaits `service.flush()` after the N-th event, so the clock stops when
// every outcome is committed.
//
// A second process on the same schema (W1 with two processes) creates its
// adapter with `peer: { schema }` (from `peerConfig()`): it neither creates
// nor drops the schema.

const fs = require('node:fs')
const path = require('node:path')
const { ROOT } = require('../lib/pkg')
const { SERVERS } = require('./index')
const pgutil = require('../lib/pg')

module.exports = {
  name: 'jobwerk-postgres',
  server: SERVERS['jobwerk-postgres'],
  async create({ concurrency, peer, queue: queueExtra }) {
    const jsRoot = process.env.JOBWERK_JS ? path.resolve(process.env.JOBWERK_JS) : ROOT
    const { JobManagementService } = require(jsRoot)
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
    const admin = await pgutil.adminClient()
    const settings = await pgutil.serverSettings(admin)
    const schema = peer ? peer.schema : pgutil.freshSchema('jw_bench')
    const storage = { type: 'postgres', host: pgutil.CONN.host, port: pgutil.CONN.port, database: pgutil.CONN.database, user: pgutil.CONN.user, schema }
    const config = { storage, queue: { maxWorkers: concurrency, maxQueueSize: 2_000_000, defaultTimeout: 0, ...(queueExtra || {}) } }
    let s
    try {
      s = new JobManagementService(config)
      const reported = s.getQueueStatistics().storage
      if (reported !== 'postgres') throw new Error(`jobwerk runs on '${reported}' storage, the harness asked for 'postgres'`)
    } catch (e) {
      await admin.end()
      throw e
    }
    let body = (data) => data.x + 1
    const calculation = { name: 'inc', calculate: (data) => body(data) }
    s.registerCalculation(calculation)
    try {
      // Connect (and migrate the fresh schema) without starting the dispatcher.
      const a = await s._core.openAsync()
      if (a && a.code != null) throw new Error(`${a.code}: ${a.message}`)
    } catch (e) {
      await s.stop({ timeoutMs: 0 }).catch(() => {})
      if (!peer) await pgutil.dropSchema(admin, schema).catch(() => {})
      await admin.end()
      throw e
    }
    const native = process.env.NAPI_RS_NATIVE_LIBRARY_PATH || null
    const adapter = {
      info: {
        version: pkg.version,
        storage: 'postgres',
        durability: pgutil.durabilityText(settings),
        server: `PostgreSQL ${settings.server_version}`,
        serverSettings: settings,
        config: {
          ...config,
          storage: { ...storage, schema: '<fresh schema per run>' },
          handler: 'calculate: async (data) => data.x + 1',
          completions: "'completed' event, then await service.flush() (committed)",
          backend: 'defaults of BackendOptions (claim batch, group commit size and delay): see src/storage/postgres/store.rs',
        },
        js: path.relative(ROOT, path.join(jsRoot, 'index.js')),
        native: native ? path.relative(ROOT, native) : 'shared jobwerk.*.node (build mode unknown)',
      },
      schema,
      peerConfig() {
        return { schema }
      },
      async addBulk(datas) {
        const jobs = new Array(datas.length)
        for (let i = 0; i < datas.length; i++) jobs[i] = { calculation, data: datas[i] }
        s.addCalculationJobs(jobs)
      },
      add(data, delayMs) {
        s.addCalculationJob(calculation, data, undefined, delayMs ? { delay: delayMs } : undefined)
      },
      async startProcessing(handler, { onCompleted }) {
        body = handler
        s.on('completed', () => onCompleted(1))
        s.on('failed', (e) => process.stderr.write(`jobwerk job failed: ${JSON.stringify(e)}\n`))
        await s.start()
      },
      async pendingCount() {
        const { rows } = await admin.query(`SELECT count(*)::int AS c FROM ${pgutil.quoteIdent(schema)}.job WHERE state < 2`)
        return rows[0].c
      },
      async serverBytes() {
        return pgutil.schemaBytes(admin, schema)
      },
      async tables() {
        return pgutil.schemaTables(admin, schema)
      },
      /** VACUUM of the tables jobs pass through, as a user (or a cron job) would run it. */
      async vacuum() {
        for (const t of ['job', 'done']) await admin.query(`VACUUM ${pgutil.quoteIdent(schema)}.${t}`)
      },
      flush: () => s.flush(),
      stats() {
        return s.getQueueStatistics()
      },
      async close() {
        try {
          await s.stop({ timeoutMs: 5000 })
        } finally {
          try {
            if (!peer) await pgutil.dropSchema(admin, schema)
          } finally {
            await admin.end()
          }
        }
      },
    }
    return adapter
  },
}
