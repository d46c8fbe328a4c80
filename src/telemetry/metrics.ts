/**
 * Prometheus metrics for the admin listener's /metrics (prom-client), fed from the one place that
 * sees every request end: the audit record. Labels are bounded by configuration, never by what
 * agents send: connector ids, effects, limiting factors, error codes, outcomes and limit ids come
 * from the policy and the code; agents, users and paths are never labels, so ten thousand agents
 * and paths add no series. Names follow the OpenTelemetry HTTP conventions where one exists
 * (http.server.request.duration → http_server_request_duration_seconds).
 */
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { AuditRecord } from '../audit/record.ts'
import type { LimitReport } from '../policy/limits.ts'
import { clientErrorType, conventionalMethod, serverErrorType, serverOf } from '../shared/http-conventions.ts'
import { ReadAtScrape, SeriesCounter, SeriesHistogram } from './series.ts'

/** What the metrics read at scrape time from the rest of Corridor (no I/O on the request path). */
export interface MetricSources {
  /** Stops in force, by mode. */
  stops(): { readonly mode: string }[]
  /** Whether the audit sink takes writes. */
  auditHealthy(): boolean
  /** Audit entries that could not be written since start. */
  auditWriteFailures(): number
  /** Requests waiting for approvers (null: the queue does not answer now). */
  approvalsPending(): Promise<number | null>
  /** Spans dropped because the trace collector could not keep up (null: traces off). */
  tracesDropped(): number | null
  /** Bytes of the local audit trails not yet shipped, by target (postgres, otlp); empty when shipping is off. */
  shippingLagBytes(): ReadonlyMap<string, number>
}

/** Where GET /metrics gets its text: this process's figures, or every worker's (supervised-metrics.ts). */
export interface MetricsExposition {
  text(): Promise<{ contentType: string; body: string }>
}

/** What the per-request series need to know of the process and the connectors. */
export interface MetricsContext {
  /** The agent listener's scheme (`url_scheme` on request durations). */
  readonly scheme: 'http' | 'https'
  /** A connector's upstream origin in the policy in force (null: none by that id now). */
  upstreamOrigin(connector: string): string | null
  /** A connector's credential source (`vault_dynamic`, `oauth2`…) in the policy in force (null: none by that id now). */
  credentialSource(connector: string): string | null
}

