'use strict'
// BullMQ on the local Redis. One fresh queue per run, obliterated at the end.

const { pkgVersion } = require('../lib/pkg')
const { SERVERS } = require('./index')

function parseInfo(text) {
  const out = {}
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && line[0] !== '#') out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

module.exports = {
  name: 'bullmq',
  server: SERVERS.bullmq,
  async create({ concurrency }) {
    const { Queue, Worker } = require('bullmq')
    const { default: IORedis } = require('ioredis')
    const connection = { host: SERVERS.bullmq.host, port: SERVERS.bullmq.port }
    const name = `jobwerk-bench-${process.pid}-${Date.now()}`
    // A separate plain client for INFO / CONFIG (not BullMQ's own connections).
    const client = new IORedis({ ...connection, lazyConnect: true, maxRetriesPerRequest: 1 })
    let queue = null
    let server, appendonly, save
    try {
      await client.connect()
      server = parseInfo(await client.info('server'))
      ;[, appendonly] = await client.config('GET', 'appendonly')
      ;[, save] = await client.config('GET', 'save')
      queue = new Queue(name, { connection })
      queue.on('error', (e) => process.stderr.write(`bullmq queue error: ${e && e.message}\n`))
      await queue.waitUntilReady()
    } catch (e) {
      if (queue) await queue.close().catch(() => {})
      client.disconnect()
      throw e
    }
    const durable = appendonly === 'yes'
    let worker = null
    return {
      info: {
        version: pkgVersion('bullmq'),
        durability: `Redis ${server.redis_version}: appendonly=${appendonly}, save="${save}" => ${
          durable ? 'AOF persistence on (durability depends on appendfsync)' : 'not durable'
        }`,
        server: `Redis ${server.redis_version}`,
        config: {
          bulk: 'queue.addBulk() per chunk',
          worker: `new Worker(name, async (job) => handler(job.data), { concurrency: ${concurrency} })`,
          delay: '{ delay } job option',
          completions: "worker 'completed' event (after moveToCompleted in Redis)",
          jobOptions: 'defaults (completed jobs kept until the queue is obliterated)',
        },
      },
      async addBulk(datas) {
        const jobs = new Array(datas.length)
        for (let i = 0; i < datas.length; i++) jobs[i] = { name: 'inc', data: datas[i] }
        await queue.addBulk(jobs)
      },
      add(data, delayMs) {
        return queue.add('inc', data, delayMs ? { delay: delayMs } : undefined)
      },
      async startProcessing(handler, { onCompleted }) {
        worker = new Worker(name, async (job) => handler(job.data), { connection, concurrency })
        worker.on('completed', () => onCompleted(1))
        worker.on('failed', (job, e) => process.stderr.write(`bullmq job failed: ${e && e.message}\n`))
        worker.on('error', (e) => process.stderr.write(`bullmq worker error: ${e && e.message}\n`))
        await worker.waitUntilReady()
      },
      async pendingCount() {
        const c = await queue.getJobCounts('wait', 'delayed', 'prioritized', 'paused')
        return Object.values(c).reduce((a, b) => a + b, 0)
      },
      async serverBytes() {
        return Number(parseInfo(await client.info('memory')).used_memory)
      },
      async close() {
        if (worker) await worker.close()
        await queue.obliterate({ force: true })
        await queue.close()
        await client.quit()
      },
    }
  },
}
