'use strict'
// The benchmark orchestrator (shared/BENCH.md): for each repetition, workload
// and system (systems alternated, the order rotated each repetition) it runs
// benchmark/worker.js in a fresh `node --expose-gc` process, then prints one
// markdown table of medians (min-max) with the jobwerk/peer ratios and writes
// the raw results to benchmark/results/<date>.json.
//
// Environment:
//   BENCH_QUICK=1                 1 repetition, small N (smoke test)
//   BENCH_SYSTEMS=a,b             systems (default: all in systems/index.js)
//   BENCH_WORKLOADS=w1,w4         workloads for every system (default: w1..w4, and for a system
//                                 with DEFAULT_WORKLOADS in systems/index.js those)
//   BENCH_REPS=3                  repetitions (default 3, quick 1)
//   BENCH_N_W1=1000000            W1's N (default 20,000, quick 5,000)
//   BENCH_TIMEOUT_MS=120000       per-run timeout (the run is killed and reported as an error);
//                                 default: the workload's own wait + 20 s, at least 120 s
//   BENCH_BUILD=1                 first build the release addon into benchmark/.native from the
//                                 work tree; BENCH_BUILD=head: from a `git archive HEAD` snapshot
//                                 (and index.js, lib/, the loaders from it into benchmark/.native/js)
//   JOBWERK_NATIVE=path.node      the jobwerk addon to measure (default: benchmark/.native/...
//                                 when built, else the shared jobwerk.*.node)
//   JOBWERK_JS=dir                the folder whose index.js the jobwerk runs load (default:
//                                 benchmark/.native/js after BENCH_BUILD=head, else the work tree)
//   BENCH_SQLITE_DIR=dir          where each jobwerk-sqlite run makes its fresh database folder
//                                 (default: the OS temp folder)

