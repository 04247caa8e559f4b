'use strict'
// Helpers for the SQLite durability specs (__test__/sqlite-*.spec.js): temp
// directories, SQLite services that are always stopped, child processes that
// talk in JSON lines, and python3's sqlite3 for looking at a file from outside.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..', '..')
const FIXTURES = path.join(__dirname, '..', 'fixtures')

// The suite's shared helpers.
const { sleep, waitFor, serviceTracker } = require('./index')

/** Temp directories (fs.mkdtempSync under os.tmpdir()), removed by cleanup(). */
function tempDirs(prefix = 'jobwerk-sqlite-') {
  const dirs = []
  return {
    make() {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
      dirs.push(d)
      return d
    },
    cleanup() {
      for (const d of dirs.splice(0)) {
        try {
          fs.rmSync(d, { recursive: true, force: true })
        } catch {
          // best effort
        }
      }
    },
  }
}

/** Creates services (SQLite at `dbPath` unless the config says otherwise) and stops them all in stopAll(). */
function sqliteTracker() {
  const { JobManagementService } = require(ROOT)
  const tracker = serviceTracker()
  return {
    open(dbPath, config = {}) {
      const { storage, ...rest } = config
      return tracker.track(new JobManagementService({ storage: { type: 'sqlite', path: dbPath, ...storage }, ...rest }))
    },
    create(config) {
      return tracker.track(new JobManagementService(config))
    },
    stopAll: tracker.stopAll,
  }
}

/** The error a promise (or async fn) rejects with; throws if it resolves. */
async function rejected(p) {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    return e
  }
  throw new Error('expected the promise to reject, it resolved')
}

/** The error `fn()` throws; throws if it returns. */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  throw new Error('expected the call to throw, it returned normally')
}

/**
 * Spawns `node fixtures/<script> ...args` (optionally under `ulimit -f <fsizeKb>`).
 * The child talks in JSON lines on stdout; `next(pred)` waits for one.
 * Returns { child, pid, lines, next(pred, timeout), exited, kill(signal), stderr() }.
 */
function startFixture(script, args = [], { cwd = ROOT, env, fsizeKb } = {}) {
  const file = path.join(FIXTURES, script)
  let child
  if (fsizeKb !== undefined) {
    const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`
    const cmd = `ulimit -f ${Number(fsizeKb)}; exec ${q(process.execPath)} ${[file, ...args].map(q).join(' ')}`
    child = spawn('bash', ['-c', cmd], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  } else {
    child = spawn(process.execPath, [file, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  }
  const lines = []
  const waiters = []
  let buf = ''
  let err = ''
  let exit = null
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]
      const hit = lines.find(w.pred)
      if (hit !== undefined) {
        waiters.splice(i, 1)
        clearTimeout(w.timer)
        w.resolve(hit)
      } else if (exit !== null) {
        waiters.splice(i, 1)
        clearTimeout(w.timer)
        w.reject(new Error(`${script} exited (${JSON.stringify(exit)}) before the awaited line; stdout lines: ${JSON.stringify(lines).slice(0, 2000)}; stderr: ${err.slice(0, 2000)}`))
      }
    }
  }
  child.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (line.trim() === '') continue
      let v
      try {
        v = JSON.parse(line)
      } catch {
        v = { text: line }
      }
      lines.push(v)
    }
    check()
  })
  child.stderr.on('data', (d) => (err += d))
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      exit = { code, signal }
      check()
      resolve(exit)
    })
  })
  return {
    child,
    pid: child.pid,
    lines,
    exited,
    stderr: () => err,
    /** Resolves with the first line (parsed JSON) matching `pred` (a function or an `event` name). */
    next(pred, timeout = 15000) {
      const p = typeof pred === 'string' ? (l) => l.event === pred : pred
      return new Promise((resolve, reject) => {
        const w = { pred: p, resolve, reject }
        w.timer = setTimeout(() => {
          const k = waiters.indexOf(w)
          if (k >= 0) waiters.splice(k, 1)
          reject(new Error(`${script}: no matching line within ${timeout} ms; lines: ${JSON.stringify(lines).slice(0, 2000)}; stderr: ${err.slice(0, 2000)}`))
        }, timeout)
        waiters.push(w)
        check()
      })
    },
    kill(signal = 'SIGKILL') {
      if (exit === null) child.kill(signal)
      return exited
    },
  }
}

/** Runs a fixture to its end (killed after `timeout`); resolves { code, signal, lines, stderr, killed }. */
async function runFixture(script, args = [], { timeout = 20000, ...opts } = {}) {
  const f = startFixture(script, args, opts)
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    f.kill('SIGKILL')
  }, timeout)
  const { code, signal } = await f.exited
  clearTimeout(timer)
  return { code, signal, lines: f.lines, stderr: f.stderr(), killed }
}

/** Kills every fixture started through the returned `start` (use in afterEach). */
function fixtureTracker() {
  const running = []
  return {
    start(script, args, opts) {
      const f = startFixture(script, args, opts)
      running.push(f)
      return f
    },
    async killAll() {
      const all = running.splice(0)
      await Promise.all(all.map((f) => f.kill('SIGKILL')))
    },
  }
}

/**
 * Runs python3 with `db` as sys.argv[1] and `c` an open sqlite3 connection;
 * returns stdout (trimmed). The tests that look at a file from outside need
 * python3 with its sqlite3 module (.ci/run installs it): without it they fail
 * saying so, they are never skipped.
 */
function py(db, code) {
  const script = `import sqlite3, sys, json\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n${code}\nc.close()\n`
  const r = spawnSync('python3', ['-c', script, db], { encoding: 'utf8' })
  if (r.error && r.error.code === 'ENOENT') throw new Error('this test reads the SQLite file with python3, which is not installed (.ci/run installs it: apt-get install python3)')
  if (r.status !== 0) throw new Error(`python3 failed (${r.status}): ${r.stderr}`)
  return r.stdout.trim()
}

/** PRAGMA integrity_check of `db` through python3's sqlite3 ('ok' when fine). */
function integrityCheck(db) {
  return py(db, "print(c.execute('pragma integrity_check').fetchone()[0])")
}

/** Reads a PRAGMA (or a one-value query) of `db` through python3. */
function pyValue(db, sql) {
  return JSON.parse(py(db, `print(json.dumps(c.execute(${JSON.stringify(sql)}).fetchone()[0]))`))
}

/** Size of a file in bytes, 0 when absent. */
function fileSize(p) {
  try {
    return fs.statSync(p).size
  } catch {
    return 0
  }
}

/** True for an Error from any realm. */
const isError = (e) => e instanceof Error || require('node:util').types.isNativeError(e)

/** Asserts a storage error: code ERR_STORAGE and every string in `includes` in its message. */
function expectStorageError(e, ...includes) {
  expect(isError(e)).toBe(true)
  expect(e.code).toBe('ERR_STORAGE')
  for (const s of includes) expect(e.message).toContain(s)
  return e
}

/** The fields of a job status that must survive a restart (everything but `registered`). */
function durableFields(s) {
  if (s === null) return null
  const { registered, ...rest } = s
  return rest
}

module.exports = {
  ROOT,
  FIXTURES,
  sleep,
  waitFor,
  tempDirs,
  sqliteTracker,
  rejected,
  thrown,
  startFixture,
  runFixture,
  fixtureTracker,
  py,
  pyValue,
  integrityCheck,
  fileSize,
  isError,
  expectStorageError,
  durableFields,
}
