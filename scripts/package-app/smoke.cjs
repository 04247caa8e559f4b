'use strict'
// Runs in an app that installed jobwerk from its tarballs (scripts/test-package.js).
const assert = require('node:assert')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const jobwerk = require('jobwerk')

function outcome(service) {
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error('no outcome within 60 s')), 60000)
    service.once('completed', (e) => (clearTimeout(guard), resolve(e)))
    service.once('failed', (e) => (clearTimeout(guard), reject(new Error(`job failed: ${e.error && e.error.message}`))))
  })
}

async function main() {
  // require and import: the same module instance.
  const esm = await import('jobwerk')
  for (const name of ['JobManagementService', 'UnrecoverableError', 'getJobManagementService', 'nextCronRuns']) {
    assert.strictEqual(typeof jobwerk[name], 'function', name)
    assert.strictEqual(esm[name], jobwerk[name], name)
  }
  assert.strictEqual(esm.default, jobwerk)
  const strapi = {}
  assert.strictEqual(esm.getJobManagementService(strapi), jobwerk.getJobManagementService(strapi), 'one service per Strapi instance across require and import')
  assert.strictEqual(jobwerk.nextCronRuns('0 9 * * *', { tz: 'UTC', from: Date.UTC(2026, 0, 1), count: 1 })[0].toISOString(), '2026-01-01T09:00:00.000Z')

  // A job on SQLite (the default storage), read back after a restart.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-smoke-'))
  try {
    const file = path.join(dir, 'jobs.db')
    const calc = { name: 'double', calculate: (data) => data.n * 2 }
    const service = new jobwerk.JobManagementService({ storage: { type: 'sqlite', path: file } })
    await service.start()
    const done = outcome(service)
    const id = service.addCalculationJob(calc, { n: 21 }, { contentType: 'api::match.match', operationId: 'op-1' })
    const event = await done
    assert.strictEqual(event.jobId, id)
    assert.strictEqual(event.result, 42)
    await service.flush()
    await service.stop()
    const again = new jobwerk.JobManagementService({ storage: { type: 'sqlite', path: file } })
    again.registerCalculation(calc)
    await again.start()
    const status = again.getJobStatus(id)
    assert.strictEqual(status.status, 'completed')
    assert.strictEqual(status.result, 42)
    assert.deepStrictEqual(status.context, { contentType: 'api::match.match', operationId: 'op-1' })
    await again.stop()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  console.log(`jobwerk ${require('jobwerk/package.json').version} on Node ${process.version}: ok`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