const { spawn, spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { DEFAULT_ORDER, DEFAULT_WORKLOADS, SHARED_DB_WORKLOADS, SHARED_DB_SYSTEMS, SYSTEMS, SERVERS } = require('./systems')
const { DIR_PREFIX: SQLITE_DIR_PREFIX } = require('./systems/jobwerk')
const { params: workloadParams } = require('./workloads')
const { median, tcpReachable, hostCpuMs } = require('./lib/util')
const { ROOT, pkgVersion } = require('./lib/pkg')

const HERE = __dirname
const NATIVE_DIR = path.join(HERE, '.native')
const NATIVE_FILE = 'jobwerk.linux-x64-gnu.node'
const JS_DIR = path.join(NATIVE_DIR, 'js')
const ALL_WORKLOADS = ['w1', 'w1x2', 'w2', 'w3', 'w4', 'long']
// BENCH_N_W1_PEERS replaces W1's N for these (the PostgreSQL peers, ~1-3k jobs/s).
const SLOW_PEERS = ['pg-boss', 'graphile-worker']

function log(msg) {
  process.stderr.write(`${msg}\n`)
}

function listEnv(name, all) {
  const v = process.env[name]
  if (!v) return all
  const picked = v
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  for (const p of picked) if (!all.includes(p)) throw new Error(`${name}: unknown "${p}"; known: ${all.join(', ')}`)
  return all.filter((x) => picked.includes(x)) // keep the canonical order
}

/**
 * Builds the release addon into benchmark/.native. `worktree`: from the work
 * tree as it is (others' edits included); `head`: from a `git archive HEAD`
 * snapshot in a temporary folder (stable while others edit; git is only read).
 */
function buildRelease(mode) {
  const napi = path.join(ROOT, 'node_modules', '.bin', 'napi')
  let cwd = ROOT
  let source = 'work tree'
  const targetDir = path.join(os.tmpdir(), 'jobwerk-bench-target')
  if (mode === 'head') {
    const { commit } = gitInfo()
    // Earlier snapshots are not needed any more (the target dir is kept for speed).
    for (const e of fs.readdirSync(os.tmpdir())) {
      if (e.startsWith('jobwerk-bench-src-')) fs.rmSync(path.join(os.tmpdir(), e), { recursive: true, force: true })
    }
    cwd = path.join(os.tmpdir(), `jobwerk-bench-src-${commit}`)
    fs.mkdirSync(cwd, { recursive: true })
    const tar = execFileSync('git', ['archive', '--format=tar', 'HEAD'], { cwd: ROOT, maxBuffer: 1 << 30 })
    const r = spawnSync('tar', ['-x', '-C', cwd], { input: tar })
    if (r.status !== 0) throw new Error(`extracting the HEAD snapshot failed: ${r.stderr}`)
    source = `HEAD ${commit}`
  }
  log(`building the release addon from the ${source} into benchmark/.native (LTO: a few minutes)...`)
  fs.mkdirSync(NATIVE_DIR, { recursive: true })
  const r = spawnSync(
    napi,
    ['build', '--platform', '--release', '--target-dir', targetDir, '--output-dir', NATIVE_DIR, '--no-js', '--dts', 'binding.d.ts'],
    { cwd, stdio: ['ignore', 'inherit', 'inherit'] },
  )
  if (r.status !== 0) throw new Error(`release build failed (exit ${r.status})`)
  // The JavaScript side from the same snapshot (the work tree's index.js may
  // be ahead of, or behind, the addon); a work-tree build uses the work tree's.
  fs.rmSync(JS_DIR, { recursive: true, force: true })
  if (mode === 'head') {
    fs.mkdirSync(JS_DIR, { recursive: true })
    // index.js and what it loads (lib/, the loader, package.json for the version).
    const files = ['index.js', 'binding.js', 'load-binding.js', 'package.json', ...fs.readdirSync(path.join(cwd, 'lib')).map((f) => path.join('lib', f))]
    fs.mkdirSync(path.join(JS_DIR, 'lib'), { recursive: true })
    for (const f of files) fs.copyFileSync(path.join(cwd, f), path.join(JS_DIR, f))
  }
  fs.writeFileSync(path.join(NATIVE_DIR, 'build.json'), `${JSON.stringify({ source, builtAt: new Date().toISOString() })}\n`)
}

function newestMtime(dir) {
  let newest = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

/** Which addon the jobwerk runs load, and what we know about it. */
function nativeInfo() {
  const explicit = process.env.JOBWERK_NATIVE
  const built = path.join(NATIVE_DIR, NATIVE_FILE)
  const file = explicit ? path.resolve(explicit) : fs.existsSync(built) ? built : null
  const info = { file: file ? path.relative(ROOT, file) : null, build: null, stale: false }
  if (!file) {
    info.build = 'shared jobwerk.*.node in the work tree (may be a debug build: run with BENCH_BUILD=1)'
    return info
  }
  const st = fs.statSync(file)
  info.build = explicit ? 'JOBWERK_NATIVE' : 'release (benchmark/.native)'
  info.builtAt = st.mtime.toISOString()
  info.bytes = st.size
  if (!explicit) {
    try {
      info.source = JSON.parse(fs.readFileSync(path.join(NATIVE_DIR, 'build.json'), 'utf8')).source
    } catch {
      info.source = 'work tree'
    }
    if (info.source !== 'work tree') info.build += `, from ${info.source}`
  }
  try {
    info.stale = info.source === 'work tree' && newestMtime(path.join(ROOT, 'src')) > st.mtimeMs
  } catch {}
  if (process.env.JOBWERK_JS) info.js = path.relative(ROOT, path.resolve(process.env.JOBWERK_JS)) || '.'
  else if (!explicit && info.source && info.source.startsWith('HEAD') && fs.existsSync(path.join(JS_DIR, 'index.js'))) {
    info.js = path.relative(ROOT, JS_DIR)
  } else info.js = null // the work tree's index.js
  return info
}

/** Removes the database folders a killed jobwerk-sqlite worker (pid) left behind. */
function sweepSqliteDirs(pid) {
  const base = process.env.BENCH_SQLITE_DIR ? path.resolve(process.env.BENCH_SQLITE_DIR) : os.tmpdir()
  try {
    for (const e of fs.readdirSync(base)) {
      if (e.startsWith(`${SQLITE_DIR_PREFIX}${pid}-`)) fs.rmSync(path.join(base, e), { recursive: true, force: true })
    }
  } catch {}
}

function gitInfo() {
  const git = (args) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return null
    }
  }
  const status = git(['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'])
  const js = git(['status', '--porcelain', '--', 'index.js', 'lib'])
  return {
    commit: git(['rev-parse', '--short', 'HEAD']),
    rustDirty: status === null ? null : status.length > 0,
    indexJsDirty: js === null ? null : js.length > 0,
  }
}

