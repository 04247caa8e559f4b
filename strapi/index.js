'use strict'
// jobwerk as a Strapi 5 plugin (CommonJS, no build step): the object Strapi's
// loader merges onto its default plugin. The package's `strapi-server.js`
// re-exports it.
//
//   register:  makes the service (storage beside Strapi's database, strapi.log
//              as logger) and loads the calculations of `src/jobs/*.js`, so
//              the app's register/bootstrap can add more and use them by name;
//              mounts the dashboard when `dashboard.enabled` (strapi/dashboard.js).
//   bootstrap: schedules `config.cron` (cancelling stored `cron:` schedules
//              no longer in it), then starts the service. Stored jobs of a calculation the app registers only
//              later (in its own bootstrap, which Strapi runs after the
//              plugins') wait for that registration.
//   destroy:   stops it (running jobs get `shutdownTimeoutMs`, then are
//              aborted and run again at the next boot) and closes the storage.

const config = require('./config.js')
const { serviceFor, loadJobsDir, pluginConfig, reconcileCron } = require('./service.js')
const { routes, controllers } = require('./routes.js')
const { _services } = require('../index.js')
const { mountDashboard, closeDashboard } = require('./dashboard.js')

function register({ strapi }) {
  const service = serviceFor(strapi)
  const { jobsDir, dashboard } = pluginConfig(strapi)
  if (jobsDir !== false) loadJobsDir(strapi, service, jobsDir === undefined ? config.default.jobsDir : jobsDir)
  mountDashboard(strapi, service, dashboard)
}

// A service that fails to start (its storage cannot be opened, say) does not
// stop Strapi: the error is logged and raised as an alert, enqueue() keeps
// not throwing (jobs are added to the stopped queue or counted as lost), and
// getSystemStatus() says 'idle'.
async function bootstrap({ strapi }) {
  const service = serviceFor(strapi)
  // PostgreSQL: connect before the cron schedules are reconciled, so they are
  // the database's (the cluster's), not a placeholder's the connect replaces.
  let openError
  try {
    await service.openStorage()
  } catch (e) {
    openError = e
  }
  // A cron entry that cannot be scheduled (an unregistered calculation) stops the boot like a config error.
  reconcileCron(strapi, service, pluginConfig(strapi).cron)
  try {
    if (openError !== undefined) throw openError
    await service.start()
  } catch (e) {
    service.startError = e
    service._log('error', `jobwerk: the service failed to start (${e && e.code ? `${e.code}: ` : ''}${e && e.message}); jobs are not run until the app restarts`)
    // Several instances of one app (PM2 cluster mode, replicas on one volume) on the default file.
    if (e && e.code === 'ERR_STORAGE' && /in use by/.test(String(e.message))) {
      service._log('error', "jobwerk: several instances of this app? On SQLite each needs its own file (config storage.path, e.g. `.tmp/jobwerk-${process.env.NODE_APP_INSTANCE}.db`); instances sharing one queue need PostgreSQL storage; see the README's Strapi section (Clusters)")
    }
    service._emitSafely('alert', { id: `start-failed-${Date.now()}`, ruleId: 'start-failed', name: 'start-failed', severity: 'critical', status: 'active', message: String(e && e.message), firedAt: Date.now() })
  }
}

async function destroy({ strapi }) {
  closeDashboard(strapi)
  // Nothing to stop when register never made the service.
  const service = _services.get(strapi)
  if (service === undefined) return
  const { shutdownTimeoutMs } = pluginConfig(strapi)
  const timeoutMs = shutdownTimeoutMs === undefined ? config.default.shutdownTimeoutMs : shutdownTimeoutMs
  try {
    const stopping = service.stop({ timeoutMs })
    service._log('info', `jobwerk: stopping (running jobs get up to ${timeoutMs} ms; jobs added from now on are lost, and counted)`)
    const summary = await stopping
    service._log('info', `jobwerk: stopped (${summary.aborted} running job(s) aborted, ${summary.pending} pending kept)`)
  } catch (e) {
    service._log('error', `jobwerk: stop failed: ${e && e.message}`)
  }
}

// Each property a plain name, so Node's CommonJS lexer sees them all (named
// ESM imports of jobwerk/strapi-server work as the types say).
const configEntry = { default: config.default, validator: config.validator }
const services = { jobs: ({ strapi }) => serviceFor(strapi) }
const contentTypes = {}
const policies = {}
const middlewares = {}

module.exports = {
  register,
  bootstrap,
  destroy,
  config: configEntry,
  services,
  controllers,
  routes,
  contentTypes,
  policies,
  middlewares,
}
