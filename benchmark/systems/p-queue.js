'use strict'
// p-queue: pure JS, in-process, nothing persisted (the ceiling of an in-process
// JS queue). ESM-only, hence the dynamic import().

const { pkgVersion } = require('../lib/pkg')

const noop = () => {}

module.exports = {
  name: 'p-queue',
  server: null,
  async create({ concurrency }) {
    const { default: PQueue } = await import('p-queue')
    const q = new PQueue({ concurrency, autoStart: false })
    let body = (data) => data.x + 1
    const timers = new Set()
    const task = (data) => () => body(data)
    return {
      info: {
        version: pkgVersion('p-queue'),
        durability: 'none (in-process memory)',
        config: {
          concurrency,
          autoStart: false,
          bulk: 'addAll()',
          delay: 'no delay option: emulated with setTimeout(() => queue.add(task), delay)',
          completions: "'completed' event",
        },
      },
      async addBulk(datas) {
        const tasks = new Array(datas.length)
        for (let i = 0; i < datas.length; i++) tasks[i] = task(datas[i])
        q.addAll(tasks).catch(noop)
      },
      add(data, delayMs) {
        if (!delayMs) {
          q.add(task(data)).catch(noop)
          return
        }
        const t = setTimeout(() => {
          timers.delete(t)
          q.add(task(data)).catch(noop)
        }, delayMs)
        timers.add(t)
      },
      async startProcessing(handler, { onCompleted }) {
        body = handler
        q.on('completed', () => onCompleted(1))
        q.on('error', (e) => process.stderr.write(`p-queue task failed: ${e && e.stack}\n`))
        q.start()
      },
      async pendingCount() {
        return q.size + timers.size
      },
      async serverBytes() {
        return null
      },
      async close() {
        for (const t of timers) clearTimeout(t)
        timers.clear()
        q.clear()
        q.pause()
      },
    }
  },
}
