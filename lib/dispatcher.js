'use strict'
// The batched dispatcher (DESIGN.md section 2), the part of
// JobManagementService (lib/service.js extends it) that runs handlers: one
// synchronous `take()` hands out every due job a free worker can run, the
// handlers' outcomes are collected and sent back with one `settle()` per
// microtask, and Rust wakes this side through a weak threadsafe function only
// when its timer has something (a delayed job became due, a timeout fired).
// It owns the core handle, the worker slots, the outbox, the keep-alive timer,
// the core's events and the async context handlers run in (SCOPE).
//
// The hot path (_pumpBatches, _run, _ok, _err, _flush) runs per job: keep it
// free of extra allocations and indirections (measure W1 of the benchmark
// before and after a change).

const { EventEmitter } = require('node:events')
const { AsyncResource } = require('node:async_hooks')
const { API, JOB, isUnrecoverable } = require('./errors.js')
const { resultJson, resultValue, errorOf } = require('./serialize.js')
const { JobHandle } = require('./job-handle.js')

const native = require('../load-binding.js').loadBinding()

const MAX_TAKE = 1024
// Batches run back to back from microtasks before yielding to the event loop.
const BATCHES_PER_TURN = 16
// ...or fewer when the handlers of this turn's batches already ran this long
// (synchronous handlers): timers and I/O (Strapi's requests) come first.
const TURN_BUDGET_MS = 10
const KEEP_ALIVE_MS = 2 ** 31 - 1

// Handlers, their signals' listeners and the service's event listeners run in
// this async context: the one this module was loaded in, the same for every
// job, never that of the code that added the job, created the service or
// advanced the clock (an AsyncLocalStorage store of a request stays out).
const SCOPE = new AsyncResource('jobwerk')

const RESOLVED = Promise.resolve()

// The bridge's numbers (abort reasons, outcome kinds, flag bits, tuple sizes)
// are defined once in Rust (src/wire.rs) and read here once, at load.
const WIRE = native.wire()
const ABORT = WIRE.abort
const OUTCOME_ERROR = WIRE.outcome.error
const OUTCOME_OK = WIRE.outcome.ok
const OUTCOME_UNRECOVERABLE = WIRE.outcome.unrecoverable
const FLAG_NEWS = WIRE.flag.news
const FLAG_EMIT_COMPLETED = WIRE.flag.emitCompleted
const FLAG_ACTIVE_SHIFT = WIRE.flag.activeShift
const TAKE_FIELDS = WIRE.takeFields
const ABORT_FIELDS = WIRE.abortFields

// What an aborted handler's signal says, by why Rust aborted the attempt.
const ABORTS = []
ABORTS[ABORT.timeout] = ['TimeoutError', JOB.JobTimeout, 'the attempt timed out']
ABORTS[ABORT.cancel] = ['AbortError', JOB.JobCancelled, 'the job was cancelled']
ABORTS[ABORT.stop] = ['AbortError', JOB.ServiceStopped, 'the service stopped']
checkWire(WIRE)

// The dispatcher below was written for this bridge: a binary that speaks
// another (a stale build) fails at load, not on the first job.
function checkWire(w) {
  const bad = (what) => {
    const e = new Error(`the native addon's bridge does not match index.js: ${what} (rebuild the addon or reinstall jobwerk)`)
    e.code = API.NativeAddon
    throw e
  }
  const small = (v) => Number.isInteger(v) && v >= 0 && v < 32
  const distinct = (o, keys) => keys.every((k) => small(o[k])) && new Set(keys.map((k) => o[k])).size === keys.length && Object.keys(o).length === keys.length
  if (!distinct(w.abort, ['timeout', 'cancel', 'stop'])) bad('abort reasons')
  if (!distinct(w.outcome, ['error', 'ok', 'unrecoverable'])) bad('outcome kinds')
  const f = w.flag
  const bit = (v) => small(v) && v > 0 && (v & (v - 1)) === 0
  if (!bit(f.news) || !bit(f.emitCompleted) || f.news === f.emitCompleted || !small(f.activeShift) || (f.news | f.emitCompleted) >= 1 << f.activeShift || Object.keys(f).length !== 3) bad('flag bits')
  // _run takes a job's fields by position, _err and _ok push four per outcome.
  if (w.takeFields !== 7 || w.outcomeFields !== 4 || w.abortFields !== 3) bad('tuple sizes')
}

