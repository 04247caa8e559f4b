'use strict'
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { serviceTracker, waitForAll, waitForStatus, sleep, runFixture } = require('./helpers')

const tracker = serviceTracker()
const SCRIPT = path.join(__dirname, 'fixtures', 'worker-service.js')

const workers = []
afterEach(async () => {
  for (const w of workers.splice(0)) await w.terminate()
  await tracker.stopAll()
})

function spawnWorker(workerData) {
  const w = new Worker(SCRIPT, { workerData })
  workers.push(w)
  const exited = new Promise((resolve) => w.once('exit', resolve))
  const messages = []
  const waiters = []
  w.on('message', (m) => {
    messages.push(m)
    for (const x of waiters.splice(0)) x()
  })
  const errors = []
  w.on('error', (e) => errors.push(e))
  const next = async (type, timeout = 5000) => {
    const t0 = Date.now()
    for (;;) {
      const err = messages.find((m) => m.type === 'error')
      if (err) throw new Error(`worker error: ${err.message}`)
      const m = messages.find((x) => x.type === type)
      if (m) return m
      if (errors.length) throw errors[0]
      if (Date.now() - t0 > timeout) throw new Error(`no '${type}' message from the worker in ${timeout} ms`)
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(20)])
    }
  }
  return { w, exited, next, errors }
}

describe('worker_threads', () => {
  test('services in the main thread and in two workers run jobs at the same time', async () => {
    const service = tracker.create()
    const calc = {
      name: 'main',
      async calculate(n) {
        await sleep(5)
        return `main:${n}`
      },
    }
    await service.start()
    const a = spawnWorker({ mode: 'jobs', count: 15, tag: 'a' })
    const b = spawnWorker({ mode: 'jobs', count: 15, tag: 'b' })
    const ids = Array.from({ length: 15 }, (_, i) => service.addCalculationJob(calc, i))
    const [ma, mb, st] = await Promise.all([a.next('done'), b.next('done'), waitForAll(service, ids)])
    expect(ma.results).toEqual(Array.from({ length: 15 }, (_, i) => `a:${i * 10}`))
    expect(mb.results).toEqual(Array.from({ length: 15 }, (_, i) => `b:${i * 10}`))
    expect(ma.threadId).not.toBe(mb.threadId)
    expect(st.map((s) => s.result)).toEqual(Array.from({ length: 15 }, (_, i) => `main:${i}`))
    // a worker whose service stopped exits by itself, cleanly
    expect(await a.exited).toBe(0)
    expect(await b.exited).toBe(0)
    expect(a.errors).toEqual([])
  })

  test('terminating a worker while its jobs run does not disturb the main thread', async () => {
    const service = tracker.create({ queue: { maxWorkers: 2 } })
    await service.start()
    const calc = {
      name: 'main-steady',
      async calculate(n) {
        await sleep(3)
        return n * 2
      },
    }
    const w = spawnWorker({ mode: 'long', count: 3, tag: 'long' })
    const before = Array.from({ length: 10 }, (_, i) => service.addCalculationJob(calc, i))
    const msg = await w.next('running')
    expect(msg.n).toBe(3)
    // main-thread jobs keep running while the worker is torn down
    const during = Array.from({ length: 10 }, (_, i) => service.addCalculationJob(calc, 100 + i))
    const code = await w.w.terminate()
    expect(code).toBe(1)
    expect(await w.exited).toBe(1)
    // let the Rust timer try to wake the dead worker's service (its delayed jobs come due)
    await sleep(150)
    const after = Array.from({ length: 10 }, (_, i) => service.addCalculationJob(calc, 200 + i))
    const st = await waitForAll(service, [...before, ...during, ...after])
    expect(st.every((s) => s.status === 'completed')).toBe(true)
    const inputs = [0, 100, 200].flatMap((base) => Array.from({ length: 10 }, (_, i) => base + i))
    expect(st.map((s) => s.result)).toEqual(inputs.map((n) => n * 2))
    // timed work in the main thread still fires
    const delayed = service.addCalculationJob(calc, 7, null, { delay: 30 })
    expect((await waitForStatus(service, delayed)).result).toBe(14)
  })

  test('many workers created and terminated in a row: no crash, main thread fine', async () => {
    const service = tracker.create()
    await service.start()
    for (let round = 0; round < 4; round++) {
      const w = spawnWorker({ mode: 'long', count: 2, tag: `r${round}` })
      await w.next('running')
      await w.w.terminate()
    }
    const id = service.addCalculationJob({ name: 'alive', calculate: () => 'alive' }, null)
    expect((await waitForStatus(service, id)).result).toBe('alive')
  })

  test('the whole scenario in a child process exits cleanly (no crash at teardown)', async () => {
    const r = await runFixture('worker-scenario.js', [], { timeout: 15000 })
    expect(r.killed).toBe(false)
    expect(r.signal).toBeNull()
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout.trim())).toEqual({ w1: 20, w2running: 3, terminated: 1, w1Code: 0, mainCompleted: 30 })
  })
})
