'use strict'
// The second process of W1 with two processes (workloads.js, w1x2), forked
// by the measuring worker:
//   node --expose-gc benchmark/peer.js <system> '<json { concurrency, peer, expected, workMs }>'
// It opens the same queue (`peer`: the schema the first process made), then
// on the parent's messages: 'start' processes with the same handler,
// relaying its completions ({type:'completed', k}, coalesced per turn) and
// its first handler start (wall-clock ms); 'flush' flushes; 'stats' answers
// its figures; 'close' closes and exits.

const { performance } = require('node:perf_hooks')
const { getSystem } = require('./systems')

const [systemName, json] = process.argv.slice(2)
const opts = JSON.parse(json)
const send = (m) => process.send(m)

async function main() {
  const adapter = await getSystem(systemName).create({ concurrency: opts.concurrency, peer: opts.peer })
  let started = 0
  let firstStart = null
  let pending = 0
  let scheduled = false
  let cpu0 = null
  let t0 = 0
  const relay = () => {
    scheduled = false
    if (pending > 0) {
      send({ type: 'completed', k: pending })
      pending = 0
    }
  }
  process.on('message', async (m) => {
    try {
      if (m.type === 'start') {
        cpu0 = process.cpuUsage()
        t0 = performance.now()
        await adapter.startProcessing(
          async (data) => {
            if (firstStart === null) {
              firstStart = performance.timeOrigin + performance.now()
              send({ type: 'firstStart', at: firstStart })
            }
            started++
            if (opts.workMs > 0) await new Promise((resolve) => setTimeout(resolve, opts.workMs))
            return data.x + 1
          },
          {
            expected: opts.expected,
            countAdded: opts.expected,
            onCompleted: (k = 1) => {
              pending += k
              if (!scheduled) {
                scheduled = true
                setImmediate(relay)
              }
            },
          },
        )
        send({ type: 'started-processing' })
      } else if (m.type === 'flush') {
        if (adapter.flush) await adapter.flush()
        relay()
        send({ type: 'flushed' })
      } else if (m.type === 'stats') {
        const u = process.cpuUsage(cpu0 || undefined)
        send({ type: 'stats', started, processCores: cpu0 ? (u.user + u.system) / 1000 / (performance.now() - t0) : null })
      } else if (m.type === 'close') {
        await adapter.close()
        process.disconnect()
      }
    } catch (e) {
      send({ type: 'error', message: String((e && e.stack) || e) })
    }
  })
  send({ type: 'ready' })
}

main().catch((e) => {
  try {
    send({ type: 'error', message: String((e && e.stack) || e) })
  } finally {
    process.exitCode = 1
    process.disconnect()
  }
})
