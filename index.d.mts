// ESM types: the same declarations as index.d.ts (index.mjs re-exports index.js).
import * as jobwerk from './index.js'

export * from './index.js'
export default jobwerk
