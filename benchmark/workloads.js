'use strict'
// The four workloads of shared/BENCH.md, written once against the adapter
// interface described in systems/index.js. Each returns plain JSON metrics.

const { now, sleep, percentile, withTimeout, forceGc } = require('./lib/util')

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
async function w1(adapter, { n, timeoutMs }) {
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
    return data.x + 1
  }
  const counter = completionCounter()
  const done = counter.expect(n)
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

const WORKLOADS = { w1, w2, w3, w4 }

/**
 * Parameters per workload; BENCH_QUICK shrinks them, `w1N` (BENCH_N_W1)
 * replaces W1's N. W1 waits for its completions up to 1 ms per job (at least
 * 100 s); run.js gives each run 20 s more than its workload's wait.
 */
function params(quick, { w1N } = {}) {
  const n1 = w1N || (quick ? 5000 : 20000)
  return {
    w1: { n: n1, timeoutMs: Math.max(100000, n1) },
    w2: { n: quick ? 500 : 2000, ratePerSec: 200, timeoutMs: 30000 },
    w3: { n: quick ? 200 : 1000, ratePerSec: 200, delayMs: 500, timeoutMs: 30000 },
    w4: { n: quick ? 20000 : 100000 },
  }
}

module.exports = { WORKLOADS, params }
