// The dashboard in a real browser: Debian's chromium driven by playwright-core
// (no browser download; .ci/run installs chromium when missing). A service
// with jobs in every status, schedules and active alerts; each page opened and
// its visible content asserted; retry, acknowledge and disable clicked; a job
// watched going from pending to completed without a reload. Screenshots of
// every page go to .dashboard-screenshots/ (git-ignored).
const fs = require('node:fs')
const path = require('node:path')
const { JobManagementService, nextCronRuns } = require('../index.js')

const CHROMIUM = process.env.CHROMIUM_PATH || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p))
const SHOTS = path.join(__dirname, '..', '.dashboard-screenshots')
const XSS_SCRIPT = '<script>window.__xss=1</script>'
const XSS_ATTR = '"><img src=x onerror="window.__xss=2">'

jest.setTimeout(180000)

let service
let dash
let browser
let page
let healed = false
let release
const ids = {}

const ok = { name: 'table-positions', calculate: (d) => ({ rows: d.n, password: 'result-pw-secret' }) }
const flaky = {
  name: 'import-fixtures',
  retries: 0,
  calculate: () => {
    if (!healed) throw new Error(`the league is gone ${XSS_ATTR}`)
    return 'imported'
  },
}
const slow = { name: 'slow-report', calculate: () => new Promise((r) => (release = r)) }
const stuck = { name: 'stuck-export', timeout: 5000, retries: 0, calculate: (d, c, job) => new Promise((r) => job.signal.addEventListener('abort', r)) }

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true })
}

// Navigates inside the page and waits until the page rendered after it.
async function open(hash) {
  const before = await page.evaluate(() => document.getElementById('main').dataset.rendered || '0')
  await page.evaluate((h) => (location.hash = h), hash)
  await page.waitForFunction((b) => (document.getElementById('main').dataset.rendered || '0') !== b, before)
}

beforeAll(async () => {
  if (!CHROMIUM) throw new Error('chromium is not installed: apt-get install -y chromium (or set CHROMIUM_PATH)')
  fs.mkdirSync(SHOTS, { recursive: true })
  service = new JobManagementService({ storage: { type: 'memory' }, clock: 'manual', queue: { defaultRetries: 0, maxWorkers: 3 }, monitoring: { healthCheckInterval: 1000 } })
  await service.start()
  service.addAlertRule({ id: 'any-failure', metric: 'failedCount', operator: '>=', threshold: 1, window: 600000, severity: 'critical' })
  for (let n = 0; n < 12; n++) service.addCalculationJob(ok, { n })
  ids.xss = service.addCalculationJob(ok, { n: 99, html: XSS_SCRIPT, attr: XSS_ATTR, password: 'data-pw-secret' }, { contentType: 'api::match.match' })
  ids.failed = service.addCalculationJob(flaky, { leagueId: 7 })
  ids.running = service.addCalculationJob(slow, {})
  ids.timeout = service.addCalculationJob(stuck, {})
  await service.advanceTime(6000, { settleMs: 50 })
  ids.cancelled = service.addCalculationJob(ok, { n: 1 }, {}, { delay: 3600000 })
  service.cancelJob(ids.cancelled)
  ids.pending = service.addCalculationJob(ok, { n: 2 }, {}, { delay: 3600000 })
  ids.waiting = service.addCalculationJob(ok, { n: 3 }, {}, { dependsOn: [ids.pending] })
  service.scheduleCronCalculationJob(ok, { n: 4 }, {}, '0 9 * * *', { id: 'daily-table', tz: 'UTC' })
  service.scheduleRecurringCalculationJob(ok, { n: 5 }, {}, null, 15 * 60000, { id: 'every-15-min' })
  dash = await service.startDashboard({ redact: ['password'], liveIntervalMs: 200 })
  const { chromium } = require('playwright-core')
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, timezoneId: 'Europe/Berlin', locale: 'en-GB' })
  page = await ctx.newPage()
  page.setDefaultTimeout(15000)
  page.on('dialog', (d) => d.accept(d.type() === 'prompt' ? 'Ann Operator' : undefined))
  await page.goto(dash.url)
  await page.waitForSelector('#counts')
})

