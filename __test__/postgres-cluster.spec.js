'use strict'
// PostgreSQL (preview), several Node processes on one schema (issue #12):
// the cluster test (30,000 jobs from 3 processes, each run exactly once) and
// the kill -9 test (a SIGKILLed process's running jobs complete on the
// others). Each test gets its own schema, dropped after. Skipped, with the
// reason printed, when no server answers at 127.0.0.1:5432.
//
// In the kill -9 test the children (fixtures/pg-cluster-child.js) use
// storage.heartbeatMs 500 and storage.deadAfterMs 5000, so a killed process
// is declared dead ~5 s after its last heartbeat instead of the default 30 s;
// the cluster test keeps the defaults. Nothing here waits on a
// timer: each step waits for the children's messages, under wide test
// timeouts, so a busy machine only makes it slower.
const { until } = require('./helpers')
const { SERVER, pgSuite } = require('./helpers/pg')

const pg = pgSuite('postgres-cluster.spec.js', { prefix: 'jw_cluster_' })
const pgTest = pg.test
const schema = () => pg.schema()

/**
 * A child process (fixtures/pg-cluster-child.js) on `schemaName`.
 * `onMessage` sees every message; `next(type)` resolves with the next
 * message of that type (an 'error' message or an early exit rejects it).
 */
function child(schemaName, role, onMessage = () => {}, liveness = 'default') {
  return pg.fork('pg-cluster-child.js', [schemaName, role, liveness], { onMessage })
}

pgTest(
  '3 processes, 30,000 jobs added from all three: each runs exactly once, nothing lost',
  async () => {
    const s = schema()
    const PER = 10000
    const runs = new Map() // data.i -> how many times a handler ran it
    const count = (m) => {
      if (m.type === 'ran') for (const i of m.ids) runs.set(i, (runs.get(i) || 0) + 1)
    }
    // The first one creates the schema; the others then start together.
    const procs = [child(s, 'worker', count)]
    await procs[0].next('ready')
    procs.push(child(s, 'worker', count), child(s, 'worker', count))
    await Promise.all(procs.slice(1).map((p) => p.next('ready')))

    const added = procs.map((p) => p.next('added'))
    procs.forEach((p, k) => p.send({ type: 'add', name: 'noop', from: k * PER, count: PER, batch: 500 }))
    const ids = (await Promise.all(added)).flatMap((m) => m.ids)
    expect(ids.length).toBe(3 * PER)
    expect(new Set(ids).size).toBe(3 * PER)

    await until(procs, ['message'], () => runs.size === 3 * PER)
    // Once each process has committed its outcomes (flush), getJobs answers
    // for the whole cluster: every job completed, asked of any process.
    const flushed = procs.map((p) => p.next('flushed'))
    for (const p of procs) p.send({ type: 'flush' })
    await Promise.all(flushed)
    const counted = procs[1].next('count')
    procs[1].send({ type: 'count', status: 'completed' })
    const completed = (await counted).ids
    expect(completed.length).toBe(3 * PER)
    expect(new Set(completed)).toEqual(new Set(ids))
    // Stop each (its last 'ran' batch comes before 'stopped'): a duplicate
    // run anywhere would show in the counts.
    const stopped = procs.map((p) => p.next('stopped'))
    for (const p of procs) p.send({ type: 'stop' })
    await Promise.all(stopped)

    expect(runs.size).toBe(3 * PER)
    const twice = [...runs].filter(([, n]) => n !== 1)
    expect(twice).toEqual([])
    for (let i = 0; i < 3 * PER; i++) expect(runs.has(i)).toBe(true)

    const done = await pg.admin.query(
      `SELECT count(*)::int AS n, count(DISTINCT status)::int AS statuses, max(attempts)::int AS a FROM "${s}".done`,
    )
    const hot = await pg.admin.query(`SELECT count(*)::int AS n FROM "${s}".job`)
    expect(done.rows[0]).toEqual({ n: 3 * PER, statuses: 1, a: 1 })
    expect(hot.rows[0].n).toBe(0)
    // Every id the children were given is in the done table.
    const byId = await pg.admin.query(`SELECT count(*)::int AS n FROM "${s}".done WHERE id = ANY($1::uuid[])`, [ids])
    expect(byId.rows[0].n).toBe(3 * PER)
  },
  180000,
)

