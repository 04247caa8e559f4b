'use strict'
// The systems under test. Each module exports a descriptor:
//
//   {
//     name,                 // as used in BENCH_SYSTEMS
//     server: { host, port } | null,   // checked with a TCP connect first; unreachable => skipped
//     async create({ concurrency }) => adapter
//   }
//
// and an adapter (one per worker process, one queue) has:
//
//   info                           { version, durability, config, server? }  (plain JSON)
//   async addBulk(datas)           adds [{x}, ...] with the system's bulk API (one chunk)
//   add(data, delayMs)             adds one job (delayMs: 0 or the system's own delay option);
//                                  may return a promise (awaited at the end, not while pacing)
//   async startProcessing(handler, { expected, onCompleted })
//                                  starts processing with `concurrency`; handler(data) is the
//                                  job body; onCompleted(k) is called when the system itself has
//                                  recorded k more completions; `expected` is how many jobs the
//                                  workload waits for (lets polling adapters poll fast at the end)
//   async pendingCount()           jobs the system holds as not yet run (sanity check)
//   async serverBytes()            server-side storage in bytes, or null for in-process systems
//   async close()                  stops processing, deletes the queue, closes connections
//
//   async flush()                  optional: resolves once everything added and every outcome
//                                  recorded so far is durable (jobwerk on SQLite); the workloads
//                                  call it where the system has it (W1 after enqueue and before
//                                  stopping the clock, W4 before the second reading)
//   afterClose                     optional: plain JSON the adapter sets in close() (the SQLite
//                                  file size once checkpointed); worker.js adds it to the metrics
//
// Adding a system = one more entry here (and in DEFAULT_ORDER).

const SYSTEMS = {
  'jobwerk-memory': () => require('./jobwerk')({ storage: 'memory' }),
  'jobwerk-threads': () => require('./jobwerk')({ storage: 'memory', threads: true }),
  'jobwerk-sqlite': () => require('./jobwerk')({ storage: 'sqlite', durability: 'normal' }),
  'jobwerk-sqlite-full': () => require('./jobwerk')({ storage: 'sqlite', durability: 'full' }),
  'p-queue': () => require('./p-queue'),
  piscina: () => require('./piscina'),
  bullmq: () => require('./bullmq'),
  'pg-boss': () => require('./pg-boss'),
  'jobwerk-postgres': () => require('./jobwerk-postgres'),
  'graphile-worker': () => require('./graphile-worker'),
}

const DEFAULT_ORDER = ['jobwerk-memory', 'jobwerk-threads', 'jobwerk-sqlite', 'jobwerk-sqlite-full', 'p-queue', 'piscina', 'bullmq', 'pg-boss', 'jobwerk-postgres', 'graphile-worker']

/**
 * Workloads a system runs when BENCH_WORKLOADS is not given (absent: all).
 * synchronous=FULL only changes the cost of a commit, which W1 shows; W2-W4
 * would repeat jobwerk-sqlite's figures.
 */
const DEFAULT_WORKLOADS = {
  'jobwerk-sqlite-full': ['w1'],
  // The handler runs in worker threads: W2/W3 time the harness's own handler,
  // W4 does not process.
  'jobwerk-threads': ['w1'],
  // A thread pool, not a queue: W1 only, beside jobwerk-threads.
  piscina: ['w1'],
}

/**
 * Workloads only some systems can run: W1 with two processes on one queue
 * and the bloat run need a shared database (PostgreSQL systems whose adapter
 * has peerConfig() and tables()). `long` runs only with BENCH_LONG=1.
 */
const SHARED_DB_WORKLOADS = ['w1x2', 'long']
const SHARED_DB_SYSTEMS = ['jobwerk-postgres', 'graphile-worker']

function getSystem(name) {
  const make = SYSTEMS[name]
  if (!make) throw new Error(`unknown system "${name}"; known: ${Object.keys(SYSTEMS).join(', ')}`)
  return make()
}

/** Static description (server address) without loading the system's package. */
const SERVERS = {
  bullmq: { host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379) },
  'pg-boss': { host: process.env.PGHOST || '127.0.0.1', port: Number(process.env.PGPORT || 5432) },
}
SERVERS['jobwerk-postgres'] = SERVERS['pg-boss']
SERVERS['graphile-worker'] = SERVERS['pg-boss']

module.exports = { SYSTEMS, DEFAULT_ORDER, DEFAULT_WORKLOADS, SHARED_DB_WORKLOADS, SHARED_DB_SYSTEMS, SERVERS, getSystem }
