// jobwerk is enabled by being installed; the config is optional. It takes the
// same keys as `new JobManagementService(config)` plus the plugin's own.
module.exports = ({ env }) => ({
  jobwerk: {
    enabled: true,
    config: {
      shutdownTimeoutMs: env.int('JOBWERK_SHUTDOWN_TIMEOUT_MS', 8000),
      // JOBWERK_MAX_QUEUE_SIZE: for the tests (a full queue); the plugin's default is 100000.
      queue: { maxWorkers: 2, defaultTimeout: 60000, ...(env('JOBWERK_MAX_QUEUE_SIZE') ? { maxQueueSize: env.int('JOBWERK_MAX_QUEUE_SIZE') } : {}) },
      // The dashboard at /admin/jobwerk/ when a token is set (open /admin/jobwerk/?token=<token> once in a browser).
      dashboard: { enabled: Boolean(env('JOBWERK_DASHBOARD_TOKEN')), path: '/admin/jobwerk', token: env('JOBWERK_DASHBOARD_TOKEN') },
      // Every league's table once a night (src/jobs/daily-table.js); on
      // PostgreSQL once per cluster, however many instances run. The tests set
      // EXAMPLE_DAILY_RULE to a 1-second rule.
      cron: { 'daily-table': { rule: env('EXAMPLE_DAILY_RULE', '0 3 * * *'), tz: 'Europe/Berlin', calculation: 'daily-table' } },
    },
  },
})
