'use strict'
// The Strapi 5 plugin entry ("./strapi-server" in package.json's exports).
// Strapi's loader requires a `.js` CommonJS file here: it loads `.cjs` and
// `.mjs` entries as an empty plugin, silently.
module.exports = require('./strapi/index.js')
