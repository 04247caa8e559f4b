// Every write of a table entry hands the table's recalculation to a
// background job. enqueue() never throws into the hook (a full queue or a
// stopping service is logged and counted, the user's write goes on), and
// inside the request's transaction the job is added once it commits.
//
// One job per league, debounced: `key` makes every write of a league while
// its recalculation waits land on that one job, `debounceMs` runs it after
// the league's last write (200 bulk updates: one recalculation, durably),
// and `concurrencyKey` never runs two recalculations of one league at once
// (a write during a recalculation queues one more behind it) while other
// leagues recalculate in parallel.
//
// Strapi 5 gives `event.params.data` (what was written), `event.params.where`
// and `event.result` (the row); `event.data` and `event.params.id` do not exist.

// The recalculation writes `position` through strapi.db.query(), and in
// Strapi 5 the query engine runs these hooks for its writes too (afterUpdate
// with params.data = { position, updatedAt }). Those writes must not enqueue
// another recalculation, or every recalculation would trigger the next one.
// Skipping them is the guard; the job writing only the positions that changed
// is the second line: without the guard, the run its writes trigger finds
// nothing to change, writes nothing, and the chain ends there (test:strapi
// checks both).
function isPositionOnly(data) {
  return data != null && Object.keys(data).every((k) => k === 'position' || k === 'updatedAt')
}

// For the latency measurement only (test:strapi --latency): no job at all,
// or one recalculation per write (no key, no debounce).
const NO_HOOK = process.env.EXAMPLE_NO_HOOK === '1'
const NO_KEY = process.env.EXAMPLE_NO_KEY === '1'
// For the tests only: the hook without its guard.
const NO_GUARD = process.env.EXAMPLE_NO_LOOP_GUARD === '1'
// How long after a league's last write its recalculation runs (the tests
// set it).
const DEBOUNCE_MS = Number(process.env.EXAMPLE_DEBOUNCE_MS || 500)

function recalculate(event) {
  if (NO_HOOK) return
  const league = event.result && event.result.league
  if (!league) return
  if (isPositionOnly(event.params.data)) {
    if (!NO_GUARD) {
      console.log(`[example] hook skipped a position-only write of ${league} (${Object.keys(event.params.data).join(',')})`)
      return
    }
    console.log(`[example] hook (no guard) enqueues for a position-only write of ${league}`)
  }
  const where = event.params.where || null // the row(s) written (a create has none)
  const options = NO_KEY ? {} : { key: `table:${league}`, debounceMs: DEBOUNCE_MS, concurrencyKey: `table:${league}` }
  strapi.plugin('jobwerk').service('jobs').enqueue('table-recalculation', { league }, { where }, options)
}

module.exports = {
  afterCreate: recalculate,
  afterUpdate: recalculate,
}
