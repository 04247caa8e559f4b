'use strict'
// Soak tests, run on request (not part of `npm test`): long runs that watch the
// process's memory rather than assert a timing.
//
//   node --expose-gc scripts/soak.js [jobs|schedules|timeouts|all]
//     JOBS=2000000        jobs through each store (memory, then SQLite)
//     SCHEDULES=200       interval schedules, every 100 ms, for SECONDS=20
//     TIMEOUTS=200000     never-resolving handlers that time out after 5 ms
//
// Each soak samples RSS (after a full GC when --expose-gc is given) and reports
// the growth between the end of warm-up (the first quarter) and the end. It
// exits with 1 when that growth exceeds LIMIT_MB (default 48): a leak of a few
// hundred bytes per job shows up as far more than that over the run.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { JobManagementService } = require('..')

const env = (k, d) => (process.env[k] ? Number(process.env[k]) : d)
const LIMIT_MB = env('LIMIT_MB', 48)
const MB = 1024 * 1024

function rss() {
  if (global.gc) global.gc()
  return process.memoryUsage().rss
}

const tick = () => new Promise((r) => setImmediate(r))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Growth from the sample at the end of warm-up to the largest after it. */
function verdict(name, samples) {
  const warm = samples[Math.floor(samples.length / 4)]
  const after = samples.slice(Math.floor(samples.length / 4))
  const growth = Math.max(...after.map((s) => s.rss)) - warm.rss
  const ok = growth <= LIMIT_MB * MB
  const row = samples.map((s) => `${s.at}:${(s.rss / MB).toFixed(0)}`).join(' ')
  console.log(`${name}: RSS MB by progress ${row}`)
  console.log(`${name}: growth after warm-up ${(growth / MB).toFixed(1)} MB (limit ${LIMIT_MB}) -> ${ok ? 'flat' : 'GROWING'}`)
  return ok
}

function sqliteConfig() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-soak-'))
  return { dir, storage: { type: 'sqlite', path: path.join(dir, 'soak.db') } }
}

async function withService(kind, queue, fn) {
  let dir = null
  let storage = { type: 'memory' }
  if (kind === 'sqlite') ({ dir, storage } = sqliteConfig())
  // Finished jobs are pruned every second, so memory should not grow with the jobs processed.
  const s = new JobManagementService({ storage, queue: { maxJobAge: 1000, cleanupInterval: 1000, ...queue } })
  await s.start()
  try {
    return await fn(s)
  } finally {
    await s.stop({ timeoutMs: 1000 })
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function soakJobs(kind) {
  const total = env('JOBS', 2_000_000)
  const chunk = 10_000
  let ran = 0
  const calc = { name: 'soak', retries: 0, calculate: (d) => ((ran += 1), d.i) }
  return withService(kind, { maxWorkers: 64, maxQueueSize: 4 * chunk, defaultTimeout: 0 }, async (s) => {
    const samples = [{ at: 0, rss: rss() }]
    const every = Math.max(chunk, Math.floor(total / 20 / chunk) * chunk)
    const t0 = Date.now()
    for (let added = 0; added < total; ) {
      const n = Math.min(chunk, total - added)
      const jobs = new Array(n)
      for (let i = 0; i < n; i++) jobs[i] = { calculation: calc, data: { i: added + i }, context: {} }
      s.addCalculationJobs(jobs)
      added += n
      // Keep at most two chunks queued.
      while (added - ran > chunk) await tick()
      if (added % every === 0) samples.push({ at: `${added / 1000}k`, rss: rss() })
    }
    while (ran < total) await sleep(1)
    const secs = (Date.now() - t0) / 1000
    console.log(`jobs/${kind}: ${total} jobs in ${secs.toFixed(1)} s (${Math.round(total / secs)} jobs/s)`)
    return verdict(`jobs/${kind}`, samples)
  })
}

async function soakSchedules() {
  const count = env('SCHEDULES', 200)
  const seconds = env('SECONDS', 20)
  let fired = 0
  const calc = { name: 'tick', retries: 0, calculate: () => (fired += 1) }
  return withService('memory', { maxWorkers: 64, maxQueueSize: 10 * count }, async (s) => {
    for (let i = 0; i < count; i++) s.scheduleRecurringCalculationJob(calc, { i }, {}, new Date(), 100)
    const samples = []
    for (let t = 1; t <= seconds; t++) {
      await sleep(1000)
      samples.push({ at: `${t}s`, rss: rss() })
    }
    const expected = count * seconds * 10
    console.log(`schedules: ${fired} runs of ${count} schedules in ${seconds} s (${expected} if every 100 ms tick ran)`)
    const ok = fired >= expected * 0.8
    if (!ok) console.log('schedules: fewer than 80 % of the ticks ran')
    return verdict('schedules', samples) && ok
  })
}

async function soakTimeouts() {
  const total = env('TIMEOUTS', 200_000)
  const chunk = 5_000
  let started = 0
  let aborted = 0
  const calc = {
    name: 'hang',
    timeout: 5,
    retries: 0,
    calculate: (_d, _c, job) => {
      started += 1
      job.signal.addEventListener('abort', () => (aborted += 1))
      return new Promise(() => {})
    },
  }
  return withService('memory', { maxWorkers: 500, maxQueueSize: 2 * chunk }, async (s) => {
    let timedOut = 0
    s.on('timedOut', () => (timedOut += 1))
    const samples = [{ at: 0, rss: rss() }]
    for (let added = 0; added < total; ) {
      const n = Math.min(chunk, total - added)
      const jobs = new Array(n)
      for (let i = 0; i < n; i++) jobs[i] = { calculation: calc, data: {}, context: {} }
      s.addCalculationJobs(jobs)
      added += n
      while (added - timedOut > chunk) await sleep(5)
      if (added % (total / 10) === 0) samples.push({ at: `${added / 1000}k`, rss: rss() })
    }
    while (timedOut < total) await sleep(5)
    console.log(`timeouts: ${started} started, ${timedOut} timed out, ${aborted} signals aborted`)
    const ok = aborted === total && timedOut === total
    if (!ok) console.log('timeouts: not every attempt was aborted')
    return verdict('timeouts', samples) && ok
  })
}

async function main() {
  const which = process.argv[2] || 'all'
  if (!global.gc) console.log('(run with node --expose-gc for steadier figures)')
  const results = []
  if (which === 'all' || which === 'jobs') {
    results.push(await soakJobs('memory'))
    results.push(await soakJobs('sqlite'))
  }
  if (which === 'all' || which === 'schedules') results.push(await soakSchedules())
  if (which === 'all' || which === 'timeouts') results.push(await soakTimeouts())
  if (results.length === 0) throw new Error(`unknown soak '${which}': jobs, schedules, timeouts or all`)
  process.exitCode = results.every(Boolean) ? 0 : 1
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
