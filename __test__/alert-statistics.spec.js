'use strict'
// getAlertStatistics(): per rule, how often its alerts fired and the mean time
// they took to resolve (the seed's "Alert frequency and resolution times").
const { serviceTracker } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

test('per rule: fired, active, resolved, fired per hour, mean time to resolve (manual clock)', async () => {
  const t0 = Date.parse('2026-01-05T00:00:00Z')
  const s = tracker.create({ clock: { type: 'manual', now: t0 }, monitoring: { alerting: { defaultRules: false, channels: [] } } })
  await s.start()
  const rule = s.addAlertRule({ id: 'fails', metric: 'failedCount', operator: '>=', threshold: 1, window: 60000, cooldownMs: 0, channels: [] })
  const bad = { name: 'bad', retries: 0, calculate: () => { throw new Error('no') } }
  expect(s.getAlertStatistics()).toEqual([])
  // Three breaches 10 minutes apart: the first two resolve by themselves once
  // the failure leaves the 60 s window; the third is still active.
  for (let i = 0; i < 3; i++) {
    s.addCalculationJob(bad, {})
    await s.advanceTime(i < 2 ? 10 * 60000 : 35000)
  }
  const history = s.getAlertHistory({ limit: 100 })
  const resolved = history.filter((a) => a.status === 'resolved')
  expect(resolved).toHaveLength(2)
  const mttr = Math.round(resolved.reduce((sum, a) => sum + (a.resolvedAt - a.firedAt), 0) / 2)
  expect(mttr).toBeGreaterThan(0)
  const [stats] = s.getAlertStatistics()
  expect(stats).toEqual(expect.objectContaining({ ruleId: rule, fired: 3, active: 1, resolved: 2, meanTimeToResolveMs: mttr }))
  const hours = (s.now() - stats.firstFiredAt) / 3600000
  expect(stats.firedPerHour).toBeCloseTo(3 / hours, 5)
})
