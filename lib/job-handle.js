'use strict'
// What a handler gets as its third argument (index.d.ts `JobHandle`), one
// implementation for both places a handler runs: the main thread's dispatcher
// (lib/dispatcher.js, SlotJob) and the threads of the pool (lib/thread-worker.js,
// ThreadJob). Each subclass says where progress goes (_sendProgress) and holds
// what it needs to report the outcome. Loads no native addon (the pool's
// threads require it).

const { progressJson } = require('./serialize.js')

class JobHandle {
  constructor(id, attempt, name) {
    this.id = id
    this.name = name
    this.attempt = attempt
    this._done = false
    this._controller = null
    this._abortReason = null
  }

  /** Fires when the attempt times out, the job is cancelled or the service stops. */
  get signal() {
    if (this._controller === null) {
      this._controller = new AbortController()
      if (this._abortReason !== null) this._controller.abort(this._abortReason)
    }
    return this._controller.signal
  }

  /** Records progress (a number or a JSON-serializable object). */
  updateProgress(progress) {
    const s = progressJson(progress)
    if (this._done || this._abortReason !== null) return
    this._sendProgress(s)
  }

  /** Aborts the signal with `reason` (the first reason stays); false when it was aborted already. */
  _abort(reason) {
    if (this._abortReason !== null) return false
    this._abortReason = reason
    if (this._controller !== null) this._controller.abort(reason)
    return true
  }
}

module.exports = { JobHandle }
