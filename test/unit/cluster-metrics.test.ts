/**
 * The supervisor's sum of its workers' figures, with workers standing in for cluster workers that
 * answer from real prom-client registries: counters summed, gauges as declared, a dead worker's
 * counters kept so that no counter goes back, and a scrape that cannot hear from every worker
 * refused rather than answered in part.
 */
import type { Worker } from 'node:cluster'
import { Counter, Gauge, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { ClusterMetrics } from '../../src/workers/cluster-metrics.ts'
import { parseMetrics, sampleValue } from '../helpers/prometheus.ts'

/** A worker with its own registry: a request counter and a shared gauge (every worker reads the same queue). */
function fakeWorker(pid: number, answering = true) {
  let answers = answering
  let connected = true
  let collects = 0
  const registry = new Registry()
  const requests = new Counter({
    name: 'requests_total',
    help: 'requests',
    labelNames: ['code'],
    registers: [registry],
  })
  const pending = new Gauge({ name: 'pending', help: 'shared', registers: [registry], aggregator: 'max' })
  const memory = new Gauge({ name: 'memory_bytes', help: 'own', registers: [registry] })
  const results: { id: number; text: string | null; error: string | null }[] = []
  let cluster: ClusterMetrics | undefined
  const worker = {
    process: { pid },
    isConnected: () => connected,
    send(message: { type: string; id: number; text?: string | null; error?: string | null }) {
      if (message.type === 'corridor:metrics-result')
        results.push({ id: message.id, text: message.text ?? null, error: message.error ?? null })
      else if (message.type === 'corridor:metrics-collect') {
        collects++
        if (answers)
          void registry
            .getMetricsAsJSON()
            // As the cluster channel carries it: a copy (the registry's objects go on counting).
            .then((metrics) =>
              cluster?.onMessage(worker as unknown as Worker, {
                type: 'corridor:metrics-part',
                id: message.id,
                metrics: JSON.parse(JSON.stringify(metrics)) as unknown[],
              }),
            )
      }
      return true
    },
  }
  return {
    worker: worker as unknown as Worker,
    requests,
    pending,
    memory,
    results,
    attach: (c: ClusterMetrics) => (cluster = c),
    silence: () => (answers = false),
    disconnect: () => (connected = false),
    collects: () => collects,
    /** A scrape that reached this worker, as the supervisor answers it. */
    async scrape(id: number): Promise<{ text: string | null; error: string | null }> {
      expect(cluster?.onMessage(worker as unknown as Worker, { type: 'corridor:metrics-scrape', id })).toBe(true)
      for (let i = 0; i < 200 && !results.some((r) => r.id === id); i++) await new Promise((r) => setTimeout(r, 5))
      const result = results.find((r) => r.id === id)
      if (result === undefined) throw new Error('no answer')
      return result
    },
  }
}

describe('ClusterMetrics', () => {
  it('sums counters, takes a shared gauge once, and keeps a dead worker counted', async () => {
    const a = fakeWorker(101)
    const b = fakeWorker(102)
    const workers = new Set([a.worker, b.worker])
    const cluster = new ClusterMetrics(() => workers)
    a.attach(cluster)
    b.attach(cluster)
    a.requests.inc({ code: '200' }, 3)
    b.requests.inc({ code: '200' }, 4)
    b.requests.inc({ code: '403' }, 1)
    a.pending.set(2)
    b.pending.set(2)
    a.memory.set(10)
    b.memory.set(20)

    const first = parseMetrics((await a.scrape(1)).text as string).samples
    expect(sampleValue(first, 'requests_total', { code: '200' })).toBe(7)
    expect(sampleValue(first, 'requests_total', { code: '403' })).toBe(1)
    expect(sampleValue(first, 'pending')).toBe(2)
    expect(sampleValue(first, 'memory_bytes')).toBe(30)

    // b dies; a goes on counting. b's counters stay at what it last reported; its gauges go.
    workers.delete(b.worker)
    cluster.retire(b.worker)
    a.requests.inc({ code: '200' }, 5)
    const second = parseMetrics((await a.scrape(2)).text as string).samples
    expect(sampleValue(second, 'requests_total', { code: '200' })).toBe(12)
    expect(sampleValue(second, 'requests_total', { code: '403' })).toBe(1)
    expect(sampleValue(second, 'memory_bytes')).toBe(10)

    // Its replacement starts at zero and adds to the sum; the retired figures, summed in the background, stay right.
    const c = fakeWorker(103)
    c.attach(cluster)
    workers.add(c.worker)
    c.requests.inc({ code: '200' }, 2)
    await new Promise((r) => setTimeout(r, 20))
    const third = parseMetrics((await c.scrape(3)).text as string).samples
    expect(sampleValue(third, 'requests_total', { code: '200' })).toBe(14)
    expect(sampleValue(third, 'requests_total', { code: '403' })).toBe(1)
  })

  it('refuses a scrape whole, naming the worker, when one does not send its figures in time', async () => {
    const a = fakeWorker(201)
    const silent = fakeWorker(202, false)
    const cluster = new ClusterMetrics(() => [a.worker, silent.worker], 50)
    a.attach(cluster)
    silent.attach(cluster)
    a.requests.inc({ code: '200' })
    const result = await a.scrape(1)
    expect(result.text).toBeNull()
    expect(result.error).toContain('202')
  })

  it('stops waiting for a worker that exits during a scrape, counting once what it reported last', async () => {
    const a = fakeWorker(301)
    const b = fakeWorker(302)
    const workers = new Set([a.worker, b.worker])
    const cluster = new ClusterMetrics(() => workers, 10_000)
    a.attach(cluster)
    b.attach(cluster)
    a.requests.inc({ code: '200' }, 1)
    b.requests.inc({ code: '200' }, 6)
    expect(sampleValue(parseMetrics((await a.scrape(1)).text as string).samples, 'requests_total')).toBe(7)
    // b hangs, a scrape waits for it, then b exits.
    b.silence()
    b.requests.inc({ code: '200' }, 100)
    const pending = a.scrape(2)
    await new Promise((r) => setTimeout(r, 20))
    workers.delete(b.worker)
    cluster.retire(b.worker)
    const result = await pending
    expect(result.error).toBeNull()
    expect(sampleValue(parseMetrics(result.text as string).samples, 'requests_total')).toBe(7)
  })

  it('counts a worker that can no longer be reached (exiting, not yet gone) as it reported last', async () => {
    const a = fakeWorker(401)
    const b = fakeWorker(402)
    const cluster = new ClusterMetrics(() => [a.worker, b.worker], 10_000)
    a.attach(cluster)
    b.attach(cluster)
    a.requests.inc({ code: '200' }, 1)
    b.requests.inc({ code: '200' }, 6)
    b.memory.set(20)
    expect(sampleValue(parseMetrics((await a.scrape(1)).text as string).samples, 'requests_total')).toBe(7)
    b.disconnect()
    a.requests.inc({ code: '200' }, 2)
    const samples = parseMetrics((await a.scrape(2)).text as string).samples
    expect(sampleValue(samples, 'requests_total')).toBe(9)
    expect(sampleValue(samples, 'memory_bytes')).toBe(0)
  })

  it('answers scrapes that arrive together from one collection: the workers are asked once', async () => {
    const a = fakeWorker(501)
    const b = fakeWorker(502)
    const cluster = new ClusterMetrics(() => [a.worker, b.worker])
    a.attach(cluster)
    b.attach(cluster)
    b.requests.inc({ code: '200' }, 4)
    const answers = await Promise.all([a.scrape(1), b.scrape(1), a.scrape(2)])
    for (const answer of answers)
      expect(sampleValue(parseMetrics(answer.text as string).samples, 'requests_total')).toBe(4)
    expect([a.collects(), b.collects()]).toEqual([1, 1])
    // The next scrape collects afresh.
    await a.scrape(3)
    expect([a.collects(), b.collects()]).toEqual([2, 2])
  })
})
