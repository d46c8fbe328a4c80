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
import { randomFillSync } from 'node:crypto'
import { request } from 'undici'
import type { AuditRecord } from '../audit/record.ts'
import type { Logger } from '../shared/logger.ts'

export interface TracingOptions {
  /** The collector's OTLP/HTTP base URL. */
  readonly endpoint: string
  /** The share of new traces recorded (0 to 1); a trace the agent started keeps the agent's sampling decision. */
  readonly sample: number
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
  /** Whether this request's spans are recorded (the trace context is passed on either way). */
  readonly sampled: boolean
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

/** One span, already written as OTLP JSON (building objects for JSON.stringify cost more than the rest of tracing). */
type Span = string

/** OTLP attributes as JSON; keys are Corridor's own constants, values are escaped; nulls are left out. */
function attributes(pairs: readonly (readonly [string, string | number | null])[]): string {
  let out = ''
  for (const [key, value] of pairs) {
    if (value === null) continue
    if (out !== '') out += ','
    out +=
      typeof value === 'number'
        ? `{"key":"${key}","value":{"intValue":"${value}"}}`
        : `{"key":"${key}","value":{"stringValue":${JSON.stringify(value)}}}`
  }
  return out
}

function span(
  traceId: string,
  spanId: string,
  parentSpanId: string | null,
  name: string,
  kind: number,
  startMs: number,
  endMs: number,
  attrs: string,
  status: string | null,
): Span {
  return `{"traceId":"${traceId}","spanId":"${spanId}"${parentSpanId === null ? '' : `,"parentSpanId":"${parentSpanId}"`},"name":${JSON.stringify(name)},"kind":${kind},"startTimeUnixNano":"${nanos(startMs)}","endTimeUnixNano":"${nanos(endMs)}","attributes":[${attrs}]${status === null ? '' : `,"status":${status}`}}`
}
/** Epoch milliseconds (with a fraction) as OTLP's decimal nanoseconds, without BigInt. */
const nanos = (ms: number): string => {
  const whole = Math.floor(ms)
  return `${whole}${String(Math.round((ms - whole) * 1e6))
    .padStart(6, '0')
    .slice(0, 6)}`
}

/** Span and trace ids from a refilled pool of random bytes: one system call per 4 KiB, not two per request. */
const pool = Buffer.alloc(4_096)
let poolAt = pool.length
function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  poolAt += bytes
  return pool.toString('hex', poolAt - bytes, poolAt)
}

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
    const flags = parent?.flags ?? (Math.random() < this.#o.sample ? '01' : '00')
    return {
      traceId: parent?.traceId ?? randomHex(16),
      parentSpanId: parent?.spanId ?? null,
      serverSpanId: randomHex(8),
      clientSpanId: randomHex(8),
      flags,
      // The W3C sampled flag is the lowest bit of trace-flags.
      sampled: (Number.parseInt(flags, 16) & 1) === 1,
      credential: null,
      upstreamStart: null,
    }
  }

  /** The traceparent the upstream receives: same trace, Corridor's client span as parent. */
  outgoing(t: RequestTrace): string {
    return `00-${t.traceId}-${t.clientSpanId}-${t.flags}`
  }

  /** The request has ended: its spans, from what the audit record says (written as OTLP JSON at once). */
  finish(t: RequestTrace, record: AuditRecord): void {
    if (!t.sampled) return
    const start = Date.parse(record.time)
    const common = attributes([
      ['corridor.request_id', record.request_id],
      ['corridor.agent', record.agent],
      ['corridor.connector', record.connector],
      ['corridor.action', record.action],
    ])
    const failed = record.error_code !== null || (record.status >= 500 && record.status !== 0)
    this.#enqueue(
      span(
        t.traceId,
        t.serverSpanId,
        t.parentSpanId,
        `${record.method} ${record.connector ?? 'corridor'}${record.action === null ? '' : ` ${record.action}`}`,
        2, // SERVER
        start,
        start + record.duration_ms,
        `${attributes([
          ['http.request.method', record.method],
          ['url.path', record.path],
          ['http.response.status_code', record.status],
          ['corridor.decision', record.decision],
          ['corridor.rule', record.rule],
          ['corridor.outcome', record.outcome],
          ['corridor.error_code', record.error_code],
        ])},${common}`,
        failed ? `{"code":2,"message":${JSON.stringify(record.error_code ?? String(record.status))}}` : '{"code":1}',
      ),
    )
    if (t.credential !== null)
      this.#enqueue(
        span(
          t.traceId,
          randomHex(8),
          t.serverSpanId,
          `credential ${t.credential.source}`,
          1, // INTERNAL
          t.credential.start,
          t.credential.end,
          `${attributes([['corridor.credential.source', t.credential.source]])},${common}`,
          null,
        ),
      )
    if (t.upstreamStart !== null)
      this.#enqueue(
        span(
          t.traceId,
          t.clientSpanId,
          t.serverSpanId,
          `${record.method} upstream ${record.connector ?? ''}`,
          3, // CLIENT
          t.upstreamStart,
          t.upstreamStart + (record.upstream_ms ?? 0),
          `${attributes([
            ['http.request.method', record.method],
            ['http.response.status_code', record.upstream_status],
          ])},${common}`,
          null,
        ),
      )
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
            body: `{"resourceSpans":[{"resource":{"attributes":[${attributes([['service.name', 'corridor']])}]},"scopeSpans":[{"scope":{"name":"corridor"},"spans":[${batch.join(',')}]}]}]}`,
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