afterAll(async () => {
  if (browser) await browser.close()
  if (dash) await dash.close()
  if (release) release()
  if (service) await service.stop({ timeoutMs: 1000 })
})

test('Overview: counts per status, health per dimension, charts, busy workers and active alerts', async () => {
  const count = (s) => page.textContent(`#counts [data-status="${s}"] .num`)
  const expected = { waiting: '1', pending: '1', running: '1', completed: '13', failed: '1', timeout: '1', cancelled: '1' }
  for (const [s, n] of Object.entries(expected)) expect([s, await count(s)]).toEqual([s, n])
  expect(await page.textContent('#busy')).toBe('1 / 3')
  for (const d of ['queue', 'workers', 'performance', 'errors']) {
    expect(await page.isVisible(`#health [data-dimension="${d}"] .badge`)).toBe(true)
  }
  expect(await page.textContent('#health [data-dimension="errors"]')).toMatch(/errorRate/)
  expect(await page.locator('svg polyline').count()).toBeGreaterThan(0)
  expect(await page.textContent('table.alerts')).toContain('any-failure')
  await shot('overview')
})

test('Jobs: filter by status shows the failed job with its error message as text; paging with cursors', async () => {
  await open('#/jobs?status=failed')
  const row = page.locator(`tr[data-job="${ids.failed}"]`)
  expect(await row.locator('.err').textContent()).toBe(`the league is gone ${XSS_ATTR}`)
  expect(await page.locator('#jobs tbody tr').count()).toBe(1)
  await shot('jobs-failed')
  await open('#/jobs?limit=5')
  expect(await page.locator('#jobs tbody tr').count()).toBe(5)
  const first = await page.locator('#jobs tbody tr').first().getAttribute('data-job')
  await page.click('#older')
  await page.waitForFunction((f) => document.querySelector('#jobs tbody tr') && document.querySelector('#jobs tbody tr').dataset.job !== f, first)
  expect(await page.locator('#jobs tbody tr').count()).toBe(5)
  await shot('jobs')
})

test('Job detail: payloads render as text (XSS), redacted keys are masked, nothing runs', async () => {
  await open(`#/jobs/${ids.xss}`)
  const data = await page.textContent('#data pre')
  expect(data).toContain(XSS_SCRIPT)
  expect(data).toContain(JSON.stringify(XSS_ATTR))
  expect(data).toContain('"password": "[redacted]"')
  expect(await page.textContent('#result pre')).toContain('[redacted]')
  const html = await page.content()
  for (const secret of ['data-pw-secret', 'result-pw-secret']) expect(html).not.toContain(secret)
  expect(await page.evaluate(() => window.__xss)).toBeUndefined()
  expect(await page.locator('main img, main script').count()).toBe(0)
  await shot('job-detail')
})

test('Job detail of a failed job: the error, then Retry runs it to completion', async () => {
  await open(`#/jobs/${ids.failed}`)
  expect(await page.textContent('#error-message')).toBe(`Error: the league is gone ${XSS_ATTR}`)
  expect(await page.evaluate(() => window.__xss)).toBeUndefined()
  await shot('job-failed')
  healed = true
  await page.click('button[data-action="retry"]')
  await page.waitForFunction(() => document.querySelector('h1 .badge') && document.querySelector('h1 .badge').textContent === 'completed')
  expect(service.getJobStatus(ids.failed).status).toBe('completed')
  expect(await page.textContent('#result pre')).toBe('"imported"')
})

