'use strict'
// PostgreSQL (preview): schedules fire once per cluster (issue #12, "Cron
// once per cluster"). Three Node processes (fixtures/pg-cron-child.js) on
// one fresh schema each define the same 1-second cron ('* * * * * *') for
// 60 ticks; one is stopped gracefully half-way. Every tick must have
// exactly one job (counted per fire time in the database, live and
// finished) and each job must run exactly once (counted per job id from
// the handlers' runs): the fire is a compare-and-set in the database, so
// however many processes evaluate the schedule, one adds the job.
//
// This is the one real-time test of the suite (~70 s). The schedule uses
// `misfire: 'catchUp'` and `overlap: 'queue'`, so that a process whose
// timer runs late on this busy machine (more than the 1 s grace) still
// fires every tick, and a job not finished within the second does not
// skip the next: what is checked is once per tick, not the other
// policies (the Rust tests in src/storage/postgres/cron_tests.rs check
// those on a manual clock). Nothing is asserted about time; the waits are
// bounded by the wide test timeout. Skipped, with the reason printed, when
// no server answers at 127.0.0.1:5432.
const { sleep, until } = require('./helpers')
const { pgSuite } = require('./helpers/pg')

const TICKS = 60

const pg = pgSuite('postgres-cron.spec.js', { prefix: 'jw_cron_' })

/** A child (fixtures/pg-cron-child.js) on `schema`; `next(type)` resolves with its next message of that type. */
function child(schema, onMessage) {
  return pg.fork('pg-cron-child.js', [schema], { onMessage })
}

pg.test(
  `3 processes, a 1-second cron for ${TICKS} ticks, one stopped half-way: every tick fired exactly once`,
  async () => {
    const schema = pg.schema()
    const runs = new Map() // job id -> runs anywhere
    const count = (m) => {
      if (m.type === 'ran') runs.set(m.id, (runs.get(m.id) || 0) + 1)
    }
    // The first one creates the schema; the others then start together.
    const procs = [child(schema, count)]
    await procs[0].next('ready')
    procs.push(child(schema, count), child(schema, count))
    await Promise.all(procs.slice(1).map((p) => p.next('ready')))

    // Whole seconds from a little ahead, so every process knows the
    // schedule before its first tick (they would catch up otherwise).
    const startAt = Math.ceil((Date.now() + 3000) / 1000) * 1000
    const endAt = startAt + (TICKS - 1) * 1000
    const def = { type: 'schedule', startAt, endAt, misfire: 'catchUp', overlap: 'queue' }
    const scheduled = procs.map((p) => p.next('scheduled'))
    for (const p of procs) p.send(def)
    await Promise.all(scheduled)

    // Half-way, one process stops gracefully; the other two fire on.
    await until(procs, ['message'], () => runs.size >= TICKS / 2)
    const stopped = procs[2].next('stopped')
    procs[2].send({ type: 'stop' })
    await stopped
    const alive = procs.slice(0, 2)
    // Every run arrived, or (a tick missed) 20 s past the last tick: the
    // assertions below then say which.
    let timer
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, Math.max(0, endAt + 20000 - Date.now()))
    })
    await Promise.race([until(alive, ['message'], () => runs.size >= TICKS), late])
    clearTimeout(timer)
    // A few seconds past the last tick: a duplicate would have shown by now.
    await sleep(Math.max(0, endAt + 3000 - Date.now()))

    // Both answer for the cluster: the schedule ran its 60 fires and ended.
    for (const p of alive) {
      const listed = p.next('list')
      p.send({ type: 'list' })
      const [s] = (await listed).schedules
      expect(s).toMatchObject({ id: 'tick', runCount: TICKS, lastRunAt: endAt, nextRunAt: null, skippedFires: 0 })
    }
    const done = alive.map((p) => p.next('stopped'))
    for (const p of alive) p.send({ type: 'stop' })
    await Promise.all(done)

    const fires = await pg.admin.query(
      `SELECT fire_at::bigint AS at, count(*)::int AS n FROM (
         SELECT fire_at FROM "${schema}".job WHERE schedule_id = 'tick'
         UNION ALL SELECT fire_at FROM "${schema}".done WHERE schedule_id = 'tick') f
       GROUP BY fire_at ORDER BY fire_at`,
    )
    const want = Array.from({ length: TICKS }, (_, k) => ({ at: String(startAt + k * 1000), n: 1 }))
    expect(fires.rows).toEqual(want)
    // Each job ran once, on one of the processes, and completed.
    expect(runs.size).toBe(TICKS)
    expect([...runs].filter(([, n]) => n !== 1)).toEqual([])
    const finished = await pg.admin.query(
      `SELECT count(*)::int AS n FROM "${schema}".done WHERE schedule_id = 'tick' AND id = ANY($1::uuid[])`,
      [[...runs.keys()]],
    )
    expect(finished.rows[0].n).toBe(TICKS)
  },
  180000,
)
