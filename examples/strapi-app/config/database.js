const path = require('path')

// SQLite by default; PostgreSQL with DATABASE_CLIENT=postgres (Strapi's own
// template: DATABASE_URL, or DATABASE_HOST/PORT/NAME/USERNAME/PASSWORD, and
// DATABASE_SSL). jobwerk follows the app's database: on PostgreSQL it keeps
// its jobs in the same database, schema `jobwerk`, and every instance of the
// app shares one queue (`npm run test:strapi` runs two).
module.exports = ({ env }) => {
  const client = env('DATABASE_CLIENT', 'sqlite')
  if (client === 'postgres') {
    return {
      connection: {
        client: 'postgres',
        connection: {
          connectionString: env('DATABASE_URL'),
          host: env('DATABASE_HOST', 'localhost'),
          port: env.int('DATABASE_PORT', 5432),
          database: env('DATABASE_NAME', 'strapi'),
          user: env('DATABASE_USERNAME', 'strapi'),
          password: env('DATABASE_PASSWORD', 'strapi'),
          ssl: env.bool('DATABASE_SSL', false) && { rejectUnauthorized: env.bool('DATABASE_SSL_REJECT_UNAUTHORIZED', true) },
          schema: env('DATABASE_SCHEMA', 'public'),
        },
        pool: { min: env.int('DATABASE_POOL_MIN', 0), max: env.int('DATABASE_POOL_MAX', 5) },
      },
    }
  }
  return {
    connection: {
      client: 'sqlite',
      connection: { filename: path.join(__dirname, '..', env('DATABASE_FILENAME', '.tmp/data.db')) },
      useNullAsDefault: true,
    },
  }
}
