// Every write of a table entry hands the table's recalculation to a
// background job. enqueue() never throws into the hook (a full queue or a
// stopping service is logged and counted, the user's write goes on), and
// inside the request's transaction the job is added once it commits.
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

function recalculate(event) {
  if (NO_HOOK) return
  const league = event.result && event.result.league
  if (!league || isPositionOnly(event.params.data)) return
  strapi.plugin('jobwerk').service('jobs').enqueue('table-recalculation', { league })
}

module.exports = {
  afterCreate: recalculate,
  afterUpdate: recalculate,
}
