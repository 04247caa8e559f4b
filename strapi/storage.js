'use strict'
// Where the plugin keeps its jobs: the storage follows the app's database
// unless `config.storage` says otherwise.
//
//   - configured `storage` always wins: SQLite (a relative path from the
//     app's root; never Strapi's own file), memory, or PostgreSQL (a
//     `storage: { type: 'postgres' }` without connection keys takes the
//     app's connection, with its own schema, pool and timing options);
//   - a SQLite app: jobwerk's own file beside Strapi's (two SQLite libraries
//     in one process must not share a file);
//   - a PostgreSQL app: the same server and database as the app, schema
//     `jobwerk`, jobwerk's own pool (on its own thread: the app's knex pool
//     is JavaScript's, jobwerk's connections are Rust's), so every instance
//     of the app shares one queue;
//   - anything else (MySQL, MariaDB): `<app>/.tmp/jobwerk.db`.
//
// Strapi reads its PostgreSQL connection with node-postgres (`pg`), so the
// connection is read as `pg` reads it: a `connectionString` (its values win
// over the object's), `host`/`port`/`user`/`password`/`database`, the
// `PG*` environment variables for what neither gives, `ssl` true or an
// object (rejectUnauthorized, ca, cert, key passed on to jobwerk). jobwerk's driver is not `pg`: what it cannot do the same way is
// said in `notes` (logged as warnings), never silently dropped.

const path = require('node:path')
const { API, codedError } = require('../lib/errors.js')

// The connection keys of jobwerk's PostgreSQL storage (a `storage` with none
// of them takes the app's connection).
const CONNECTION_KEYS = ['connectionString', 'host', 'port', 'database', 'user', 'password', 'ssl']
// Strapi's (knex's) client names for PostgreSQL.
const PG_CLIENTS = ['postgres', 'postgresql', 'pg']
const MYSQL_CLIENTS = ['mysql', 'mysql2', 'mariadb']

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function dbConfigError(key, message) {
  const name = key === '(root)' ? 'connection.connection' : `connection.connection.${key}`
  return codedError(API.InvalidConfig, `jobwerk: the app's database config (config/database.js) ${name} ${message}; or give the plugin's config storage: { type: 'postgres', ... } explicitly`)
}

/** A port as `pg` takes it (a number, or a string of digits from an env var). */
function port(value, key) {
  if (value === undefined || value === null || value === '') return undefined
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value.trim()) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw dbConfigError(key, `must be a port from 1 to 65535 for jobwerk, got ${JSON.stringify(value)}`)
  return n
}

function text(value, key) {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string') throw dbConfigError(key, `must be a string for jobwerk, got ${typeof value}`)
  return value
}

/** A PEM value as `tls.connect` takes it (a string, a Buffer, or an array of them), as one string. */
function pem(value, key) {
  const one = (v) => {
    if (typeof v === 'string') return v
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('utf8')
    throw dbConfigError(`ssl.${key}`, `must be PEM text (a string or a Buffer), got ${typeof v}`)
  }
  const text = Array.isArray(value) ? value.map(one).join('\n') : one(value)
  return text.trim() === '' ? undefined : text
}

// tls.connect options jobwerk reads; the rest of an `ssl` object is noted.
const SSL_READ = ['rejectUnauthorized', 'ca', 'cert', 'key']

/**
 * `pg`'s `ssl` (true, false, 'no-verify', or tls.connect options) as
 * jobwerk's `ssl`: false, true (TLS, the server's certificate verified
 * against the public Mozilla roots and its host name), or
 * `{ rejectUnauthorized, ca, cert, key }` (PEM text). Options jobwerk cannot
 * honour are noted.
 */
