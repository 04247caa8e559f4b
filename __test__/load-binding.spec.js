'use strict'
// The message when no native binary fits (load-binding.js): the loader is
// pointed at systems with no package by a preload that changes
// process.platform/arch, in a copy of the package's JS files laid out as npm
// installs them (no Cargo.toml, no .node).

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { explainLoadFailure, suffixFor, SUFFIXES, PACKAGE_PREFIX } = require('../load-binding.js')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
let installed

beforeAll(() => {
  installed = fs.mkdtempSync(path.join(os.tmpdir(), 'jobwerk-loader-'))
  const dir = path.join(installed, 'node_modules', 'jobwerk')
  fs.mkdirSync(dir, { recursive: true })
  for (const f of ['package.json', ...PKG.files.filter((f) => f.endsWith('.js') || f.endsWith('.mjs'))]) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f))
  }
})

afterAll(() => fs.rmSync(installed, { recursive: true, force: true }))

/** What `require(target)` throws in a child whose process.platform/arch are faked. */
function loadAs(platform, arch, target, cwd) {
  const preload = `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} });` +
    `Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} });`
  const script = `${preload}
    try { require(${JSON.stringify(target)}); console.log(JSON.stringify({ loaded: true })) }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, cause: e.cause && e.cause.message, expectedPackage: e.expectedPackage })) }`
  const r = spawnSync(process.execPath, ['-e', script], { cwd, encoding: 'utf8' })
  expect(r.status).toBe(0)
  return JSON.parse(r.stdout)
}

test('an unsupported platform: the package it would need, the system, build from source', () => {
  const e = loadAs('freebsd', 'x64', 'jobwerk', installed)
  expect(e.code).toBe('ERR_NATIVE_ADDON')
  expect(e.expectedPackage).toBe('jobwerk-freebsd-x64')
  expect(e.message).toContain('for this system (freebsd x64, Node ')
  expect(e.message).toContain('there is none for freebsd-x64')
  expect(e.message).toContain('Rust toolchain')
  expect(e.cause).toMatch(/Cannot find native binding/)
})

test('an unsupported architecture on Linux names the libc it detected', () => {
  const e = loadAs('linux', 'riscv64', 'jobwerk', installed)
  expect(e.code).toBe('ERR_NATIVE_ADDON')
  expect(e.expectedPackage).toBe('jobwerk-linux-riscv64-gnu')
  expect(e.message).toContain('(linux riscv64 glibc, Node ')
  expect(e.message).toContain('there is none for linux-riscv64-gnu')
})

test('a supported platform whose optional package is missing: install it', () => {
  const e = loadAs('darwin', 'arm64', 'jobwerk', installed)
  expect(e.code).toBe('ERR_NATIVE_ADDON')
  expect(e.message).toContain(`The expected package jobwerk-darwin-arm64@${PKG.version} (an optional dependency of jobwerk) is not installed.`)
  expect(e.message).toContain('--omit=optional')
  expect(e.message).toContain(`npm install jobwerk-darwin-arm64@${PKG.version}`)
})

test('in a source checkout the message says to build the addon', () => {
  const e = loadAs('win32', 'arm64', path.join(ROOT, 'index.js'), ROOT)
  expect(e.code).toBe('ERR_NATIVE_ADDON')
  expect(e.message).toContain('This is a source checkout')
  expect(e.message).toContain('npm run build')
})

test('a libc mismatch names the package that is there and what it was built for', () => {
  const gnu = path.join('/app/node_modules', 'jobwerk-linux-x64-gnu')
  const err = explainLoadFailure(new Error('Cannot find native binding.'), { platform: 'linux', arch: 'x64', libc: 'musl' }, {
    resolve: (name) => (name === 'jobwerk-linux-x64-gnu' ? gnu : null),
    pkgVersion: '1.2.3',
  })
  expect(err.code).toBe('ERR_NATIVE_ADDON')
  expect(err.message).toContain('(linux x64 musl, Node ')
  expect(err.message).toContain('The expected package jobwerk-linux-x64-musl@1.2.3 (an optional dependency of jobwerk) is not installed.')
  expect(err.message).toContain("jobwerk-linux-x64-gnu is installed instead: it was built for glibc, but this system's C library is musl.")
  expect(err.message).toContain('install inside the target system')
})

test('an installed package that fails to load: its own error, not the local-file miss', () => {
  const local = new Error("Cannot find module './jobwerk.linux-x64-gnu.node'")
  const pkg = new Error('/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34\' not found')
  pkg.cause = local
  const top = new Error('Cannot find native binding.')
  top.cause = pkg
  const err = explainLoadFailure(top, { platform: 'linux', arch: 'x64', libc: 'glibc' }, {
    resolve: (name) => (name === 'jobwerk-linux-x64-gnu' ? '/app/node_modules/jobwerk-linux-x64-gnu' : null),
    pkgVersion: '1.2.3',
  })
  expect(err.message).toContain('The expected package jobwerk-linux-x64-gnu is installed (/app/node_modules/jobwerk-linux-x64-gnu) but failed to load:')
  expect(err.message).toContain('GLIBC_2.34')
  expect(err.message).toContain('npm install jobwerk-linux-x64-gnu@1.2.3')
  expect(err.cause).toBe(top)
})

test('the suffixes are those of package.json napi.targets and the npm/ directories', () => {
  const fromTriple = (t) => {
    const [arch, , os, abi] = t.split('-')
    const platform = { darwin: 'darwin', windows: 'win32' }[os] || 'linux'
    return suffixFor({ platform, arch: { x86_64: 'x64', aarch64: 'arm64' }[arch], libc: abi === 'musl' ? 'musl' : 'glibc' })
  }
  expect(PKG.napi.targets.map(fromTriple).sort()).toEqual([...SUFFIXES].sort())
  expect(fs.readdirSync(path.join(ROOT, 'npm')).sort()).toEqual([...SUFFIXES].sort())
  for (const s of SUFFIXES) {
    const manifest = require(path.join(ROOT, 'npm', s, 'package.json'))
    expect(manifest.name).toBe(`${PACKAGE_PREFIX}-${s}`)
    expect(manifest.version).toBe(PKG.version)
  }
})

test('import and require give the same module', () => {
  // A child: jest's module sandbox cannot import ESM without flags.
  const script = `import { createRequire } from 'node:module'
    import * as esm from ${JSON.stringify(path.join(ROOT, 'index.mjs'))}
    const cjs = createRequire(import.meta.url)(${JSON.stringify(path.join(ROOT, 'index.js'))})
    const named = Object.keys(esm).filter((k) => k !== 'default').sort()
    console.log(JSON.stringify({ same: esm.default === cjs, named, cjs: Object.keys(cjs).sort(), identical: named.every((k) => esm[k] === cjs[k]) }))`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  expect(r.stderr).toBe('')
  const out = JSON.parse(r.stdout)
  expect(out.same).toBe(true)
  expect(out.named).toEqual(out.cjs)
  expect(out.identical).toBe(true)
})
