'use strict'
// An app with jobwerk's root tarball alone (no platform package): prints what require and import throw.
const shape = (e) => ({ code: e.code, message: e.message, cause: e.cause && e.cause.message })
const out = {}
try {
  require('jobwerk')
} catch (e) {
  out.require = shape(e)
}
import('jobwerk').then(
  () => console.log(JSON.stringify({ ...out, import: { code: 'loaded' } })),
  (e) => console.log(JSON.stringify({ ...out, import: shape(e) })),
)
