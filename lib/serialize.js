'use strict'
// How jobwerk turns callers' values into the JSON the core takes (job data,
// context, options, results, progress, errors) and how it names a caller's
// value in a message (describe). Shared by the service (lib/service.js), the
// dispatcher (lib/dispatcher.js) and the pool's threads (lib/thread-worker.js):
// nothing here loads the native addon.

const { isNativeError } = require('node:util').types
const { API, CODES, codedError, invalid } = require('./errors.js')

/** A result that is JSON text already (from a worker thread): stored as is. */
class RawJson {
  constructor(json) {
    this.json = json
  }
}


// A caller's value in a message, without calling anything of it: String() of a
// null-prototype object or a template of a Symbol would throw.
function describe(v) {
  switch (typeof v) {
    case 'number':
    case 'boolean':
    case 'undefined':
      return String(v)
    case 'bigint':
      return `${v}n`
    case 'string':
      return v.length > 50 ? `a string of ${v.length} characters` : JSON.stringify(v)
    case 'object':
      if (v === null) return 'null'
      try {
        if (Array.isArray(v)) return 'an array'
        if (v instanceof Date) return Number.isFinite(v.getTime()) ? v.toISOString() : 'Invalid Date'
      } catch {
        return 'a revoked Proxy'
      }
      return 'an object'
    default:
      return `a ${typeof v}`
  }
}

// What a thrown value says, whatever it is (reading it may throw again).
function reasonOf(e) {
  try {
    if (isNativeError(e)) return String(e.message)
    return describe(e)
  } catch {
    return 'an unreadable value was thrown'
  }
}

// `e` when it is one of ours (coded); otherwise a `code` error saying that
// `what` cannot be read (a getter threw, a revoked Proxy, a cycle).
function asCoded(e, code, what) {
  try {
    if (isNativeError(e) && CODES.has(e.code)) return e
  } catch {}
  return codedError(code, `${what} cannot be read: ${reasonOf(e)}`)
}

// A non-array object (a revoked Proxy is none).
function isRecord(v) {
  if (v === null || typeof v !== 'object') return false
  try {
    return !Array.isArray(v)
  } catch {
    return false
  }
}

// JSON of a filter or rule (undefined: null); a cycle or a getter that throws
// is ERR_INVALID_ARGUMENT naming `what`.
function argJson(v, what) {
  let s
  try {
    s = JSON.stringify(v === undefined ? null : v, optionsReplacer)
  } catch (e) {
    throw asCoded(e, API.InvalidArgument, what)
  }
  // (a toJSON that returns undefined)
  if (s === undefined) throw invalid(`${what} must be an object, got ${describe(v)}`)
  return s
}
// Options and config: Dates become epoch ms; NaN and Infinity become strings so
// Rust reports them by name instead of JSON turning them into null.
function optionsReplacer(key, value) {
  const raw = this[key]
  if (raw instanceof Date) {
    const t = raw.getTime()
    return Number.isFinite(t) ? t : 'Invalid Date'
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
  if (typeof value === 'bigint') return `${value}n`
  // Reported by name in Rust instead of silently dropped.
  if (typeof value === 'function' || typeof value === 'symbol') return `[${typeof value}]`
  return value
}

function notSerializable(what, detail) {
  return codedError(API.NotSerializable, `${what} is not JSON-serializable: ${detail}`)
}

// Data, context, results and progress: functions and symbols are refused
// (JSON.stringify would drop them silently); BigInt and cycles throw by
// themselves.
function dataReplacer(key, value) {
  const t = typeof value
  if (t === 'function' || t === 'symbol') {
    throw new TypeError(`${key ? `property "${key}"` : 'the value'} is a ${t}`)
  }
  return value
}

function toJson(value, what) {
  if (value === undefined) return 'null'
  let s
  try {
    s = JSON.stringify(value, dataReplacer)
  } catch (e) {
    throw notSerializable(what, reasonOf(e))
  }
  if (s === undefined) throw notSerializable(what, `a ${typeof value}`)
  return s
}

// A handler's result as JSON; the common primitives without a replacer.
function resultJson(v) {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? '' + v : 'null'
    case 'string':
      return JSON.stringify(v)
    case 'boolean':
      return v ? 'true' : 'false'
    case 'undefined':
      return 'null'
    default:
      // From a worker thread: JSON text already.
      if (v instanceof RawJson) return v.json
      return toJson(v, 'the result')
  }
}

// The result as a 'completed' listener sees it: what the JSON stored reads back as.
function resultValue(v, json) {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? v + 0 : null
    case 'string':
    case 'boolean':
      return v
    default:
      return JSON.parse(json)
  }
}

// `jobs[i].field` in a batch, `field` for a single job.
function fieldAt(i, field) {
  return i < 0 ? field : `jobs[${i}].${field}`
}

// Job data or context as JSON: plain values skip the replacer; the rest goes
// through toJson.
function dataJson(v, i, field) {
  if (typeof v === 'number' && Number.isFinite(v)) return '' + v
  try {
    if (isPlain(v)) return JSON.stringify(v)
  } catch {
    // a getter or a revoked Proxy: toJson names it
  }
  return toJson(v, fieldAt(i, field))
}

// A finite number, a string, or a flat plain object of those: what
// JSON.stringify writes as is.
function isPlain(v) {
  const t = typeof v
  if (t === 'number') return Number.isFinite(v)
  if (t === 'string') return true
  return v !== null && t === 'object' && Object.getPrototypeOf(v) === Object.prototype && isFlat(v)
}

// An own-enumerable-keys object whose values are finite numbers, strings,
// booleans or null (what JSON.stringify writes as is, no toJSON to call).
function isFlat(o) {
  for (const k in o) {
    const v = o[k]
    const t = typeof v
    if (t === 'number' ? !Number.isFinite(v) : t !== 'string' && t !== 'boolean' && v !== null) return false
  }
  return true
}

function optionsJson(options, what) {
  if (options === undefined || options === null) return 'null'
  if (!isRecord(options)) throw invalid(`${what} must be an object, got ${describe(options)}`)
  return argJson(options, what)
}

function errorOf(e) {
  if (e instanceof Error) {
    const out = { name: String(e.name || 'Error'), message: String(e.message) }
    if (typeof e.stack === 'string') out.stack = e.stack
    if (typeof e.code === 'string') out.code = e.code
    return out
  }
  return nonErrorOf(e)
}

// What a thrown value that is no Error says (the pool's threads too).
function nonErrorOf(e) {
  let message
  try {
    message = typeof e === 'string' ? e : JSON.stringify(e)
  } catch {
    message = undefined
  }
  if (message === undefined) message = String(e)
  return { name: 'NonError', message: `a non-Error was thrown: ${message}` }
}

// A job's progress as JSON: a finite number or a JSON-serializable object.
function progressJson(progress) {
  if (typeof progress === 'number') {
    if (!Number.isFinite(progress)) throw invalid(`updateProgress: progress must be finite, got ${progress}`)
  } else if (progress === null || typeof progress !== 'object') {
    throw invalid(`updateProgress: progress must be a number or an object, got ${progress === null ? 'null' : typeof progress}`)
  }
  return toJson(progress, 'progress')
}

module.exports = {
  RawJson,
  describe,
  reasonOf,
  asCoded,
  isRecord,
  argJson,
  optionsReplacer,
  toJson,
  resultJson,
  resultValue,
  fieldAt,
  dataJson,
  isPlain,
  optionsJson,
  errorOf,
  nonErrorOf,
  progressJson,
}
