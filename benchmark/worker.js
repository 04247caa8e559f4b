'use strict'
// One measurement in a fresh process:
//   node --expose-gc benchmark/worker.js <system> <workload> '<json params>'
// Prints exactly one JSON line on stdout:
//   { ok: true, system, workload, info, metrics }  |  { ok: false, error }  |  { skipped: true, reason }
// then closes everything and exits by itself. If something the system left
// open keeps the process alive for more than LINGER_MS after closing, it says
// so on stderr and exits with code 3 (run.js records that as `lingered`).

const { getSystem } = require('./systems')
const { WORKLOADS } = require('./workloads')
const { tcpReachable, threadCpuMs } = require('./lib/util')

const LINGER_MS = 10000

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

async function main() {
  const [systemName, workloadName, json] = process.argv.slice(2)
  const opts = json ? JSON.parse(json) : {}
  const workload = WORKLOADS[workloadName]
  if (!workload) throw new Error(`unknown workload "${workloadName}"`)
  const system = getSystem(systemName)
  if (system.server) {
    const { host, port } = system.server
    if (!(await tcpReachable(host, port, 500))) {
      emit({ skipped: true, system: systemName, workload: workloadName, reason: `${host}:${port} unreachable` })
      return
    }
  }
  const adapter = await system.create({ concurrency: opts.concurrency || 16, queue: opts.queue })
  // run.js sends SIGTERM when a run takes too long: clean up (delete the
  // queue, close connections) before going, so no queue is left behind.
  process.once('SIGTERM', () => {
    process.stderr.write('worker: SIGTERM (timeout): closing\n')
    setTimeout(() => process.exit(4), 10000).unref()
    adapter
      .close()
      .catch((e) => process.stderr.write(`worker: close after SIGTERM failed: ${e && e.message}\n`))
      .finally(() => process.exit(4))
  })
  let metrics
  let error = null
  try {
    metrics = await workload(adapter, { ...opts, system: systemName })
  } catch (e) {
    error = e
  }
  // Before close: the SQLite writer thread ends with it.
  const threads = threadCpuMs()
  let closeError = null
  try {
    await adapter.close()
  } catch (e) {
    closeError = e
  }
  if (!error && adapter.afterClose) {
    // Measured once the system closed (jobwerk on SQLite: the file after its final checkpoint).
    metrics.afterClose = adapter.afterClose
    if (workloadName === 'w4' && typeof adapter.afterClose.fileBytes === 'number' && typeof metrics.serverBytesBefore === 'number') {
      metrics.fileBytesPerJobAfterClose = (adapter.afterClose.fileBytes - metrics.serverBytesBefore) / metrics.n
    }
  }
  if (error) {
    emit({ ok: false, system: systemName, workload: workloadName, error: String((error && error.stack) || error) })
    process.exitCode = 1
  } else {
    emit({
      ok: true,
      system: systemName,
      workload: workloadName,
      info: adapter.info,
      metrics,
      cpu: cpuReport(threads),
      closeError: closeError ? String(closeError.message || closeError) : undefined,
    })
  }
}

/** This process's CPU time (all threads, ended ones included) and, per live thread, before close. */
function cpuReport(threads) {
  const u = process.cpuUsage()
  return { processMs: (u.user + u.system) / 1000, threadsMs: threads }
}

// Exit by ourselves; report what kept us alive otherwise.
function exitWatchdog() {
  setTimeout(() => {
    const handles = (process._getActiveHandles ? process._getActiveHandles() : []).map((h) => (h && h.constructor && h.constructor.name) || typeof h)
    process.stderr.write(`worker: still alive ${LINGER_MS} ms after close; active handles: ${handles.join(', ')}\n`)
    process.exit(3)
  }, LINGER_MS).unref()
}

main()
  .catch((e) => {
    emit({ ok: false, error: String((e && e.stack) || e) })
    process.exitCode = 1
  })
  .finally(exitWatchdog)
