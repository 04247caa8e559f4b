// ESM entry: re-exports the CommonJS implementation (index.js), so `import` and
// `require` share one module instance (one registry of handlers and services).
// Loaded with `require` rather than `import ... from './index.js'`: on Node 18
// and 20 a CommonJS module that throws under a static import (no binary for
// this system) also ends the process, even when the `import()` is caught.
import { createRequire } from 'node:module'

const jobwerk = createRequire(import.meta.url)('./index.js')

export const { JobManagementService, UnrecoverableError, getJobManagementService, nextCronRuns, createDashboard } = jobwerk
export default jobwerk
