'use strict'
// pg-boss on the local PostgreSQL (database `test`, trust auth). One fresh
// queue per run with its own partition table (so the W4 size delta is that of
// a new table), deleted at the end. ESM-only, hence the dynamic import().
//
// Configured for throughput as BENCH.md says: batchSize = concurrency, the
// batch run with Promise.all, LISTEN/NOTIFY on (useListenNotify + queue
// notify), polling intervals at their 0.5 s minimum, plus burstWhenBatchFull
// (pg-boss 12's own throughput switch: keep fetching while batches come back
// full; without it a backlog drains at one batch per polling interval, i.e.
// 32 jobs/s).

const { pkgVersion } = require('../lib/pkg')
const { SERVERS } = require('./index')
const { now, sleep } = require('../lib/util')

const SCHEMA = 'pgboss'

module.exports = {
  name: 'pg-boss',
  server: SERVERS['pg-boss'],
  async create({ concurrency }) {
    const { PgBoss } = await import('pg-boss')
    const conn = {
      host: SERVERS['pg-boss'].host,
      port: SERVERS['pg-boss'].port,
      database: process.env.PGDATABASE || 'test',
      user: process.env.PGUSER || 'postgres',
    }
    const boss = new PgBoss({ ...conn, schema: SCHEMA, useListenNotify: true })
    boss.on('error', (e) => process.stderr.write(`pg-boss error: ${e && e.message}\n`))
    await boss.start()
    const db = boss.getDb()
    const sql = async (text, values) => (await db.executeSql(text, values)).rows
    const name = `jobwerk_bench_${process.pid}_${Date.now()}`
    await boss.createQueue(name, { partition: true, notify: true })
    const [{ table_name: table }] = await sql(`SELECT table_name FROM ${SCHEMA}.queue WHERE name = $1`, [name])
    const settings = {}
    for (const k of ['server_version', 'fsync', 'synchronous_commit', 'wal_level']) {
      settings[k] = (await sql(`SELECT current_setting($1) AS v`, [k]))[0].v
    }
    const workOptions = {
      batchSize: concurrency,
      pollingIntervalSeconds: 0.5,
      notifyPollingIntervalSeconds: 0.5,
      burstWhenBatchFull: true,
    }
    let polling = null
    let closed = false
    const completedCount = async () =>
      (await sql(`SELECT count(*)::int AS c FROM ${SCHEMA}.${table} WHERE name = $1 AND state = 'completed'`, [name]))[0].c
    return {
      info: {
        version: pkgVersion('pg-boss'),
        durability: `PostgreSQL ${settings.server_version}: fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit} => ${
          settings.fsync === 'on' && settings.synchronous_commit !== 'off' ? 'durable' : 'not durable'
        }`,
        server: `PostgreSQL ${settings.server_version}`,
        config: {
          constructor: { useListenNotify: true, user: conn.user, database: conn.database },
          queue: { partition: true, notify: true },
          work: workOptions,
          handler: 'async (jobs) => Promise.all(jobs.map((job) => handler(job.data)))',
          bulk: 'boss.insert(name, jobs) per chunk',
          delay: '{ startAfter: delaySeconds } send option',
          completions: "count of state = 'completed' rows (polled every 250 ms, every 2 ms once all handlers started)",
        },
      },
      async addBulk(datas) {
        const jobs = new Array(datas.length)
        for (let i = 0; i < datas.length; i++) jobs[i] = { data: datas[i] }
        await boss.insert(name, jobs)
      },
      add(data, delayMs) {
        return boss.send(name, data, delayMs ? { startAfter: delayMs / 1000 } : undefined)
      },
      async startProcessing(handler, { expected, onCompleted }) {
        let started = 0
        await boss.work(name, workOptions, async (jobs) => {
          started += jobs.length
          return Promise.all(jobs.map((job) => handler(job.data)))
        })
        // pg-boss has no completion event: poll its store.
        let seen = 0
        polling = (async () => {
          let last = now()
          while (!closed) {
            const fast = started >= expected
            await sleep(fast ? 2 : 20)
            if (!fast && now() - last < 250) continue
            last = now()
            const c = await completedCount()
            if (c > seen) {
              const k = c - seen
              seen = c
              onCompleted(k)
            }
          }
        })().catch((e) => process.stderr.write(`pg-boss completion poll: ${e && e.message}\n`))
      },
      async pendingCount() {
        return (await sql(`SELECT count(*)::int AS c FROM ${SCHEMA}.${table} WHERE name = $1 AND state < 'active'`, [name]))[0].c
      },
      async serverBytes() {
        return Number((await sql(`SELECT pg_total_relation_size($1::regclass) AS b`, [`${SCHEMA}.${table}`]))[0].b)
      },
      async close() {
        closed = true
        if (polling) await polling
        await boss.offWork(name)
        await boss.deleteQueue(name)
        await boss.stop({ graceful: true, wait: true, timeout: 5000 })
      },
    }
  },
}