function runOne(system, workload, opts, env, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const cpu0 = hostCpuMs()
    const child = spawn(process.execPath, ['--expose-gc', path.join(HERE, 'worker.js'), system, workload, JSON.stringify(opts)], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    let timedOut = false
    child.stdout.on('data', (c) => (out += c))
    child.stderr.on('data', (c) => {
      err += c
      for (const line of String(c).split('\n')) if (line) log(`    | ${line}`)
    })
    // On timeout: SIGTERM lets the worker delete its queue and close; SIGKILL
    // 10 s later if it does not.
    let killer = null
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
      killer = setTimeout(() => child.kill('SIGKILL'), 10000)
    }, timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      clearTimeout(killer)
      if (system.startsWith('jobwerk-sqlite')) sweepSqliteDirs(child.pid)
      const wallMs = Date.now() - t0
      const lines = out.split('\n').filter((l) => l.startsWith('{'))
      let r = null
      try {
        r = lines.length ? JSON.parse(lines[lines.length - 1]) : null
      } catch {}
      const base = { system, workload, wallMs, exitCode: code, signal }
      const cpu1 = hostCpuMs()
      if (timedOut) return resolve({ ...base, status: 'timeout', error: `timed out after ${timeoutMs} ms`, stderr: err.slice(-2000) })
      if (!r) return resolve({ ...base, status: 'error', error: `no result line (exit ${code}${signal ? `, ${signal}` : ''})`, stderr: err.slice(-2000) })
      if (r.skipped) return resolve({ ...base, status: 'skipped', reason: r.reason })
      if (!r.ok) return resolve({ ...base, status: 'error', error: r.error, stderr: err.slice(-2000) })
      // CPU the rest of the machine used meanwhile (Redis / PostgreSQL included):
      // the host's busy time over the run less the worker's own.
      let host = null
      if (cpu0 && cpu1 && r.cpu) {
        const busyMs = cpu1.busyMs - cpu0.busyMs
        const otherMs = Math.max(0, busyMs - r.cpu.processMs)
        host = { busyMs, workerMs: r.cpu.processMs, otherMs, otherCores: otherMs / wallMs }
      }
      resolve({ ...base, status: 'ok', lingered: code === 3, info: r.info, metrics: r.metrics, cpu: r.cpu, host, closeError: r.closeError })
    })
  })
}

// --- the table ----------------------------------------------------------------

