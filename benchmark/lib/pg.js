'use strict'
// PostgreSQL helpers shared by the PostgreSQL systems (jobwerk-postgres,
// graphile-worker): a plain `pg` client for the harness's own reads (server
// settings, relation sizes, dead tuples, VACUUM), never the system's
// connections, and fresh schema names per run.

const crypto = require('node:crypto')

const CONN = {
  host: process.env.PGHOST || '127.0.0.1',
  port: Number(process.env.PGPORT || 5432),
  database: process.env.PGDATABASE || 'test',
  user: process.env.PGUSER || 'postgres',
}

/** The server settings every PostgreSQL result records (BENCH.md: say whether autovacuum is on). */
const SETTINGS = ['server_version', 'fsync', 'synchronous_commit', 'autovacuum', 'shared_buffers', 'wal_level', 'full_page_writes', 'commit_delay']

async function adminClient() {
  const { Client } = require('pg')
  const c = new Client({ ...CONN, connectionTimeoutMillis: 5000 })
  await c.connect()
  return c
}

/** A schema name no other run uses (`<prefix>_<pid>_<random>`). */
function freshSchema(prefix) {
  return `${prefix}_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
}

async function serverSettings(client) {
  const out = {}
  for (const k of SETTINGS) {
    const { rows } = await client.query('SELECT setting, unit, current_setting($1) AS shown FROM pg_settings WHERE name = $1', [k])
    out[k] = rows.length ? rows[0].shown : null
  }
  return out
}

function durabilityText(s) {
  const durable = s.fsync === 'on' && s.synchronous_commit !== 'off'
  return `PostgreSQL ${s.server_version}: fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}, autovacuum=${s.autovacuum}, shared_buffers=${s.shared_buffers} => ${durable ? 'durable' : 'not durable'}`
}

/** Every table of `schema` with its total size (table + indexes + TOAST), live and dead tuples. */
async function schemaTables(client, schema) {
  const { rows } = await client.query(
    `SELECT c.relname AS table, pg_total_relation_size(c.oid)::bigint AS total, pg_relation_size(c.oid)::bigint AS heap,
            pg_indexes_size(c.oid)::bigint AS indexes, coalesce(s.n_live_tup, 0)::bigint AS live, coalesce(s.n_dead_tup, 0)::bigint AS dead
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
      ORDER BY c.relname`,
    [schema],
  )
  return rows.map((r) => ({ table: r.table, total: Number(r.total), heap: Number(r.heap), indexes: Number(r.indexes), live: Number(r.live), dead: Number(r.dead) }))
}

/** Bytes of every table of `schema` with its indexes and TOAST (`pg_total_relation_size`). */
async function schemaBytes(client, schema) {
  return (await schemaTables(client, schema)).reduce((a, t) => a + t.total, 0)
}

function quoteIdent(s) {
  return `"${String(s).replace(/"/g, '""')}"`
}

async function dropSchema(client, schema) {
  await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
}

module.exports = { CONN, adminClient, freshSchema, serverSettings, durabilityText, schemaTables, schemaBytes, dropSchema, quoteIdent }
