'use strict'
// piscina alone: the W1 handler as a task file in a piscina pool of the same
// size as jobwerk's default (os.availableParallelism() - 1, at least 1),
// `concurrency` tasks in flight (one run() per job, as piscina is used). No
// queue, no storage: the cost of moving one job to a thread and back.

const os = require('node:os')
const path = require('node:path')
const { pkgVersion } = require('../lib/pkg')

const SIZE = Math.max(1, (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length) - 1)

module.exports = {
  name: 'piscina',
  server: null,
  async create({ concurrency }) {
    const { Piscina } = require('piscina')
    const filename = path.join(__dirname, '..', 'piscina-task.js')
    const pool = new Piscina({ filename, minThreads: SIZE, maxThreads: SIZE, concurrentTasksPerWorker: concurrency })
    const datas = []
    let closed = false
    return {
      info: {
        version: pkgVersion('piscina'),
        durability: 'none (no queue: tasks in memory)',
        config: {
          filename: 'benchmark/piscina-task.js (async (data) => data.x + 1)',
          threads: SIZE,
          concurrentTasksPerWorker: concurrency,
          inFlight: concurrency,
          completions: 'run() promise resolved; the clock starts when processing starts',
        },
      },
      async addBulk(chunk) {
        for (const d of chunk) datas.push(d)
      },
      add() {
        throw new Error('piscina runs W1 only')
      },
      async startProcessing(handler, { onCompleted }) {
        // The harness's handler cannot run in a thread: one call marks the first start.
        handler({ x: -1 })
        let next = 0
        const lane = async () => {
          while (next < datas.length && !closed) {
            await pool.run(datas[next++])
            onCompleted(1)
          }
        }
        for (let i = 0; i < concurrency; i++) lane().catch((e) => process.stderr.write(`piscina task failed: ${e && e.stack}\n`))
      },
      async pendingCount() {
        return datas.length
      },
      async serverBytes() {
        return null
      },
      async close() {
        closed = true
        await pool.destroy()
      },
    }
  },
}
