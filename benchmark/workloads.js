'use strict'
// The four workloads of shared/BENCH.md, written once against the adapter
// interface described in systems/index.js. Each returns plain JSON metrics.

const { performance } = require('node:perf_hooks')
const { now, sleep, percentile, withTimeout, forceGc, hostCpuMs, processesCpuMs } = require('./lib/util')

const CHUNK = 1000

/** Counts recorded completions; done(n) resolves with the time the n-th was recorded. */
function completionCounter() {
  let count = 0
  let target = Infinity
  let resolveDone
  let doneAt = null
  const done = new Promise((resolve) => (resolveDone = resolve))
  return {
    onCompleted(k = 1) {
      count += k
      if (doneAt === null && count >= target) {
        doneAt = now()
        resolveDone(doneAt)
      }
    },
    expect(n) {
      target = n
      if (doneAt === null && count >= target) {
        doneAt = now()
        resolveDone(doneAt)
      }
      return done
    },
    get count() {
      return count
    },
  }
}

function summarize(values, ps) {
  const sorted = Float64Array.from(values).sort()
  const out = {}
  for (const p of ps) out[`p${p}`] = percentile(sorted, p)
  out.max = sorted[sorted.length - 1]
  out.min = sorted[0]
  out.mean = sorted.reduce((a, b) => a + b, 0) / sorted.length
  return out
}

/**
 * Adds {x: 0..n-1} in chunks of CHUNK. Each chunk is made just before it is
 * added (timed with it: ~20 µs per 1,000 objects), so the harness does not
 * hold N job objects itself (with N = 1,000,000 that would be ~50 MB of
 * everyone's RSS).
 */
async function addAllInChunks(adapter, n) {
  const t0 = now()
  for (let i = 0; i < n; i += CHUNK) {
    const b = new Array(Math.min(CHUNK, n - i))
    for (let j = 0; j < b.length; j++) b[j] = { x: i + j }
    await adapter.addBulk(b)
  }
  return now() - t0
}

/**
 * CPU over a span (the processing phase of W1): this process's, and the whole
 * machine's from /proc/stat (PostgreSQL's backends included, and whatever
 * else ran meanwhile: the machine is shared). end(n) gives cores used and
 * jobs/s per core used.
 */
function cpuSpan() {
  const p0 = process.cpuUsage()
  const h0 = hostCpuMs()
  const pg0 = processesCpuMs('postgres')
  const t0 = now()
  return {
    end(n) {
      const wallMs = now() - t0
      const p = process.cpuUsage(p0)
      const h1 = hostCpuMs()
      const processCores = (p.user + p.system) / 1000 / wallMs
      const hostCores = h0 && h1 ? (h1.busyMs - h0.busyMs) / wallMs : null
      const pg1 = processesCpuMs('postgres')
      return {
        cpuSpanMs: wallMs,
        processCores,
        // Every postgres process's CPU (backends that exited meanwhile not counted).
        postgresCores: pg0 !== null && pg1 !== null ? Math.max(0, pg1 - pg0) / wallMs : null,
        hostBusyCores: hostCores,
        jobsPerSecPerBusyCore: hostCores ? n / (wallMs / 1000) / hostCores : null,
      }
    },
  }
}

/** Peak RSS of this process so far, bytes (resourceUsage().maxRSS is in KiB). */
function peakRss() {
  return process.resourceUsage().maxRSS * 1024
}

/**
 * W1 throughput: bulk add N with nothing running, then process with
 * concurrency. A system with flush() (jobwerk on SQLite) is flushed after the
 * adds (timed separately: enqueue jobs/s counts accepted jobs, "+ flush"
 * committed ones; processing then starts with nothing left to write) and again
 * after the N-th 'completed' event: processing ends when the N completions
 * are committed.
 */
