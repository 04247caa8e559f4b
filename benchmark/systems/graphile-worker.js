'use strict'
// graphile-worker on the local PostgreSQL (database `test`, trust auth), each
// run in a fresh schema (`gw_bench_<pid>_<random>`, graphile's own `schema`
// option) that close() drops.
//
// Configured for throughput as its own performance page does
// (https://worker.graphile.org/docs/performance: concurrentJobs 24,
// maxPoolSize 25, localQueue { size: 500 }, completeJobBatchDelay 0,
// failJobBatchDelay 0), with the harness's concurrency (16) and
// maxPoolSize = concurrency + 2 (its documented advice), pollInterval 500 ms
// (default 2 s: delayed jobs are found by polling; 500 ms as for pg-boss, at
// the same 0.5 s). Logging off (it logs a line per job otherwise).
//
// Jobs are added with its WorkerUtils (`addJobs` per chunk of 1,000,
// `addJob` with `runAt` for a delay). graphile-worker deletes a job's row
// when its completion commits, and its `job:complete` event fires before
// that commit: completions are counted as jobs added less rows left in
// `_private_jobs` (polled every 250 ms, every 2 ms once all handlers have
// started), i.e. committed completions.

const { pkgVersion } = require('../lib/pkg')
const { SERVERS } = require('./index')
const { now, sleep } = require('../lib/util')
const pgutil = require('../lib/pg')

module.exports = {
  name: 'graphile-worker',
  server: SERVERS['graphile-worker'],
  async create({ concurrency, peer }) {
    const gw = require('graphile-worker')
    const admin = await pgutil.adminClient()
    const settings = await pgutil.serverSettings(admin)
    const schema = peer ? peer.schema : pgutil.freshSchema('gw_bench')
    const { host, port, database, user } = pgutil.CONN
    const connectionString = `postgres://${encodeURIComponent(user)}@${host}:${port}/${encodeURIComponent(database)}`
    const logger = new gw.Logger(() => () => {})
    const worker = {
      connectionString,
      schema,
      concurrentJobs: concurrency,
      maxPoolSize: Math.max(10, concurrency + 2),
      pollInterval: 500,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    }
    let utils
    try {
      utils = await gw.makeWorkerUtils({ connectionString, schema, logger })
      await utils.migrate()
    } catch (e) {
      if (utils) await utils.release().catch(() => {})
      if (!peer) await pgutil.dropSchema(admin, schema).catch(() => {})
      await admin.end()
      throw e
    }
    const jobsTable = `${pgutil.quoteIdent(schema)}._private_jobs`
    let runner = null
    let polling = null
    let closed = false
    let added = 0
    const remaining = async () => (await admin.query(`SELECT count(*)::int AS c FROM ${jobsTable}`)).rows[0].c
    const adapter = {
      info: {
        version: pkgVersion('graphile-worker'),
        durability: pgutil.durabilityText(settings),
        server: `PostgreSQL ${settings.server_version}`,
        serverSettings: settings,
        config: {
          preset: { worker: { ...worker, connectionString: '<local>', schema: '<fresh schema per run>' } },
          logger: 'off',
          handler: "taskList: { inc: async (payload) => handler(payload) }",
          bulk: 'workerUtils.addJobs([{ identifier, payload }]) per chunk',
          delay: "workerUtils.addJob('inc', payload, { runAt: new Date(Date.now() + delayMs) })",
          completions: 'jobs added less rows left in _private_jobs (graphile deletes a job when its completion commits), polled every 250 ms, every 2 ms once all handlers started',
        },
      },
      schema,
      // Completions are counted in the database (committed, cluster-wide).
      clusterCompletions: true,
      peerConfig() {
        return { schema }
      },
      async addBulk(datas) {
        const specs = new Array(datas.length)
        for (let i = 0; i < datas.length; i++) specs[i] = { identifier: 'inc', payload: datas[i] }
        await utils.addJobs(specs)
        added += datas.length
      },
      add(data, delayMs) {
        return utils.addJob('inc', data, delayMs ? { runAt: new Date(Date.now() + delayMs) } : undefined).then(() => {
          added++
        })
      },
      async startProcessing(handler, { expected, onCompleted, countAdded }) {
        let started = 0
        runner = await gw.run({
          preset: { worker },
          logger,
          noHandleSignals: true,
          taskList: {
            inc: async (payload) => {
              started++
              return handler(payload)
            },
          },
        })
        runner.events.on('job:error', ({ error }) => process.stderr.write(`graphile-worker job error: ${error && error.message}\n`))
        // Committed completions: rows deleted. In a two-process run the jobs
        // were added elsewhere: countAdded says how many to count from.
        let seen = 0
        polling = (async () => {
          let last = now()
          while (!closed) {
            const fast = started >= expected
            await sleep(fast ? 2 : 20)
            if (!fast && now() - last < 250) continue
            last = now()
            const base = countAdded !== undefined ? countAdded : added
            const c = base - (await remaining())
            if (c > seen) {
              const k = c - seen
              seen = c
              onCompleted(k)
            }
          }
        })().catch((e) => process.stderr.write(`graphile-worker completion poll: ${e && e.message}\n`))
      },
      async pendingCount() {
        return remaining()
      },
      async serverBytes() {
        return pgutil.schemaBytes(admin, schema)
      },
      async tables() {
        return pgutil.schemaTables(admin, schema)
      },
      async vacuum() {
        await admin.query(`VACUUM ${jobsTable}`)
      },
      async close() {
        closed = true
        try {
          if (polling) await polling
          if (runner) await runner.stop()
          await utils.release()
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
