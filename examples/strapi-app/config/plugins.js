// jobwerk is enabled by being installed; the config is optional. It takes the
// same keys as `new JobManagementService(config)` plus the plugin's own.
module.exports = ({ env }) => ({
  jobwerk: {
    enabled: true,
    config: {
      shutdownTimeoutMs: env.int('JOBWERK_SHUTDOWN_TIMEOUT_MS', 8000),
      queue: { maxWorkers: 2, defaultTimeout: 60000 },
      // The dashboard at /admin/jobwerk/ when a token is set (open /admin/jobwerk/?token=<token> once in a browser).
      dashboard: { enabled: Boolean(env('JOBWERK_DASHBOARD_TOKEN')), path: '/admin/jobwerk', token: env('JOBWERK_DASHBOARD_TOKEN') },
    },
  },
})
