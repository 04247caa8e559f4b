const { factories } = require('@strapi/strapi')

module.exports = factories.createCoreRouter('api::tabellen-eintrag.tabellen-eintrag')
