const { factories } = require('@strapi/strapi')

module.exports = factories.createCoreController('api::tabellen-eintrag.tabellen-eintrag')
