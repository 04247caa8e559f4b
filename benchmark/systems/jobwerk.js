'use strict'
// jobwerk itself. The JavaScript side is index.js from the work tree, or the
// HEAD snapshot's copy in benchmark/.native/js when run.js built from HEAD
// (JOBWERK_JS); the native addon is the one NAPI_RS_NATIVE_LIBRARY_PATH points
// at when run.js found a release build, otherwise the shared jobwerk.*.node.
//
// storage 'memory': `{ type: 'memory' }` (set explicitly: SQLite is the
// default). storage 'sqlite': a fresh database in a new temporary folder per
// run (BENCH_SQLITE_DIR or the OS temp folder), removed with its -wal, -shm
// and .lock files by close().

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT } = require('../lib/pkg')

const DURABILITY = {
  memory: 'none (in-process memory; lost when the process exits)',
  normal: 'SQLite WAL, synchronous=NORMAL (survives a process crash, not a power cut)',
  full: 'SQLite WAL, synchronous=FULL (every commit synced to disk: survives a power cut)',
}

// statfs f_type of file systems where fsync costs nothing (durability figures meaningless).
const TMPFS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */])

/** The folder name prefix run.js sweeps after a killed run (…-<pid>-…). */
const DIR_PREFIX = 'jobwerk-bench-sqlite-'

function dbFiles(dbPath) {
  return [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]
}

function fileBytes(dbPath) {
  const out = { db: 0, wal: 0, shm: 0 }
  for (const [k, f] of [
    ['db', dbPath],
    ['wal', `${dbPath}-wal`],
    ['shm', `${dbPath}-shm`],
  ]) {
    try {
      out[k] = fs.statSync(f).size
    } catch {}
  }
  return out
}

function jobwerkSystem({ storage = 'memory', durability = 'normal', threads = false } = {}) {
  const name = storage === 'memory' ? (threads ? 'jobwerk-threads' : 'jobwerk-memory') : durability === 'full' ? 'jobwerk-sqlite-full' : 'jobwerk-sqlite'
  return {
    name,
    server: null,
    async create({ concurrency }) {
      const jsRoot = process.env.JOBWERK_JS ? path.resolve(process.env.JOBWERK_JS) : ROOT
      const { JobManagementService } = require(jsRoot)
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
      const config = { queue: { maxWorkers: concurrency, maxQueueSize: 2_000_000, defaultTimeout: 0 } }
      let dir = null
      let dbPath = null
      let fsType = null
      if (storage === 'memory') {
        config.storage = { type: 'memory' }
      } else {
        const base = process.env.BENCH_SQLITE_DIR ? path.resolve(process.env.BENCH_SQLITE_DIR) : os.tmpdir()
        fs.mkdirSync(base, { recursive: true })
        dir = fs.mkdtempSync(path.join(base, `${DIR_PREFIX}${process.pid}-`))
        dbPath = path.join(dir, 'jobwerk.db')
        config.storage = { type: 'sqlite', path: dbPath, durability }
        try {
          fsType = fs.statfsSync(dir).type
        } catch {}
      }
      const removeDir = () => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true })
      }
      let s
      try {
        s = new JobManagementService(config)
      } catch (e) {
        removeDir()
        throw e
      }
      const reported = s.getQueueStatistics().storage
      if (reported !== storage) {
        await s.stop({ timeoutMs: 0 }).catch(() => {})
        removeDir()
        throw new Error(`jobwerk runs on '${reported}' storage, the harness asked for '${storage}'`)
      }
      if (fsType !== null && TMPFS.has(fsType)) {
        process.stderr.write(`WARNING: ${dir} is on tmpfs: fsync costs nothing there, the durability figures mean little (set BENCH_SQLITE_DIR)\n`)
      }
      // The harness swaps the job body in at start; the calculation object stays
      // the same so jobwerk registers it once.
      let body = (data) => data.x + 1
      // threads: the same body as a module in the worker-thread pool (the
      // harness's own handler cannot move to a thread).
      const calculation = threads
        ? { name: 'inc', module: path.join(__dirname, '..', 'w1-threads-calc.js'), threads: true }
        : { name: 'inc', calculate: (data) => body(data) }
      s.registerCalculation(calculation)
      const native = process.env.NAPI_RS_NATIVE_LIBRARY_PATH || null
      const adapter = {
        info: {
          version: pkg.version,
          storage: reported,
          durability: DURABILITY[storage === 'memory' ? 'memory' : durability],
          config: {
            ...config,
            storage: dbPath ? { ...config.storage, path: '<fresh temp dir>/jobwerk.db' } : config.storage,
            handler: threads
              ? "module benchmark/w1-threads-calc.js (async (data) => data.x + 1), threads: true, default pool size; the clock starts at start()"
              : 'calculate: async (data) => data.x + 1',
            completions: dbPath ? "'completed' event, then await service.flush() (committed)" : "'completed' event",
          },
          js: path.relative(ROOT, path.join(jsRoot, 'index.js')),
          native: native ? path.relative(ROOT, native) : 'shared jobwerk.*.node (build mode unknown)',
          ...(dbPath ? { dbDir: path.dirname(dir), fsType: fsType === null ? null : `0x${fsType.toString(16)}` } : {}),
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
          // In threads the harness's handler never runs: one call marks the
          // first start (W1 counts from there), so thread start-up is included.
          if (threads) handler({ x: -1 })
          s.on('completed', () => onCompleted(1))
          s.on('failed', (e) => process.stderr.write(`jobwerk job failed: ${JSON.stringify(e)}\n`))
          await s.start()
        },
        async pendingCount() {
          const st = s.getQueueStatistics()
          return (st.pending || 0) + (st.waiting || 0)
        },
        /** The database file with its WAL and shared-memory index, in bytes (null: memory). */
        async serverBytes() {
          if (!dbPath) return null
          const b = fileBytes(dbPath)
          return b.db + b.wal + b.shm
        },
        stats() {
          return s.getQueueStatistics()
        },
        afterClose: undefined,
        async close() {
          try {
            await s.stop({ timeoutMs: 5000 })
          } finally {
            if (dbPath) {
              // stop() closed the store: its writer committed the rest and
              // checkpointed the WAL into the file (TRUNCATE).
              const b = fileBytes(dbPath)
              adapter.afterClose = { fileBytes: b.db + b.wal + b.shm, dbBytes: b.db, walBytes: b.wal }
              for (const f of [...dbFiles(dbPath), `${dbPath}.lock`]) fs.rmSync(f, { force: true })
              removeDir()
            }
          }
        },
      }
      if (dbPath) {
        adapter.flush = () => s.flush()
      }
      return adapter
    },
  }
}

module.exports = jobwerkSystem
module.exports.DIR_PREFIX = DIR_PREFIX
