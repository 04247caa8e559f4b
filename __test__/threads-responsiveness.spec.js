'use strict'
// The point of the worker-thread pool: an HTTP server in the same process
// keeps answering while CPU-bound jobs run. Relative, not absolute: the same
// jobs on the main thread are the comparison (this machine is shared and busy).
const http = require('node:http')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { serviceTracker, waitForAll } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const MODULE = path.join(__dirname, 'fixtures', 'threads', 'calc.js')

// A client in its own thread: one request every 5 ms, latencies in ms back.
const CLIENT = `
const http = require('node:http')
const { parentPort, workerData } = require('node:worker_threads')
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const latencies = []
let inflight = 0
let stop = false
function done(ms) {
  latencies.push(ms)
  if (--inflight === 0 && stop) finish()
}
function finish() {
  parentPort.postMessage(latencies)
  agent.destroy()
}
parentPort.on('message', () => {
  stop = true
  clearInterval(timer)
  // The answers still on their way count too.
  if (inflight === 0) finish()
})
const timer = setInterval(() => {
  const t0 = performance.now()
  inflight++
  http
    .get({ port: workerData.port, path: '/', agent }, (res) => {
      res.resume()
      res.on('end', () => done(performance.now() - t0))
    })
    .on('error', () => done(Infinity))
}, 5)
`

function quantile(a, f) {
  const s = [...a].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.floor(s.length * f))]
}

/** Runs `jobs` 20 ms CPU jobs of `calc` while the client measures the server. */
async function measure(server, calc, jobs, config) {
  const service = tracker.create({ queue: { maxQueueSize: 1000 }, ...config })
  await service.start()
  const client = new Worker(CLIENT, { eval: true, workerData: { port: server.address().port } })
  const latencies = new Promise((resolve, reject) => {
    client.once('message', resolve)
    client.once('error', reject)
  })
  try {
    await new Promise((r) => setTimeout(r, 50))
    const ids = service.addCalculationJobs(Array.from({ length: jobs }, (_, i) => ({ calculation: calc, data: { mode: 'cpu', ms: 20, i } })))
    const st = await waitForAll(service, ids, undefined, 60000)
    client.postMessage('stop')
    const out = await latencies
    await service.stop()
    expect(st.every((s) => s.status === 'completed')).toBe(true)
    return out
  } finally {
    await client.terminate()
  }
}

test('the server in the same process stays responsive while 200 jobs of 20 ms CPU run in the pool (and not with main-thread handlers)', async () => {
  const server = http.createServer((req, res) => res.end('ok'))
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  try {
    const main = await measure(server, { name: 'cpu-main', module: MODULE }, 50)
    const pool = await measure(server, { name: 'cpu-pool', module: MODULE, threads: true }, 200, { threads: { size: 1 } })
    expect(main.length).toBeGreaterThan(20)
    expect(pool.length).toBeGreaterThan(100)
    const mainP99 = quantile(main, 0.99)
    const poolP99 = quantile(pool, 0.99)
    // On the main thread a request waits behind whole 20 ms jobs (a batch of
    // them back to back).
    expect(mainP99).toBeGreaterThanOrEqual(20)
    // In the pool it does not: a small fraction of that (the bound is wide:
    // the two cores are shared with other builds), and the median request is
    // answered sooner too. (Relative, not in ms: with two other processes
    // spinning on the two cores the pool's median was 15-32 ms.)
    expect(poolP99).toBeLessThan(mainP99 / 4)
    expect(quantile(pool, 0.5)).toBeLessThan(quantile(main, 0.5))
  } finally {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
}, 120000)
