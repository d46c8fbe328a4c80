/**
 * OpenTelemetry traces, off unless `telemetry.traces` names a collector. A request that arrives
 * with a W3C `traceparent` continues that trace (and, unless configured otherwise, the agent's
 * decision whether to record it); one without starts a new trace. Corridor records
 * per request: the server span (the whole request, with the audit request id, agent, connector,
 * action, decision and outcome), a credential span when issuing the connector's credential took
 * calls to Vault or an OAuth2 token endpoint (a client span for each under it; a cached credential
 * is only an attribute of the server span), and
 * the client span of the upstream call, whose id the upstream receives in `traceparent`, so its
 * own spans join the same trace. The release of a held request is a trace of its own (it runs
 * later, on whichever replica claims it) whose root span links to the hold's server span.
 * A request sampled, or one that ended in an outcome (denied, failed, held…) or took as long as the
 * configuration records anyway, has its spans written as OTLP/HTTP JSON when it ends (tail
 * sampling, in process: what the spans need is gathered as the request goes, and kept or dropped
 * at its end; its upstream was told the sampling decision), into a bounded buffer
 * outside the JS heap (span-buffer.ts), and exported in batches; when the collector is slow or
 * away, spans are dropped (counted), never queued without bound, and never slow a request.
 */
import { randomFillSync } from 'node:crypto'
import { Client } from 'undici'
import type { AlwaysRecord } from '../config/server-config.ts'
import { checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import { CORRIDOR_PATH_PREFIX } from '../shared/corridor-paths.ts'
import { serverErrorType } from '../shared/http-conventions.ts'
import type { Logger } from '../shared/logger.ts'
import {
  parseTraceparent,
  type RequestTrace,
  type TraceFacts,
  type TraceLink,
  type Tracing,
} from '../shared/trace-context.ts'
import { SpanBuffer } from './span-buffer.ts'
import { requestSpanCount, requestSpans } from './span-json.ts'

export interface TracingOptions {
  /** The collector's OTLP/HTTP base URL. */
  readonly endpoint: string
  /** Extra headers on every export (a hosted collector's API key). */
  readonly headers: Readonly<Record<string, string>>
  /** The share of new traces recorded (0 to 1). */
  readonly sample: number
  /**
   * True: a trace the agent started keeps the agent's sampling decision. False: the share decides
   * for every request, so that an agent setting the sampled flag on each request cannot have them
   * all recorded (the export's cost, and the spans of others dropped while the buffer is full).
   */
  readonly followAgentSampling: boolean
  /**
   * Requests recorded whatever their sampling decision, chosen when each ends (their upstream was
   * told the decision, so it records its own spans only when sampled). `held` among the outcomes
   * also records every release of a hold, sampled, so that its upstream records it too.
   */
  readonly alwaysRecord: AlwaysRecord
  /** The agent listener's scheme, the server spans' `url.scheme`. */
  readonly scheme: 'http' | 'https'
  readonly timeoutMs: number
  readonly log: Logger
  /** How the collector's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  readonly resolve?: ResolveAll
}

/** Bytes of spans that may wait for export in each of the two buffers: some 1,800 requests. */
const BUFFER_BYTES = 2 * 1024 * 1024
/** An export goes as soon as this many bytes of spans wait (some 220 requests), else at the next tick of the timer. */
const BATCH_BYTES = 256 * 1024
const FLUSH_MS = 1_000

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
const spanId = (): string => randomHex(8)

export class Tracer implements Tracing {
  readonly #o: TracingOptions
  /**
   * One kept-alive connection of its own to the collector: exports sent through undici's global
   * dispatcher cost the process about twice as much CPU in the benchmark.
   */
  readonly #collector: Client
  readonly #path: string
  readonly #headers: Readonly<Record<string, string>>
  readonly #buffer: SpanBuffer
  readonly #outcomes: ReadonlySet<string>
  /** Whether only sampling records: otherwise an unsampled request may yet be recorded for how it ends, so every request gathers what its spans need. */
  readonly #recordsBySampleAlone: boolean
  #dropped = 0
  #timer: NodeJS.Timeout
  #sending: Promise<void> = Promise.resolve()

  constructor(options: TracingOptions) {
    this.#o = options
    const always = options.alwaysRecord
    this.#outcomes = new Set(always.outcomes)
    this.#recordsBySampleAlone = this.#outcomes.size === 0 && !always.errors && always.slowerThanMs === null
    const url = new URL('/v1/traces', options.endpoint)
    this.#collector = new Client(url.origin, {
      pipelining: 1,
      connect: { timeout: options.timeoutMs, lookup: checkedLookup(options.resolve) },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    })
    this.#path = url.pathname
    this.#headers = { ...options.headers, 'content-type': 'application/json' }
    this.#buffer = new SpanBuffer(BUFFER_BYTES)
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS)
    this.#timer.unref()
  }

  /** Spans dropped because the collector could not keep up. */
  get dropped(): number {
    return this.#dropped
  }

  start(traceparent: unknown): RequestTrace {
    const parent = parseTraceparent(traceparent)
    if (parent !== null)
      return this.#trace(
        randomHex(16),
        parent.traceId,
        parent.spanId,
        this.#o.followAgentSampling ? parent.flags : this.#sampledFlags(),
        null,
      )
    const ids = randomHex(32)
    return this.#trace(ids, ids.slice(32), null, this.#sampledFlags(), null)
  }

  /** Trace flags with the sampled bit set for the configured share of calls. */
  #sampledFlags(): string {
    return Math.random() < this.#o.sample ? '01' : '00'
  }

  startRelease(hold: TraceLink | null): RequestTrace {
    // A release is recorded when its hold was; the release of a hold that had no trace follows the share.
    const ids = randomHex(32)
    return this.#trace(
      ids,
      ids.slice(32),
      null,
      hold === null ? this.#sampledFlags() : hold.sampled || this.#outcomes.has('held') ? '01' : '00',
      hold,
    )
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
    const gathering = sampled || !this.#recordsBySampleAlone
    return {
      traceId,
      parentSpanId,
      serverSpanId: spanIds.slice(0, 16),
      clientSpanId: spanIds.slice(16, 32),
      flags,
      sampled,
      gathering,
      route: null,
      start: gathering ? performance.timeOrigin + performance.now() : 0,
      link,
      credential: null,
      calls: null,
      upstream: null,
    }
  }

  /**
   * The request has ended: its spans are written and wait for export when it was sampled, or
   * when it ended in an outcome, or took as long, as the configuration records anyway.
   */
  finish(t: RequestTrace, facts: TraceFacts): void {
    if (!t.gathering || !(t.sampled || this.#recordsAnyway(facts))) return
    const count = requestSpanCount(t)
    // While the collector lags and the buffer refuses spans, they are counted, not written to be dropped.
    if (this.#buffer.full) {
      this.#dropped += count
      return
    }
    const before = this.#buffer.bytes
    if (!this.#buffer.append(requestSpans(t, facts, this.#o.scheme, spanId), count)) {
      this.#dropped += count
      return
    }
    // A full batch goes now rather than at the next tick of the timer.
    if (before < BATCH_BYTES && this.#buffer.bytes >= BATCH_BYTES) void this.flush()
  }

  /**
   * Whether a request not sampled ended so that the configuration records it all the same. An
   * agent's request to Corridor's own endpoints (reading where its approval stands, which ends
   * `held` for as long as it waits) is recorded for an error or slowness, not for its outcome.
   */
  #recordsAnyway(facts: TraceFacts): boolean {
    const always = this.#o.alwaysRecord
    return (
      (facts.outcome !== null && this.#outcomes.has(facts.outcome) && !facts.path.startsWith(CORRIDOR_PATH_PREFIX)) ||
      (always.errors && serverErrorType(facts.status, facts.error_code) !== null) ||
      (always.slowerThanMs !== null && facts.duration_ms >= always.slowerThanMs)
    )
  }

  /** Sends what waits, in batches; a batch the collector does not take is dropped, counted. */
  flush(): Promise<void> {
    this.#sending = this.#sending.then(async () => {
      for (let batch = this.#buffer.take(); batch !== null; batch = this.#buffer.take()) {
        let sent = false
        try {
          const res = await this.#collector.request({
            path: this.#path,
            method: 'POST',
            headers: this.#headers,
            body: batch.body,
            headersTimeout: this.#o.timeoutMs,
            bodyTimeout: this.#o.timeoutMs,
          })
          await res.body.dump()
          if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the collector answered ${res.statusCode}`)
          sent = true
        } catch (err) {
          if (this.#dropped === 0)
            this.#o.log.warn({ err }, 'trace export failed; spans are dropped until the collector answers')
          this.#dropped += batch.spans
          return
        } finally {
          this.#buffer.giveBack(batch, sent)
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
