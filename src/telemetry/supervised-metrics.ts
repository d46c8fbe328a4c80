/**
 * /metrics on a worker when several serve (`workers: N`): the scrape is answered with every
 * worker's figures, gathered by the supervisor (shared/worker-messages.ts), and this worker sends
 * its own when the supervisor collects them. When they cannot all be gathered the scrape fails
 * (503 metrics_unavailable), so that a scrape never shows one worker's counters as everyone's.
 */
import type { Registry } from 'prom-client'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import {
  COLLECT_TIMEOUT_MS,
  isMetricsCollect,
  isMetricsResult,
  type MetricsPart,
  type MetricsResult,
  type MetricsScrape,
} from '../shared/worker-messages.ts'
import type { MetricsExposition } from './metrics.ts'

/** Longer than the supervisor waits for the workers' figures, so that its answer (or its error) comes first. */
const SCRAPE_TIMEOUT_MS = 2 * COLLECT_TIMEOUT_MS

export class SupervisedMetrics implements MetricsExposition {
  readonly #registry: Registry
  readonly #send: (message: MetricsScrape | MetricsPart) => void
  readonly #log: Logger
  #nextId = 0
  readonly #waiting = new Map<number, (result: MetricsResult | null) => void>()
  readonly #onMessage = (message: unknown): void => {
    if (isMetricsCollect(message)) void this.#answer(message.id)
    else if (isMetricsResult(message)) this.#waiting.get(message.id)?.(message)
  }

  constructor(registry: Registry, log: Logger) {
    const send = process.send?.bind(process)
    if (send === undefined) throw new Error('SupervisedMetrics runs only in a worker (no channel to the supervisor)')
    this.#registry = registry
    this.#send = (message) => void send(message)
    this.#log = log
    // For the worker's whole life, through its shutdown: the others' scrapes still need its figures.
    process.on('message', this.#onMessage)
  }

  async text(): Promise<{ contentType: string; body: string }> {
    const id = this.#nextId++
    const result = await new Promise<MetricsResult | null>((resolve) => {
      const timer = setTimeout(() => done(null), SCRAPE_TIMEOUT_MS)
      const done = (r: MetricsResult | null): void => {
        clearTimeout(timer)
        this.#waiting.delete(id)
        resolve(r)
      }
      this.#waiting.set(id, done)
      this.#send({ type: 'corridor:metrics-scrape', id })
    })
    if (result === null)
      throw new CorridorError('metrics_unavailable', `the supervisor did not answer within ${SCRAPE_TIMEOUT_MS} ms`)
    if (result.text === null)
      throw new CorridorError('metrics_unavailable', `not every worker's figures could be gathered: ${result.error}`)
    return { contentType: this.#registry.contentType, body: result.text }
  }

  /** This worker's own figures, for the supervisor's sum. Unanswered when they cannot be read: the scrape then fails. */
  async #answer(id: number): Promise<void> {
    try {
      this.#send({ type: 'corridor:metrics-part', id, metrics: await this.#registry.getMetricsAsJSON() })
    } catch (err) {
      this.#log.error({ err }, "this worker's metrics could not be read for a scrape")
    }
  }
}
