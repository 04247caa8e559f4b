'use strict'
// The entry of one worker thread of jobwerk's pool (lib/threads.js).
//
// In:  a JSON text `[key, calc, id, attempt, data, context, ...]` (a batch of
//      jobs), `{ abort: key, name, code, message }`, `{ calc, file, name }`.
// Out: flat arrays `[kind, key, value, ...]`: 0 a result (JSON text), 1 an
//      error `{ name, message, stack, code, unrecoverable }`, 2 progress
//      (JSON text, sent at once), 3 an abort was seen.
// `state[0]` holds the key of the job whose synchronous part runs now (0:
// none) and `state[1]` how many jobs of the batches this thread has begun:
// the pool reads both when it must decide whether to terminate this thread.
//
// The job handle (lib/job-handle.js) and the JSON encoding (lib/serialize.js)
// are the main thread's own; lib/errors.js takes the error codes from
// `workerData.codes` here, so that this thread does not load the native addon.

const { parentPort, workerData } = require('node:worker_threads')
const { performance } = require('node:perf_hooks')
const { API, codedError } = require('./errors.js')
const { resultJson, nonErrorOf } = require('./serialize.js')
const { JobHandle } = require('./job-handle.js')

const calcs = workerData.calcs.slice()
const fns = []
const state = workerData.current
const jobs = new Map()
let queue = []
let qHead = 0
let draining = false
let out = []
let flushQueued = false
// A slice of synchronous work before outcomes go out and messages come in.
const SLICE_MS = 2
const RESOLVED = Promise.resolve()

/** The handle of a job run in this thread: its key in the pool, its calculation and, until it begins, its data and context. */
class ThreadJob extends JobHandle {
  constructor(key, calc, id, attempt, data, context) {
    const c = calcs[calc]
    super(id, attempt, c ? c.name : '')
    this._key = key
    this._calc = calc
    this._data = data
    this._context = context
  }

  _sendProgress(s) {
    parentPort.postMessage([2, this._key, s])
  }
}

// Unlike the main thread's errorOf (lib/serialize.js), an error-like object
// (an Error of another realm) keeps its name and message, and an
// UnrecoverableError is marked: the error crosses to the pool as plain data.
function errorOf(e) {
  if (e instanceof Error || (e !== null && typeof e === 'object' && typeof e.message === 'string' && typeof e.name === 'string')) {
    const o = { name: String(e.name || 'Error'), message: String(e.message) }
    if (typeof e.stack === 'string') o.stack = e.stack
    if (typeof e.code === 'string') o.code = e.code
    if (e.name === 'UnrecoverableError' || e.unrecoverable === true) o.unrecoverable = true
    return o
  }
  return nonErrorOf(e)
}

function queueFlush() {
  if (flushQueued) return
  flushQueued = true
  RESOLVED.then(flush)
}

function flush() {
  flushQueued = false
  if (out.length === 0) return
  const m = out
  out = []
  parentPort.postMessage(m)
}

function ok(job, v) {
  if (job._done) return
  let s
  try {
    s = resultJson(v)
  } catch (e) {
    fail(job, e)
    return
  }
  job._done = true
  jobs.delete(job._key)
  out.push(0, job._key, s)
  queueFlush()
}

function fail(job, e) {
  if (job._done) return
  job._done = true
  jobs.delete(job._key)
  let o
  try {
    o = errorOf(e)
  } catch {
    o = { name: 'Error', message: 'a thrown value that cannot be read' }
  }
  out.push(1, job._key, o)
  queueFlush()
}

/** The calculate function of a module (CommonJS, or ESM through import()). */
function pick(m, c) {
  const f =
    m && typeof m.calculate === 'function'
      ? m.calculate.bind(m)
      : m && m.default && typeof m.default.calculate === 'function'
        ? m.default.calculate.bind(m.default)
        : typeof m === 'function'
          ? m
          : m && typeof m.default === 'function'
            ? m.default
            : undefined
  if (f === undefined) throw codedError(API.InvalidArgument, `${c.file} does not export calculate(data, context, job)`)
  return f
}

function load(idx) {
  const c = calcs[idx]
  if (c === undefined) throw codedError(API.InvalidArgument, `no module is registered for calculation ${idx}`)
  let m
  try {
    m = require(c.file)
  } catch (e) {
    if (!e || e.code !== 'ERR_REQUIRE_ESM') throw e
    const { pathToFileURL } = require('node:url')
    const p = import(pathToFileURL(c.file).href).then(
      (mod) => (fns[idx] = pick(mod, c)),
      (err) => {
        fns[idx] = undefined
        throw err
      },
    )
    fns[idx] = p
    return p
  }
  return (fns[idx] = pick(m, c))
}

function start(job) {
  let fn = fns[job._calc]
  if (fn === undefined) {
    try {
      fn = load(job._calc)
    } catch (e) {
      fail(job, e)
      return
    }
  }
  if (typeof fn !== 'function') {
    fn.then(
      (f) => {
        if (!job._done && job._abortReason === null) call(job, f)
      },
      (e) => fail(job, e),
    )
    return
  }
  call(job, fn)
}

function call(job, fn) {
  const data = job._data
  const context = job._context
  job._data = job._context = undefined
  Atomics.store(state, 0, job._key)
  let r
  try {
    r = fn(data, context, job)
  } catch (e) {
    Atomics.store(state, 0, 0)
    fail(job, e)
    return
  }
  Atomics.store(state, 0, 0)
  if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
    r.then(
      (v) => ok(job, v),
      (e) => fail(job, e),
    )
    return
  }
  ok(job, r)
}

function drain() {
  const t0 = performance.now()
  while (qHead < queue.length) {
    const job = queue[qHead]
    queue[qHead++] = undefined
    Atomics.add(state, 1, 1)
    if (job._done) continue
    start(job)
    if (qHead < queue.length && performance.now() - t0 > SLICE_MS) {
      // Outcomes so far go out; aborts and new batches come in.
      flush()
      setImmediate(drain)
      return
    }
  }
  queue = []
  qHead = 0
  draining = false
}

parentPort.on('message', (m) => {
  if (typeof m === 'string') {
    const a = JSON.parse(m)
    for (let i = 0; i < a.length; i += 6) {
      const job = new ThreadJob(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5])
      jobs.set(job._key, job)
      queue.push(job)
    }
    if (!draining) {
      draining = true
      drain()
    }
    return
  }
  if (m.abort !== undefined) {
    out.push(3, m.abort, null)
    const job = jobs.get(m.abort)
    if (job !== undefined && job._abortReason === null) {
      const reason = new Error(m.message)
      reason.name = m.name
      reason.code = m.code
      job._abort(reason)
      // Not begun yet: it never will.
      if (job._data !== undefined || job._context !== undefined) fail(job, reason)
    }
    flush()
    return
  }
  if (m.calc !== undefined) {
    calcs[m.calc] = { file: m.file, name: m.name }
    fns[m.calc] = undefined
  }
})