/** Seconds: from sub-millisecond answers to slow upstreams and held calls. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export class Metrics implements MetricsExposition {
  readonly registry = new Registry()
  readonly #requestDuration: SeriesHistogram
  readonly #upstreamDuration: SeriesHistogram
  readonly #decisions: SeriesCounter
  readonly #refusals: SeriesCounter
  readonly #limits: SeriesCounter
  readonly #credentialFailures: SeriesCounter
  readonly #credentialIssue: SeriesHistogram
  readonly #timeToDecide: SeriesHistogram
  /** Per limit: the least share remaining that any of its keys reported, until that key's window resets. */
  readonly #leastRemaining = new Map<string, { kind: string; ratio: number; until: number }>()

  readonly #context: MetricsContext

  constructor(sources: MetricSources, context: MetricsContext) {
    this.#context = context
    const registers = [this.registry]
    // Unprefixed, as every Prometheus client library names them (process_cpu_seconds_total,
    // process_start_time_seconds, nodejs_eventloop_lag_seconds…): the names that ready-made
    // dashboards and alert rules for a process's CPU, memory, file descriptors and restarts use.
    collectDefaultMetrics({ register: this.registry })
    this.#requestDuration = new SeriesHistogram(
      'http_server_request_duration_seconds',
      'Duration of requests on the agent listener, from the first byte to the response end',
      [
        'url_scheme',
        'http_request_method',
        'http_response_status_code',
        'error_type',
        'corridor_connector',
        'corridor_outcome',
      ],
      DURATION_BUCKETS,
      this.registry,
    )
    this.#upstreamDuration = new SeriesHistogram(
      'http_client_request_duration_seconds',
      'Duration of forwarded requests at the upstream, until the response ended',
      [
        'server_address',
        'server_port',
        'http_request_method',
        'http_response_status_code',
        'error_type',
        'corridor_connector',
      ],
      DURATION_BUCKETS,
      this.registry,
    )
    this.#decisions = new SeriesCounter(
      'corridor_decisions_total',
      'Policy decisions, by connector, effect and the factor that limited a denial',
      ['connector', 'effect', 'limiting_factor'],
      this.registry,
    )
    this.#refusals = new SeriesCounter(
      'corridor_refusals_total',
      'Requests answered with a Corridor error, by stable error code',
      ['code'],
      this.registry,
    )
    this.#limits = new SeriesCounter(
      'corridor_limit_checks_total',
      'Requests counted by a policy limit, by limit and whether it was exceeded (shadow: counted, not enforced)',
      ['limit', 'kind', 'result'],
      this.registry,
    )
    this.#credentialFailures = new SeriesCounter(
      'corridor_credential_failures_total',
      'Credentials that could not be issued, by connector, source and audit-safe cause (vault_sealed, vault_timeout…)',
      ['connector', 'source', 'cause'],
      this.registry,
    )
    this.#credentialIssue = new SeriesHistogram(
      'corridor_credential_issue_duration_seconds',
      'Time to hand a request its credential (a cache hit, or a Vault or OAuth2 call), by connector and source',
      ['connector', 'source'],
      [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      this.registry,
    )
    this.#timeToDecide = new SeriesHistogram(
      'corridor_approval_time_to_decide_seconds',
      'How long held requests waited for a person to approve or reject them',
      ['outcome'],
      [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400],
      this.registry,
    )
    new ReadAtScrape(
      'corridor_approvals_pending',
      'Requests waiting for approvers (absent while the approval queue does not answer)',
      'gauge',
      () => sources.approvalsPending(),
      this.registry,
      // The queue is shared: every worker reads the same figure.
      'max',
    )
    new Gauge({
      name: 'corridor_stops_in_force',
      help: 'Operator stops in force, by mode',
      labelNames: ['mode'],
      registers,
      // Stops are shared: a worker that has not yet read the newest shows fewer.
      aggregator: 'max',
      collect() {
        this.reset()
        for (const mode of ['stop', 'read_only']) this.set({ mode }, 0)
        for (const stop of sources.stops()) this.inc({ mode: stop.mode })
      },
    })
    new ReadAtScrape(
      'corridor_audit_sink_healthy',
      '1 while the audit sink takes writes; 0 while Corridor refuses to act (audit_unavailable)',
      'gauge',
      () => (sources.auditHealthy() ? 1 : 0),
      this.registry,
      // Unhealthy when any worker is.
      'min',
    )
    new ReadAtScrape(
      'corridor_audit_write_failures_total',
      'Audit entries that could not be written (each went to the operational log instead; Corridor refuses requests until a write succeeds again)',
      'counter',
      () => sources.auditWriteFailures(),
      this.registry,
    )
    new ReadAtScrape(
      'corridor_trace_spans_dropped_total',
      'Spans dropped because the trace collector could not keep up (absent when traces are off)',
      'counter',
      () => sources.tracesDropped(),
      this.registry,
    )
    const leastRemaining = this.#leastRemaining
    new Gauge({
      name: 'corridor_limit_remaining_ratio',
      help: "Per policy limit, the least share left (0 to 1) of any agent, user or key it counts, in that key's current window (absent until the limit counts a request)",
      labelNames: ['limit', 'kind'],
      registers,
      aggregator: 'min',
      collect() {
        this.reset()
        for (const [limit, least] of leastRemaining) this.set({ limit, kind: least.kind }, least.ratio)
      },
    })
    new Gauge({
      name: 'corridor_audit_shipping_lag_bytes',
      help: 'Bytes of the local audit trail not yet taken by a shipping target (postgres, otlp); absent when shipping is off',
      labelNames: ['target'],
      registers,
      // Per worker, each its own trail: the one furthest behind stands for all.
      aggregator: 'max',
      collect() {
        this.reset()
        for (const [target, lag] of sources.shippingLagBytes()) this.set({ target }, lag)
      },
    })
  }

  /** One finished request, read from its audit record. */
  observe(record: AuditRecord): void {
    const connector = record.connector ?? 'none'
    const method = conventionalMethod(record.method)
    // error_type empty (absent to Prometheus) unless the request failed as the HTTP conventions say.
    this.#requestDuration.observe(
      [
        this.#context.scheme,
        method,
        record.status,
        serverErrorType(record.status, record.error_code) ?? '',
        connector,
        record.outcome,
      ],
      record.duration_ms / 1000,
    )
    if (record.upstream_ms !== null && record.upstream_status !== null) {
      // Empty (absent) when the policy in force has no such connector now (reloaded meanwhile).
      const origin = this.#context.upstreamOrigin(connector)
      const server = origin === null ? null : serverOf(origin)
      this.#upstreamDuration.observe(
        [
          server?.address ?? '',
          server === null ? '' : String(server.port),
          method,
          record.upstream_status,
          clientErrorType(record.upstream_status, null) ?? '',
          connector,
        ],
        record.upstream_ms / 1000,
      )
    }
    if (record.decision !== null) this.#decisions.inc([connector, record.decision, record.limiting_factor ?? 'none'])
    if (record.error_code !== null) {
      this.#refusals.inc([record.error_code])
      if (record.error_code === 'credential_unavailable')
        this.#credentialFailures.inc([
          connector,
          // Empty (absent) when the policy in force has no such connector now (reloaded meanwhile).
          this.#context.credentialSource(connector) ?? '',
          record.error_detail ?? 'unknown',
        ])
    }
    for (const l of record.limits) {
      this.#limits.inc([l.limit, l.kind, !l.exceeded ? 'admitted' : l.shadow ? 'shadow_exceeded' : 'exceeded'])
      this.#remaining(l)
    }
  }

  #remaining(l: LimitReport): void {
    const ratio = l.max > 0 ? Math.max(0, Math.min(1, l.remaining / l.max)) : 0
    const now = Date.now()
    const least = this.#leastRemaining.get(l.limit)
    if (least === undefined || least.until <= now || ratio <= least.ratio)
      this.#leastRemaining.set(l.limit, { kind: l.kind, ratio, until: now + l.reset_ms })
  }

  /** A person approved or rejected a held request after it waited this long. */
  decided(outcome: 'approved' | 'rejected', waitedMs: number): void {
    this.#timeToDecide.observe([outcome], waitedMs / 1000)
  }

  /** A credential handed to a request (stage 7), however long the source took. */
  credentialIssued(connector: string, source: string, seconds: number): void {
    this.#credentialIssue.observe([connector, source], seconds)
  }

  /** The text exposition format, for GET /metrics. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
