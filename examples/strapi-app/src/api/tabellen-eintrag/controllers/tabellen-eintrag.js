const { factories } = require('@strapi/strapi')

const UID = 'api::tabellen-eintrag.tabellen-eintrag'

module.exports = factories.createCoreController(UID, ({ strapi }) => ({
  // For the tests: creates an entry inside a transaction that then rolls
  // back. The afterCreate hook ran and enqueued a recalculation; jobwerk adds
  // it only on commit, so it never runs.
  async createThenRollBack(ctx) {
    await strapi.db.transaction(async () => {
      await strapi.documents(UID).create({ data: ctx.request.body.data })
      throw new Error('rolled back on purpose')
    })
  },
}))
