'use strict'
// PostgreSQL (preview): unique keys across processes (issue #12, point 8).
// Three Node processes (fixtures/pg-unique-child.js) add 200 jobs each with
// one key at the same time: one job results; with debounceMs it runs once,
// after the last add, with the last data; with onDuplicate 'replace' the
// last data wins. Every id an add returned answers for the one job
// (getJobStatus from yet another service). Each test gets its own schema,
// dropped after; skipped, with the reason printed, when no server answers
// at 127.0.0.1:5432. Nothing waits on a timer except the debounce itself;
// the asserts are on counts and order, never on durations.
const { pgSuite } = require('./helpers/pg')

const ADDS = 200

const pg = pgSuite('postgres-unique.spec.js', { prefix: 'jw_unique_', timeout: 120000 })
const pgTest = pg.test
const schema = () => pg.schema()

/** A child (fixtures/pg-unique-child.js) on `schemaName`; `next(type)` resolves with its next message of that type. */
function child(schemaName, tag, onMessage = () => {}) {
  return pg.fork('pg-unique-child.js', [schemaName, tag], { onMessage, label: `child ${tag}` })
}

/** Three children on one schema, started; `ran` collects their runs. */
async function three(name, ran = []) {
  const cs = ['a', 'b', 'c'].map((tag) => child(name, tag, (m) => m.type === 'ran' && ran.push(m)))
  await Promise.all(cs.map((c) => c.next('ready')))
  return cs
}

/** Every child adds ADDS jobs with `options` at once; their `added` messages. */
async function addFromAll(cs, options) {
  const added = cs.map((c) => c.next('added'))
  for (const c of cs) c.send({ type: 'add', count: ADDS, options })
  return Promise.all(added)
}

/** Jobs with `key` in the schema, live or finished (one snapshot). */
async function withKey(name, key) {
  const { rows } = await pg.admin.query(
    `SELECT id::text, data, context, 'live' AS at FROM "${name}".job WHERE key = $1
     UNION ALL SELECT id::text, data, context, 'done' FROM "${name}".done WHERE key = $1`,
    [key],
  )
  return rows
}

/** A service on the schema that runs nothing (to read statuses). */
async function reader(name) {
  const s = pg.open(name, { storage: { poolSize: 3 } })
  await s.start()
  return s
}

/** Every id any add returned answers for `holder`. */
async function expectAllResolveTo(name, added, holder) {
  const r = await reader(name)
  const ids = added.flatMap((a) => a.ids)
  expect(ids).toHaveLength(3 * ADDS)
  const statuses = await Promise.all(ids.map((id) => r.getJobStatus(id)))
  for (const st of statuses) expect(st && st.jobId).toBe(holder)
}

pgTest('200 adds with one key from 3 processes at once give one job (skip keeps the first data)', async () => {
  const name = schema()
  const cs = await three(name)
  const added = await addFromAll(cs, { key: 'k', delay: 3600000 })
  const rows = await withKey(name, 'k')
  expect(rows).toHaveLength(1)
  const data = JSON.parse(rows[0].data)
  // The first add committed is some process's first add.
  expect(data.i).toBe(0)
  expect(rows[0].at).toBe('live')
  await expectAllResolveTo(name, added, rows[0].id)
})

pgTest('with onDuplicate replace, one job with the last data and context', async () => {
  const name = schema()
  const cs = await three(name)
  const added = await addFromAll(cs, { key: 'r', onDuplicate: 'replace', delay: 3600000 })
  const rows = await withKey(name, 'r')
  expect(rows).toHaveLength(1)
  const data = JSON.parse(rows[0].data)
  const context = JSON.parse(rows[0].context)
  // The last add committed is some process's last add; data and context
  // come from the same add.
  expect(data.i).toBe(ADDS - 1)
  expect(context).toEqual(data)
  await expectAllResolveTo(name, added, rows[0].id)
})

pgTest('with debounceMs, one run after the last add, with the last data', async () => {
  const name = schema()
  const ran = []
  const cs = await three(name, ran)
  // Wide: a gap this long between two adds (a stalled machine) would let
  // the job run before the last add.
  const debounceMs = 6000
  const added = await addFromAll(cs, { key: 'd', debounceMs })
  const lastAddAt = Math.max(...added.map((a) => a.lastAddAt))
  // The run, committed, in whichever process claimed it.
  const done = await Promise.race(cs.map((c) => c.next('completed')))
  expect(ran).toHaveLength(1)
  expect(done.jobId).toBe(ran[0].jobId)
  expect(ran[0].at).toBeGreaterThanOrEqual(lastAddAt)
  expect(ran[0].data.i).toBe(ADDS - 1)
  const rows = await withKey(name, 'd')
  expect(rows).toHaveLength(1)
  expect(rows[0].at).toBe('done')
  await expectAllResolveTo(name, added, rows[0].id)
})

pgTest('concurrencyKey: two services on one schema never run two jobs of one key at once', async () => {
  const name = schema()
  const keyed = { now: 0, max: 0 }
  const plain = { now: 0, max: 0 }
  const ran = []
  const mk = () => ({
    name: 'serial',
    calculate: async (d) => {
      const c = d.keyed ? keyed : plain
      c.now++
      c.max = Math.max(c.max, c.now)
      // Long enough for the other service to try to claim the next one.
      await new Promise((resolve) => setTimeout(resolve, 20))
      ran.push(d.i)
      c.now--
      return null
    },
  })
  const svc = () => pg.open(name, { storage: { poolSize: 3 }, queue: { maxWorkers: 8, maxQueueSize: 10000 } })
  const a = svc()
  const b = svc()
  const calc = mk()
  a.registerCalculation(calc)
  b.registerCalculation(mk())
  await a.start()
  await b.start()
  let done = 0
  const all = new Promise((resolve) => {
    const count = () => ++done === 40 && resolve()
    a.on('completed', count)
    b.on('completed', count)
  })
  for (let i = 0; i < 30; i++) (i % 2 === 0 ? a : b).addCalculationJob(calc, { i, keyed: true }, {}, { concurrencyKey: 'one' })
  // Jobs without the key run beside them.
  for (let i = 30; i < 40; i++) (i % 2 === 0 ? a : b).addCalculationJob(calc, { i, keyed: false })
  await all
  expect(new Set(ran).size).toBe(40)
  expect(keyed.max).toBe(1)
})
