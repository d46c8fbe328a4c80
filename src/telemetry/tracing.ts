/**
 * OpenTelemetry traces, off unless `telemetry.traces` names a collector. A request that arrives
 * with a W3C `traceparent` continues that trace; one without starts a new trace. Corridor records
 * three spans per request: the server span (the whole request, with the audit request id, agent,
 * connector, action, decision and outcome), the credential span (issuing the connector's
 * credential: the Vault or OAuth2 call when the cache has none), and the client span (the upstream
 * call), whose id the upstream receives in `traceparent`, so its own spans join the same trace.
 * Spans are exported in batches as OTLP/HTTP JSON; when the collector is slow or away, spans are
 * dropped (counted), never queued without bound, and never slow a request.
 */
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import type { AuditRecord } from '../audit/record.ts'
import type { Logger } from '../shared/logger.ts'

export interface TracingOptions {
  /** The collector's OTLP/HTTP base URL. */
  readonly endpoint: string
  readonly timeoutMs: number
  readonly log: Logger
}

/** One request's place in its trace. */
export interface RequestTrace {
  readonly traceId: string
  /** The agent's span, when it sent a traceparent. */
  readonly parentSpanId: string | null
  readonly serverSpanId: string
  readonly clientSpanId: string
  readonly flags: string
  credential: { start: number; end: number; source: string } | null
  upstreamStart: number | null
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const MAX_QUEUE = 4_096
const BATCH = 512
const FLUSH_MS = 1_000

/** A valid W3C traceparent (version 00, ids not all zeros), or null. */
export function parseTraceparent(value: unknown): { traceId: string; spanId: string; flags: string } | null {
  const m = typeof value === 'string' ? TRACEPARENT.exec(value.trim()) : null
  if (m === null) return null
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string]
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null
  return { traceId, spanId, flags }
}

type Span = Record<string, unknown>

const attr = (key: string, value: string | number | null | undefined) =>
  value === null || value === undefined
    ? null
    : { key, value: typeof value === 'number' ? { intValue: String(value) } : { stringValue: value } }
const nanos = (ms: number): string => String(BigInt(Math.round(ms * 1_000)) * 1_000n)

export class Tracer {
  readonly #o: TracingOptions
  readonly #url: string
  #queue: Span[] = []
  #dropped = 0
  #timer: NodeJS.Timeout
  #sending: Promise<void> = Promise.resolve()

  constructor(options: TracingOptions) {
    this.#o = options
    this.#url = new URL('/v1/traces', options.endpoint).toString()
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS)
    this.#timer.unref()
  }

  /** Spans dropped because the collector could not keep up. */
  get dropped(): number {
    return this.#dropped
  }

  start(traceparent: unknown): RequestTrace {
    const parent = parseTraceparent(traceparent)
    return {
      traceId: parent?.traceId ?? randomBytes(16).toString('hex'),
      parentSpanId: parent?.spanId ?? null,
      serverSpanId: randomBytes(8).toString('hex'),
      clientSpanId: randomBytes(8).toString('hex'),
      flags: parent?.flags ?? '01',
      credential: null,
      upstreamStart: null,
    }
  }

  /** The traceparent the upstream receives: same trace, Corridor's client span as parent. */
  outgoing(t: RequestTrace): string {
    return `00-${t.traceId}-${t.clientSpanId}-${t.flags}`
  }

  /** The request has ended: its spans, from what the audit record says. */
  finish(t: RequestTrace, record: AuditRecord): void {
    const start = Date.parse(record.time)
    const end = start + record.duration_ms
    const common = [
      attr('corridor.request_id', record.request_id),
      attr('corridor.agent', record.agent),
      attr('corridor.connector', record.connector),
      attr('corridor.action', record.action),
    ]
    const failed = record.error_code !== null || (record.status >= 500 && record.status !== 0)
    this.#enqueue({
      traceId: t.traceId,
      spanId: t.serverSpanId,
      ...(t.parentSpanId === null ? {} : { parentSpanId: t.parentSpanId }),
      name: `${record.method} ${record.connector ?? 'corridor'}${record.action === null ? '' : ` ${record.action}`}`,
      kind: 2, // SERVER
      startTimeUnixNano: nanos(start),
      endTimeUnixNano: nanos(end),
      attributes: [
        attr('http.request.method', record.method),
        attr('url.path', record.path),
        attr('http.response.status_code', record.status),
        attr('corridor.decision', record.decision),
        attr('corridor.rule', record.rule),
        attr('corridor.outcome', record.outcome),
        attr('corridor.error_code', record.error_code),
        ...common,
      ].filter((a) => a !== null),
      status: failed ? { code: 2, message: record.error_code ?? String(record.status) } : { code: 1 },
    })
    if (t.credential !== null)
      this.#enqueue({
        traceId: t.traceId,
        spanId: randomBytes(8).toString('hex'),
        parentSpanId: t.serverSpanId,
        name: `credential ${t.credential.source}`,
        kind: 1, // INTERNAL
        startTimeUnixNano: nanos(t.credential.start),
        endTimeUnixNano: nanos(t.credential.end),
        attributes: [attr('corridor.credential.source', t.credential.source), ...common].filter((a) => a !== null),
      })
    if (t.upstreamStart !== null)
      this.#enqueue({
        traceId: t.traceId,
        spanId: t.clientSpanId,
        parentSpanId: t.serverSpanId,
        name: `${record.method} upstream ${record.connector ?? ''}`,
        kind: 3, // CLIENT
        startTimeUnixNano: nanos(t.upstreamStart),
        endTimeUnixNano: nanos(t.upstreamStart + (record.upstream_ms ?? 0)),
        attributes: [
          attr('http.request.method', record.method),
          attr('http.response.status_code', record.upstream_status),
          ...common,
        ].filter((a) => a !== null),
      })
  }

  /** Sends what is queued (batches of 512); failures drop the batch, counted. */
  flush(): Promise<void> {
    this.#sending = this.#sending.then(async () => {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, BATCH)
        try {
          const res = await request(this.#url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              resourceSpans: [
                {
                  resource: { attributes: [attr('service.name', 'corridor')] },
                  scopeSpans: [{ scope: { name: 'corridor' }, spans: batch }],
                },
              ],
            }),
            headersTimeout: this.#o.timeoutMs,
            bodyTimeout: this.#o.timeoutMs,
          })
          await res.body.dump()
          if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the collector answered ${res.statusCode}`)
        } catch (err) {
          if (this.#dropped === 0)
            this.#o.log.warn({ err }, 'trace export failed; spans are dropped until the collector answers')
          this.#dropped += batch.length
          return
        }
      }
    })
    return this.#sending
  }

  async close(): Promise<void> {
    clearInterval(this.#timer)
    await this.flush()
  }

  #enqueue(span: Span): void {
    if (this.#queue.length >= MAX_QUEUE) {
      this.#dropped++
      return
    }
    this.#queue.push(span)
  }
}