async function w1(adapter, { n, timeoutMs, workMs = 0 }) {
  const rssAtStart = process.memoryUsage().rss
  const enqueueMs = await addAllInChunks(adapter, n)
  let enqueueFlushMs = null
  if (adapter.flush) {
    const t = now()
    await adapter.flush()
    enqueueFlushMs = now() - t
  }
  const pending = await adapter.pendingCount()
  let firstStart = null
  let started = 0
  const handler = async (data) => {
    if (firstStart === null) firstStart = now()
    started++
    if (workMs > 0) await sleep(workMs)
    return data.x + 1
  }
  const counter = completionCounter()
  const done = counter.expect(n)
  const cpu = cpuSpan()
  const tStart = now()
  await adapter.startProcessing(handler, { expected: n, onCompleted: counter.onCompleted })
  const tEvents = await withTimeout(done, timeoutMs, `${n} completions (${counter.count} recorded, ${started} started)`)
  let tDone = tEvents
  if (adapter.flush) {
    await withTimeout(adapter.flush(), timeoutMs, 'the final flush')
    tDone = now()
  }
  const processMs = tDone - firstStart
  return {
    ...cpu.end(n),
    n,
    pendingAfterEnqueue: pending,
    enqueueMs,
    enqueuePerSec: n / (enqueueMs / 1000),
    enqueueFlushMs,
    enqueueFlushedPerSec: enqueueFlushMs === null ? null : n / ((enqueueMs + enqueueFlushMs) / 1000),
    startToFirstHandlerMs: firstStart - tStart,
    processMs,
    processPerSec: n / (processMs / 1000),
    // Up to the N-th completion event, before the final flush (= processPerSec without flush()).
    processToEventsPerSec: n / ((tEvents - firstStart) / 1000),
    finalFlushMs: adapter.flush ? tDone - tEvents : null,
    handlersStarted: started,
    completionsRecorded: counter.count,
    rssAtStartBytes: rssAtStart,
    rssAtEndBytes: process.memoryUsage().rss,
    peakRssBytes: peakRss(),
  }
}

/** Wall-clock ms comparable across processes (performance.now() is per process). */
const absNow = () => performance.timeOrigin + now()

/**
 * W1 with two processes on one queue (PostgreSQL systems): this process adds
 * the N jobs (flushed), a second Node process (benchmark/peer.js) opens the
 * same schema, then both process with `concurrency` each. Processing runs
 * from the first handler start in either process until all N completions
 * are recorded: counted from both processes' events (the peer relays its
 * own), then both flushed; a system that counts committed completions in the
 * database (`adapter.clusterCompletions`) is counted from this process alone.
 */
async function w1x2(adapter, { n, timeoutMs, concurrency, system, workMs = 0 }) {
  if (!adapter.peerConfig) throw new Error(`${system} has no peerConfig(): two processes need a shared database`)
  const { fork } = require('node:child_process')
  const path = require('node:path')
  const enqueueMs = await addAllInChunks(adapter, n)
  if (adapter.flush) await adapter.flush()
  const child = fork(path.join(__dirname, 'peer.js'), [system, JSON.stringify({ concurrency, peer: adapter.peerConfig(), expected: n, workMs })], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const waiters = []
  let childFirstStart = null
  let childCompleted = 0
  let childStarted = 0
  const counter = completionCounter()
  child.on('message', (m) => {
    if (m.type === 'completed') {
      childCompleted += m.k
      if (!adapter.clusterCompletions) counter.onCompleted(m.k)
    }
    if (m.type === 'firstStart' && childFirstStart === null) childFirstStart = m.at
    if (m.type === 'started') childStarted = m.started
    for (const w of waiters.splice(0)) {
      if (m.type === 'error') w.reject(new Error(`peer: ${m.message}`))
      else if (m.type === w.type) w.resolve(m)
      else waiters.push(w)
    }
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.once('exit', (code, sig) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`peer exited (${code ?? sig}) before '${w.type}'`))
  })
  const next = (type) => new Promise((resolve, reject) => waiters.push({ type, resolve, reject }))
  try {
    await withTimeout(next('ready'), 60000, 'the peer to open the queue')
    let firstStart = null
    let started = 0
    const handler = async (data) => {
      if (firstStart === null) firstStart = absNow()
      started++
      if (workMs > 0) await sleep(workMs)
      return data.x + 1
    }
    const done = counter.expect(n)
    const cpu = cpuSpan()
    const childGo = next('started-processing')
    child.send({ type: 'start' })
    await adapter.startProcessing(handler, { expected: n, onCompleted: counter.onCompleted, countAdded: n })
    await childGo
    await withTimeout(done, timeoutMs, `${n} completions (${counter.count} recorded, ${started} started here)`)
    if (adapter.flush) {
      const childFlushed = next('flushed')
      child.send({ type: 'flush' })
      await Promise.all([withTimeout(adapter.flush(), timeoutMs, 'the final flush'), withTimeout(childFlushed, timeoutMs, "the peer's final flush")])
    }
    const tDone = absNow()
    const first = Math.min(firstStart === null ? Infinity : firstStart, childFirstStart === null ? Infinity : childFirstStart)
    const processMs = tDone - first
    const stats = next('stats')
    child.send({ type: 'stats' })
    const peer = await withTimeout(stats, 30000, "the peer's figures")
    return {
      n,
      processes: 2,
      enqueueMs,
      enqueuePerSec: n / (enqueueMs / 1000),
      processMs,
      processPerSec: n / (processMs / 1000),
      ...cpu.end(n),
      handlersStartedHere: started,
      handlersStartedInPeer: peer.started,
      completionsRecordedHere: counter.count - (adapter.clusterCompletions ? 0 : childCompleted),
      completionsRecordedInPeer: childCompleted,
      peerProcessCores: peer.processCores,
      peakRssBytes: peakRss(),
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.send({ type: 'close' })
      const t = setTimeout(() => child.kill('SIGKILL'), 15000)
      await exited
      clearTimeout(t)
    }
  }
}

