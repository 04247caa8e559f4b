// Time to first render of the dashboard's Overview with 100,000 jobs stored
// (SQLite file), in Debian's chromium via playwright-core. One measurement:
// from navigation start to the Overview's counts in the page.
//   node benchmark/dashboard-first-render.js [jobs=100000] [screenshot.png]
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { JobManagementService } = require('..')
const { chromium } = require('playwright-core')

async function main() {
  const total = Number(process.argv[2] || 100000)
  const shot = process.argv[3]
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-dash-'))
  const service = new JobManagementService({
    storage: { type: 'sqlite', path: path.join(dir, 'jobs.db') },
    queue: { maxWorkers: 8, maxQueueSize: total + 10, maxJobAge: 24 * 3600000, defaultRetries: 0 },
  })
  const report = { name: 'table-positions', calculate: (d) => ({ rows: d.n % 20 }) }
  const flaky = { name: 'import-fixtures', calculate: (d) => { if (d.n % 50 === 0) throw new Error(`fixture ${d.n} has no home team`) ; return d.n } }
  await service.start()
  for (let i = 0; i < total; i += 1000) {
    const batch = []
    for (let n = i; n < Math.min(total, i + 1000); n++) batch.push({ calculation: n % 3 === 0 ? flaky : report, data: { n, leagueId: n % 40 } })
    service.addCalculationJobs(batch)
    await new Promise((r) => setTimeout(r, 5))
  }
  while (service.getQueueStatistics().pending + service.getQueueStatistics().running > 0) await new Promise((r) => setTimeout(r, 100))
  await service.flush()
  service.scheduleCronCalculationJob(report, { leagueId: 7 }, {}, '30 9 * * MON-FRI', { id: 'daily-table', tz: 'Europe/Berlin' })
  service.addCalculationJob(report, { n: -1 }, {}, { delay: 3600000 })
  const dash = await service.startDashboard()
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args: ['--no-sandbox'] })
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  await page.goto(dash.url)
  await page.waitForSelector('#counts')
  const ms = await page.evaluate(() => performance.now())
  const stats = service.getQueueStatistics()
  console.log(JSON.stringify({ jobs: stats.total, completed: stats.completed, failed: stats.failed, firstRenderMs: Math.round(ms) }))
  if (shot) await page.screenshot({ path: shot })
  await browser.close()
  await dash.close()
  await service.stop()
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
