// The ESM entry in an app that installed jobwerk from its tarballs (scripts/test-package.js).
import assert from 'node:assert'
import { createRequire } from 'node:module'
import jobwerk, { JobManagementService, UnrecoverableError, getJobManagementService, nextCronRuns } from 'jobwerk'

const require = createRequire(import.meta.url)
const cjs = require('jobwerk')
assert.strictEqual(jobwerk, cjs)
assert.strictEqual(JobManagementService, cjs.JobManagementService)
assert.strictEqual(getJobManagementService(), cjs.getJobManagementService())
assert.strictEqual(nextCronRuns('@daily', { tz: 'UTC', from: 0, count: 2 }).length, 2)

const service = new JobManagementService({ storage: { type: 'memory' } })
await service.start()
const calc = {
  name: 'unrecoverable',
  calculate() {
    throw new UnrecoverableError('no such league')
  },
}
const failed = new Promise((resolve) => service.once('failed', resolve))
const id = service.addCalculationJob(calc, {}, { contentType: 'api::match.match' }, { retries: 3 })
const event = await failed
assert.strictEqual(event.jobId, id)
assert.strictEqual(service.getJobStatus(id).attempts, 1)
await service.stop()
assert.throws(() => service.addCalculationJob(calc, () => {}), (e) => typeof e.code === 'string' && e.code.startsWith('ERR_'))
console.log(`ESM on Node ${process.version}: ok`)