/**
 * The bloat run (BENCH_LONG=1, PostgreSQL systems): W1-style steady load for
 * `durationMs`. A backlog of `backlog` jobs is added first; then, with
 * processing running, a producer tops it up by chunks of 1,000 whenever fewer
 * than `backlog` jobs are outstanding, so the queue is never empty and
 * throughput is the system's. Every `sampleMs` (a minute) it records the
 * completions of that interval and each table's size (table + indexes +
 * TOAST), live and dead tuples. With autovacuum off on the server (as on this
 * project's bench server), the harness runs `VACUUM` on the system's hot
 * tables every `vacuumMs`, as a user's cron job would (0: never; the result
 * says which); with autovacuum on it leaves vacuuming to the server.
 */
async function long(adapter, { durationMs, sampleMs, backlog, vacuumMs, timeoutMs }) {
  if (!adapter.tables) throw new Error('the bloat run needs a PostgreSQL system (adapter.tables)')
  const settings = (adapter.info && adapter.info.serverSettings) || {}
  const autovacuum = settings.autovacuum === 'on'
  const vacuumEvery = autovacuum ? 0 : vacuumMs
  let added = 0
  const addChunk = async () => {
    const b = new Array(CHUNK)
    for (let j = 0; j < CHUNK; j++) b[j] = { x: added + j }
    added += CHUNK
    await adapter.addBulk(b)
  }
  while (added < backlog) await addChunk()
  if (adapter.flush) await adapter.flush()
  const tables0 = await adapter.tables()
  let completed = 0
  let started = 0
  const handler = async (data) => {
    started++
    return data.x + 1
  }
  await adapter.startProcessing(handler, { expected: Infinity, onCompleted: (k = 1) => (completed += k) })
  const t0 = now()
  const end = t0 + durationMs
  let stop = false
  // Producer: keep `backlog` outstanding (added but not completed).
  const producer = (async () => {
    while (!stop) {
      if (added - completed < backlog) await addChunk()
      else await sleep(5)
    }
  })()
  const vacuums = []
  let nextVacuum = vacuumEvery > 0 ? t0 + vacuumEvery : Infinity
  const samples = []
  let lastAt = t0
  let lastCompleted = 0
  let nextSample = t0 + sampleMs
  const cpu = cpuSpan()
  while (now() < end) {
    const wake = Math.min(nextSample, nextVacuum, end)
    await sleep(Math.min(1000, wake - now()))
    if (now() >= nextVacuum) {
      const tv = now()
      await adapter.vacuum()
      vacuums.push({ atS: (tv - t0) / 1000, ms: now() - tv })
      nextVacuum += vacuumEvery
    }
    if (now() >= nextSample || now() >= end) {
      const at = now()
      const c = completed
      const tables = await adapter.tables()
      samples.push({
        minute: samples.length + 1,
        atS: (at - t0) / 1000,
        completed: c - lastCompleted,
        jobsPerSec: (c - lastCompleted) / ((at - lastAt) / 1000),
        tables,
        totalBytes: tables.reduce((a, t) => a + t.total, 0),
        deadTuples: tables.reduce((a, t) => a + t.dead, 0),
      })
      lastAt = at
      lastCompleted = c
      nextSample += sampleMs
    }
  }
  stop = true
  await withTimeout(producer, timeoutMs, 'the producer to stop')
  // Whole intervals only (the last one may be cut short by the end).
  const full = samples.filter((x, i) => x.atS - (i ? samples[i - 1].atS : 0) >= (0.9 * sampleMs) / 1000)
  const first = full[0]
  const last = full[full.length - 1]
  return {
    durationMs,
    sampleMs,
    backlog,
    autovacuum: settings.autovacuum,
    vacuum: autovacuum ? 'left to autovacuum (on)' : vacuumEvery > 0 ? `VACUUM of the hot tables every ${vacuumEvery / 1000} s by the harness` : 'none (autovacuum off, no VACUUM)',
    vacuums,
    added,
    completed,
    handlersStarted: started,
    jobsPerSec: completed / ((lastAt - t0) / 1000),
    firstMinuteJobsPerSec: first ? first.jobsPerSec : null,
    lastMinuteJobsPerSec: last ? last.jobsPerSec : null,
    lossFirstToLast: first && last ? 1 - last.jobsPerSec / first.jobsPerSec : null,
    ...cpu.end(completed),
    tablesBefore: tables0,
    samples,
    peakRssBytes: peakRss(),
  }
}

