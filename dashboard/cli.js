#!/usr/bin/env node
'use strict'

// `npx jobwerk dashboard [--storage FILE] [--port N] [--host H] [--token T] [--read-only] [--redact a,b]`:
// the dashboard over a jobwerk SQLite file, for apps without a web framework.
// It never starts the service (no handler runs, no schedule fires here); the
// file can be open in one process at a time, so point it at a stopped app's file.

const { parseArgs } = require('node:util')

const USAGE = `Usage: jobwerk dashboard [options]
  --storage FILE   the app's SQLite file (default .tmp/jobwerk.db)
  --port N         default 4680 (0: any free port)
  --host H         default 127.0.0.1; another host needs --token
  --token T        bearer token (open <url>?token=T once in the browser)
  --read-only      no actions
  --redact a,b     keys whose values are masked`

async function main(argv) {
  let args
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        storage: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        token: { type: 'string' },
        'read-only': { type: 'boolean' },
        redact: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (e) {
    return fail(e.message)
  }
  const { values, positionals } = args
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (positionals[0] !== 'dashboard' || positionals.length > 1) return fail(`unknown command: ${positionals.join(' ') || '(none)'}`)
  const port = values.port === undefined ? 4680 : Number(values.port)
  if (!Number.isInteger(port)) return fail(`--port must be an integer, got ${values.port}`)
  const { JobManagementService } = require('../index.js')
  const service = new JobManagementService({ storage: { type: 'sqlite', path: values.storage || '.tmp/jobwerk.db' } })
  let dash
  try {
    dash = await service.startDashboard({
      port,
      host: values.host,
      token: values.token,
      readOnly: values['read-only'] === true,
      redact: values.redact ? values.redact.split(',').filter(Boolean) : [],
    })
    // Opens the file now (a busy or bad file fails here, not at the first page view).
    service.getJobs({ limit: 1, includeData: false })
  } catch (e) {
    if (dash) await dash.close()
    return fail(e.message)
  }
  process.stdout.write(`jobwerk dashboard: ${dash.url}\n`)
  const shutdown = async () => {
    await dash.close()
    await service.stop({ timeoutMs: 1000 })
    process.exit(0)
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
  return null
}

function fail(message) {
  process.stderr.write(`jobwerk: ${message}\n${USAGE}\n`)
  return 2
}

main(process.argv.slice(2)).then((code) => {
  if (code !== null) process.exitCode = code
})
