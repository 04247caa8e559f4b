// The nightly job of config/plugins.js's cron (`daily-table`): counts every
// league's entries. A cron schedule of the plugin: on PostgreSQL it fires
// once per cluster, whichever instance runs it (npm run test:strapi checks
// that with a 1-second rule and two instances).
const UID = 'api::tabellen-eintrag.tabellen-eintrag'

module.exports = {
  name: 'daily-table',
  async calculate(data, context, job) {
    const entries = await strapi.db.query(UID).count()
    console.log(`[example] daily-table ${job.id} ran: ${entries} entries`)
    return { entries }
  },
}
