/**
 * OpenTelemetry traces, off unless `telemetry.traces` names a collector. A request that arrives
 * with a W3C `traceparent` continues that trace; one without starts a new trace. Corridor records
 * per request: the server span (the whole request, with the audit request id, agent, connector,
 * action, decision and outcome), a credential span when issuing the connector's credential took
 * calls to Vault or an OAuth2 token endpoint (a client span for each under it; a cached credential
 * is only an attribute of the server span), and
 * the client span of the upstream call, whose id the upstream receives in `traceparent`, so its
 * own spans join the same trace. The release of a held request is a trace of its own (it runs
 * later, on whichever replica claims it) whose root span links to the hold's server span.
 * Spans are exported in batches as OTLP/HTTP JSON; when the collector is slow or away, spans are
 * dropped (counted), never queued without bound, and never slow a request.
 */
import { randomFillSync } from 'node:crypto'
import { Client } from 'undici'
import type { Logger } from '../shared/logger.ts'
import {
  parseTraceparent,
  type RequestTrace,
  type TraceFacts,
  type TraceLink,
  type Tracing,
} from '../shared/trace-context.ts'

export interface TracingOptions {
  /** The collector's OTLP/HTTP base URL. */
  readonly endpoint: string
  /** The share of new traces recorded (0 to 1); a trace the agent started keeps the agent's sampling decision. */
  readonly sample: number
  readonly timeoutMs: number
  readonly log: Logger
}

/** Finished requests waiting for export (each two to a few spans); beyond it their spans are dropped, counted. */
const MAX_QUEUE = 2_048
/** Requests per export. */
const BATCH = 256
const FLUSH_MS = 1_000

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
  link: TraceLink | null = null,
): Span {
  return `{"traceId":"${traceId}","spanId":"${spanId}"${parentSpanId === null ? '' : `,"parentSpanId":"${parentSpanId}"`},"name":${JSON.stringify(name)},"kind":${kind},"startTimeUnixNano":"${nanos(startMs)}","endTimeUnixNano":"${nanos(endMs)}","attributes":[${attrs}]${status === null ? '' : `,"status":${status}`}${link === null ? '' : `,"links":[{"traceId":"${link.traceId}","spanId":"${link.spanId}","attributes":[${attributes([['corridor.link', 'held request']])}]}]`}}`
}
/**
 * Epoch milliseconds (with a fraction) as OTLP's decimal nanoseconds. A double holds today's epoch
 * in nanoseconds to within 256 ns, finer than the clocks the times come from, and prints it
 * in full digits (below 1e21).
 */
const nanos = (ms: number): string => String(Math.round(ms * 1e6))

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

export class Tracer implements Tracing {
  readonly #o: TracingOptions
  /**
   * One kept-alive connection of its own to the collector: exports sent through undici's global
   * dispatcher cost the process about twice as much CPU in the benchmark.
   */
  readonly #collector: Client
  readonly #path: string
  /** Finished requests whose spans are written only when exported: a span dropped under load costs nothing. */
  #queue: { readonly t: RequestTrace; readonly facts: TraceFacts }[] = []
  #dropped = 0
  #timer: NodeJS.Timeout
  #sending: Promise<void> = Promise.resolve()

