/**
 * What a worker and its supervisor (`workers: N`) tell each other over the cluster channel.
 *
 * A worker says when its listeners are open.
 *
 * One /metrics scrape shows the figures of every worker. The workers share the admin port, so a
 * scrape reaches whichever one the kernel picks: its own counters alone would jump between
 * workers from one scrape to the next. The worker that got the scrape asks the supervisor, the
 * supervisor collects every worker's figures and sends back their sum
 * (telemetry/supervised-metrics.ts on the workers' side, workers/cluster-metrics.ts on the
 * supervisor's).
 */

/** Worker → supervisor, once its listeners are open (serve.ts). */
export interface WorkerReady {
  readonly type: 'corridor:ready'
  readonly agentUrl: string
  readonly adminUrl: string
}

/** How long the supervisor waits for every worker's figures; the worker that asked waits twice as long for its answer. */
export const COLLECT_TIMEOUT_MS = 2_000

/** Worker → supervisor: a scraper asked this worker; `id` is the worker's own. */
export interface MetricsScrape {
  readonly type: 'corridor:metrics-scrape'
  readonly id: number
}

/** Supervisor → every worker: send your figures; `id` is the supervisor's. */
export interface MetricsCollect {
  readonly type: 'corridor:metrics-collect'
  readonly id: number
}

/** Worker → supervisor: its figures, as prom-client's `Registry.getMetricsAsJSON()` gives them. */
export interface MetricsPart {
  readonly type: 'corridor:metrics-part'
  readonly id: number
  readonly metrics: readonly unknown[]
}

/** Supervisor → the worker that asked: the exposition text, or why there is none. */
export interface MetricsResult {
  readonly type: 'corridor:metrics-result'
  readonly id: number
  readonly text: string | null
  readonly error: string | null
}

const isOfType = (message: unknown, type: string): boolean =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type

const isMessage = (message: unknown, type: string): boolean =>
  isOfType(message, type) && typeof (message as { id?: unknown }).id === 'number'

export const isWorkerReady = (m: unknown): m is WorkerReady => isOfType(m, 'corridor:ready')

export const isMetricsScrape = (m: unknown): m is MetricsScrape => isMessage(m, 'corridor:metrics-scrape')
export const isMetricsCollect = (m: unknown): m is MetricsCollect => isMessage(m, 'corridor:metrics-collect')
export const isMetricsPart = (m: unknown): m is MetricsPart =>
  isMessage(m, 'corridor:metrics-part') && Array.isArray((m as { metrics?: unknown }).metrics)
export const isMetricsResult = (m: unknown): m is MetricsResult => isMessage(m, 'corridor:metrics-result')
