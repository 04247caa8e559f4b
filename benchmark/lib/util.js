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

module.exports = { now, sleep, tcpReachable, percentile, median, chunks, withTimeout, forceGc }
