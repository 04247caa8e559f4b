'use strict'
// Content-API routes under /api/jobwerk/, protected by Strapi API tokens.
// Every route only reads, and its action is named find/findOne, so a
// read-only token may call them (Strapi lets read-only tokens through to
// actions whose name ends in find or findOne) and a custom token may be given
// each one (plugin::jobwerk.<controller>.<action>).

const { serviceFor } = require('./service.js')

const routes = {
  'content-api': {
    type: 'content-api',
    routes: [
      { method: 'GET', path: '/health', handler: 'health.find' },
      { method: 'GET', path: '/status', handler: 'status.find' },
      { method: 'GET', path: '/statistics', handler: 'statistics.find' },
      { method: 'GET', path: '/metrics', handler: 'metrics.find' },
      { method: 'GET', path: '/jobs/:id', handler: 'jobs.findOne' },
    ],
  },
}

const controllers = {
  // The health dimensions; 503 when the overall health is critical (for a
  // load balancer or an uptime check), { overall: 'unknown' } without monitoring.
  health: ({ strapi }) => ({
    find(ctx) {
      const h = serviceFor(strapi).getSystemHealth()
      ctx.status = h !== null && h.overall === 'critical' ? 503 : 200
      ctx.body = h === null ? { overall: 'unknown', monitoring: false } : h
    },
  }),
  status: ({ strapi }) => ({
    find(ctx) {
      ctx.body = serviceFor(strapi).getSystemStatus()
    },
  }),
  statistics: ({ strapi }) => ({
    find(ctx) {
      ctx.body = serviceFor(strapi).getQueueStatistics()
    },
  }),
  metrics: ({ strapi }) => ({
    find(ctx) {
      ctx.type = 'text/plain; version=0.0.4; charset=utf-8'
      ctx.body = serviceFor(strapi).getPrometheusMetrics()
    },
  }),
  // getJobStatus is a Promise on PostgreSQL (read from the database off the
  // JavaScript thread): awaited, so one controller serves every storage.
  jobs: ({ strapi }) => ({
    async findOne(ctx) {
      const s = await serviceFor(strapi).getJobStatus(String(ctx.params.id))
      if (s === null) {
        ctx.status = 404
        ctx.body = { error: { status: 404, name: 'NotFoundError', message: `no job ${ctx.params.id}` } }
        return
      }
      ctx.body = s
    },
  }),
}

module.exports = { routes, controllers }
