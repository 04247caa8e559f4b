'use strict'
// The README's manual-clock example, as written there.

const { JobManagementService } = require('..')

test('the table is recalculated every weekday morning', async () => {
  const service = new JobManagementService({
    clock: { type: 'manual', now: Date.parse('2026-01-05T00:00:00Z') },
    queue: { maxJobAge: 30 * 24 * 60 * 60 * 1000 },
  })
  const runs = []
  const calc = { name: 'table', calculate: () => runs.push(new Date(service.now()).toISOString()) }
  await service.start()
  service.scheduleCronCalculationJob(calc, {}, {}, '30 9 * * MON-FRI', { tz: 'Europe/Berlin' })
  const id = service.addCalculationJob(calc, {}, {}, { delay: 60 * 60 * 1000 })
  await service.advanceTime(7 * 24 * 60 * 60 * 1000)
  expect(runs).toHaveLength(6)
  expect(runs.slice(1)).toEqual(['2026-01-05', '2026-01-06', '2026-01-07', '2026-01-08', '2026-01-09'].map((d) => `${d}T08:30:00.000Z`))
  expect(service.getJobStatus(id).status).toBe('completed')
  await service.stop()
})
