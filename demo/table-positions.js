'use strict'
// jobwerk demo: a football league recalculates its table positions in the
// background, the way a Strapi `afterUpdate` lifecycle hook would.
//
//   npm install && npm run demo
//
// It shows priorities, progress, a calculation that fails and is retried,
// one that times out, one cancelled while it runs, and the queue statistics.

const { JobManagementService, UnrecoverableError } = require('..')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const t0 = Date.now()
const labels = new Map()
const label = (e) => labels.get(e.jobId) || e.name
const log = (...args) => console.log(`[${String(Date.now() - t0).padStart(5)} ms]`, ...args)

// Made-up match results of one league.
const teams = ['Ajax', 'Benfica', 'Celtic', 'Dortmund', 'Esbjerg', 'Feyenoord']
function results(seed) {
  const out = []
  for (let i = 0; i < teams.length; i++) {
    for (let j = 0; j < teams.length; j++) {
      if (i !== j) out.push({ home: teams[i], away: teams[j], goals: [(i * 7 + j * 3 + seed) % 4, (i * 2 + j * 5 + seed) % 3] })
    }
  }
  return out
}

// The calculation: compute the table from the results, reporting progress.
const tablePositions = {
  name: 'table-positions',
  timeout: 5000,
  retries: 2,
  async calculate(data, context, job) {
    const points = new Map(teams.map((t) => [t, 0]))
    const matches = results(data.round)
    for (let i = 0; i < matches.length; i++) {
      const { home, away, goals } = matches[i]
      if (goals[0] > goals[1]) points.set(home, points.get(home) + 3)
      else if (goals[0] < goals[1]) points.set(away, points.get(away) + 3)
      else {
        points.set(home, points.get(home) + 1)
        points.set(away, points.get(away) + 1)
      }
      if (i % 10 === 9) {
        job.updateProgress(Math.round(((i + 1) / matches.length) * 100))
        await sleep(data.slowMs || 20)
      }
    }
    return [...points].sort((a, b) => b[1] - a[1]).map(([team, pts], i) => `${i + 1}. ${team} ${pts}`)
  },
}

// Fails twice (a flaky upstream), then succeeds on the third attempt.
let flakyCalls = 0
const flakyImport = {
  name: 'import-results',
  retries: 3,
  backoff: { type: 'exponential', delay: 200 },
  async calculate(data) {
    flakyCalls++
    if (flakyCalls < 3) throw new Error(`upstream API answered 503 (call ${flakyCalls})`)
    return { imported: data.matches }
  },
}

// Never finishes in time: times out after 300 ms, no retries.
const stuckExport = {
  name: 'export-standings',
  timeout: 300,
  retries: 0,
  calculate: (data, context, job) =>
    new Promise((resolve) => {
      // A well-behaved handler stops its work when the signal fires.
      job.signal.addEventListener('abort', () => resolve('stopped'))
    }),
}

// A long recalculation that gets cancelled while it runs.
const longRebuild = {
  name: 'rebuild-history',
  timeout: 10000,
  async calculate(data, context, job) {
    for (let season = 1; season <= 50; season++) {
      if (job.signal.aborted) throw new UnrecoverableError('stopped: the job was cancelled')
      job.updateProgress({ season, of: 50 })
      await sleep(40)
    }
    return 'rebuilt'
  },
}

