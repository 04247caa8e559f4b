'use strict'
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..', '..')

/** The installed version of an npm package (read from its package.json, ESM-only ones too). */
function pkgVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return null
  }
}

module.exports = { ROOT, pkgVersion }