const ROWS = [
  { label: 'W1 enqueue (jobs/s)', wl: 'w1', get: (m) => m.enqueuePerSec, higher: true },
  { label: 'W1 enqueue + flush (jobs/s)', wl: 'w1', get: (m) => m.enqueueFlushedPerSec, higher: true, optional: true },
  { label: 'W1 process (jobs/s)', wl: 'w1', get: (m) => m.processPerSec, higher: true },
  { label: 'W1 busy cores, whole machine (PostgreSQL included)', wl: 'w1', get: (m) => m.hostBusyCores, optional: true },
  { label: 'W1 process jobs/s per busy core', wl: 'w1', get: (m) => m.jobsPerSecPerBusyCore, higher: true, optional: true },
  { label: 'W1 peak RSS (MB)', wl: 'w1', get: (m) => (typeof m.peakRssBytes === 'number' ? m.peakRssBytes / 1e6 : null) },
  { label: 'W1 two processes: process (jobs/s)', wl: 'w1x2', get: (m) => m.processPerSec, higher: true },
  { label: 'W1 two processes: busy cores', wl: 'w1x2', get: (m) => m.hostBusyCores },
  { label: 'W2 latency p50 (ms)', wl: 'w2', get: (m) => m.latencyMs.p50 },
  { label: 'W2 latency p95 (ms)', wl: 'w2', get: (m) => m.latencyMs.p95 },
  { label: 'W2 latency p99 (ms)', wl: 'w2', get: (m) => m.latencyMs.p99 },
  { label: 'W2 latency max (ms)', wl: 'w2', get: (m) => m.latencyMs.max },
  { label: 'W3 lateness p50 (ms)', wl: 'w3', get: (m) => m.latenessMs.p50 },
  { label: 'W3 lateness p99 (ms)', wl: 'w3', get: (m) => m.latenessMs.p99 },
  { label: 'W3 lateness max (ms)', wl: 'w3', get: (m) => m.latenessMs.max },
  { label: 'W4 client RSS per job (B)', wl: 'w4', get: (m) => m.rssBytesPerJob },
  { label: 'W4 server/file storage per job (B)', wl: 'w4', get: (m) => m.serverBytesPerJob, optional: true },
  { label: 'W4 enqueue (jobs/s)', wl: 'w4', get: (m) => m.enqueuePerSec, higher: true },
  { label: 'Long run: jobs/s overall', wl: 'long', get: (m) => m.jobsPerSec, higher: true },
  { label: 'Long run: first minute (jobs/s)', wl: 'long', get: (m) => m.firstMinuteJobsPerSec, higher: true },
  { label: 'Long run: last minute (jobs/s)', wl: 'long', get: (m) => m.lastMinuteJobsPerSec, higher: true },
  { label: 'Long run: loss first to last minute (%)', wl: 'long', get: (m) => (typeof m.lossFirstToLast === 'number' ? 100 * m.lossFirstToLast : null) },
  { label: 'Long run: schema size at the end (MB)', wl: 'long', get: (m) => (m.samples.length ? m.samples[m.samples.length - 1].totalBytes / 1e6 : null) },
]

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a'
  const a = Math.abs(v)
  if (a >= 1000) return Math.round(v).toLocaleString('en-US')
  if (a >= 100) return v.toFixed(0)
  if (a >= 10) return v.toFixed(1)
  if (a >= 1) return v.toFixed(2)
  return v.toFixed(3)
}

function cellStats(runs, system, row) {
  const mine = runs.filter((r) => r.system === system && r.workload === row.wl)
  if (mine.length === 0) return null
  const ok = mine.filter((r) => r.status === 'ok')
  const values = ok.map((r) => row.get(r.metrics)).filter((v) => typeof v === 'number' && Number.isFinite(v))
  const failed = mine.filter((r) => r.status === 'error' || r.status === 'timeout').length
  const skipped = mine.filter((r) => r.status === 'skipped').length
  return {
    n: mine.length,
    values,
    median: values.length ? median(values) : null,
    min: values.length ? Math.min(...values) : null,
    max: values.length ? Math.max(...values) : null,
    failed,
    skipped,
  }
}

function cellText(c) {
  if (c === null) return '—' // not run on this workload
  if (c.values.length === 0) {
    if (c.skipped === c.n) return 'skipped'
    if (c.failed) return c.failed === c.n ? 'error' : 'n/a'
    return 'n/a'
  }
  let s = fmt(c.median)
  if (c.values.length > 1) s += ` (${fmt(c.min)}–${fmt(c.max)})`
  if (c.failed) s += ` [${c.failed}/${c.n} failed]`
  return s
}