/** W2 / W3: paced single adds with processing running; latency of handler start. */
async function paced(adapter, { n, ratePerSec, delayMs, timeoutMs }) {
  const addAt = new Float64Array(n).fill(NaN)
  const startAt = new Float64Array(n).fill(NaN)
  let started = 0
  const handler = async (data) => {
    startAt[data.x] = now()
    started++
    return data.x + 1
  }
  const counter = completionCounter()
  const done = counter.expect(n)
  await adapter.startProcessing(handler, { expected: n, onCompleted: counter.onCompleted })
  await sleep(200) // let workers connect and settle into their wait
  const interval = 1000 / ratePerSec
  const pendingAdds = []
  const addErrors = []
  const t0 = now() + 5
  for (let i = 0; i < n; i++) {
    const target = t0 + i * interval
    // Timers only (no spinning: a spin loop allocates and blocks the loop);
    // the pacing jitters by about a millisecond, the latencies do not care.
    const wait = target - now()
    if (wait > 0) await sleep(wait)
    addAt[i] = now()
    const r = adapter.add({ x: i }, delayMs)
    if (r && typeof r.then === 'function') pendingAdds.push(r.catch((e) => addErrors.push(e)))
  }
  const addSpanMs = now() - t0
  await Promise.all(pendingAdds)
  if (addErrors.length > 0) throw new Error(`${addErrors.length} adds failed: ${addErrors[0] && addErrors[0].message}`)
  await withTimeout(done, timeoutMs, `${n} completions (${counter.count} recorded, ${started} started)`)
  const lat = new Array(n)
  for (let i = 0; i < n; i++) lat[i] = startAt[i] - addAt[i] - (delayMs || 0)
  if (lat.some((v) => !Number.isFinite(v))) throw new Error('some handler start was not recorded')
  // The five worst, with when they were added (ms after the first add): to
  // line tail latencies up with what else happened (GC, a WAL checkpoint).
  const worst = lat
    .map((ms, i) => ({ i, atMs: addAt[i] - t0, ms }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 5)
  return { n, ratePerSec, achievedRatePerSec: n / (addSpanMs / 1000), delayMs: delayMs || 0, worst, ...summarize(lat, [50, 95, 99]) }
}

async function w2(adapter, { n, ratePerSec, timeoutMs }) {
  const r = await paced(adapter, { n, ratePerSec, delayMs: 0, timeoutMs })
  return { n: r.n, ratePerSec, achievedRatePerSec: r.achievedRatePerSec, latencyMs: pick(r, ['p50', 'p95', 'p99', 'max', 'min', 'mean']), worst: r.worst }
}

async function w3(adapter, { n, ratePerSec, delayMs, timeoutMs }) {
  const r = await paced(adapter, { n, ratePerSec, delayMs, timeoutMs })
  return { n: r.n, ratePerSec, achievedRatePerSec: r.achievedRatePerSec, delayMs, latenessMs: pick(r, ['p50', 'p95', 'p99', 'max', 'min', 'mean']), worst: r.worst }
}

function pick(o, keys) {
  const out = {}
  for (const k of keys) out[k] = o[k]
  return out
}

/**
 * W4 memory: RSS (and server storage / file size) per pending job; no
 * processing. A system with flush() (jobwerk on SQLite) is flushed before the
 * second reading, so its writer's queue is empty and the file holds every job;
 * the RSS before that flush is kept as rssBytesPerJobBeforeFlush.
 */
async function w4(adapter, { n }) {
  await forceGc()
  const rss0 = process.memoryUsage().rss
  const heap0 = process.memoryUsage().heapUsed
  const srv0 = await adapter.serverBytes()
  const enqueueMs = await addAllInChunks(adapter, n)
  let flushMs = null
  let rssBeforeFlush = null
  if (adapter.flush) {
    await forceGc()
    rssBeforeFlush = process.memoryUsage().rss
    const t = now()
    await adapter.flush()
    flushMs = now() - t
  }
  await forceGc()
  const mem1 = process.memoryUsage()
  const srv1 = await adapter.serverBytes()
  const pending = await adapter.pendingCount()
  return {
    n,
    pendingAfterEnqueue: pending,
    enqueueMs,
    enqueuePerSec: n / (enqueueMs / 1000),
    flushMs,
    enqueueFlushedPerSec: flushMs === null ? null : n / ((enqueueMs + flushMs) / 1000),
    rssBytesPerJob: (mem1.rss - rss0) / n,
    rssBytesPerJobBeforeFlush: rssBeforeFlush === null ? null : (rssBeforeFlush - rss0) / n,
    heapBytesPerJob: (mem1.heapUsed - heap0) / n,
    serverBytesPerJob: srv0 === null || srv1 === null ? null : (srv1 - srv0) / n,
    serverBytesBefore: srv0,
    serverBytesAfter: srv1,
    rssBefore: rss0,
    rssAfter: mem1.rss,
    peakRssBytes: peakRss(),
  }
}

const WORKLOADS = { w1, w1x2, w2, w3, w4, long }

/**
 * Parameters per workload; BENCH_QUICK shrinks them, `w1N` (BENCH_N_W1)
 * replaces W1's N. W1 waits for its completions up to 1 ms per job (at least
 * 100 s); run.js gives each run 20 s more than its workload's wait.
 */
function params(quick, { w1N } = {}) {
  const n1 = w1N || (quick ? 5000 : 20000)
  // BENCH_W1_WORK_MS: each W1 handler waits this long (an I/O-bound job, such
  // as a database query), so the workers, not the queue, bound a process.
  const workMs = Number(process.env.BENCH_W1_WORK_MS || 0)
  return {
    w1: { n: n1, timeoutMs: Math.max(100000, n1), workMs },
    w2: { n: quick ? 500 : 2000, ratePerSec: 200, timeoutMs: 30000 },
    w3: { n: quick ? 200 : 1000, ratePerSec: 200, delayMs: 500, timeoutMs: 30000 },
    w4: { n: quick ? 20000 : 100000 },
    w1x2: { n: n1, timeoutMs: Math.max(100000, n1), workMs },
    long: {
      durationMs: Number(process.env.BENCH_LONG_MIN || (quick ? 1 : 3)) * 60000,
      sampleMs: Number(process.env.BENCH_LONG_SAMPLE_S || 60) * 1000,
      backlog: Number(process.env.BENCH_LONG_BACKLOG || 50000),
      vacuumMs: Number(process.env.BENCH_LONG_VACUUM_S || 60) * 1000,
      timeoutMs: 60000,
      // jobwerk keeps finished jobs in its history table (done) for maxJobAge:
      // a minute here, pruned every 10 s, so the history stays bounded as a
      // user would configure a busy queue (default: an hour).
      queue: { maxJobAge: 60000, cleanupInterval: 10000 },
    },
  }
}

module.exports = { WORKLOADS, params }
