'use strict'
// W5 host responsiveness (shared/BENCH.md): the measured process runs an
// HTTP server while 1,000 jobs of ~20 ms synchronous CPU each run; a client
// in another process sends it a request every 5 ms (200/s) and records each
// answer's latency. Modes, each in a fresh process, alternated per repetition:
//
//   idle     the server alone (no jobs) for as long as W5_IDLE_MS (5 s)
//   main     jobwerk (memory), the handler on the main thread
//   pool     jobwerk (memory), the same module with threads: true (default pool size)
//   bullmq   BullMQ sandboxed processor (child processes), local Redis
//
// Reported per mode: the server's latency p50/p99/max, the event-loop delay
// p50/p99/max (perf_hooks.monitorEventLoopDelay, resolution 5 ms, minus those
// 5 ms), and the
// jobs' total time (first add to last completion). Medians of W5_REPS (3).
//
//   node benchmark/w5.js                  all modes, writes benchmark/results/w5-<date>.json
//   W5_MODES=idle,pool W5_REPS=1 W5_JOBS=200 node benchmark/w5.js
//
// Parallelism: jobwerk's pool has its default size (os.availableParallelism()
// - 1, at least 1) and BullMQ's sandboxed worker the same concurrency;
// jobwerk's maxWorkers is 16 in both of its modes.

const { spawn, fork } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { performance, monitorEventLoopDelay } = require('node:perf_hooks')

const ROOT = path.join(__dirname, '..')
const CPU_JOB = path.join(__dirname, 'w5', 'cpu-job.js')
const JOBS = Number(process.env.W5_JOBS || 1000)
const JOB_MS = 20
const IDLE_MS = Number(process.env.W5_IDLE_MS || 5000)
const REQUEST_EVERY_MS = 5
const ELD_RESOLUTION_MS = 5
const POOL_SIZE = Math.max(1, (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length) - 1)
const MODES = ['idle', 'main', 'pool', 'bullmq']

function quantile(sorted, q) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]
}

function median(a) {
  const s = a.filter((x) => typeof x === 'number').sort((x, y) => x - y)
  return s.length ? s[Math.floor(s.length / 2)] : null
}

// --- the client process ------------------------------------------------------

function client(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  const latencies = []
  let inflight = 0
  let stopping = false
  let errors = 0
  const finish = () => {
    process.send({ latencies, errors }, () => process.exit(0))
  }
  const done = (ms) => {
    latencies.push(ms)
    if (--inflight === 0 && stopping) finish()
  }
  const timer = setInterval(() => {
    const t0 = performance.now()
    inflight++
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', () => done(performance.now() - t0))
      })
      .on('error', () => {
        errors++
        inflight--
      })
  }, REQUEST_EVERY_MS)
  process.on('message', () => {
    stopping = true
    clearInterval(timer)
    if (inflight === 0) finish()
  })
  process.send('ready')
}

// --- one measured run ------------------------------------------------------------

async function withJobwerk(threads, run) {
  const { JobManagementService } = require(process.env.JOBWERK_JS ? path.resolve(process.env.JOBWERK_JS) : ROOT)
  const s = new JobManagementService({ storage: { type: 'memory' }, queue: { maxWorkers: 16, maxQueueSize: JOBS + 10, defaultTimeout: 0 } })
  const calc = threads ? { name: 'cpu', module: CPU_JOB, threads: true } : { name: 'cpu', module: CPU_JOB }
  s.registerCalculation(calc)
  let done = 0
  let resolveAll
  const all = new Promise((r) => (resolveAll = r))
  s.on('completed', () => {
    if (++done === JOBS) resolveAll()
  })
  s.on('failed', (e) => process.stderr.write(`job failed: ${JSON.stringify(e)}\n`))
  await s.start()
  try {
    return await run(async () => {
      const jobs = Array.from({ length: JOBS }, (_, i) => ({ calculation: calc, data: { ms: JOB_MS, i } }))
      for (let i = 0; i < jobs.length; i += 500) s.addCalculationJobs(jobs.slice(i, i + 500))
      await all
    })
  } finally {
    await s.stop()
  }
}

async function withBullmq(run) {
  const { Queue, Worker } = require('bullmq')
  const connection = { host: '127.0.0.1', port: 6379 }
  const name = `jobwerk-w5-${process.pid}-${Date.now()}`
  const queue = new Queue(name, { connection })
  const worker = new Worker(name, path.join(__dirname, 'w5', 'bullmq-processor.js'), { connection, concurrency: POOL_SIZE, autorun: true })
  await worker.waitUntilReady()
  let done = 0
  let resolveAll
  const all = new Promise((r) => (resolveAll = r))
  worker.on('completed', () => {
    if (++done === JOBS) resolveAll()
  })
  worker.on('failed', (j, e) => process.stderr.write(`bullmq job failed: ${e && e.message}\n`))
  try {
    return await run(async () => {
      const jobs = Array.from({ length: JOBS }, (_, i) => ({ name: 'cpu', data: { ms: JOB_MS, i } }))
      for (let i = 0; i < jobs.length; i += 500) await queue.addBulk(jobs.slice(i, i + 500))
      await all
    })
  } finally {
    await worker.close()
    await queue.obliterate({ force: true }).catch(() => {})
    await queue.close()
  }
}

