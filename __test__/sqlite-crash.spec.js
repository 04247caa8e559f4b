'use strict'
// The crash test: a child adds 10,000 jobs to SQLite, flushes, and processes
// them; the parent SIGKILLs it at a random moment; a new process opens the
// same file and finishes; a final process checks every job. Repeated with a
// different kill point each time.
const fs = require('node:fs')
const path = require('node:path')
const { tempDirs, fixtureTracker, integrityCheck, sleep } = require('./helpers/sqlite')

const JOBS = 10000
const TRIALS = 5
const dirs = tempDirs('jobwerk-crash-')
const fixtures = fixtureTracker()
afterEach(() => fixtures.killAll())
afterAll(() => dirs.cleanup())

const seen = []

function runCounts(...logs) {
  const counts = new Map()
  for (const log of logs) {
    if (!fs.existsSync(log)) continue
    for (const id of fs.readFileSync(log, 'utf8').split('\n')) {
      if (id) counts.set(id, (counts.get(id) || 0) + 1)
    }
  }
  return counts
}

// Kill points spread over 50-400 ms after 'processing': one random point per band.
const killPoints = Array.from({ length: TRIALS }, (_, i) => {
  const band = 350 / TRIALS
  return Math.round(50 + band * i + Math.random() * band)
})

describe('SQLite crash recovery (SIGKILL during processing)', () => {
  test.each(killPoints.map((ms, i) => [i + 1, ms]))(
    'trial %i: killed %i ms after processing started, a new process finishes every job, none lost',
    async (trial, killAfter) => {
      const dir = dirs.make()
      const db = path.join(dir, 'crash.db')
      const ids = path.join(dir, 'ids.txt')
      const log1 = path.join(dir, 'run-1.log')
      const log2 = path.join(dir, 'run-2.log')

      // 1. add + flush + process, killed at a random moment
      const child = fixtures.start('sqlite-crash-child.js', ['run', db, log1, ids, String(JOBS)])
      await child.next('processing', 20000)
      await sleep(killAfter)
      const ranAtKill = runCounts(log1).size
      const exit = await child.kill('SIGKILL')
      expect(exit.signal).toBe('SIGKILL')
      expect(child.lines.find((l) => l.event === 'all-done')).toBeUndefined()
      const idList = fs.readFileSync(ids, 'utf8').split('\n').filter(Boolean)
      expect(idList).toHaveLength(JOBS)
      expect(new Set(idList).size).toBe(JOBS)

      // 2. a new process opens the same file and finishes, same handler
      const fin = fixtures.start('sqlite-crash-child.js', ['finish', db, log2])
      const finished = await fin.next('finished', 25000)
      expect(await fin.exited).toEqual({ code: 0, signal: null })
      expect(finished.stats).toMatchObject({ completed: JOBS, pending: 0, running: 0, waiting: 0, failed: 0, total: JOBS })
      // at open, the killed run's running jobs were already back to pending
      expect(finished.atOpen.running).toBe(0)
      expect(finished.atOpen.total).toBe(JOBS)

      // 3. a final process checks every job by id
      const ver = fixtures.start('sqlite-crash-child.js', ['verify', db, ids])
      const v = await ver.next('verified', 20000)
      expect(await ver.exited).toEqual({ code: 0, signal: null })
      expect(v.ids).toBe(JOBS)
      expect(v.missing).toBe(0)
      expect(v.byStatus).toEqual({ completed: JOBS })
      expect(v.badResults).toBe(0)
      expect(v.stats).toMatchObject({ completed: JOBS, pending: 0, running: 0, waiting: 0, total: JOBS })
      // only interruptions show up as errors, and never more than one per job
      expect(Object.keys(v.errorCodes).filter((c) => c !== 'ERR_INTERRUPTED')).toEqual([])
      expect(Object.keys(v.attempts).map(Number).every((n) => n === 1 || n === 2)).toBe(true)

      // 4. handler runs: every job ran, no unknown ids, double runs few
      const counts = runCounts(log1, log2)
      const known = new Set(idList)
      expect(counts.size).toBe(JOBS)
      expect([...counts.keys()].every((id) => known.has(id))).toBe(true)
      let twice = 0
      let max = 0
      for (const n of counts.values()) {
        if (n > 1) twice++
        if (n > max) max = n
      }
      const interrupted = v.errorCodes.ERR_INTERRUPTED || 0
      seen.push({ trial, killAfter, ranAtKill, twice, interrupted, maxRunsOfOneJob: max })
      console.log(
        `crash trial ${trial}: killed after ${killAfter} ms with ${ranAtKill}/${JOBS} handlers started; ` +
          `${twice} jobs ran twice (${interrupted} recovered as interrupted); max runs of one job ${max}`,
      )
      expect(max).toBeLessThanOrEqual(2)
      expect(twice).toBeLessThan(1000)

      // 5. the file is sound
      expect(integrityCheck(db)).toBe('ok')
    },
    60000,
  )

  test('summary: the largest number of double-run jobs over all trials stays well below the job count', () => {
    expect(seen).toHaveLength(TRIALS)
    const worst = Math.max(...seen.map((s) => s.twice))
    console.log(`crash test summary: largest double-run count ${worst} of ${JOBS} jobs over ${TRIALS} trials: ${JSON.stringify(seen)}`)
    expect(worst).toBeLessThan(1000)
    // the kill points really were different
    expect(new Set(seen.map((s) => s.killAfter)).size).toBe(TRIALS)
  })
})
