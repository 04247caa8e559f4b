'use strict'
// Shared helpers for the jobwerk jest suite.

const path = require('node:path')

const ROOT = path.join(__dirname, '..', '..')

const { types } = require('node:util')

/** True for an Error from any realm (jest's sandbox or the addon's). */
const isError = (e) => e instanceof Error || types.isNativeError(e)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `fn` until it returns a truthy value; resolves with that value. */
async function waitFor(fn, { timeout = 5000, interval = 5, what = 'condition' } = {}) {
  const t0 = Date.now()
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() - t0 > timeout) throw new Error(`waitFor: timed out after ${timeout} ms waiting for ${what}`)
    await sleep(interval)
  }
}

/**
 * Resolves once `done()` holds, re-checked on each of `events` of each of
 * `emitters` (event-driven: no polling); stops listening then.
 */
function until(emitters, events, done) {
  return new Promise((resolve) => {
    if (done()) return resolve()
    const check = () => {
      if (!done()) return
      for (const em of emitters) for (const ev of events) em.off(ev, check)
      resolve()
    }
    for (const em of emitters) for (const ev of events) em.on(ev, check)
  })
}

const FINISHED = ['completed', 'failed', 'timeout', 'cancelled']

/** Waits until the job reaches one of `statuses` (default: any finished status); returns its status object. */
async function waitForStatus(service, jobId, statuses = FINISHED, timeout = 5000) {
  const want = Array.isArray(statuses) ? statuses : [statuses]
  return waitFor(
    () => {
      const s = service.getJobStatus(jobId)
      return s && want.includes(s.status) ? s : null
    },
    { timeout, what: `job ${jobId} to reach ${want.join('|')}` },
  )
}

/** Waits until every job finished; returns their statuses in order. */
async function waitForAll(service, ids, statuses = FINISHED, timeout = 5000) {
  const out = []
  for (const id of ids) out.push(await waitForStatus(service, id, statuses, timeout))
  return out
}

/** Creates services and stops them all afterwards (use in afterEach). */
function serviceTracker() {
  const { JobManagementService } = require(ROOT)
  const services = []
  return {
    // Memory storage unless a test asks for another: the SQLite default would
    // make parallel test files share (and lock) one file.
    create(config) {
      const s = new JobManagementService({ storage: { type: 'memory' }, ...config })
      services.push(s)
      return s
    },
    track(s) {
      services.push(s)
      return s
    },
    async stopAll() {
      const all = services.splice(0)
      for (const s of all) {
        try {
          await s.stop({ timeoutMs: 0 })
        } catch {
          // a stop that throws is asserted by the test itself
        }
      }
    },
  }
}

/** The error `fn()` throws (fails the test when it does not throw). */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  throw new Error('expected the call to throw, it returned normally')
}

/** The error a promise (or async fn) rejects with. */
async function rejected(p) {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    return e
  }
  throw new Error('expected the promise to reject, it resolved')
}

/** Asserts `fn()` throws an Error with `code` (and, optionally, a message containing `includes`). */
function expectCode(fn, code, includes) {
  const e = thrown(fn)
  // errors made by the native addon come from Node's realm, not jest's sandbox
  expect(isError(e)).toBe(true)
  expect(e.code).toBe(code)
  if (includes !== undefined) expect(e.message).toContain(includes)
  return e
}

/** Collects every payload of `events` emitted by `service`: { name: [payload, ...] }. */
function recordEvents(service, events = ['completed', 'failed', 'retrying', 'timedOut', 'cancelled', 'progress']) {
  const log = {}
  const all = []
  for (const e of events) {
    log[e] = []
    service.on(e, (p) => {
      log[e].push(p)
      all.push([e, p])
    })
  }
  log.all = all
  return log
}

/** A promise plus its resolve/reject. */
function deferred() {
  let resolve
  let reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** A handler that never settles. */
const never = () => new Promise(() => {})

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

module.exports = {
  isError,
  ROOT,
  FINISHED,
  UUID_RE,
  sleep,
  waitFor,
  until,
  waitForStatus,
  waitForAll,
  serviceTracker,
  thrown,
  rejected,
  expectCode,
  recordEvents,
  deferred,
  never,
}

/**
 * Runs `node <fixtures/script> ...args` and resolves
 * { code, signal, stdout, stderr, ms, killed } (killed: it outlived `timeout`).
 */
function runFixture(script, args = [], { timeout = 10000, env } = {}) {
  const { spawn } = require('node:child_process')
  const file = path.join(__dirname, '..', 'fixtures', script)
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, [file, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let killed = false
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      killed = true
      child.kill('SIGKILL')
    }, timeout)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, killed })
    })
  })
}

module.exports.runFixture = runFixture
