'use strict'
// Small helpers shared by the orchestrator and the worker.

const net = require('node:net')
const { performance } = require('node:perf_hooks')

const now = () => performance.now()

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}

/** Resolves true if a TCP connection to host:port opens within timeoutMs. */
function tcpReachable(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port })
    let done = false
    const finish = (ok) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    sock.once('connect', () => finish(true))
    sock.once('error', () => finish(false))
  })
}

/** Nearest-rank percentile of an array of numbers (p in 0..100). */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

function chunks(n, size, make) {
  const out = []
  for (let i = 0; i < n; i += size) {
    const c = new Array(Math.min(size, n - i))
    for (let j = 0; j < c.length; j++) c[j] = make(i + j)
    out.push(c)
  }
  return out
}

/** Rejects with a clear message if `promise` does not settle within ms. */
function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Forces a full collection a few times (needs --expose-gc). */
async function forceGc() {
  if (typeof global.gc !== 'function') throw new Error('run node with --expose-gc')
  for (let i = 0; i < 4; i++) {
    global.gc()
    await new Promise(setImmediate)
  }
}

const fs = require('node:fs')
const TICK_MS = 10 // USER_HZ = 100 on Linux

/** The host's CPU time since boot from /proc/stat, ms summed over cores (null off Linux). */
function hostCpuMs() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = f[3] + f[4]
    return { busyMs: (total - idle) * TICK_MS, totalMs: total * TICK_MS }
  } catch {
    return null
  }
}

/**
 * CPU time of this process's live threads by thread name, ms (Linux), and the
 * time each spent runnable but waiting for a CPU (a busy machine): `main` is
 * node's main thread (JavaScript), `node` V8's helpers, `jobwerk` jobwerk's
 * tokio runtime, `jobwerk-sqlite` its SQLite writer, `tokio-rt-worker` napi's.
 * Threads that already ended are not listed (process.cpuUsage() has them).
 */
function threadCpuMs() {
  const out = {}
  try {
    for (const t of fs.readdirSync('/proc/self/task')) {
      let stat
      try {
        stat = fs.readFileSync(`/proc/self/task/${t}/stat`, 'utf8')
      } catch {
        continue
      }
      const open = stat.indexOf('(')
      const close = stat.lastIndexOf(')')
      const name = t === String(process.pid) ? 'main' : stat.slice(open + 1, close).replace(/[0-9]+$/, '#')
      const f = stat.slice(close + 2).split(' ')
      const ms = (Number(f[11]) + Number(f[12])) * TICK_MS
      out[name] = (out[name] || 0) + ms
      // schedstat: ns on CPU, ns runnable but waiting for a CPU, timeslices.
      try {
        const w = Number(fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[1]) / 1e6
        out[`${name} (waiting for a CPU)`] = Math.round((out[`${name} (waiting for a CPU)`] || 0) + w)
      } catch {}
    }
  } catch {
    return null
  }
  return out
}

/**
 * CPU time of every process named `name` on this machine (ms, Linux; null
 * elsewhere), ended ones not included: PostgreSQL's backends (`postgres`),
 * read around a span to tell the server's share of the work. On a shared
 * machine it includes other clients' backends.
 */
function processesCpuMs(name) {
  try {
    let total = 0
    for (const pid of fs.readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(pid)) continue
      let stat
      try {
        stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
      } catch {
        continue
      }
      const open = stat.indexOf('(')
      const close = stat.lastIndexOf(')')
      if (stat.slice(open + 1, close) !== name) continue
      const f = stat.slice(close + 2).split(' ')
      total += (Number(f[11]) + Number(f[12])) * TICK_MS
    }
    return total
  } catch {
    return null
  }
}

module.exports = { now, sleep, tcpReachable, percentile, median, chunks, withTimeout, forceGc, hostCpuMs, threadCpuMs, processesCpuMs }