test("Schedules: kind, expression, time zone, the next runs previewed; Disable", async () => {
  await open('#/schedules')
  const row = page.locator('tr[data-schedule="daily-table"]')
  expect(await row.textContent()).toContain('0 9 * * *')
  expect(await row.textContent()).toContain('UTC')
  const next = nextCronRuns('0 9 * * *', { tz: 'UTC', from: service.now(), count: 5 }).map((d) => d.toISOString())
  expect(await row.locator('.next-runs time').evaluateAll((ts) => ts.map((t) => t.getAttribute('datetime')))).toEqual(next)
  // Local time (Europe/Berlin: 10:00 in winter) with the UTC value on hover.
  expect(await row.locator('.next-runs time').first().getAttribute('title')).toContain('09:00:00.000 UTC')
  expect(await page.locator('tr[data-schedule="every-15-min"]').textContent()).toContain('every 15.0 min')
  await shot('schedules')
  await row.locator('button[data-action="disable"]').click()
  await page.waitForFunction(() => document.querySelector('tr[data-schedule="daily-table"] .badge.s-disabled'))
  expect(service.getScheduledJobs().find((s) => s.id === 'daily-table').enabled).toBe(false)
})

test('Alerts: active ones listed; Acknowledge with a name', async () => {
  await open('#/alerts')
  const row = page.locator('tr[data-alert^="any-failure"]')
  expect(await row.textContent()).toContain('failedCount')
  await row.locator('button[data-action="acknowledge"]').click()
  await page.waitForFunction(() => /by Ann Operator/.test(document.querySelector('tr[data-alert^="any-failure"]').textContent))
  const alert = service.getActiveAlerts().find((a) => a.ruleId === 'any-failure')
  expect(alert.acknowledgedBy).toBe('Ann Operator')
  await shot('alerts')
})

test('live: a job goes from pending to completed on the open page without a reload', async () => {
  await open('#/jobs')
  await page.evaluate(() => (window.__samePage = true))
  const id = service.addCalculationJob(ok, { n: 7 }, {}, { delay: 60000 })
  const badge = `tr[data-job="${id}"] .badge`
  await page.waitForSelector(badge)
  expect(await page.textContent(badge)).toBe('pending')
  await service.advanceTime(60000, { settleMs: 50 })
  await page.waitForFunction((sel) => document.querySelector(sel) && document.querySelector(sel).textContent === 'completed', badge)
  expect(await page.evaluate(() => window.__samePage)).toBe(true)
  expect(await page.textContent('#live')).toBe('live')
})

test('Job detail: its dependencies link to their detail pages with their status', async () => {
  await open(`#/jobs/${ids.waiting}`)
  expect(await page.textContent('h1 .badge')).toBe('waiting')
  const dep = page.locator(`#depends-on [data-dependency="${ids.pending}"]`)
  expect(await dep.locator('.badge').textContent()).toBe('pending')
  expect(await dep.locator('a').getAttribute('href')).toBe(`#/jobs/${ids.pending}`)
  expect(await page.textContent('#origin')).toContain('Depends on 1 job (fails if one fails)')
  const knowsSchedule = 'scheduleId' in service.getJobStatus(ids.waiting)
  expect(await page.textContent('#created-by')).toBe(knowsSchedule ? 'Not added by a schedule.' : 'Not the last job of any schedule.')
  await shot('job-dependencies')
  const before = await page.evaluate(() => document.getElementById('main').dataset.rendered)
  await dep.locator('a').click()
  await page.waitForFunction((b) => document.getElementById('main').dataset.rendered !== b, before)
  expect(await page.textContent('main h1')).toContain('table-positions')
  expect(await page.evaluate(() => location.hash)).toBe(`#/jobs/${ids.pending}`)
  expect(await page.textContent('#depends-on')).toBe('No dependencies.')
})