function ssl(value, notes, where) {
  if (value === undefined || value === null || value === false) return false
  if (value === true) return true
  if (value === 'no-verify') return { rejectUnauthorized: false }
  if (!isObject(value)) return Boolean(value)
  const out = {}
  if (value.rejectUnauthorized === false) out.rejectUnauthorized = false
  for (const k of ['ca', 'cert', 'key']) {
    if (value[k] === undefined || value[k] === null || value[k] === '') continue
    const v = pem(value[k], k)
    if (v !== undefined) out[k] = v
  }
  const set = (k) => value[k] !== undefined && value[k] !== null && value[k] !== '' && value[k] !== false
  const unread = Object.keys(value).filter((k) => !SSL_READ.includes(k) && set(k))
  if (unread.length > 0) {
    notes.push(`${where} sets ${unread.join(', ')}, which jobwerk does not use (it reads rejectUnauthorized, ca, cert and key: PEM text, the key unencrypted)`)
  }
  return Object.keys(out).length === 0 ? true : out
}

/** The contents of a file named by a connection URL (`sslrootcert`, ...), as `pg` reads them. */
function urlFile(params, name) {
  const file = params.get(name)
  if (file === null || file === '') return undefined
  try {
    return require('node:fs').readFileSync(file, 'utf8')
  } catch (e) {
    throw dbConfigError('connectionString', `has ${name}=${file}, which cannot be read (${e.code || e.message})`)
  }
}

/**
 * `sslmode` / `ssl` / `sslrootcert` / `sslcert` / `sslkey` of a connection
 * URL as `pg` reads them (not libpq: `prefer`, `require` and `verify-ca`
 * verify the certificate and the host name as `verify-full` does);
 * undefined when none is given.
 */
function urlSsl(params, notes) {
  const mode = params.get('sslmode')
  const files = { ca: urlFile(params, 'sslrootcert'), cert: urlFile(params, 'sslcert'), key: urlFile(params, 'sslkey') }
  for (const k of Object.keys(files)) if (files[k] === undefined) delete files[k]
  const withFiles = (base) => (Object.keys(files).length === 0 ? base : { ...(base === true ? {} : base), ...files })
  if (mode !== null) {
    if (mode === 'disable') return false
    if (mode === 'no-verify') return withFiles({ rejectUnauthorized: false })
    if (['allow', 'prefer', 'require', 'verify-ca', 'verify-full'].includes(mode)) {
      if (params.get('uselibpqcompat') === 'true') {
        notes.push(`the connection string's uselibpqcompat=true: jobwerk reads sslmode=${mode} as node-postgres does by default (the certificate and host name verified); put sslmode=no-verify for libpq's unverified require`)
      }
      return withFiles(true)
    }
    throw dbConfigError('connectionString', `has sslmode=${mode}, which is none of disable, no-verify, prefer, require, verify-ca, verify-full`)
  }
  const s = params.get('ssl')
  if (s !== null) return s === 'true' || s === '1' ? withFiles(true) : false
  if (Object.keys(files).length > 0) return withFiles(true)
  return undefined
}

