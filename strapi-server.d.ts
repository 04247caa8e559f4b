// Types of the Strapi 5 plugin entry (`jobwerk/strapi-server`): see strapi/index.d.ts.
import plugin = require('./strapi/index')
export = plugin
