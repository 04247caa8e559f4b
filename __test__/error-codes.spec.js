'use strict'
// Issue 11 point 5: every ERR_* code is defined once (src/error.rs), exported
// by the binding (ErrorCode, JobErrorCode), declared by index.d.ts
// (JobwerkErrorCode, JobErrorCode), used by index.js and lib/ from that table,
// and produced by a test below, one row per code.
const fs = require('node:fs')
const { isNativeError } = require('node:util').types
const { BroadcastChannel } = require('node:worker_threads')
const path = require('node:path')
const { serviceTracker, waitForStatus, waitFor, deferred, thrown, rejected, ROOT } = require('./helpers')
const { tempDirs, fixtureTracker } = require('./helpers/sqlite')
const { JOBWERK_ERROR_CODES, JOB_ERROR_CODES } = require('./helpers/codes')
const { JobManagementService, nextCronRuns } = require(ROOT)
const native = require('../load-binding.js').loadBinding()
const { explainLoadFailure } = require('../load-binding.js')

const tracker = serviceTracker()
const fixtures = fixtureTracker()
const dirs = tempDirs('jobwerk-codes-')
afterEach(async () => {
  await fixtures.killAll()
  await tracker.stopAll()
})
afterAll(() => dirs.cleanup())

const API_CODES = Object.values(native.ErrorCode)
const JOB_CODES = Object.values(native.JobErrorCode)
const sorted = (a) => [...a].sort()

