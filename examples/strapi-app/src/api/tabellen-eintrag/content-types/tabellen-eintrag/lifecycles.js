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

// The recalculation writes `position` (and Strapi stamps `updatedAt`); those
// writes must not enqueue another recalculation, or the job would re-trigger
// itself for ever.
function isPositionOnly(data) {
  return data != null && Object.keys(data).every((k) => k === 'position' || k === 'updatedAt')
}

// For the latency measurement only (test:strapi --latency): no job at all.
const NO_HOOK = process.env.EXAMPLE_NO_HOOK === '1'
// How long after a league's last write its recalculation runs (the tests
// set it).
const DEBOUNCE_MS = Number(process.env.EXAMPLE_DEBOUNCE_MS || 500)

function recalculate(event) {
  if (NO_HOOK) return
  const league = event.result && event.result.league
  if (!league || isPositionOnly(event.params.data)) return
  const where = event.params.where || null // the row(s) written (a create has none)
  strapi.plugin('jobwerk').service('jobs').enqueue('table-recalculation', { league }, { where }, {
    key: `table:${league}`,
    debounceMs: DEBOUNCE_MS,
    concurrencyKey: `table:${league}`,
  })
}

module.exports = {
  afterCreate: recalculate,
  afterUpdate: recalculate,
}