function abortReason(why) {
  const [name, code, message] = ABORTS[why] || ABORTS[ABORT.stop]
  const e = new Error(message)
  e.name = name
  e.code = code
  return e
}

/** The handle of a job run on this thread: its worker slot and attempt (seq) in the core. */
class SlotJob extends JobHandle {
  constructor(service, slot, seq, id, attempt, name) {
    super(id, attempt, name)
    this._service = service
    this._slot = slot
    this._seq = seq
  }

  _sendProgress(s) {
    this._service._progress(this, s)
  }

  _abort(reason) {
    // A job in a worker thread (lib/threads.js): the abort goes there too.
    if (super._abort(reason) && this._thread !== undefined) this._thread.abort(reason)
  }
}

function noop() {}

class Dispatcher extends EventEmitter {
  /** `json`: the service's config for the core; `logger`: where alerts are logged. */
  constructor(json, logger, unref) {
    super()
    this._core = new native.Core(json, () => this._onWake())
    // A durable store's writes from take/settle/add wait until the handlers
    // started (sendWrites at the end of each pump).
    // (Reads the configuration: constructing a service opens no file.)
    this._durable = JSON.parse(this._core.storage()).type !== 'memory'
    this._logger = logger
    this._unref = unref
    // 'idle', 'started', 'stopping' or 'stopped' (set by the service): jobs run only when started.
    this._state = 'idle'
    // Handlers by calculation index (the service registers them).
    this._calcs = []
    this._slots = []
    this._outbox = []
    // Completed attempts in the outbox, for the 'completed' events: job, value, JSON.
    this._okOut = []
    this._flushQueued = false
    this._pumpQueued = false
    this._batchesThisTurn = 0
    this._turnStart = 0
    this._keepAlive = null
    // Called once no job runs any more (stop() waits for them).
    this._stopWaiters = []
    // advanceTime: called after each flush while it waits for handlers.
    this._settleWaiter = null
    // advanceTime: attempts it waited settleMs for in vain (not waited for again).
    this._givenUp = new WeakSet()
    this._flush = this._flush.bind(this)
    this._resumeTurn = this._resumeTurn.bind(this)
    this._newTurn = () => (this._batchesThisTurn = 0)
  }

  _onWake() {
    try {
      this._afterFlags(this._core.poll())
      this._pump()
    } catch (e) {
      process.emitWarning(`jobwerk: dispatcher error: ${e && e.stack}`)
    }
  }

  _schedulePump() {
    if (this._state !== 'started' || this._pumpQueued) return
    this._pumpQueued = true
    RESOLVED.then(() => {
      this._pumpQueued = false
      // Aborts Rust recorded go to their handlers before their slots are reused.
      this._afterFlags(this._core.poll())
      this._pump()
    })
  }

  _resumeTurn() {
    this._pumpQueued = false
    this._batchesThisTurn = 0
    this._pump()
  }

  _pump() {
    if (!this._durable) {
      this._pumpBatches()
      return
    }
    try {
      this._pumpBatches()
    } finally {
      this._core.sendWrites()
    }
  }