async function main() {
  console.log('jobwerk demo: background table calculations (in-memory storage)\n')
  const service = new JobManagementService({
    queue: { maxWorkers: 3, maxQueueSize: 100, defaultTimeout: 30000, defaultRetries: 2 },
  })

  service.on('completed', (e) => log(`completed  ${label(e)} (attempt ${e.attempt})`))
  service.on('retrying', (e) => log(`retrying   ${label(e)}: "${e.error.message}", next try in ${e.delayMs} ms`))
  service.on('failed', (e) => log(`failed     ${label(e)}: ${e.error.message}`))
  service.on('timedOut', (e) => log(`timed out  ${label(e)} after attempt ${e.attempt}`))
  service.on('cancelled', (e) => log(`cancelled  ${label(e)}`))
  let lastProgress = new Map()
  service.on('progress', (e) => {
    const p = typeof e.progress === 'number' ? `${e.progress}%` : `season ${e.progress.season}/${e.progress.of}`
    if (lastProgress.get(e.jobId) !== p && (typeof e.progress === 'number' || e.progress.season % 10 === 0)) {
      lastProgress.set(e.jobId, p)
      log(`progress   ${label(e)}: ${p}`)
    }
  })

  await service.start()
  log('service started with 3 workers')

  // What an afterUpdate hook would do after results were edited:
  const ctx = { contentType: 'api::match.match', operationId: 'afterUpdate' }
  const ids = {
    low: service.addCalculationJob(tablePositions, { round: 1, slowMs: 30 }, ctx, { priority: 'low' }),
    rebuild: service.addCalculationJob(longRebuild, {}, ctx, { priority: 'high' }),
    high: service.addCalculationJob(tablePositions, { round: 2 }, ctx, { priority: 'high' }),
    medium: service.addCalculationJob(tablePositions, { round: 3 }, ctx),
    flaky: service.addCalculationJob(flakyImport, { matches: 30 }, ctx, { priority: 'high' }),
    stuck: service.addCalculationJob(stuckExport, {}, ctx, { priority: 'medium' }),
  }
  const names = { low: 'table round 1 (low)', rebuild: 'history rebuild (high)', high: 'table round 2 (high)', medium: 'table round 3 (medium)', flaky: 'results import (high)', stuck: 'standings export (medium)' }
  for (const [k, id] of Object.entries(ids)) labels.set(id, names[k])
  log('added 6 jobs: high, medium and low priority table calculations, a flaky import, a stuck export, a long rebuild')

  await sleep(400)
  log('cancelling the long rebuild while it runs:', service.cancelJob(ids.rebuild))

  // Watch statuses until nothing is left to do.
  let last = ''
  for (let i = 0; i < 200; i++) {
    const line = Object.entries(ids)
      .map(([k, id]) => `${k}=${service.getJobStatus(id).status}`)
      .join(' ')
    if (line !== last) {
      log(`statuses   ${line}`)
      last = line
    }
    const s = service.getQueueStatistics()
    if (s.pending + s.running + s.waiting === 0) break
    await sleep(50)
  }

  console.log('\nFinal table (round 2, high priority):')
  for (const row of service.getJobStatus(ids.high).result) console.log('  ' + row)
  const flaky = service.getJobStatus(ids.flaky)
  console.log(`\nFlaky import: ${flaky.status} after ${flaky.attempts} attempts; errors seen:`)
  for (const e of flaky.errors) console.log(`  attempt ${e.attempt}: ${e.message}`)
  const stuck = service.getJobStatus(ids.stuck)
  console.log(`Stuck export: ${stuck.status} (${stuck.error.message})`)
  const rebuild = service.getJobStatus(ids.rebuild)
  console.log(`Long rebuild: ${rebuild.status} at ${JSON.stringify(rebuild.progress)}`)

  const stats = service.getQueueStatistics()
  console.log('\nQueue statistics:')
  console.log(
    `  completed ${stats.completed}, failed ${stats.failed}, timed out ${stats.timeout}, cancelled ${stats.cancelled}, ` +
      `pending ${stats.pending}, running ${stats.running}`,
  )
  console.log(
    `  throughput ${stats.throughput.toFixed(2)} jobs/s, average wait ${stats.averageWaitTime.toFixed(1)} ms, ` +
      `average run ${stats.averageRunTime.toFixed(1)} ms, workers ${stats.maxWorkers}`,
  )
  const summary = await service.stop({ timeoutMs: 2000 })
  log('service stopped', summary)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
