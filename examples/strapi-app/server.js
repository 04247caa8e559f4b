// Boots the app without the CLI (and without an admin build): what
// `npm run test:strapi` runs.
const { createStrapi } = require('@strapi/strapi')

createStrapi({ appDir: __dirname, distDir: __dirname }).start()
