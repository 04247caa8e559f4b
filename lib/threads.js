'use strict'
// The worker-thread pool for calculations registered with `threads: true`
// (or `isolation: 'thread'`): their handlers run in worker threads so the
// main thread (Strapi's HTTP server) stays free.
//
// To the dispatcher (lib/dispatcher.js) such a calculation looks like any other: its
// `calculate` is `ThreadPool.run`, which queues the job and returns a promise.
// Jobs queued during one turn of the dispatcher (one `take()` batch) go to
// the threads as one message per thread (a JSON text), and each thread sends
// its outcomes back in batches; results stay JSON text (RawJson) until the
// core stores them. Why not piscina: it posts one message per task and one
// per result; this pool keeps the core's batches intact.
//
// A thread stuck in synchronous code after its job was aborted (timeout,
// cancel, stop) is terminated and replaced after `abortGraceMs`; a thread
// that crashes (uncaught error, process.exit, out of memory under
// `resourceLimits`) fails only the jobs it held and is replaced.

const os = require('node:os')
const path = require('node:path')
const { API, JOB, codedError } = require('./errors.js')
const { RawJson } = require('./serialize.js')

const WORKER = path.join(__dirname, 'thread-worker.js')
// Jobs handed to one thread at a time, at most (more wait in the pool's queue).
const MAX_PER_THREAD = 256
const DEFAULT_ABORT_GRACE_MS = 500
const RESOLVED = Promise.resolve()

function invalidConfig(message) {
  return codedError(API.InvalidConfig, message)
}

function defaultSize() {
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  return Math.max(1, n - 1)
}

/** Reads `config.threads`: `{ size, resourceLimits, abortGraceMs }`. */
function threadOptions(cfg) {
  if (cfg === undefined || cfg === null) cfg = {}
  if (typeof cfg !== 'object' || Array.isArray(cfg)) throw invalidConfig('config.threads must be an object { size, resourceLimits, abortGraceMs }')
  for (const k of Object.keys(cfg)) {
    if (k !== 'size' && k !== 'resourceLimits' && k !== 'abortGraceMs') throw invalidConfig(`config.threads.${k} is not an option (size, resourceLimits, abortGraceMs)`)
  }
  const size = cfg.size === undefined ? defaultSize() : cfg.size
  if (!Number.isInteger(size) || size < 1 || size > 1024) throw invalidConfig(`config.threads.size must be an integer from 1 to 1024, got ${String(size)}`)
  const grace = cfg.abortGraceMs === undefined ? DEFAULT_ABORT_GRACE_MS : cfg.abortGraceMs
  if (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0) {
    throw invalidConfig(`config.threads.abortGraceMs must be a finite number >= 0, got ${String(grace)}`)
  }
  let limits
  if (cfg.resourceLimits !== undefined) {
    const r = cfg.resourceLimits
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw invalidConfig('config.threads.resourceLimits must be an object (see worker_threads resourceLimits)')
    limits = {}
    for (const k of ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb']) {
      if (r[k] === undefined) continue
      if (typeof r[k] !== 'number' || !Number.isFinite(r[k]) || r[k] <= 0) {
        throw invalidConfig(`config.threads.resourceLimits.${k} must be a number > 0, got ${String(r[k])}`)
      }
      limits[k] = r[k]
    }
  }
  return { size, abortGraceMs: grace, resourceLimits: limits }
}

/** An Error rebuilt from what a thread sent: name, message, stack and code survive. */
function errorFrom(o) {
  const e = new Error(o.message)
  e.name = o.name
  if (o.stack !== undefined) e.stack = o.stack
  if (o.code !== undefined) e.code = o.code
  if (o.unrecoverable) e.unrecoverable = true
  return e
}

/** One job in the pool: queued, or sent to `thread`. */
class Entry {
  constructor(pool, key, idx, data, context, job) {
    this.pool = pool
    this.key = key
    this.idx = idx
    this.data = data
    this.context = context
    this.job = job
    this.resolve = null
    this.reject = null
    this.thread = null
    // The order in which its thread got it (against the thread's begun count).
    this.ord = 0
    this.aborted = false
  }

  /** Called by the job's handle (SlotJob._abort in lib/dispatcher.js) on timeout, cancel or stop. */
  abort(reason) {
    this.pool._abort(this, reason)
  }
}

