'use strict'
// Every error code jobwerk throws or stores, as the native binding exports it
// (src/error.rs defines each code once), and the helper that makes a coded
// Error. The one exception is ERR_NATIVE_ADDON: load-binding.js throws it
// before any binary is loaded, so it is a literal there (a test checks it
// against ErrorCode.NativeAddon).

const native = require('../load-binding.js').loadBinding()

/** The codes thrown to JavaScript (index.d.ts `JobwerkErrorCode`): `API.InvalidArgument`, ... */
const API = Object.freeze({ ...native.ErrorCode })
/** The codes set on a job's error and a signal's reason (index.d.ts `JobErrorCode`). */
const JOB = Object.freeze({ ...native.JobErrorCode })
/** Every value of `API`. */
const CODES = new Set(Object.values(API))

function codedError(code, message) {
  const e = new Error(message)
  e.code = code
  return e
}

module.exports = { API, JOB, CODES, codedError }
