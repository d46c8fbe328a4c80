/**
 * The supervisor's part of a /metrics scrape when several workers serve (shared/worker-messages.ts
 * says why it goes through here). For each scrape it asks every ready worker for its figures and
 * answers with one exposition: counters and histograms summed; gauges as each one declares
 * (`aggregator`: the same shared figure once, the worst health, the least share left).
 *
 * A counter must never seem to go back, or Prometheus reads a reset and counts everything again.
 * So the counters and histograms of a worker that is gone stay in the sum, at what it reported
 * last, and a scrape that cannot hear from every worker fails whole rather than show a smaller sum.
 * This is how Prometheus's own client libraries count across the processes of one server.
 */
import type { Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import {
  COLLECT_TIMEOUT_MS,
  isMetricsPart,
  isMetricsScrape,
  type MetricsCollect,
  type MetricsResult,
} from '../shared/worker-messages.ts'

/** A metric as prom-client's getMetricsAsJSON() gives it, after the trip over IPC. */
interface MetricJson {
  name: string
  type: string
  aggregator?: string
}

/**
 * Figures whose per-process aggregation would mislead across workers. prom-client omits the start
 * time; the latest start of any worker keeps restart alerts (`changes(process_start_time_seconds)`) working.
 */
const AGGREGATOR_OVERRIDES: Readonly<Record<string, string>> = { process_start_time_seconds: 'max' }

/** Monotonic: kept in the sum after their worker is gone. */
const isMonotonic = (m: MetricJson): boolean =>
  (m.type === 'counter' || m.type === 'histogram') && (m.aggregator ?? 'sum') === 'sum'

interface Collection {
  readonly waiting: Set<Worker>
  readonly parts: Map<Worker, MetricJson[]>
  readonly finish: (error: string | null) => void
}

export class ClusterMetrics {
  readonly #workers: () => Iterable<Worker>
  readonly #timeoutMs: number
  #nextId = 0
  readonly #collections = new Map<number, Collection>()
  /** Each worker's figures as it reported them last. */
  readonly #last = new Map<Worker, MetricJson[]>()
  /** The counters and histograms of workers that are gone, at what they reported last. */
  #retired: MetricJson[] = []
  /**
   * The collection under way: scrapes that arrive meanwhile share it. /metrics needs no
   * credential, so however many arrive at once the workers are asked once at a time.
   */
  #scraping: Promise<string> | null = null

  /** `workers`: the workers that serve now (ready, not yet exited). */
  constructor(workers: () => Iterable<Worker>, timeoutMs = COLLECT_TIMEOUT_MS) {
    this.#workers = workers
    this.#timeoutMs = timeoutMs
  }

  /** Handles a worker's message if it is part of a scrape; false for any other message. */
  onMessage(worker: Worker, message: unknown): boolean {
    if (isMetricsScrape(message)) {
      this.#scraping ??= this.#scrape().finally(() => (this.#scraping = null))
      void this.#scraping.then(
        (text) => send(worker, { type: 'corridor:metrics-result', id: message.id, text, error: null }),
        (err: unknown) =>
          send(worker, {
            type: 'corridor:metrics-result',
            id: message.id,
            text: null,
            error: err instanceof Error ? err.message : String(err),
          }),
      )
      return true
    }
    if (isMetricsPart(message)) {
      const part = message.metrics as MetricJson[]
      this.#last.set(worker, part)
      const collection = this.#collections.get(message.id)
      if (collection?.waiting.delete(worker) === true) {
        collection.parts.set(worker, part)
        if (collection.waiting.size === 0) collection.finish(null)
      }
      return true
    }
    return false
  }

  /** The worker has exited: its counters stay in the sum as it last reported them; no scrape waits for it. */
  retire(worker: Worker): void {
    const last = this.#last.get(worker)
    this.#last.delete(worker)
    if (last !== undefined) {
      // In the sum at once (the next scrape must not miss them), summed into one set in the background.
      this.#retired = [...this.#retired, ...last.filter(isMonotonic)]
      this.#compact().catch(() => {
        // Left as they are: still right, only larger.
      })
    }
    // A scrape under way counts it once, among the retired figures now, and waits for it no longer.
    for (const collection of this.#collections.values()) {
      collection.parts.delete(worker)
      if (collection.waiting.delete(worker) && collection.waiting.size === 0) collection.finish(null)
    }
  }

  async #scrape(): Promise<string> {
    const id = this.#nextId++
    const parts = new Map<Worker, MetricJson[]>()
    const waiting = new Set(this.#workers())
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const pids = [...waiting].map((w) => w.process.pid).join(', ')
        finish(`worker(s) ${pids} did not send their figures within ${this.#timeoutMs} ms`)
      }, this.#timeoutMs)
      const finish = (error: string | null): void => {
        clearTimeout(timer)
        this.#collections.delete(id)
        if (error === null) resolve()
        else reject(new Error(error))
      }
      this.#collections.set(id, { waiting, parts, finish })
      const collect: MetricsCollect = { type: 'corridor:metrics-collect', id }
      for (const worker of waiting)
        if (!send(worker, collect)) {
          // Exiting, not yet retired: counted as it reported last, as it will be once retired.
          waiting.delete(worker)
          const last = this.#last.get(worker)
          if (last !== undefined) parts.set(worker, last.filter(isMonotonic))
        }
      if (waiting.size === 0) finish(null)
    })
    // One list of metrics per source, as prom-client's aggregate() takes them.
    const sources = [...parts.values(), this.#retired].map((metrics) =>
      metrics.map((m) => {
        const override = AGGREGATOR_OVERRIDES[m.name]
        return override === undefined ? m : { ...m, aggregator: override }
      }),
    )
    return AggregatorRegistry.aggregate(sources).metrics()
  }

  /** Sums the retired figures into one set, so that they take no more room with every restart. */
  async #compact(): Promise<void> {
    const retired = this.#retired
    const summed = (await AggregatorRegistry.aggregate([retired]).getMetricsAsJSON()) as unknown as MetricJson[]
    // Another worker retired meanwhile: leave it; its own compaction includes these.
    if (this.#retired === retired) this.#retired = summed
  }
}

/** False when the worker cannot be reached (it is exiting). */
function send(worker: Worker, message: MetricsCollect | MetricsResult): boolean {
  if (!worker.isConnected()) return false
  try {
    worker.send(message)
    return true
  } catch {
    return false
  }
}
