'use strict'
// jobwerk as a Strapi 5 plugin (CommonJS, no build step): the object Strapi's
// loader merges onto its default plugin. The package's `strapi-server.js`
// re-exports it.
//
//   register:  makes the service (storage beside Strapi's database, strapi.log
//              as logger) and loads the calculations of `src/jobs/*.js`, so
//              the app's register/bootstrap can add more and use them by name.
//   bootstrap: starts it. Stored jobs of a calculation the app registers only
//              later (in its own bootstrap, which Strapi runs after the
//              plugins') wait for that registration.
//   destroy:   stops it (running jobs get `shutdownTimeoutMs`, then are
//              aborted and run again at the next boot) and closes the storage.

const config = require('./config.js')
const { serviceFor, loadJobsDir, pluginConfig } = require('./service.js')
const { routes, controllers } = require('./routes.js')

function register({ strapi }) {
  const service = serviceFor(strapi)
  const { jobsDir } = pluginConfig(strapi)
  if (jobsDir !== false) loadJobsDir(strapi, service, jobsDir === undefined ? config.default.jobsDir : jobsDir)
}

async function bootstrap({ strapi }) {
  const service = serviceFor(strapi)
  await service.start()
}

async function destroy({ strapi }) {
  const service = serviceFor(strapi)
  const { shutdownTimeoutMs } = pluginConfig(strapi)
  const timeoutMs = shutdownTimeoutMs === undefined ? config.default.shutdownTimeoutMs : shutdownTimeoutMs
  try {
    const summary = await service.stop({ timeoutMs })
    service._log('info', `jobwerk: stopped (${summary.aborted} running job(s) aborted, ${summary.pending} pending kept)`)
  } catch (e) {
    service._log('error', `jobwerk: stop failed: ${e && e.message}`)
  }
}

module.exports = {
  register,
  bootstrap,
  destroy,
  config: { default: config.default, validator: config.validator },
  services: { jobs: ({ strapi }) => serviceFor(strapi) },
  controllers,
  routes,
  contentTypes: {},
  policies: {},
  middlewares: {},
}
