'use strict'
// Loads the native addon through the generated loader (binding.js) and, when
// no binary fits this system, throws an Error that says which package was
// expected, what was detected and what to do (code ERR_NATIVE_ADDON, the
// loader's error as `cause`).

const fs = require('node:fs')
const path = require('node:path')

// The npm package holding each binary is `${PACKAGE_PREFIX}-${suffix}`
// (napi-rs `platformArchABI`; one per target in package.json `napi.targets`).
const PACKAGE_PREFIX = 'jobwerk'
const SUFFIXES = [
  'linux-x64-gnu',
  'linux-x64-musl',
  'linux-arm64-gnu',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64-msvc',
]

function version() {
  try {
    return require('./package.json').version
  } catch {
    return null
  }
}

/** 'glibc', 'musl' or null (not Linux, or unknown); the generated loader's order of checks. */
function detectLibc(platform) {
  if (platform !== 'linux') return null
  try {
    if (fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')) return 'musl'
  } catch {}
  try {
    const report = process.report && process.report.getReport()
    if (report && report.header && report.header.glibcVersionRuntime) return 'glibc'
    if (report && Array.isArray(report.sharedObjects)) {
      if (report.sharedObjects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'))) return 'musl'
    }
  } catch {}
  return 'glibc'
}

/** The napi-rs platform suffix for a system, e.g. 'linux-x64-musl' or 'win32-x64-msvc'. */
function suffixFor({ platform, arch, libc }) {
  if (platform === 'linux') return `linux-${arch}-${libc === 'musl' ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function describeSystem({ platform, arch, libc }) {
  return [platform, arch, libc].filter(Boolean).join(' ')
}

/** Where `name` is installed (its directory), or null. */
function defaultResolve(name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`))
  } catch {
    return null
  }
}

/**
 * The clear message for a failed load: `cause` is the loader's error, `system`
 * `{ platform, arch, libc }`; `resolve(name)` says where a package is installed
 * (or null); `sourceCheckout` is true in a clone of the repository.
 */
function explainLoadFailure(cause, system, { resolve = defaultResolve, sourceCheckout = false, pkgVersion = version() } = {}) {
  const suffix = suffixFor(system)
  const expected = `${PACKAGE_PREFIX}-${suffix}`
  const at = pkgVersion ? `${expected}@${pkgVersion}` : expected
  const lines = [`jobwerk: no native binary could be loaded for this system (${describeSystem(system)}, Node ${process.version}).`]
  if (sourceCheckout) {
    lines.push(
      'This is a source checkout: build the addon with `npm install` or `npm run build` (needs a Rust toolchain, https://rustup.rs).',
    )
  } else if (!SUFFIXES.includes(suffix)) {
    lines.push(
      `jobwerk publishes binaries for ${SUFFIXES.join(', ')}; there is none for ${suffix} (no package ${expected}).`,
      'To use it here, build it from source: clone the repository, install a Rust toolchain (https://rustup.rs), ' +
        'run `npm install` there (it builds the addon with cargo) and depend on that checkout.',
    )
  } else {
    const where = resolve(expected)
    if (where) {
      lines.push(
        `The expected package ${expected} is installed (${where}) but failed to load: ${packageCause(cause)}.`,
        `Reinstall it at the same version as jobwerk (\`npm install ${at}\`); if the error names a missing GLIBC version, this system's C library is older than the binary needs.`,
      )
    } else {
      lines.push(`The expected package ${at} (an optional dependency of jobwerk) is not installed.`)
      const other = system.platform === 'linux' ? `${PACKAGE_PREFIX}-${suffixFor({ ...system, libc: system.libc === 'musl' ? 'glibc' : 'musl' })}` : null
      if (other && resolve(other)) {
        lines.push(
          `${other} is installed instead: it was built for ${system.libc === 'musl' ? 'glibc' : 'musl'}, but this system's C library is ${system.libc || 'unknown'}. ` +
            'node_modules or the lockfile was made on another Linux (for example on a glibc host and copied into an Alpine image): install inside the target system.',
        )
      } else {
        lines.push(
          'npm leaves optional dependencies out with --omit=optional (or --no-optional), and a package-lock.json made on another platform can miss it (npm/cli#4828).',
        )
      }
      lines.push(
        `To fix: remove node_modules and package-lock.json and run \`npm install\` again, or run \`npm install ${at}\`. ` +
          'pnpm and Yarn install binaries for other systems only when told to (supportedArchitectures).',
      )
    }
  }
  const err = new Error(lines.join('\n'), { cause })
  err.code = 'ERR_NATIVE_ADDON'
  err.expectedPackage = expected
  return err
}

/**
 * The package's own load error from the loader's chain (napi-rs chains one
 * error per candidate, the last tried first; the local `./jobwerk.*.node`
 * file of a source checkout is tried before the package).
 */
function packageCause(e) {
  const seen = new Set()
  for (let c = e && e.cause; c && !seen.has(c); c = c.cause) {
    seen.add(c)
    if (typeof c.message === 'string' && !c.message.includes(`'./${PACKAGE_PREFIX}.`)) return c.message
  }
  return e && e.message ? String(e.message) : 'unknown error'
}

function loadBinding() {
  try {
    return require('./binding.js')
  } catch (e) {
    const system = { platform: process.platform, arch: process.arch, libc: detectLibc(process.platform) }
    const sourceCheckout = fs.existsSync(path.join(__dirname, 'Cargo.toml'))
    throw explainLoadFailure(e, system, { sourceCheckout })
  }
}

module.exports = { loadBinding, explainLoadFailure, suffixFor, detectLibc, PACKAGE_PREFIX, SUFFIXES }