  constructor(options: TracingOptions) {
    this.#o = options
    const url = new URL('/v1/traces', options.endpoint)
    this.#collector = new Client(url.origin, {
      pipelining: 1,
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    })
    this.#path = url.pathname
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS)
    this.#timer.unref()
  }

  /** Spans dropped because the collector could not keep up. */
  get dropped(): number {
    return this.#dropped
  }

  start(traceparent: unknown): RequestTrace {
    const parent = parseTraceparent(traceparent)
    if (parent !== null) return this.#trace(randomHex(16), parent.traceId, parent.spanId, parent.flags, null)
    const ids = randomHex(32)
    return this.#trace(ids, ids.slice(32), null, Math.random() < this.#o.sample ? '01' : '00', null)
  }

  startRelease(hold: TraceLink | null): RequestTrace {
    // A hold that was recorded gets its release recorded too; one that was not follows the sampling ratio.
    const sampled = hold?.sampled ?? Math.random() < this.#o.sample
    const ids = randomHex(32)
    return this.#trace(ids, ids.slice(32), null, sampled ? '01' : '00', hold)
  }

  /** `spanIds`: 32 random hex digits, the server span's id and the upstream call's. */
  #trace(
    spanIds: string,
    traceId: string,
    parentSpanId: string | null,
    flags: string,
    link: TraceLink | null,
  ): RequestTrace {
    // The W3C sampled flag is the lowest bit of trace-flags.
    const sampled = (Number.parseInt(flags, 16) & 1) === 1
    return {
      traceId,
      parentSpanId,
      serverSpanId: spanIds.slice(0, 16),
      clientSpanId: spanIds.slice(16, 32),
      flags,
      sampled,
      link,
      credential: null,
      calls: sampled ? [] : null,
      upstreamStart: null,
    }
  }

  /** The request has ended: its spans are queued for export (kept as the request's facts until then). */
  finish(t: RequestTrace, facts: TraceFacts): void {
    if (!t.sampled) return
    if (this.#queue.length >= MAX_QUEUE) {
      const calls = t.calls?.length ?? 0
      this.#dropped += 1 + (calls === 0 ? 0 : 1 + calls) + (t.upstreamStart === null ? 0 : 1)
      return
    }
    // A full batch goes now rather than at the next tick of the timer.
    if (this.#queue.length === BATCH) void this.flush()
    this.#queue.push({ t, facts })
  }

  /** One request's spans, as OTLP JSON. */
  #spans(t: RequestTrace, record: TraceFacts): Span[] {
    const spans: Span[] = []
    const start = Date.parse(record.time)
    // A credential the cache had is an attribute of the server span; one that took calls to its
    // source is a span of its own, the calls under it.
    const credential = t.calls !== null && t.calls.length > 0 ? t.credential : null
    const failed = record.error_code !== null || (record.status >= 500 && record.status !== 0)
    spans.push(
      span(
        t.traceId,
        t.serverSpanId,
        t.parentSpanId,
        `${t.link === null ? '' : 'release '}${record.method} ${record.connector ?? 'corridor'}${record.action === null ? '' : ` ${record.action}`}`,
        t.link === null ? 2 : 1, // SERVER, or INTERNAL for a release
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
          ['corridor.request_id', record.request_id],
          ['corridor.agent', record.agent],
          ['corridor.connector', record.connector],
          ['corridor.action', record.action],
          ['corridor.credential.source', t.credential?.source ?? null],
        ])}`,
        failed ? `{"code":2,"message":${JSON.stringify(record.error_code ?? String(record.status))}}` : '{"code":1}',
        t.link,
      ),
    )
    if (credential !== null) {
      const credentialSpanId = randomHex(8)
      spans.push(
        span(
          t.traceId,
          credentialSpanId,
          t.serverSpanId,
          `credential ${credential.source}`,
          1, // INTERNAL
          credential.start,
          credential.end,
          attributes([['corridor.credential.source', credential.source]]),
          null,
        ),
      )
      for (const call of t.calls ?? [])
        spans.push(
          span(
            t.traceId,
            randomHex(8),
            credentialSpanId,
            `${call.system} ${call.method} ${call.path}`,
            3, // CLIENT
            call.start,
            call.end,
            attributes([
              ['rpc.system', call.system],
              ['http.request.method', call.method],
              ['url.path', call.path],
              ['http.response.status_code', call.status],
            ]),
            call.status !== null && call.status < 400 ? null : '{"code":2}',
          ),
        )
    }
    if (t.upstreamStart !== null)
      spans.push(
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
          ])}`,
          null,
        ),
      )
    return spans
  }

  /** Sends what is queued, in batches; a batch the collector does not take is dropped, counted. */
  flush(): Promise<void> {
    this.#sending = this.#sending.then(async () => {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, BATCH)
        const spans = batch.flatMap((p) => this.#spans(p.t, p.facts))
        try {
          const res = await this.#collector.request({
            path: this.#path,
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: `{"resourceSpans":[{"resource":{"attributes":[${attributes([['service.name', 'corridor']])}]},"scopeSpans":[{"scope":{"name":"corridor"},"spans":[${spans.join(',')}]}]}]}`,
            headersTimeout: this.#o.timeoutMs,
            bodyTimeout: this.#o.timeoutMs,
          })
          await res.body.dump()
          if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the collector answered ${res.statusCode}`)
        } catch (err) {
          if (this.#dropped === 0)
            this.#o.log.warn({ err }, 'trace export failed; spans are dropped until the collector answers')
          this.#dropped += spans.length
          return
        }
      }
    })
    return this.#sending
  }

  async close(): Promise<void> {
    clearInterval(this.#timer)
    await this.flush()
    await this.#collector.destroy()
  }
}
