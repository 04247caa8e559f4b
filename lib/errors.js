'use strict'
// Every error code jobwerk throws or stores, as the native binding exports it
// (src/error.rs defines each code once), the helpers that make a coded Error,
// and UnrecoverableError. The one exception is ERR_NATIVE_ADDON:
// load-binding.js throws it before any binary is loaded, so it is a literal
// there (a test checks it against ErrorCode.NativeAddon).
//
// A thread of jobwerk's own pool (lib/thread-worker.js is its entry) does not
// load the addon: the pool hands it the same two tables in `workerData.codes`.

const { isMainThread, workerData } = require('node:worker_threads')
const path = require('node:path')

function codeTables() {
  if (!isMainThread && require.main != null && require.main.filename === path.join(__dirname, 'thread-worker.js')) return workerData.codes
  const native = require('../load-binding.js').loadBinding()
  return { api: native.ErrorCode, job: native.JobErrorCode }
}

const tables = codeTables()
/** The codes thrown to JavaScript (index.d.ts `JobwerkErrorCode`): `API.InvalidArgument`, ... */
const API = Object.freeze({ ...tables.api })
/** The codes set on a job's error and a signal's reason (index.d.ts `JobErrorCode`). */
const JOB = Object.freeze({ ...tables.job })
/** Every value of `API`. */
const CODES = new Set(Object.values(API))

function codedError(code, message) {
  const e = new Error(message)
  e.code = code
  return e
}

function invalid(message) {
  return codedError(API.InvalidArgument, message)
}

/** Thrown by a handler, fails the job at once, without retries. */
class UnrecoverableError extends Error {
  constructor(message, options) {
    super(message, options)
    this.name = 'UnrecoverableError'
  }
}

function isUnrecoverable(e) {
  return e instanceof UnrecoverableError || (e != null && (e.name === 'UnrecoverableError' || e.unrecoverable === true))
}

module.exports = { API, JOB, CODES, codedError, invalid, UnrecoverableError, isUnrecoverable }
