'use strict'
// jobwerk itself, loaded from the work tree (../../index.js). The native addon
// is the one NAPI_RS_NATIVE_LIBRARY_PATH points at when run.js found a release
// build in benchmark/.native, otherwise the shared jobwerk.*.node.

const fs = require('node:fs')
const path = require('node:path')
const { ROOT } = require('../lib/pkg')

const DURABILITY = {
  memory: 'none (in-process memory; lost when the process exits)',
  // sqlite: 'SQLite WAL, synchronous=NORMAL (survives a process crash, not a power cut)',
}

module.exports = function jobwerkSystem({ storage = 'memory' } = {}) {
  return {
    name: `jobwerk-${storage}`,
    server: null,
    async create({ concurrency }) {
      const { JobManagementService } = require(ROOT)
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
      const config = { queue: { maxWorkers: concurrency, maxQueueSize: 2_000_000, defaultTimeout: 0 } }
      let dbPath = null
      if (storage !== 'memory') {
        // Placeholder for the SQLite storage: the config shape is to be confirmed
        // when it lands (serverBytes() then reports the database file size).
        dbPath = path.join(require('node:os').tmpdir(), `jobwerk-bench-${process.pid}.db`)
        config.storage = { type: storage, path: dbPath }
      }
      const s = new JobManagementService(config)
      // The harness swaps the job body in at start; the calculation object stays
      // the same so jobwerk registers it once.
      let body = (data) => data.x + 1
      const calculation = { name: 'inc', calculate: (data) => body(data) }
      s.registerCalculation(calculation)
      const native = process.env.NAPI_RS_NATIVE_LIBRARY_PATH || null
      return {
        info: {
          version: pkg.version,
          durability: DURABILITY[storage] || storage,
          config: { ...config, handler: 'calculate: async (data) => data.x + 1', completions: "'completed' event" },
          native: native ? path.relative(ROOT, native) : 'shared jobwerk.*.node (build mode unknown)',
        },
        async addBulk(datas) {
          const jobs = new Array(datas.length)
          for (let i = 0; i < datas.length; i++) jobs[i] = { calculation, data: datas[i] }
          s.addCalculationJobs(jobs)
        },
        add(data, delayMs) {
          s.addCalculationJob(calculation, data, undefined, delayMs ? { delay: delayMs } : undefined)
        },
        async startProcessing(handler, { onCompleted }) {
          body = handler
          s.on('completed', () => onCompleted(1))
          s.on('failed', (e) => process.stderr.write(`jobwerk job failed: ${JSON.stringify(e)}\n`))
          await s.start()
        },
        async pendingCount() {
          const st = s.getQueueStatistics()
          return (st.pending || 0) + (st.waiting || 0)
        },
        async serverBytes() {
          if (!dbPath) return null
          let total = 0
          for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) {
            try {
              total += fs.statSync(f).size
            } catch {}
          }
          return total
        },
        stats() {
          return s.getQueueStatistics()
        },
        async close() {
          await s.stop({ timeoutMs: 5000 })
          if (dbPath) for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) fs.rmSync(f, { force: true })
        },
      }
    },
  }
}