pgTest(
  'kill -9 of a process running jobs: they all complete on the other two, each ran at most twice',
  async () => {
    const s = schema()
    const N = 6
    const started = new Map() // data.i -> starts anywhere
    const ranOnOthers = new Map()
    const onVictim = (m) => {
      if (m.type === 'started') started.set(m.i, (started.get(m.i) || 0) + 1)
    }
    const onOther = (m) => {
      onVictim(m)
      if (m.type === 'ran') for (const i of m.ids) ranOnOthers.set(i, (ranOnOthers.get(i) || 0) + 1)
    }
    // The victim alone adds and starts every long job (maxWorkers 8 >= N).
    const victim = child(s, 'victim', onVictim, 'fast')
    await victim.next('ready')
    const added = victim.next('added')
    victim.send({ type: 'add', name: 'long', from: 0, count: N, batch: N, options: { retries: 3, timeout: 0 } })
    const { ids } = await added
    await until([victim], ['message'], () => started.size === N)

    const others = [child(s, 'worker', onOther, 'fast'), child(s, 'worker', onOther, 'fast')]
    await Promise.all(others.map((p) => p.next('ready')))
    const killedAt = Date.now()
    const gone = new Promise((resolve) => victim.once('exit', (code, signal) => resolve(signal)))
    victim.kill('SIGKILL')
    expect(await gone).toBe('SIGKILL')

    await until(others, ['message'], () => ranOnOthers.size === N)
    const rescuedIn = Date.now() - killedAt
    const stopped = others.map((p) => p.next('stopped'))
    for (const p of others) p.send({ type: 'stop' })
    await Promise.all(stopped)

    // Within the 35 s (deadAfterMs is 5 s here).
    expect(rescuedIn).toBeLessThan(35000)
    for (let i = 0; i < N; i++) {
      expect(ranOnOthers.get(i)).toBe(1)
      expect(started.get(i)).toBe(2) // once on the victim, once after the rescue
    }
    const { rows } = await pg.admin.query(`SELECT id::text AS id, attempts FROM "${s}".done ORDER BY id`)
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort())
    for (const r of rows) expect(r.attempts).toBe(2)
    const hot = await pg.admin.query(`SELECT count(*)::int AS n FROM "${s}".job`)
    expect(hot.rows[0].n).toBe(0)
  },
  120000,
)

test('storage.heartbeatMs, storage.deadAfterMs and storage.pollMs: bad values are ERR_INVALID_CONFIG naming the key', () => {
  const { JobManagementService } = require('../index.js')
  for (const [extra, key] of [
    [{ heartbeatMs: 10 }, 'config.storage.heartbeatMs'],
    [{ heartbeatMs: '500' }, 'config.storage.heartbeatMs'],
    [{ deadAfterMs: 999 }, 'config.storage.deadAfterMs'],
    [{ heartbeatMs: 2000, deadAfterMs: 3000 }, 'config.storage.deadAfterMs'],
    [{ pollMs: 99 }, 'config.storage.pollMs'],
    [{ pollMs: 600001 }, 'config.storage.pollMs'],
  ]) {
    let err = null
    try {
      new JobManagementService({ storage: { type: 'postgres', ...SERVER, ...extra } })
    } catch (e) {
      err = e
    }
    expect(err).not.toBe(null)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain(key)
  }
  // Valid values are accepted (nothing connects before start()).
  expect(
    () => new JobManagementService({ storage: { type: 'postgres', ...SERVER, heartbeatMs: 500, deadAfterMs: 5000, pollMs: 30000 } }),
  ).not.toThrow()
})
