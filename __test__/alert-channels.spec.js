'use strict'
// Webhook and email alert channels against real local servers; an
// unreachable webhook or SMTP host does not disturb job processing.

const http = require('node:http')
const net = require('node:net')
const { SMTPServer } = require('smtp-server')
const { serviceTracker, waitFor } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const T0 = Date.parse('2026-03-01T00:00:00Z')
const bad = { name: 'bad', retries: 0, calculate: () => { throw new Error('boom') } }
const ok = { name: 'ok', calculate: () => 1 }

// Like waitFor, for an async condition (each try also advances the manual clock).
async function eventually(fn, timeout) {
  const t0 = Date.now()
  for (;;) {
    if (await fn()) return
    if (Date.now() - t0 > timeout) throw new Error(`eventually: timed out after ${timeout} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function closedPort() {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function breachErrorRate(s) {
  await s.start()
  for (let i = 0; i < 3; i++) s.addCalculationJob(bad, {})
  for (let i = 0; i < 3; i++) s.addCalculationJob(ok, {})
  await s.advanceTime(2000)
}

test('a webhook receives the documented JSON body with the configured headers', async () => {
  const got = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      got.push({ method: req.method, url: req.url, headers: req.headers, body: JSON.parse(body) })
      res.writeHead(200)
      res.end('ok')
    })
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  try {
    const url = `http://127.0.0.1:${server.address().port}/hooks/jobwerk`
    const s = tracker.create({
      clock: { type: 'manual', now: T0 },
      monitoring: {
        healthCheckInterval: 1000,
        logger: { info() {}, warn() {}, error() {} },
        alerting: { channels: ['log', 'webhook'], webhook: { url, headers: { authorization: 'Bearer s3cret' }, timeoutMs: 2000 } },
      },
    })
    await breachErrorRate(s)
    await waitFor(() => got.length >= 1, { timeout: 5000 })
    const [req] = got
    expect(req.method).toBe('POST')
    expect(req.url).toBe('/hooks/jobwerk')
    expect(req.headers['content-type']).toMatch(/application\/json/)
    expect(req.headers.authorization).toBe('Bearer s3cret')
    expect(req.body).toMatchObject({ type: 'alert', service: 'jobwerk', alert: { ruleId: 'highErrorRate', severity: 'critical', status: 'active' } })
    expect(typeof req.body.sentAt).toBe('number')
    await waitFor(() => s.getSystemStatus().alertDelivery && s.getSystemStatus().alertDelivery.webhookSent === 1)
  } finally {
    await new Promise((r) => server.close(r))
  }
})

test('an email reaches the SMTP server with subject and body', async () => {
  const mails = []
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, cb) {
      let raw = ''
      stream.on('data', (c) => (raw += c))
      stream.on('end', () => {
        mails.push({ raw, from: session.envelope.mailFrom.address, to: session.envelope.rcptTo.map((r) => r.address) })
        cb()
      })
    },
  })
  await new Promise((r) => smtp.listen(0, '127.0.0.1', r))
  try {
    const port = smtp.server.address().port
    const s = tracker.create({
      clock: { type: 'manual', now: T0 },
      monitoring: {
        healthCheckInterval: 1000,
        logger: { info() {}, warn() {}, error() {} },
        alerting: {
          channels: ['email'],
          email: { host: '127.0.0.1', port, secure: 'none', from: 'jobs@example.com', to: ['ops@example.com', 'dev@example.com'] },
        },
      },
    })
    await breachErrorRate(s)
    await waitFor(() => mails.length >= 1, { timeout: 5000 })
    expect(mails[0].from).toBe('jobs@example.com')
    expect(mails[0].to.sort()).toEqual(['dev@example.com', 'ops@example.com'])
    expect(mails[0].raw).toMatch(/Subject: \[jobwerk\] critical: /)
    expect(mails[0].raw).toMatch(/highErrorRate/)
  } finally {
    await new Promise((r) => smtp.close(r))
  }
})

test('unreachable webhook and SMTP host: failures are logged and counted, jobs keep running', async () => {
  const warnings = []
  const port = await closedPort()
  const s = tracker.create({
    clock: { type: 'manual', now: T0 },
    queue: { maxQueueSize: 1000 },
    monitoring: {
      healthCheckInterval: 1000,
      logger: { info() {}, warn: (m) => warnings.push(m), error() {} },
      alerting: {
        channels: ['webhook', 'email'],
        webhook: { url: `http://127.0.0.1:${port}/x`, retries: 0, timeoutMs: 500 },
        email: { host: '127.0.0.1', port, secure: 'none', from: 'a@example.com', to: 'b@example.com', retries: 0, timeoutMs: 500 },
      },
    },
  })
  await breachErrorRate(s)
  const ids = []
  for (let i = 0; i < 200; i++) ids.push(s.addCalculationJob(ok, { i }))
  await s.advanceTime(1000)
  expect(ids.every((id) => s.getJobStatus(id).status === 'completed')).toBe(true)
  let last
  await eventually(async () => {
    await s.advanceTime(1000)
    const d = s.getSystemStatus().alertDelivery
    last = d
    return d.webhookFailed >= 1 && d.emailFailed >= 1
  }, 8000).catch((e) => {
    throw new Error(`${e.message}; delivery: ${JSON.stringify(last)}`)
  })
  await eventually(async () => {
    await s.advanceTime(1000)
    return warnings.length >= 2
  }, 5000)
  expect(warnings.join('\n')).toMatch(/webhook/)
})

test('bad channel config is ERR_INVALID_CONFIG naming the key', () => {
  const code = (alerting) => {
    try {
      tracker.create({ monitoring: { alerting } })
    } catch (e) {
      return [e.code, e.message]
    }
    return null
  }
  expect(code({ webhook: { url: 'ftp://x' } })[1]).toMatch(/monitoring\.alerting\.webhook/)
  expect(code({ email: { host: 'h', from: 'nope', to: 'a@b.c' } })[1]).toMatch(/monitoring\.alerting\.email\.from/)
  expect(code({ webhook: { url: 'http://x', retries: -1 } })[0]).toBe('ERR_INVALID_CONFIG')
})
