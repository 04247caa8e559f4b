const { factories } = require('@strapi/strapi')

module.exports = factories.createCoreService('api::tabellen-eintrag.tabellen-eintrag')
