'use strict'
// W5's job body as a BullMQ sandboxed processor file.
module.exports = require('./cpu-job.js').bullmq