describe('one table of codes', () => {
  test("index.d.ts's JobwerkErrorCode is exactly the binding's ErrorCode", () => {
    expect(API_CODES.length).toBeGreaterThan(5)
    expect(sorted(JOBWERK_ERROR_CODES)).toEqual(sorted(API_CODES))
  })

  test("index.d.ts's JobErrorCode is exactly the binding's JobErrorCode", () => {
    expect(JOB_CODES.length).toBeGreaterThan(5)
    expect(sorted(JOB_ERROR_CODES)).toEqual(sorted(JOB_CODES))
  })

  test('binding.d.ts declares both tables with their values', () => {
    const dts = fs.readFileSync(path.join(__dirname, '..', 'binding.d.ts'), 'utf8')
    for (const [name, table] of [['ErrorCode', native.ErrorCode], ['JobErrorCode', native.JobErrorCode]]) {
      const m = new RegExp(`export declare (?:const )?enum ${name} \\{([^}]*)\\}`).exec(dts)
      expect(m).not.toBeNull()
      const declared = Object.fromEntries([...m[1].matchAll(/(\w+) = '(ERR_[A-Z_]+)'/g)].map((x) => [x[1], x[2]]))
      expect(declared).toEqual({ ...table })
    }
  })

  // Code, not comments: a string literal 'ERR_...' outside the table.
  function literals(file) {
    const out = []
    const lines = fs.readFileSync(file, 'utf8').split('\n')
    lines.forEach((line, i) => {
      const code = line.replace(/^\s*(\/\/|\*|\/\*).*$/, '').replace(/\s\/\/ .*$/, '')
      for (const m of code.matchAll(/['"`](ERR_[A-Z_]+)/g)) out.push(`${path.basename(file)}:${i + 1} ${m[1]}`)
    })
    return out
  }

  test('index.js, index.mjs and lib/ write no code as a literal (Node\'s own ERR_REQUIRE_ESM is only read)', () => {
    const files = ['index.js', 'index.mjs', ...fs.readdirSync(path.join(ROOT, 'lib')).map((f) => path.join('lib', f))]
    const found = files.filter((f) => f.endsWith('js')).flatMap((f) => literals(path.join(ROOT, f)))
    expect(found.filter((l) => !l.startsWith('thread-worker.js:') || !l.endsWith(' ERR_REQUIRE_ESM'))).toEqual([])
  })

  test("load-binding.js's one literal (thrown before the binary loads) is the table's NativeAddon", () => {
    expect(literals(path.join(ROOT, 'load-binding.js'))).toEqual([expect.stringMatching(/ ERR_NATIVE_ADDON$/)])
    expect(native.ErrorCode.NativeAddon).toBe('ERR_NATIVE_ADDON')
  })

  test('every API.X and JOB.X that index.js and lib/ name is in the table', () => {
    const files = ['index.js', ...fs.readdirSync(path.join(ROOT, 'lib')).map((f) => path.join('lib', f))]
    const named = files.flatMap((f) => [...fs.readFileSync(path.join(ROOT, f), 'utf8').matchAll(/\b(API|JOB)\.(\w+)/g)].map((m) => [f, m[1], m[2]]))
    expect(named.length).toBeGreaterThan(20)
    const missing = named.filter(([, t, k]) => (t === 'API' ? native.ErrorCode : native.JobErrorCode)[k] === undefined)
    expect(missing).toEqual([])
  })

  test('the Rust sources write no code as a literal outside src/error.rs (tests aside)', () => {
    const found = []
    const walk = (dir) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name)
        if (e.isDirectory()) walk(p)
        else if (e.name.endsWith('.rs') && !/(^|_)tests?\.rs$|^conformance\.rs$/.test(e.name) && p !== path.join(ROOT, 'src', 'error.rs')) {
          const text = fs.readFileSync(p, 'utf8').split('#[cfg(test)]')[0]
          text.split('\n').forEach((line, i) => {
            if (/^\s*\/\//.test(line)) return
            for (const m of line.matchAll(/"(ERR_[A-Z_]+)/g)) found.push(`${path.relative(ROOT, p)}:${i + 1} ${m[1]}`)
          })
        }
      }
    }
    walk(path.join(ROOT, 'src'))
    expect(found).toEqual([])
  })
})

const calc = { name: 'codes', calculate: (d) => d }

/** A job whose handler waits for its signal, then rejects with its reason. */
function abortable(name) {
  const w = { started: deferred(), reasons: [] }
  w.calc = {
    name,
    calculate: (d, c, job) =>
      new Promise((resolve, reject) => {
        w.started.resolve(job)
        job.signal.addEventListener('abort', () => {
          w.reasons.push(job.signal.reason)
          reject(job.signal.reason)
        })
      }),
  }
  return w
}

// One row per ErrorCode: how a user's call gets it.
const API_PRODUCERS = {
  ERR_INVALID_ARGUMENT: () => thrown(() => tracker.create().getJobStatus(42)),
  ERR_INVALID_CONFIG: () => thrown(() => tracker.track(new JobManagementService({ storage: { type: 'memory' }, queue: { maxWorkers: -1 } }))),
  ERR_QUEUE_FULL: () => {
    const s = tracker.create({ queue: { maxQueueSize: 1 } })
    s.addCalculationJob(calc, 1)
    return thrown(() => s.addCalculationJob(calc, 2))
  },
  ERR_STOPPED: async () => {
    const s = tracker.create()
    await s.start()
    await s.stop()
    return thrown(() => s.addCalculationJob(calc, 1))
  },
  ERR_NOT_SERIALIZABLE: () => thrown(() => tracker.create().addCalculationJob(calc, { n: 1n })),
  ERR_PAYLOAD_TOO_LARGE: () => thrown(() => tracker.create({ queue: { maxPayloadBytes: 16 } }).addCalculationJob(calc, 'x'.repeat(64))),
  ERR_INVALID_CRON: () => {
    const e = thrown(() => tracker.create().scheduleCronCalculationJob(calc, 1, {}, '61 * * * *'))
    expect(e.field).toBe('minute')
    return e
  },
  ERR_INVALID_SCHEDULE: () => thrown(() => tracker.create().scheduleRecurringCalculationJob(calc, 1, {}, Date.now(), -5)),
  ERR_DEPENDENCY_NOT_FOUND: () => thrown(() => tracker.create().addCalculationJob(calc, 1, {}, { dependsOn: ['01890a5d-ac96-774b-bcce-b302099a8057'] })),
  ERR_STORAGE: async () => {
    const file = path.join(dirs.make(), 'a-file')
    fs.writeFileSync(file, 'not a directory')
    const s = tracker.track(new JobManagementService({ storage: { type: 'sqlite', path: path.join(file, 'jobs.db') } }))
    return rejected(s.start())
  },
  // What loadBinding() throws when binding.js finds no binary.
  ERR_NATIVE_ADDON: () => explainLoadFailure(new Error('Cannot find native binding.'), { platform: 'linux', arch: 'x64', libc: 'glibc' }, { resolve: () => null, pkgVersion: '1.2.3' }),
}

describe('each ErrorCode is produced', () => {
  test('there is one producer per code, and none for a code the table lacks', () => {
    expect(sorted(Object.keys(API_PRODUCERS))).toEqual(sorted(API_CODES))
  })

  test.each(Object.keys(API_PRODUCERS))('%s', async (code) => {
    const e = await API_PRODUCERS[code]()
    expect(isNativeError(e)).toBe(true)
    expect(e.code).toBe(code)
  })
})

describe('ERR_INVALID_CRON carries err.field from Rust', () => {
  test.each([
    ['minute', () => nextCronRuns('61 * * * *')],
    ['hour', () => nextCronRuns('0 25 * * *')],
    ['tz', () => nextCronRuns('* * * * *', { tz: 'Mars/Olympus' })],
    ['expression', () => nextCronRuns('0 0 30 2 *')],
    // Checked in JavaScript before Rust sees it: no field before.
    ['expression', () => nextCronRuns(42)],
    ['expression', () => tracker.create().scheduleCronCalculationJob(calc, 1, {}, 42)],
    ['tz', () => tracker.create().scheduleCronCalculationJob(calc, 1, {}, '* * * * *', { tz: 'Nowhere/Town' })],
  ])('field %s', (field, fn) => {
    const e = thrown(fn)
    expect(e).toMatchObject({ code: 'ERR_INVALID_CRON', field })
  })
})

// One row per JobErrorCode: how a job gets it. Each returns the stored error
// and, when the handler was aborted, its signal's reason (one code per cause:
// both must carry the same code).
const THREAD_CALC = path.join(__dirname, 'fixtures', 'threads', 'calc.js')
const threadCalc = (name) => ({ name, module: THREAD_CALC, threads: true })

async function threadCrash(mode, threads) {
  const s = tracker.create({ threads: { size: 1, ...threads } })
  await s.start()
  const id = s.addCalculationJob(threadCalc(`crash-${mode}`), { mode }, null, { retries: 0 })
  return { stored: (await waitForStatus(s, id, undefined, 20000)).error }
}

const JOB_PRODUCERS = {
  ERR_JOB_TIMEOUT: async () => {
    const s = tracker.create({ clock: 'manual' })
    const w = abortable('times-out')
    await s.start()
    const id = s.addCalculationJob(w.calc, 1, null, { timeout: 100, retries: 0 })
    await w.started.promise
    await s.advanceTime(100, { settleMs: 0 })
    return { stored: (await waitForStatus(s, id)).error, signal: w.reasons[0] }
  },
  ERR_JOB_CANCELLED: async () => {
    const s = tracker.create()
    const w = abortable('cancelled')
    await s.start()
    const id = s.addCalculationJob(w.calc, 1)
    await w.started.promise
    expect(s.cancelJob(id)).toBe(true)
    return { stored: s.getJobStatus(id).error, signal: w.reasons[0] }
  },
  ERR_SERVICE_STOPPED: async () => {
    const s = tracker.create()
    const w = abortable('stopped')
    await s.start()
    const id = s.addCalculationJob(w.calc, 1)
    await w.started.promise
    expect(await s.stop({ timeoutMs: 0 })).toMatchObject({ aborted: 1 })
    const st = s.getJobStatus(id)
    expect(st.status).toBe('pending')
    return { stored: st.error, signal: w.reasons[0] }
  },
  ERR_INTERRUPTED: async () => {
    const db = path.join(dirs.make(), 'jobs.db')
    const f = fixtures.start('sqlite-child.js', ['running', db])
    const { ids } = await f.next('ready')
    await f.kill('SIGKILL')
    const s = tracker.track(new JobManagementService({ storage: { type: 'sqlite', path: db } }))
    return { stored: s.getJobStatus(ids.noRetries).error }
  },
  ERR_DEPENDENCY_FAILED: async () => {
    const s = tracker.create({ clock: 'manual' })
    await s.start()
    const failing = {
      name: 'fails',
      calculate: () => {
        throw new Error('no')
      },
    }
    const dep = s.addCalculationJob(failing, 1, null, { retries: 0 })
    const id = s.addCalculationJob(calc, 2, null, { dependsOn: [dep] })
    return { stored: (await waitForStatus(s, id)).error }
  },
  ERR_THREAD_EXITED: () => threadCrash('exit', {}),
  ERR_WORKER_OUT_OF_MEMORY: () => threadCrash('oom', { resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 } }),
  // A job that ignores its abort (a busy loop past its timeout) gets its
  // thread terminated after abortGraceMs; the other job begun in that thread
  // fails with ERR_THREAD_TERMINATED.
  ERR_THREAD_TERMINATED: async () => {
    const s = tracker.create({ threads: { size: 1, abortGraceMs: 50 } })
    await s.start()
    // Begun in the thread, not only handed to it (a job the thread has not
    // begun goes to the next thread instead): it says so on the test channel.
    const began = []
    const bc = new BroadcastChannel('jobwerk-threads-test')
    bc.onmessage = (m) => began.push(m.data)
    const other = s.addCalculationJob(threadCalc('waits'), { mode: 'wait-abort' }, null, { retries: 0, timeout: 0 })
    try {
      await waitFor(() => began.some((m) => m.id === other && m.began), { what: 'the job to begin in its thread', timeout: 20000 })
    } finally {
      bc.close()
    }
    const stuck = s.addCalculationJob(threadCalc('spins'), { mode: 'busy', busyAttempts: 99 }, null, { retries: 0, timeout: 100 })
    const st = await waitForStatus(s, other, undefined, 20000)
    expect((await waitForStatus(s, stuck, undefined, 20000)).error.code).toBe('ERR_JOB_TIMEOUT')
    return { stored: st.error }
  },
}

describe('each JobErrorCode is produced', () => {
  test('there is one producer per code, and none for a code the table lacks', () => {
    expect(sorted(Object.keys(JOB_PRODUCERS))).toEqual(sorted(JOB_CODES))
  })

  test.each(Object.keys(JOB_PRODUCERS))(
    '%s',
    async (code) => {
      const { stored, signal } = await JOB_PRODUCERS[code]()
      expect(stored).toMatchObject({ code })
      if (signal !== undefined) {
        expect(isNativeError(signal)).toBe(true)
        expect(signal.code).toBe(code)
      }
    },
    30000,
  )
})
