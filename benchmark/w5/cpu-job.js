'use strict'
// W5's job body: ~20 ms of synchronous CPU (a busy loop on the clock, so it
// costs the same whoever runs it). Exports both shapes: jobwerk's
// calculate(data) and BullMQ's sandboxed processor (job) => ...
const { performance } = require('node:perf_hooks')

function spin(ms) {
  const t0 = performance.now()
  let x = 0
  while (performance.now() - t0 < ms) x++
  return x
}

exports.calculate = (data) => {
  spin(data.ms)
  return data.i
}

// BullMQ loads a sandboxed processor's module.exports (a function).
exports.bullmq = (job) => {
  spin(job.data.ms)
  return job.data.i
}
