'use strict'
// A fixed W1-like workload for instruction counts (valgrind --tool=callgrind),
// deterministic where wall-clock A/B on a shared machine is not:
//   valgrind --tool=callgrind --callgrind-out-file=cg.out \
//     node benchmark/callgrind-w1.js [jsRoot] [N] [mode]
// jsRoot: the folder whose index.js to load (default: this work tree); the
// addon: NAPI_RS_NATIVE_LIBRARY_PATH. N jobs {x: i} added with the bulk API
// in chunks of 1,000 to a memory store (JOBWERK_CG_STORAGE=sqlite: a fresh
// SQLite database), then processed with concurrency 16 by `(data) => data.x + 1`
// until N 'completed' events. mode 'enqueue' stops after adding.
// Instructions per job: (total(N2) - total(N1)) / (N2 - N1), which cancels
// Node's start-up and the module loading.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(process.argv[2] || path.join(__dirname, '..'))
const N = Number(process.argv[3] || 20000)
const mode = process.argv[4] || 'all'
const { JobManagementService } = require(root)

async function main() {
  const config = { queue: { maxWorkers: 16, maxQueueSize: 2_000_000, defaultTimeout: 0 } }
  let dir = null
  if (process.env.JOBWERK_CG_STORAGE === 'sqlite') {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-cg-'))
    config.storage = { type: 'sqlite', path: path.join(dir, 'jobwerk.db') }
  } else {
    config.storage = { type: 'memory' }
  }
  const s = new JobManagementService(config)
  const calculation = { name: 'inc', calculate: (data) => data.x + 1 }
  s.registerCalculation(calculation)
  for (let i = 0; i < N; i += 1000) {
    const jobs = []
    for (let j = i; j < Math.min(N, i + 1000); j++) jobs.push({ calculation, data: { x: j } })
    s.addCalculationJobs(jobs)
  }
  if (mode !== 'enqueue') {
    let done = 0
    await new Promise((resolve) => {
      s.on('completed', () => {
        if (++done === N) resolve()
      })
      s.start()
    })
  }
  await s.stop({ timeoutMs: 5000 })
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