class Thread {
  constructor(pool, id) {
    const { Worker } = require('node:worker_threads')
    this.pool = pool
    this.id = id
    // [the key of the job whose synchronous part runs in the thread now (0:
    // none), how many of the jobs sent to it the thread has begun]
    this.state = new Int32Array(new SharedArrayBuffer(8))
    this.sent = 0
    this.jobs = new Map()
    this.dead = false
    this.graceTimer = null
    this.aborted = []
    this.acked = true
    const options = { workerData: { calcs: pool.modules, current: this.state, codes: { api: API, job: JOB } }, stdout: false, stderr: false }
    if (pool.resourceLimits !== undefined) options.resourceLimits = pool.resourceLimits
    this.worker = new Worker(WORKER, options)
    this.worker.on('message', (m) => pool._onMessage(this, m))
    this.worker.on('error', (e) => pool._onDeath(this, e))
    this.worker.on('exit', (code) => pool._onDeath(this, null, code))
    // The service's keep-alive holds Node while jobs run; an idle pool never
    // does. (After the listeners: adding one refs the worker again.)
    this.worker.unref()
  }
}

class ThreadPool {
  constructor(options) {
    this.size = options.size
    this.abortGraceMs = options.abortGraceMs
    this.resourceLimits = options.resourceLimits
    // Module file per calculation index (what the threads load).
    this.modules = []
    this.threads = []
    this.queue = []
    this.nextKey = 0
    this.dispatchQueued = false
    this.closed = false
    this._dispatch = this._dispatch.bind(this)
  }

  /** Calculation `idx` (named `name`) runs `calculate` from `file`. */
  setModule(idx, file, name) {
    const m = this.modules[idx]
    if (m !== undefined && m.file === file && m.name === name) return
    this.modules[idx] = { file, name }
    for (const t of this.threads) t.worker.postMessage({ calc: idx, file, name })
  }

  /**
   * Runs one job in a thread (`data` and `context` as JSON text); the promise
   * settles with a RawJson result or an Error.
   */
  run(idx, data, context, job) {
    if (this.closed) return Promise.reject(codedError(JOB.ServiceStopped, 'the thread pool is closed'))
    this.nextKey = this.nextKey >= 0x7ffffffe ? 1 : this.nextKey + 1
    const entry = new Entry(this, this.nextKey, idx, data, context, job)
    const p = new Promise((resolve, reject) => {
      entry.resolve = resolve
      entry.reject = reject
    })
    // No AbortController per job: the handle calls entry.abort (see JobHandle._abort).
    job._thread = entry
    this.queue.push(entry)
    if (!this.dispatchQueued) {
      this.dispatchQueued = true
      RESOLVED.then(this._dispatch)
    }
    return p
  }

  /** Hands the queued jobs to the threads, the least loaded first, one message per thread. */
  _dispatch() {
    this.dispatchQueued = false
    const queue = this.queue
    if (queue.length === 0 || this.closed) return
    let inflight = 0
    for (const t of this.threads) inflight += t.jobs.size
    while (this.threads.length < this.size && this.threads.length < inflight + queue.length) {
      this.threads.push(new Thread(this, this.threads.length))
    }
    // Not to a thread that has not answered an abort yet: it may be stuck
    // (then it is replaced, and the jobs go to the new one).
    const threads = this.threads.filter((t) => t.acked).sort((a, b) => a.jobs.size - b.jobs.size)
    if (threads.length === 0) return
    const share = Math.ceil((inflight + queue.length) / threads.length)
    let q = 0
    for (let round = 0; round < 2 && q < queue.length; round++) {
      for (const t of threads) {
        if (q >= queue.length) break
        // First round: even out the load; second round: whatever is left.
        const room = Math.min(MAX_PER_THREAD, round === 0 ? share : MAX_PER_THREAD) - t.jobs.size
        if (room <= 0) continue
        const n = Math.min(room, queue.length - q)
        // Data and context are JSON text from the core: spliced in, not re-serialized.
        let batch = '['
        for (let i = 0; i < n; i++) {
          const e = queue[q + i]
          e.thread = t
          e.ord = t.sent++
          t.jobs.set(e.key, e)
          batch += `${i === 0 ? '' : ','}${e.key},${e.idx},"${e.job.id}",${e.job.attempt},${e.data},${e.context}`
        }
        q += n
        t.worker.postMessage(batch + ']')
      }
    }
    queue.splice(0, q)
  }