function buildTable(runs, systems, workloads) {
  // Ratio columns: every jobwerk system against each in-process / Redis peer.
  const jobwerks = systems.filter((s) => s.startsWith('jobwerk'))
  const peers = ['p-queue', 'bullmq'].filter((p) => systems.includes(p))
  const ratioCols = []
  for (const j of jobwerks) for (const p of peers) ratioCols.push([j, p])
  const header = ['metric', ...systems, ...ratioCols.map(([j, p]) => `${j} / ${p}`)]
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  const summary = {}
  for (const row of ROWS) {
    if (!workloads.includes(row.wl)) continue
    const cells = {}
    for (const s of systems) cells[s] = cellStats(runs, s, row)
    // An optional row no selected system has a value for (the storage row with
    // in-process systems only; "+ flush" without jobwerk on SQLite) is left out.
    if (row.optional && Object.values(cells).every((c) => !c || c.values.length === 0)) continue
    summary[row.label] = {}
    const out = [`${row.label} ${row.higher ? '↑' : '↓'}`]
    for (const s of systems) {
      out.push(cellText(cells[s]))
      if (cells[s]) summary[row.label][s] = { median: cells[s].median, min: cells[s].min, max: cells[s].max, values: cells[s].values }
    }
    for (const [j, p] of ratioCols) {
      const a = cells[j] && cells[j].median
      const b = cells[p] && cells[p].median
      const ratio = typeof a === 'number' && typeof b === 'number' && b !== 0 ? a / b : null
      summary[row.label][`${j}/${p}`] = ratio
      out.push(ratio === null ? 'n/a' : `${ratio >= 100 ? ratio.toFixed(0) : ratio >= 10 ? ratio.toFixed(1) : ratio >= 0.1 ? ratio.toFixed(2) : ratio.toPrecision(2)}×`)
    }
    lines.push(`| ${out.join(' | ')} |`)
  }
  return { markdown: lines.join('\n'), summary }
}

function progressText(r) {
  if (r.status !== 'ok') return `${r.status}${r.reason ? ` (${r.reason})` : ''}${r.error ? `: ${String(r.error).split('\n')[0]}` : ''}`
  const m = r.metrics
  const f = fmt
  let s
  switch (r.workload) {
    case 'w1':
      s =
        `enqueue ${f(m.enqueuePerSec)}/s${m.enqueueFlushedPerSec ? ` (${f(m.enqueueFlushedPerSec)}/s with flush)` : ''}, ` +
        `process ${f(m.processPerSec)}/s${m.finalFlushMs !== null && m.finalFlushMs !== undefined ? ` (final flush ${f(m.finalFlushMs)} ms)` : ''}, ` +
        `peak RSS ${f(m.peakRssBytes / 1e6)} MB${typeof m.hostBusyCores === 'number' ? `, busy cores ${f(m.hostBusyCores)} (this process ${f(m.processCores)}, postgres ${f(m.postgresCores)})` : ''}`
      break
    case 'w1x2':
      s = `two processes: process ${f(m.processPerSec)}/s (${m.handlersStartedHere} + ${m.handlersStartedInPeer} handlers), busy cores ${f(m.hostBusyCores)}`
      break
    case 'long':
      s = `long: ${f(m.jobsPerSec)}/s; per minute ${m.samples.map((x) => f(x.jobsPerSec)).join(', ')}; loss ${f(100 * (m.lossFirstToLast || 0))}%; ${m.vacuum}; size ${m.samples.map((x) => f(x.totalBytes / 1e6)).join(', ')} MB`
      break
    case 'w2':
      s = `p50 ${f(m.latencyMs.p50)} ms, p99 ${f(m.latencyMs.p99)} ms, max ${f(m.latencyMs.max)} ms`
      break
    case 'w3':
      s = `lateness p50 ${f(m.latenessMs.p50)} ms, p99 ${f(m.latenessMs.p99)} ms, max ${f(m.latenessMs.max)} ms`
      break
    case 'w4':
      s = `RSS ${f(m.rssBytesPerJob)} B/job${m.serverBytesPerJob === null ? '' : `, server/file ${f(m.serverBytesPerJob)} B/job`}${
        typeof m.fileBytesPerJobAfterClose === 'number' ? ` (${f(m.fileBytesPerJobAfterClose)} B/job checkpointed)` : ''
      }, enqueue ${f(m.enqueuePerSec)}/s`
      break
  }
  const t = r.cpu && r.cpu.threadsMs
  const wait = t && typeof t['main (waiting for a CPU)'] === 'number' ? `, main thread waited ${fmt((100 * t['main (waiting for a CPU)']) / r.wallMs)}% of the run for a CPU` : ''
  const other = r.host ? ` [others ${r.host.otherCores.toFixed(2)} cores${wait}]` : ''
  return `ok ${s}${r.lingered ? ' [did not exit by itself]' : ''}${other}`
}

