'use strict'
// Issue 17, bug 14: getJobManagementService(strapi, config) silently ignored
// `config` on a later call. A config that differs from the one the service
// was made with is ERR_INVALID_CONFIG; an equal one (or none) returns it.

const { getJobManagementService } = require('..')
const { serviceTracker, expectCode } = require('./helpers')

const tracker = serviceTracker()
afterEach(() => tracker.stopAll())

const config = (maxWorkers) => ({ storage: { type: 'memory' }, clock: 'manual', queue: { maxWorkers } })

test('a different config on a later call -> ERR_INVALID_CONFIG, the service is unchanged', () => {
  const strapi = {}
  const s = tracker.track(getJobManagementService(strapi, config(2)))
  const e = expectCode(() => getJobManagementService(strapi, config(5)), 'ERR_INVALID_CONFIG', 'getJobManagementService')
  expect(e.message).toContain('queue.maxWorkers')
  expect(s.getQueueStatistics().maxWorkers).toBe(2)
  expectCode(() => getJobManagementService(strapi, { ...config(2), unref: true }), 'ERR_INVALID_CONFIG', 'unref')
})

test('the same config (an equal object), or none, returns the service', () => {
  const strapi = {}
  const logger = { info() {}, warn() {}, error() {} }
  const s = tracker.track(getJobManagementService(strapi, { ...config(2), monitoring: { logger } }))
  expect(getJobManagementService(strapi, { ...config(2), monitoring: { logger } })).toBe(s)
  expect(getJobManagementService(strapi)).toBe(s)
  expect(getJobManagementService(strapi, undefined)).toBe(s)
  // another logger object is another config
  expectCode(() => getJobManagementService(strapi, { ...config(2), monitoring: { logger: { ...logger, info() {} } } }), 'ERR_INVALID_CONFIG', 'monitoring.logger')
})

test('a config given only on a later call -> ERR_INVALID_CONFIG', () => {
  const strapi = {}
  const s = tracker.track(getJobManagementService(strapi, { storage: { type: 'memory' } }))
  expect(getJobManagementService(strapi)).toBe(s)
  expectCode(() => getJobManagementService(strapi, config(4)), 'ERR_INVALID_CONFIG')
})
