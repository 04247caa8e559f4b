// Loaded by the jobwerk plugin (every src/jobs/*.js exports a calculation).
// Sorts a league by points and writes each entry's position: only the
// positions that changed, so a run right after another writes nothing (and
// its writes cannot trigger yet another run: see lifecycles.js).
const { setTimeout: sleep } = require('node:timers/promises')

const UID = 'api::tabellen-eintrag.tabellen-eintrag'

// For the example's crash tests only: hold the job this long before writing.
const HOLD_MS = Number(process.env.EXAMPLE_RECALC_HOLD_MS || 0)
// For the latency measurement only: the job does nothing.
const SKIP = process.env.EXAMPLE_RECALC_SKIP === '1'

module.exports = {
  name: 'table-recalculation',
  retries: 3,
  async calculate({ league }, context, job) {
    if (SKIP) return { league, skipped: true }
    console.log(`[example] table-recalculation ${job.id} attempt ${job.attempt} for ${league}`)
    if (HOLD_MS > 0) {
      // The job is durable once the SQLite writer committed it (a few ms
      // after it was added): only then is a crash "mid-job" for the tests.
      await strapi.plugin('jobwerk').service('jobs').flush()
      console.log(`[example] table-recalculation ${job.id} holding for ${HOLD_MS} ms`)
      // Ends early when jobwerk aborts the attempt (shutdownTimeoutMs passed at a stop or reload).
      await sleep(HOLD_MS, undefined, { signal: job.signal })
    }
    const rows = await strapi.db.query(UID).findMany({
      where: { league },
      orderBy: [{ points: 'desc' }, { team: 'asc' }],
    })
    let changed = 0
    for (let i = 0; i < rows.length; i++) {
      if (rows[i].position === i + 1) continue
      await strapi.db.query(UID).update({ where: { id: rows[i].id }, data: { position: i + 1 } })
      changed++
    }
    console.log(`[example] table-recalculation ${job.id} done: ${league}, ${rows.length} rows, ${changed} changed`)
    return { league, rows: rows.length, changed }
  },
}