async function measured(mode) {
  const server = http.createServer((req, res) => res.end('ok'))
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const child = fork(__filename, ['client', String(server.address().port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await new Promise((r) => child.once('message', r))
  const result = new Promise((r) => child.once('message', r))
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS })
  // Let the client settle in before the clock starts.
  await new Promise((r) => setTimeout(r, 200))
  eld.enable()
  const t0 = performance.now()
  let jobsMs = null
  const body = async (runJobs) => {
    await runJobs()
    jobsMs = performance.now() - t0
  }
  if (mode === 'idle') await new Promise((r) => setTimeout(r, IDLE_MS))
  else if (mode === 'main') await withJobwerk(false, body)
  else if (mode === 'pool') await withJobwerk(true, body)
  else if (mode === 'bullmq') await withBullmq(body)
  else throw new Error(`unknown mode ${mode}`)
  eld.disable()
  child.send('stop')
  const { latencies, errors } = await result
  server.closeAllConnections()
  server.close()
  const s = Float64Array.from(latencies).sort()
  // The histogram holds the time between the resolution timer's ticks: the
  // delay is what exceeds the resolution. No sample at all: the loop was
  // blocked from start to end (main mode), see the server's latency instead.
  const ms = (ns) => (eld.count === 0 ? null : Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS))
  return {
    mode,
    jobs: mode === 'idle' ? 0 : JOBS,
    jobsMs,
    requests: s.length,
    requestErrors: errors,
    latencyMs: { p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s[s.length - 1] },
    eventLoopDelayMs: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) },
  }
}

// --- the orchestrator ---------------------------------------------------------------

function runMode(mode) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [__filename, 'run', mode], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('close', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()))
      } catch {
        resolve({ mode, error: `exit ${code}: ${out}` })
      }
    })
  })
}

async function redisUp() {
  const net = require('node:net')
  return new Promise((resolve) => {
    const s = net.connect(6379, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

async function orchestrate() {
  const reps = Number(process.env.W5_REPS || 3)
  let modes = process.env.W5_MODES ? process.env.W5_MODES.split(',') : MODES
  if (modes.includes('bullmq') && !(await redisUp())) {
    process.stderr.write('W5: Redis at 127.0.0.1:6379 unreachable: bullmq skipped\n')
    modes = modes.filter((m) => m !== 'bullmq')
  }
  const runs = []
  for (let rep = 0; rep < reps; rep++) {
    // Rotate the order each repetition so drift hits every mode alike.
    const order = modes.map((_, i) => modes[(i + rep) % modes.length])
    for (const mode of order) {
      process.stderr.write(`W5 rep ${rep + 1}/${reps} ${mode}...\n`)
      const r = await runMode(mode)
      r.rep = rep
      runs.push(r)
      if (r.error) process.stderr.write(`  FAILED: ${r.error}\n`)
    }
  }
  const rows = []
  rows.push(`| mode | server p50 / p99 / max ms | event-loop delay p50 / p99 / max ms | jobs' total time s |`)
  rows.push('|---|---:|---:|---:|')
  const summary = {}
  for (const mode of modes) {
    const mine = runs.filter((r) => r.mode === mode && !r.error)
    const m = (f) => median(mine.map(f))
    summary[mode] = {
      latencyMs: { p50: m((r) => r.latencyMs.p50), p99: m((r) => r.latencyMs.p99), max: m((r) => r.latencyMs.max) },
      eventLoopDelayMs: { p50: m((r) => r.eventLoopDelayMs.p50), p99: m((r) => r.eventLoopDelayMs.p99), max: m((r) => r.eventLoopDelayMs.max) },
      jobsMs: m((r) => r.jobsMs),
    }
    const f = (x) => (x === null ? '—' : x < 10 ? x.toFixed(2) : x.toFixed(1))
    const s = summary[mode]
    rows.push(
      `| ${mode} | ${f(s.latencyMs.p50)} / ${f(s.latencyMs.p99)} / ${f(s.latencyMs.max)} | ${f(s.eventLoopDelayMs.p50)} / ${f(s.eventLoopDelayMs.p99)} / ${f(s.eventLoopDelayMs.max)} | ${s.jobsMs === null ? '—' : (s.jobsMs / 1000).toFixed(2)} |`,
    )
  }
  const header = `W5: ${JOBS} jobs of ${JOB_MS} ms CPU, a request every ${REQUEST_EVERY_MS} ms, pool size / BullMQ concurrency ${POOL_SIZE}, jobwerk maxWorkers 16; medians of ${reps}`
  console.log(`${header}\n\n${rows.join('\n')}`)
  const file = path.join(__dirname, 'results', `w5-${new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  fs.writeFileSync(file, `${JSON.stringify({ header, node: process.version, cpus: os.cpus().length, summary, runs }, null, 2)}\n`)
  process.stderr.write(`raw results: ${path.relative(ROOT, file)}\n`)
}

const [cmd, arg] = process.argv.slice(2)
if (cmd === 'client') client(Number(arg))
else if (cmd === 'run') {
  measured(arg).then(
    (r) => {
      console.log(JSON.stringify(r))
      process.exit(0)
    },
    (e) => {
      console.log(JSON.stringify({ mode: arg, error: String((e && e.stack) || e) }))
      process.exit(1)
    },
  )
} else orchestrate()