// --- main -----------------------------------------------------------------------

async function main() {
  const quick = process.env.BENCH_QUICK === '1' || process.env.BENCH_QUICK === 'true'
  const systems = listEnv('BENCH_SYSTEMS', DEFAULT_ORDER.filter((s) => SYSTEMS[s]))
  const longRun = process.env.BENCH_LONG === '1' || process.env.BENCH_LONG === 'true'
  const workloadsGiven = Boolean(process.env.BENCH_WORKLOADS)
  // BENCH_LONG=1: the bloat run only; otherwise every workload but it.
  const workloads = longRun ? ['long'] : listEnv('BENCH_WORKLOADS', ALL_WORKLOADS.filter((w) => w !== 'long'))
  const runsWorkload = (s, wl) =>
    workloads.includes(wl) &&
    (!SHARED_DB_WORKLOADS.includes(wl) || SHARED_DB_SYSTEMS.includes(s)) &&
    (workloadsGiven || longRun || !DEFAULT_WORKLOADS[s] || DEFAULT_WORKLOADS[s].includes(wl))
  const reps = Number(process.env.BENCH_REPS || (quick ? 1 : 3))
  const fixedTimeoutMs = process.env.BENCH_TIMEOUT_MS ? Number(process.env.BENCH_TIMEOUT_MS) : null
  const w1N = process.env.BENCH_N_W1 ? Number(process.env.BENCH_N_W1) : null
  if (w1N !== null && !(Number.isInteger(w1N) && w1N > 0)) throw new Error('BENCH_N_W1 must be a positive integer')
  const params = workloadParams(quick, { w1N })
  const peersN = process.env.BENCH_N_W1_PEERS ? Number(process.env.BENCH_N_W1_PEERS) : null
  if (peersN !== null && !(Number.isInteger(peersN) && peersN > 0)) throw new Error('BENCH_N_W1_PEERS must be a positive integer')
  if (fixedTimeoutMs !== null) {
    if (!(fixedTimeoutMs > 0)) throw new Error('BENCH_TIMEOUT_MS must be a positive number of ms')
    // The workload's own wait ends before the run is killed, so the run reports what it saw.
    params.w1.timeoutMs = Math.max(params.w1.timeoutMs, fixedTimeoutMs - 15000)
    params.w1x2.timeoutMs = Math.max(params.w1x2.timeoutMs, fixedTimeoutMs - 15000)
  }
  const runTimeout = (wl) => fixedTimeoutMs || Math.max(120000, (params[wl].durationMs || 0) + (params[wl].timeoutMs || 0) + 20000 + (wl === 'long' ? 120000 : 0))
  const concurrency = 16

  const buildMode = process.env.BENCH_BUILD
  if (buildMode === '1' || buildMode === 'worktree') buildRelease('worktree')
  else if (buildMode === 'head') buildRelease('head')
  else if (buildMode) throw new Error('BENCH_BUILD: 1 (or worktree) or head')
  const native = nativeInfo()
  const env = { ...process.env }
  if (native.file) env.NAPI_RS_NATIVE_LIBRARY_PATH = path.join(ROOT, native.file)
  else delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  if (native.js) env.JOBWERK_JS = path.join(ROOT, native.js)
  if (systems.some((s) => s.startsWith('jobwerk'))) {
    log(`jobwerk addon: ${native.file || 'shared'} (${native.build}${native.builtAt ? `, built ${native.builtAt}` : ''}); index.js: ${native.js || 'work tree'}`)
    if (native.stale) log('WARNING: src/ has changed since that build; BENCH_BUILD=1 (work tree) or BENCH_BUILD=head rebuilds it')
  }

  const plan = []
  for (let rep = 0; rep < reps; rep++) {
    for (const wl of workloads) {
      const these = systems.filter((s) => runsWorkload(s, wl))
      const order = these.map((_, i) => these[(i + rep) % these.length])
      for (const s of order) plan.push({ rep, system: s, workload: wl })
    }
  }
  const limited = systems.filter((s) => workloads.some((wl) => !runsWorkload(s, wl)))
  log(
    `${plan.length} runs: ${systems.join(', ')} × ${workloads.join(', ')} × ${reps} repetition(s)${quick ? ' (quick)' : ''}` +
      limited.map((s) => `; ${s}: ${workloads.filter((wl) => runsWorkload(s, wl)).join(', ') || 'none'} only`).join(''),
  )

  const started = new Date()
  const runs = []
  for (let i = 0; i < plan.length; i++) {
    const { rep, system, workload } = plan[i]
    const opts = { ...params[workload], concurrency }
    // The slow PostgreSQL peers need no 200,000 jobs to show their rate (BENCH.md, W1-PG).
    if (peersN !== null && (workload === 'w1' || workload === 'w1x2') && SLOW_PEERS.includes(system)) opts.n = peersN
    const head = `[${String(i + 1).padStart(String(plan.length).length)}/${plan.length}] rep ${rep + 1}/${reps} ${workload} ${system}`
    let r
    const server = SERVERS[system]
    if (server && !(await tcpReachable(server.host, server.port, 500))) {
      r = { system, workload, status: 'skipped', reason: `${server.host}:${server.port} unreachable`, wallMs: 0 }
    } else {
      r = await runOne(system, workload, opts, env, runTimeout(workload))
    }
    r.rep = rep
    runs.push(r)
    log(`${head}: ${progressText(r)} (${(r.wallMs / 1000).toFixed(1)} s)`)
  }
  const durationMs = Date.now() - started.getTime()

  // Versions and durability, from the first successful run of each system.
  const systemInfo = {}
  for (const s of systems) {
    const ok = runs.find((r) => r.system === s && r.status === 'ok')
    const skipped = runs.every((r) => r.system !== s || r.status === 'skipped')
    systemInfo[s] = ok ? ok.info : { status: skipped ? 'skipped' : 'no successful run' }
  }
  const git = gitInfo()
  for (const s of systems) if (s.startsWith('jobwerk') && systemInfo[s].version) Object.assign(systemInfo[s], { git, addon: native })

  const { markdown, summary } = buildTable(runs, systems, workloads)
  const out = []
  out.push(`## jobwerk benchmark, ${started.toISOString()}${quick ? ' (quick)' : ''}`)
  out.push('')
  out.push(
    `Node ${process.version}, ${os.cpus().length} CPUs (${(os.cpus()[0] || {}).model || '?'}), ${reps} repetition(s), ` +
      `medians with (min–max); ↑ higher is better, ↓ lower is better; ratios are jobwerk's median over the peer's. ` +
      `Total ${(durationMs / 1000).toFixed(0)} s.`,
  )
  out.push(
    `N: W1 ${params.w1.n}${params.w1.workMs > 0 ? ` (each handler waits ${params.w1.workMs} ms)` : ''}${workloads.includes('w1x2') ? ` (also with two processes)` : ''}${peersN !== null ? ` (${SLOW_PEERS.join(', ')}: ${peersN})` : ''}, W2 ${params.w2.n} at ${params.w2.ratePerSec}/s, W3 ${params.w3.n} at ${params.w3.ratePerSec}/s delayed ${params.w3.delayMs} ms, W4 ${params.w4.n}; concurrency ${concurrency}.`,
  )
  out.push('')
  out.push(markdown)
  out.push('')
  for (const s of systems) {
    const i = systemInfo[s]
    if (i.version) {
      let extra = ''
      if (s.startsWith('jobwerk')) {
        const snapshot = native.source && native.source.startsWith('HEAD') ? native.source.slice(5) : null
        extra =
          `, HEAD ${git.commit}${snapshot && snapshot !== git.commit ? ` (measured: the ${snapshot} snapshot)` : ''}; index.js ${
            native.js ? `from ${native.js}` : `from the work tree (${git.indexJsDirty ? 'modified' : 'as committed'})`
          }; ` +
          `addon: ${native.build}${native.source === 'work tree' ? ` (src/ ${git.rustDirty ? 'modified' : 'as committed'})` : ''}`
      }
      out.push(`- ${s} ${i.version}${i.server ? ` (${i.server})` : ''}${extra}: durability: ${i.durability}`)
    } else out.push(`- ${s}: ${i.status}`)
  }
  const loads = runs.filter((r) => r.host && !SERVERS[r.system]).map((r) => r.host.otherCores)
  if (loads.length > 0) {
    const mean = loads.reduce((a, b) => a + b, 0) / loads.length
    out.push(
      `- Other processes' CPU during the in-process runs: ${mean.toFixed(2)} cores on average, ${Math.max(...loads).toFixed(2)} at most, of ${os.cpus().length}` +
        `${mean > 0.25 ? ' (the machine was busy: these figures are low and noisy)' : ''}.`,
    )
  }
  const bad = runs.filter((r) => r.status === 'error' || r.status === 'timeout')
  for (const r of bad) out.push(`- FAILED rep ${r.rep + 1} ${r.workload} ${r.system}: ${String(r.error).split('\n')[0]}`)
  const lingered = runs.filter((r) => r.lingered)
  for (const r of lingered) out.push(`- rep ${r.rep + 1} ${r.workload} ${r.system}: the worker process did not exit by itself after closing`)
  process.stdout.write(`${out.join('\n')}\n`)

  const resultsDir = path.join(HERE, 'results')
  fs.mkdirSync(resultsDir, { recursive: true })
  const file = path.join(resultsDir, `${started.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}${quick ? '-quick' : ''}.json`)
  const record = {
    date: started.toISOString(),
    durationMs,
    quick,
    repetitions: reps,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.cpus().length,
    cpuModel: (os.cpus()[0] || {}).model,
    totalMemBytes: os.totalmem(),
    concurrency,
    params,
    peersN,
    runTimeoutMs: Object.fromEntries(workloads.map((wl) => [wl, runTimeout(wl)])),
    workloadsBySystem: Object.fromEntries(systems.map((s) => [s, workloads.filter((wl) => runsWorkload(s, wl))])),
    systems: systemInfo,
    versions: {
      'p-queue': pkgVersion('p-queue'),
      bullmq: pkgVersion('bullmq'),
      ioredis: pkgVersion('ioredis'),
      'pg-boss': pkgVersion('pg-boss'),
      'graphile-worker': pkgVersion('graphile-worker'),
      pg: pkgVersion('pg'),
    },
    summary,
    table: markdown,
    runs,
  }
  fs.writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`)
  log(`raw results: ${path.relative(ROOT, file)}`)
  if (bad.length > 0) process.exitCode = 1
}

main().catch((e) => {
  log(e && e.stack ? e.stack : String(e))
  process.exitCode = 2
})
