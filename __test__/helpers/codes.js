'use strict'
// The codes index.d.ts declares in `JobwerkErrorCode`, read from the .d.ts
// itself so the tests and the declared type cannot drift apart.

const fs = require('node:fs')
const path = require('node:path')

const dts = fs.readFileSync(path.join(__dirname, '..', '..', 'index.d.ts'), 'utf8')
const m = /export type JobwerkErrorCode =([^;]*?)(?:\n\n|\nexport|$)/.exec(dts)
if (!m) throw new Error('index.d.ts has no JobwerkErrorCode type')
const JOBWERK_ERROR_CODES = [...m[1].matchAll(/'(ERR_[A-Z_]+)'/g)].map((x) => x[1])

module.exports = { JOBWERK_ERROR_CODES }

// The same for `JobErrorCode` (the codes set on a job's error).
const j = /export type JobErrorCode =([^;]*?)(?:\n\n|\nexport|$)/.exec(dts)
if (!j) throw new Error('index.d.ts has no JobErrorCode type')
const JOB_ERROR_CODES = [...j[1].matchAll(/'(ERR_[A-Z_]+)'/g)].map((x) => x[1])

module.exports.JOB_ERROR_CODES = JOB_ERROR_CODES
