'use strict'
// Process lifetime: each case runs in a child process (node on a script in
// fixtures/ that requires the package by absolute path).
const { runFixture } = require('./helpers')

// A child still alive after this is killed, and expectCleanExit fails: that is
// how "lets the process exit" is checked, so no test bounds a child's run time
// from above (a busy machine can take seconds to start one). The delayed work
// that must not hold a process is due far later than this.
const KILL_AFTER = 10000

function expectCleanExit(r) {
  expect(r.killed).toBe(false)
  expect(r.signal).toBeNull()
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}

describe('process lifetime', () => {
  test('(a) a started service that ran its jobs and was never stopped lets the process exit', async () => {
    const r = await runFixture('no-stop.js', [], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(JSON.parse(r.stdout.trim())).toEqual({ results: [1, 4, 9, 16, 25] })
  })

  test('(b) a job delayed by 500 ms keeps the process alive until it ran, then it exits', async () => {
    const r = await runFixture('delayed-job.js', ['500'], { timeout: KILL_AFTER })
    expectCleanExit(r)
    const m = /ran after (\d+) ms/.exec(r.stdout)
    expect(m).not.toBeNull()
    expect(Number(m[1])).toBeGreaterThanOrEqual(450)
    expect(r.ms).toBeGreaterThanOrEqual(450)
  })

  test('(c) a never-started service with pending jobs does not keep the process alive', async () => {
    const r = await runFixture('never-started.js', [], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('pending 11')
    // the delayed job is due in 60 s: a clean exit (not killed) means nothing held the loop
  })

  test('(d) with { unref: true } a delayed job does not keep the process alive', async () => {
    const r = await runFixture('unref-delayed.js', ['60000'], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(r.stdout).toContain('started')
    expect(r.stdout).not.toContain('ran')
  })

  test('a running job with no timers of its own keeps the process alive until its timeout', async () => {
    const r = await runFixture('hung-job.js', [], { timeout: KILL_AFTER })
    expectCleanExit(r)
    const m = /timedOut attempt 1 after (\d+) ms/.exec(r.stdout)
    expect(m).not.toBeNull()
    expect(Number(m[1])).toBeGreaterThanOrEqual(290)
  })

  test('a retry waiting for its backoff keeps the process alive', async () => {
    const r = await runFixture('retry-later.js', [], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(r.stdout.trim().split('\n')).toEqual(['attempt 1', 'attempt 2'])
    expect(r.ms).toBeGreaterThanOrEqual(300)
  })

  test('a stopped service with a pending delayed job lets the process exit at once', async () => {
    const r = await runFixture('stopped-with-pending.js', [], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(JSON.parse(r.stdout.trim())).toEqual({ aborted: 0, pending: 1, dropped: 1 })
    expect(r.stdout).not.toContain('ran')
  })
})

// Issue 17, bug 9: a schedule is work too.
describe('process lifetime with schedules', () => {
  test('a started service whose only work is a schedule stays alive for its runs, then exits', async () => {
    const r = await runFixture('schedule-only.js', ['run'], { timeout: KILL_AFTER })
    expectCleanExit(r)
    const runs = r.stdout.split('\n').filter((l) => l.startsWith('run '))
    expect(runs).toHaveLength(2)
    expect(Number(/after (\d+) ms/.exec(runs[0])[1])).toBeGreaterThanOrEqual(250)
  })

  test('with { unref: true } a schedule does not keep the process alive', async () => {
    const r = await runFixture('schedule-only.js', ['unref'], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(r.stdout).toContain('started')
    expect(r.stdout).not.toContain('run ')
  })

  test('a disabled schedule does not keep the process alive', async () => {
    const r = await runFixture('schedule-only.js', ['disabled'], { timeout: KILL_AFTER })
    expectCleanExit(r)
    expect(r.stdout).toContain('started')
    expect(r.stdout).not.toContain('run ')
  })
})