  _onMessage(t, m) {
    // Anything from the thread says its event loop turns.
    t.acked = true
    for (let i = 0; i < m.length; i += 3) {
      const e = t.jobs.get(m[i + 1])
      if (e === undefined) continue
      switch (m[i]) {
        case 0:
          t.jobs.delete(e.key)
          e.resolve(new RawJson(m[i + 2]))
          break
        case 1:
          t.jobs.delete(e.key)
          e.reject(errorFrom(m[i + 2]))
          break
        case 2:
          try {
            if (!e.aborted) e.job.updateProgress(JSON.parse(m[i + 2]))
          } catch {}
          break
      }
    }
    if (this.queue.length > 0) this._dispatch()
  }

  _abort(entry, reason) {
    if (entry.aborted) return
    entry.aborted = true
    const t = entry.thread
    if (t === null) {
      const i = this.queue.indexOf(entry)
      if (i >= 0) this.queue.splice(i, 1)
      entry.reject(reason)
      return
    }
    if (t.dead || !t.jobs.has(entry.key)) return
    t.acked = false
    t.aborted.push(entry.key)
    t.worker.postMessage({ abort: entry.key, name: reason && reason.name, code: reason && reason.code, message: reason && reason.message })
    if (t.graceTimer === null) t.graceTimer = setTimeout(() => this._checkStuck(t), this.abortGraceMs)
  }

  /**
   * After the grace: a thread still inside the synchronous part of an aborted
   * job, or whose event loop has not turned since the abort, is terminated.
   */
  _checkStuck(t) {
    t.graceTimer = null
    if (t.dead) return
    const aborted = t.aborted.filter((k) => t.jobs.has(k))
    t.aborted = aborted
    if (aborted.length === 0) return
    const cur = Atomics.load(t.state, 0)
    const stuck = aborted.find((k) => k === cur)
    if (stuck !== undefined || (!t.acked && cur === 0)) {
      const e = t.jobs.get(stuck !== undefined ? stuck : aborted[0])
      const err = codedError(
        JOB.ThreadTerminated,
        `the worker thread was terminated: job ${e.job.id} (${e.job.name}) did not return within ${this.abortGraceMs} ms of its abort`,
      )
      err.name = 'ThreadTerminatedError'
      this._kill(t, err)
      return
    }
    // Still waiting on a job that answers its abort late: look again.
    t.graceTimer = setTimeout(() => this._checkStuck(t), this.abortGraceMs)
  }

  _kill(t, err) {
    this._onDeath(t, err)
    t.worker.terminate().catch(() => {})
  }

  /**
   * A thread ended (error, exit or terminate): the jobs it had begun fail with
   * `err`, those it had not go to another thread; a new thread takes its
   * place on the next dispatch.
   */
  _onDeath(t, err, exitCode) {
    if (t.dead) return
    t.dead = true
    if (t.graceTimer !== null) clearTimeout(t.graceTimer)
    t.graceTimer = null
    const i = this.threads.indexOf(t)
    if (i >= 0) this.threads.splice(i, 1)
    if (err === null || err === undefined) {
      err = codedError(JOB.ThreadExited, `the worker thread exited with code ${exitCode}`)
      err.name = 'ThreadExitedError'
    } else {
      // Rebuilt here: an error from the thread's 'error' event may come from another realm.
      err = typeof err.message === 'string' ? errorFrom({ name: String(err.name), message: err.message, stack: err.stack, code: err.code }) : errorFrom({ name: 'Error', message: String(err) })
    }
    const begun = Atomics.load(t.state, 1)
    const jobs = [...t.jobs.values()]
    t.jobs.clear()
    const again = []
    for (const e of jobs) {
      if (e.ord >= begun && !e.aborted && !this.closed) {
        e.thread = null
        again.push(e)
      } else e.reject(err)
    }
    if (again.length > 0) this.queue.unshift(...again)
    if (!this.closed && this.queue.length > 0) this._dispatch()
  }

  /**
   * Fails what is still queued and terminates every thread. The pool starts
   * threads again for the next job (after the service's start()).
   */
  async close() {
    this.closed = true
    const stopped = codedError(JOB.ServiceStopped, 'the service stopped')
    stopped.name = 'AbortError'
    for (const e of this.queue.splice(0)) e.reject(stopped)
    const threads = this.threads.splice(0)
    await Promise.all(
      threads.map((t) => {
        t.dead = true
        if (t.graceTimer !== null) clearTimeout(t.graceTimer)
        for (const e of t.jobs.values()) e.reject(stopped)
        t.jobs.clear()
        return t.worker.terminate().catch(() => {})
      }),
    )
    this.closed = false
  }
}

module.exports = { ThreadPool, threadOptions }
