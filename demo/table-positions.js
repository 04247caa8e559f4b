'use strict'
// jobwerk demo: a football league recalculates its table positions in the
// background, the way a Strapi `afterUpdate` lifecycle hook would.
//
//   npm install && npm run demo
//
// It shows priorities, progress, a calculation that fails and is retried,
// one that times out, one cancelled while it runs, and the queue statistics.
// Jobs live in an SQLite file (the default storage): the first run kills
// itself mid-way (SIGKILL, like a crash), the second run opens the same file
// and finishes what was left.

const path = require('node:path')
const fs = require('node:fs')
const { spawnSync } = require('node:child_process')
const { JobManagementService, UnrecoverableError } = require('..')

const DB = path.join(__dirname, '..', '.tmp', 'jobwerk-demo.db')

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
const flakyImport = {
  name: 'import-results',
  retries: 3,
  backoff: { type: 'exponential', delay: 200 },
  async calculate(data, context, job) {
    if (job.attempt < 3) throw new Error(`upstream API answered 503 (attempt ${job.attempt})`)
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

// A season archive: slow work, so some of it is still waiting at the crash.
const seasonArchive = {
  name: 'archive-season',
  timeout: 5000,
  async calculate(data, context, job) {
    job.updateProgress(0)
    await sleep(250)
    job.updateProgress(100)
    return `season ${data.season} archived`
  },
}

const calculations = [tablePositions, flakyImport, stuckExport, longRebuild, seasonArchive]

function newService() {
  return new JobManagementService({
    queue: { maxWorkers: 3, maxQueueSize: 100, defaultTimeout: 30000, defaultRetries: 2 },
    storage: { type: 'sqlite', path: DB, durability: 'normal' },
  })
}

function listen(service) {
  service.on('completed', (e) => log(`completed  ${label(e)} (attempt ${e.attempt})`))
  service.on('retrying', (e) => log(`retrying   ${label(e)}: "${e.error.message}", next try in ${e.delayMs} ms`))
  service.on('failed', (e) => log(`failed     ${label(e)}: ${e.error.message}`))
  service.on('timedOut', (e) => log(`timed out  ${label(e)} after attempt ${e.attempt}`))
  service.on('cancelled', (e) => log(`cancelled  ${label(e)}`))
  const lastProgress = new Map()
  service.on('progress', (e) => {
    const p = typeof e.progress === 'number' ? `${e.progress}%` : `season ${e.progress.season}/${e.progress.of}`
    if (lastProgress.get(e.jobId) !== p && (typeof e.progress === 'number' || e.progress.season % 10 === 0)) {
      lastProgress.set(e.jobId, p)
      log(`progress   ${label(e)}: ${p}`)
    }
  })
}

function statusLine(service, ids) {
  return Object.entries(ids)
    .map(([k, id]) => `${k}=${service.getJobStatus(id).status}`)
    .join(' ')
}

// First run: add the jobs, watch them for a while, then crash.
async function firstRun() {
  console.log(`First run: jobs are stored in ${path.relative(process.cwd(), DB)} (SQLite)\n`)
  const service = newService()
  listen(service)
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
  const archives = service.addCalculationJobs(
    [2019, 2020, 2021, 2022, 2023, 2024, 2025, 2026].map((season) => ({ calculation: seasonArchive, data: { season }, context: ctx, options: { priority: 'low' } })),
  )
  archives.forEach((id, i) => (ids[`archive${i + 1}`] = id))
  const names = {
    low: 'table round 1 (low)',
    rebuild: 'history rebuild (high)',
    high: 'table round 2 (high)',
    medium: 'table round 3 (medium)',
    flaky: 'results import (high)',
    stuck: 'standings export (medium)',
  }
  archives.forEach((id, i) => (names[`archive${i + 1}`] = `season archive ${2019 + i} (low)`))
  for (const [k, id] of Object.entries(ids)) labels.set(id, names[k])
  log(`added ${Object.keys(ids).length} jobs: table calculations of each priority, a flaky import, a stuck export, a long rebuild, 8 season archives`)

  await sleep(400)
  log('cancelling the long rebuild while it runs:', service.cancelJob(ids.rebuild))
  await sleep(250)
  log(`statuses   ${statusLine(service, ids)}`)
  await service.flush()
  const s = service.getQueueStatistics()
  log(`${s.completed} completed, ${s.pending} pending, ${s.running} running: now the process dies (SIGKILL, like a crash)`)
  fs.writeFileSync(`${DB}.ids.json`, JSON.stringify({ ids, names }))
  process.kill(process.pid, 'SIGKILL')
}

// Second run: a new process opens the same file and finishes the work.
async function secondRun() {
  console.log('\nSecond run: a new process opens the same file\n')
  const { ids, names } = JSON.parse(fs.readFileSync(`${DB}.ids.json`, 'utf8'))
  for (const [k, id] of Object.entries(ids)) labels.set(id, names[k])
  const service = newService()
  listen(service)
  // Handlers are found by calculation name: register them before starting.
  for (const c of calculations) service.registerCalculation(c)
  const before = service.getQueueStatistics()
  log(`found ${before.total} jobs: ${before.completed} completed, ${before.pending} pending (jobs that were running at the crash are pending again)`)
  await service.start()

  let last = ''
  for (let i = 0; i < 200; i++) {
    const line = statusLine(service, ids)
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
  const archives = Object.keys(ids).filter((k) => k.startsWith('archive')).map((k) => service.getJobStatus(ids[k]))
  console.log(`Season archives: ${archives.filter((a) => a.status === 'completed').length}/${archives.length} completed; attempts ${archives.map((a) => a.attempts).join(',')}`)

  const stats = service.getQueueStatistics()
  console.log('\nQueue statistics:')
  console.log(
    `  completed ${stats.completed}, failed ${stats.failed}, timed out ${stats.timeout}, cancelled ${stats.cancelled}, ` +
      `pending ${stats.pending}, running ${stats.running}, storage ${stats.storage}`,
  )
  console.log(
    `  throughput ${stats.throughput.toFixed(2)} jobs/s, average wait ${stats.averageWaitTime.toFixed(1)} ms, ` +
      `average run ${stats.averageRunTime.toFixed(1)} ms, workers ${stats.maxWorkers}`,
  )
  const summary = await service.stop({ timeoutMs: 2000 })
  log('service stopped', summary)
}

function main() {
  const phase = process.argv[2]
  if (phase === 'first') return firstRun()
  if (phase === 'second') return secondRun()
  // The parent: a fresh file, then the two runs as separate processes.
  fs.mkdirSync(path.dirname(DB), { recursive: true })
  for (const f of [DB, `${DB}-wal`, `${DB}-shm`, `${DB}.ids.json`]) fs.rmSync(f, { force: true })
  console.log('jobwerk demo: background table calculations that survive a crash\n')
  const first = spawnSync(process.execPath, [__filename, 'first'], { stdio: 'inherit' })
  if (first.signal !== 'SIGKILL') {
    console.error(`the first run should have been killed, it ended with ${first.signal || first.status}`)
    process.exit(1)
  }
  const second = spawnSync(process.execPath, [__filename, 'second'], { stdio: 'inherit' })
  process.exit(second.status === null ? 1 : second.status)
}

Promise.resolve()
  .then(main)
  .catch((e) => {
    console.error(e)
    process.exit(1)
  })