const URL_PARAMS_READ = ['sslmode', 'ssl', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat', 'host', 'port', 'user', 'password', 'dbname', 'database']

/**
 * A `postgres://` URL as connection fields, or null for a string that is not
 * one (a libpq `key=value` string: handed to jobwerk as it is).
 */
function parseUrl(s, notes) {
  let u
  try {
    u = new URL(s)
  } catch {
    return null
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') return null
  const dec = (x) => {
    try {
      return decodeURIComponent(x)
    } catch {
      throw dbConfigError('connectionString', 'has a malformed %-escape')
    }
  }
  const p = u.searchParams
  const out = {
    host: p.get('host') || (u.hostname ? dec(u.hostname.replace(/^\[(.*)\]$/, '$1')) : undefined),
    port: p.get('port') || u.port || undefined,
    user: p.get('user') || (u.username ? dec(u.username) : undefined),
    password: p.get('password') || (u.password ? dec(u.password) : undefined),
    database: p.get('dbname') || p.get('database') || (u.pathname.length > 1 ? dec(u.pathname.slice(1)) : undefined),
    ssl: urlSsl(p, notes),
  }
  const ignored = [...new Set([...p.keys()].filter((k) => !URL_PARAMS_READ.includes(k)))]
  if (ignored.length > 0) notes.push(`the connection string's ${ignored.join(', ')} ${ignored.length === 1 ? 'is' : 'are'} not used by jobwerk's connection`)
  for (const k of Object.keys(out)) if (out[k] === undefined || out[k] === '') delete out[k]
  return out
}

/**
 * jobwerk's PostgreSQL storage for the app's database connection: Strapi's
 * `database.connection.connection` (a connection string, or `pg`'s object
 * with `connectionString`, `host`, `port`, `user`, `password`, `database`,
 * `ssl`, Strapi's `schema`). The app's `schema` is the app's tables'; jobwerk
 * keeps its own tables in the schema `jobwerk`. `env` (default
 * `process.env`) gives the `PG*` variables `pg` falls back to.
 *
 * Returns `{ storage, notes }`: `notes` are what jobwerk reads differently
 * from `pg` (logged as warnings). Throws ERR_INVALID_CONFIG for a value
 * jobwerk cannot use.
 */
function postgresStorage(connection, env = process.env) {
  const notes = []
  const c = typeof connection === 'string' ? { connectionString: connection } : isObject(connection) ? connection : {}
  if (connection !== undefined && connection !== null && typeof connection !== 'string' && !isObject(connection)) {
    throw dbConfigError('(root)', `must be a connection string or an object, got ${Array.isArray(connection) ? 'an array' : typeof connection}`)
  }
  if (typeof c.password === 'function') throw dbConfigError('password', 'is a function; jobwerk needs the password itself')
  const fields = {
    host: text(c.host, 'host'),
    port: c.port,
    user: text(c.user, 'user'),
    password: text(c.password, 'password'),
    database: text(c.database, 'database'),
    ssl: ssl(c.ssl, notes, 'connection.ssl'),
  }
  const cs = text(c.connectionString, 'connectionString')
  let raw = null
  if (cs !== undefined) {
    const fromUrl = parseUrl(cs, notes)
    if (fromUrl === null) raw = cs
    // As pg: the connection string's values win over the object's.
    else Object.assign(fields, fromUrl)
  }
  const storage = { type: 'postgres', schema: 'jobwerk' }
  if (raw !== null) {
    // A key=value string: jobwerk's driver reads it (a bad one is a config
    // error naming storage.connectionString); the object may add a password.
    storage.connectionString = raw
    if (fields.password !== undefined) storage.password = fields.password
    // jobwerk reads the string's own sslmode (libpq's meanings); with one,
    // only the object's certificates go with it.
    if (fields.ssl) {
      if (!/(^|\s)sslmode\s*=/.test(raw)) storage.ssl = fields.ssl
      else if (isObject(fields.ssl)) {
        const { rejectUnauthorized, ...certs } = fields.ssl
        if (rejectUnauthorized === false) notes.push("connection.ssl.rejectUnauthorized is false, but the connection string's sslmode decides the verification")
        if (Object.keys(certs).length > 0) storage.ssl = certs
      }
    }
    return { storage, notes }
  }
  // pg's own fallbacks: the PG* variables, then the OS user's name.
  const fallback = { host: env.PGHOST, port: env.PGPORT, user: env.PGUSER || (process.platform === 'win32' ? env.USERNAME : env.USER), password: env.PGPASSWORD, database: env.PGDATABASE }
  for (const k of Object.keys(fallback)) if (fields[k] === undefined && fallback[k] !== undefined && fallback[k] !== '') fields[k] = fallback[k]
  if (fields.host !== undefined) storage.host = fields.host
  const p = port(fields.port, 'port')
  if (p !== undefined) storage.port = p
  if (fields.user !== undefined) storage.user = fields.user
  if (fields.password !== undefined) storage.password = fields.password
  if (fields.database !== undefined) storage.database = fields.database
  storage.ssl = fields.ssl === true || isObject(fields.ssl) ? fields.ssl : false
  return { storage, notes }
}

/** `host:port/database as user` of a PostgreSQL storage, for the log (never the password). */
function describePostgres(s) {
  if (s.connectionString !== undefined) {
    return `the connection string's server${s.schema ? `, schema ${s.schema}` : ''}`
  }
  const host = s.host || 'localhost'
  return `${host.includes(':') ? `[${host}]` : host}:${s.port || 5432}/${s.database || s.user || 'postgres'} as ${s.user || 'postgres'}${s.ssl ? (isObject(s.ssl) && s.ssl.rejectUnauthorized === false ? ' over TLS (certificate not verified)' : ' over TLS') : ''}, schema ${s.schema || 'jobwerk'}`
}

function isPostgresClient(client) {
  return PG_CLIENTS.includes(client)
}

/**
 * Where jobs are stored (see the top of this file). `db` is Strapi's
 * `database.connection` (`{ client, connection }`), `root` the app's root,
 * `configured` the plugin's `config.storage`. Returns
 * `{ storage, reason, notes }`.
 */
function chooseStorage(root, db, configured, env = process.env) {
  db = isObject(db) ? db : {}
  const client = typeof db.client === 'string' ? db.client : 'unknown'
  const conn = db.connection
  const strapiFile = /sqlite/.test(client) && isObject(conn) && typeof conn.filename === 'string' ? path.resolve(root, conn.filename) : null
  if (configured !== undefined && configured !== null) {
    if (configured.type === 'memory') return { storage: { ...configured }, reason: 'configured (memory: nothing survives the process)', notes: [] }
    if (configured.type === 'postgres') {
      if (CONNECTION_KEYS.some((k) => configured[k] !== undefined)) return { storage: { ...configured }, reason: 'configured', notes: [] }
      if (!isPostgresClient(client)) {
        throw codedError(API.InvalidConfig, `jobwerk config.storage: { type: 'postgres' } without a connection (connectionString or host, ...) takes the app's, but the app's database client is ${client}`)
      }
      const { storage, notes } = postgresStorage(conn, env)
      return { storage: { ...storage, ...configured }, reason: `configured, on the app's PostgreSQL connection (${client})`, notes }
    }
    const file = path.resolve(root, configured.path || '.tmp/jobwerk.db')
    if (strapiFile !== null && file === strapiFile) {
      throw codedError(API.InvalidConfig, `jobwerk config.storage.path: ${file} is Strapi's own database file; jobwerk needs a file of its own (two SQLite libraries must not share a file)`)
    }
    return { storage: { ...configured, type: 'sqlite', path: file }, reason: 'configured', notes: [] }
  }
  if (strapiFile !== null) {
    let file = path.join(path.dirname(strapiFile), 'jobwerk.db')
    if (file === strapiFile) file = path.join(path.dirname(strapiFile), 'jobwerk-jobs.db')
    return { storage: { type: 'sqlite', path: file }, reason: `the app uses SQLite (${client}): jobwerk's own file beside Strapi's`, notes: [] }
  }
  if (isPostgresClient(client)) {
    const { storage, notes } = postgresStorage(conn, env)
    return {
      storage,
      reason: `the app uses PostgreSQL (${client}): the app's server and database, jobwerk's own schema and connection pool; every instance of the app on this database shares one queue`,
      notes,
    }
  }
  const file = path.join(root, '.tmp', 'jobwerk.db')
  const why = MYSQL_CLIENTS.includes(client) ? `the app uses ${client}, which jobwerk does not store in` : `the app's database client is ${client}`
  return { storage: { type: 'sqlite', path: file }, reason: `${why}: a SQLite file of its own (one process per file: see the README's Strapi section, Clusters)`, notes: [] }
}

module.exports = { chooseStorage, postgresStorage, describePostgres, CONNECTION_KEYS }