  _pumpBatches() {
    if (this._state !== 'started') return
    for (;;) {
      if (
        this._batchesThisTurn >= BATCHES_PER_TURN ||
        (this._batchesThisTurn > 0 && performance.now() - this._turnStart > TURN_BUDGET_MS)
      ) {
        // Let timers and I/O run before the next batches.
        if (!this._pumpQueued) {
          this._pumpQueued = true
          setImmediate(this._resumeTurn)
        }
        return
      }
      const s = this._core.take(MAX_TAKE)
      if (s.length === 0) return
      this._batchesThisTurn++
      if (this._batchesThisTurn === 1) {
        this._turnStart = performance.now()
        setImmediate(this._newTurn)
      }
      const a = JSON.parse(s)
      SCOPE.runInAsyncScope(this._runBatch, this, a)
      // Fewer than asked: every free worker got a job or nothing more is due;
      // workers free up only when outcomes settle (which pumps again).
      if (a.length < MAX_TAKE * TAKE_FIELDS) return
    }
  }

  _runBatch(a) {
    for (let i = 0; i < a.length; i += TAKE_FIELDS) this._run(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6])
  }

  _run(slot, seq, id, calcIdx, attempt, data, context) {
    const calc = this._calcs[calcIdx]
    const job = new SlotJob(this, slot, seq, id, attempt, calc.name)
    this._slots[slot] = job
    let r
    try {
      r = calc.calculate(data, context, job)
      if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
        r.then(
          (v) => this._ok(job, v),
          (e) => this._err(job, e),
        )
        return
      }
    } catch (e) {
      this._err(job, e)
      return
    }
    this._ok(job, r)
  }

  _ok(job, value) {
    if (job._done) return
    let s
    try {
      s = resultJson(value)
    } catch (e) {
      this._err(job, e)
      return
    }
    job._done = true
    if (this._slots[job._slot] === job) this._slots[job._slot] = undefined
    this._outbox.push(job._slot, job._seq, OUTCOME_OK, s)
    this._okOut.push(job, value, s)
    this._queueFlush()
  }

  _err(job, e) {
    if (job._done) return
    job._done = true
    if (this._slots[job._slot] === job) this._slots[job._slot] = undefined
    // Whatever was thrown may throw again when read (a revoked Proxy, a getter).
    let kind = OUTCOME_ERROR
    let s
    try {
      kind = isUnrecoverable(e) ? OUTCOME_UNRECOVERABLE : OUTCOME_ERROR
      s = JSON.stringify(errorOf(e))
    } catch {
      s = '{"name":"Error","message":"a thrown value that cannot be read"}'
    }
    this._outbox.push(job._slot, job._seq, kind, s)
    this._queueFlush()
  }

  _queueFlush() {
    if (this._flushQueued) return
    this._flushQueued = true
    // Not queueMicrotask: Node wraps each of those in an async resource.
    RESOLVED.then(this._flush)
  }

  _flush() {
    this._flushQueued = false
    if (this._outbox.length === 0) return
    const s = `[${this._outbox.join(',')}]`
    this._outbox.length = 0
    const ok = this._okOut
    const emit = ok.length > 0 && this.listenerCount('completed') > 0
    if (ok.length > 0) this._okOut = []
    const flags = this._core.settle(s, emit)
    this._afterFlags(flags)
    // Rust recorded these outcomes; when they all were current it left their
    // 'completed' events to this side, which still holds id, name and result.
    if (flags & FLAG_EMIT_COMPLETED) SCOPE.runInAsyncScope(this._emitCompleted, this, ok)
    this._pump()
    if (this._settleWaiter !== null) this._settleWaiter()
  }

  _emitCompleted(ok) {
    for (let i = 0; i < ok.length; i += 3) {
      const job = ok[i]
      this._emitSafely('completed', { jobId: job.id, name: job.name, attempt: job.attempt, result: resultValue(ok[i + 1], ok[i + 2]) })
    }
  }

  _afterFlags(flags) {
    if (flags & FLAG_NEWS) this._drain()
    this._setKeepAlive(flags >>> FLAG_ACTIVE_SHIFT > 0 && (this._state === 'started' || this._state === 'stopping'))
    if (this._stopWaiters.length > 0 && this._core.runningCount() === 0) {
      const waiters = this._stopWaiters
      this._stopWaiters = []
      for (const w of waiters) w()
    }
  }

  _setKeepAlive(on) {
    if (on && !this._unref) {
      if (this._keepAlive === null) this._keepAlive = setInterval(noop, KEEP_ALIVE_MS)
    } else if (this._keepAlive !== null) {
      clearInterval(this._keepAlive)
      this._keepAlive = null
    }
  }

  _drain() {
    const [aborts, events] = JSON.parse(this._core.drain())
    SCOPE.runInAsyncScope(this._drained, this, aborts, events)
    // The aborted attempts' workers are free now.
    if (aborts.length > 0) this._schedulePump()
  }

  _drained(aborts, events) {
    for (let i = 0; i < aborts.length; i += ABORT_FIELDS) {
      const slot = aborts[i]
      const job = this._slots[slot]
      if (job !== undefined && job._seq === aborts[i + 1]) {
        this._slots[slot] = undefined
        job._abort(abortReason(aborts[i + 2]))
      }
    }
    for (const [kind, jobId, name, attempt, extra] of events) {
      if (kind === 'alert' || kind === 'alertResolved') {
        this._alertEvent(kind, extra)
        continue
      }
      if (kind === 'alertDeliveryFailed') {
        try {
          this._logger.warn(`jobwerk: ${extra}`)
        } catch (e) {
          process.emitWarning(`jobwerk: the logger threw: ${e && e.message}`)
        }
        this._emitSafely('alertDeliveryFailed', { message: extra })
        continue
      }
      let payload
      switch (kind) {
        case 'completed':
          payload = { jobId, name, attempt, result: extra }
          break
        case 'retrying':
          payload = { jobId, name, attempt, delayMs: extra.delayMs, error: extra.error }
          break
        case 'cancelled':
          payload = { jobId, name, attempt }
          break
        default:
          payload = { jobId, name, attempt, error: extra }
      }
      this._emitSafely(kind, payload)
    }
  }

  _alertEvent(kind, alert) {
    if (kind === 'alert' && Array.isArray(alert.channels) && alert.channels.includes('log')) {
      const line = `jobwerk alert [${alert.severity}] ${alert.title}: ${alert.message}`
      try {
        if (alert.severity === 'critical') this._logger.error(line)
        else if (alert.severity === 'warning') this._logger.warn(line)
        else this._logger.info(line)
      } catch (e) {
        process.emitWarning(`jobwerk: the logger threw: ${e && e.message}`)
      }
    }
    this._emitSafely(kind, alert)
  }

  _emitSafely(event, payload) {
    try {
      this.emit(event, payload)
    } catch (e) {
      process.emitWarning(`jobwerk: a '${event}' listener threw: ${e && e.stack}`)
    }
  }

  /** A running job's progress `s` (JSON) to the core, and to 'progress' listeners. */
  _progress(job, s) {
    if (this._core.progress(job._slot, job._seq, s) && this.listenerCount('progress') > 0) {
      this._emitSafely('progress', { jobId: job.id, name: job.name, attempt: job.attempt, progress: JSON.parse(s) })
    }
  }

  // Lets dispatched handlers run and their outcomes settle: waits until no
  // handler runs that was not given up on, for at most `settleMs` real ms.
  async _settleDue(settleMs) {
    const until = Date.now() + settleMs
    for (;;) {
      // A few turns for what settles at once (no timer needed).
      for (let i = 0; i < 3; i++) {
        await new Promise(setImmediate)
        this._flush()
        this._pump()
      }
      // Done when no awaited handler runs and no batch waits for its turn.
      if (!this._awaitedRunning()) {
        if (this._pumpQueued && Date.now() < until) continue
        return
      }
      const left = until - Date.now()
      if (left <= 0) {
        for (const job of this._slots) if (job !== undefined) this._givenUp.add(job)
        return
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50))
        this._settleWaiter = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this._settleWaiter = null
    }
  }

  /** True while a handler runs that advanceTime still waits for. */
  _awaitedRunning() {
    for (const job of this._slots) if (job !== undefined && !job._done && !this._givenUp.has(job)) return true
    return false
  }
}

module.exports = { Dispatcher }