test('Job detail: a job a schedule added says "Created by schedule", linking to its row', async () => {
  // The interval schedule fires (every 15 min): its job is the schedule's last.
  await service.advanceTime(15 * 60000 + 1000, { settleMs: 50 })
  const jobId = service.getScheduledJobs().find((x) => x.id === 'every-15-min').lastJobId
  expect(jobId).toEqual(expect.any(String))
  ids.fromSchedule = jobId
  await open(`#/jobs/${jobId}`)
  expect(await page.textContent('#created-by')).toBe('Created by schedule every-15-min (interval)')
  await shot('job-from-schedule')
  const before = await page.evaluate(() => document.getElementById('main').dataset.rendered)
  await page.click('#created-by a')
  await page.waitForFunction((b) => document.getElementById('main').dataset.rendered !== b, before)
  expect(await page.getAttribute('tr[data-schedule="every-15-min"]', 'aria-current')).toBe('true')
  expect(await page.getAttribute('tr[data-schedule="daily-table"]', 'aria-current')).toBeNull()
})

// getJobStatus(id).scheduleId comes with the job model's schedule column;
// without it the dashboard knows only a schedule's last job, and this test
// is a todo.
const RECORDS_SCHEDULE = (() => {
  const probe = new JobManagementService({ storage: { type: 'memory' }, unref: true })
  const id = probe.addCalculationJob({ name: 'probe', calculate: () => null }, null)
  return 'scheduleId' in probe.getJobStatus(id)
})()
const OLDER_JOB_OF_A_SCHEDULE = 'Job detail: "Created by schedule" for an older job of a schedule, from getJobStatus(id).scheduleId'
if (!RECORDS_SCHEDULE) test.todo(OLDER_JOB_OF_A_SCHEDULE)
else test(OLDER_JOB_OF_A_SCHEDULE, async () => {
  // The schedule fires again: the job of the test above is no longer its last.
  await service.advanceTime(15 * 60000, { settleMs: 50 })
  expect(service.getScheduledJobs().find((x) => x.id === 'every-15-min').lastJobId).not.toBe(ids.fromSchedule)
  expect(service.getJobStatus(ids.fromSchedule).scheduleId).toBe('every-15-min')
  await open(`#/jobs/${ids.fromSchedule}`)
  expect(await page.textContent('#created-by')).toBe('Created by schedule every-15-min (interval)')
  // A job added by a call names no schedule.
  await open(`#/jobs/${ids.waiting}`)
  expect(await page.textContent('#created-by')).toBe('Not added by a schedule.')
})

test('a phone-width viewport and keyboard navigation work', async () => {
  await page.setViewportSize({ width: 390, height: 800 })
  await open('#/overview')
  const width = await page.evaluate(() => document.documentElement.scrollWidth)
  expect(width).toBeLessThanOrEqual(390)
  await shot('overview-phone')
  await page.setViewportSize({ width: 1280, height: 800 })
  await page.reload()
  await page.waitForSelector('#counts')
  await page.keyboard.press('Tab')
  expect(await page.evaluate(() => document.activeElement.textContent)).toBe('Skip to content')
  await page.keyboard.press('Tab')
  expect(await page.evaluate(() => document.activeElement.textContent)).toBe('Overview')
  await page.keyboard.press('Tab')
  await page.keyboard.press('Enter')
  await page.waitForSelector('#jobs')
})

test('readOnly: no action buttons, and POSTs are refused', async () => {
  const ro = await service.startDashboard({ readOnly: true })
  try {
    const p2 = await browser.newPage()
    await p2.goto(`${ro.url}#/jobs/${ids.timeout}`)
    await p2.waitForSelector('h1 .badge')
    expect(await p2.textContent('h1 .badge')).toBe('timeout')
    expect(await p2.locator('button[data-action]').count()).toBe(0)
    const status = await p2.evaluate(async (id) => {
      const csrf = document.querySelector('meta[name="jobwerk-csrf"]').content
      return (await fetch(`/api/jobs/${id}/retry`, { method: 'POST', headers: { 'x-csrf-token': csrf } })).status
    }, ids.timeout)
    expect(status).toBe(403)
    await p2.close()
  } finally {
    await ro.close()
  }
})
