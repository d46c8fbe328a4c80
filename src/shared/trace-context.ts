/**
 * W3C trace context: what a request's spans need to know as it goes, the interface the request
 * path and the approval executor trace through (telemetry/tracing.ts implements it), and the
 * outbound calls made while a credential is issued. A gathering request's trace goes with the
 * credential issue, as the log of its calls, as far as the lease cache, which files it under the
 * deadline signal it creates for the call; the Vault client and the OAuth2 provider see only that
 * signal and look the log up by it. (An AsyncLocalStorage would carry it without the argument, but measured 10 to 40 µs
 * slower per request under load once traces were on.) Nothing is gathered for a request that cannot
 * be recorded: one not sampled, when only sampling records.
 */

/** A call Corridor made on a request's behalf (Vault, an identity provider's token endpoint). */
export interface OutboundCall {
  /** `vault`, `oauth2`. */
  readonly system: string
  /** The service called, `scheme://host:port`. */
  readonly origin: string
  /** The HTTP method sent. */
  readonly method: string
  /** What the call did in the service's own terms, for the span's name (Vault's LIST is sent as GET). */
  readonly operation: string
  /** The path called, without its query (names of roles and mounts, never a secret). */
  readonly path: string
  /** Epoch milliseconds, with a fraction. */
  readonly start: number
  readonly end: number
  readonly status: number | null
  /** Why the call got no answer (`vault_timeout`, `oauth2_unreachable`…); null when it got one. */
  readonly error: string | null
}

/** The span a later part of the same work links to: a release links to its hold. */
export interface TraceLink {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/** Where a traced request's outbound calls go, for its spans. */
export interface CallLog {
  /** Made at the first call: most requests make none (their credential is cached, or needs no call). */
  calls: OutboundCall[] | null
}

/** One request's (or one release's) place in its trace. */
export interface RequestTrace extends CallLog {
  readonly traceId: string
  /** The agent's span, when it sent a traceparent. */
  readonly parentSpanId: string | null
  readonly serverSpanId: string
  readonly clientSpanId: string
  readonly flags: string
  /** The W3C sampling decision: its spans are recorded, and the upstream is told so (the trace context is passed on either way). */
  readonly sampled: boolean
  /**
   * Whether what its spans need is gathered as it goes: when sampled, and for every request when
   * an unsampled one may yet be recorded for how it ends (an outcome, its duration).
   */
  readonly gathering: boolean
  /** Its route (the action's path template as addressed), set only when gathering and routed to an action. */
  route: string | null
  /** When it started, epoch milliseconds with a fraction; 0 when not gathering. */
  readonly start: number
  /** A release: the hold it carries out (its own trace, since it runs later and elsewhere). */
  readonly link: TraceLink | null
  credential: { start: number; end: number; source: string } | null
  /** The upstream call, once it started; noted only when gathering (traceUpstream). */
  upstream: UpstreamCall | null
}

/** Where a request's upstream call went, and when it started, for its client span. */
export interface UpstreamCall {
  /** Epoch milliseconds, with a fraction. */
  readonly start: number
  /** The connector's origin. */
  readonly origin: string
  /** The path sent, without its query. */
  readonly path: string
}

/** What a request's spans say about it: the fields of its audit record that they carry. */
export interface TraceFacts {
  readonly request_id: string
  readonly duration_ms: number
  readonly agent: string | null
  readonly connector: string | null
  readonly action: string | null
  readonly method: string
  readonly path: string
  readonly status: number
  readonly decision: string | null
  readonly rule: string | null
  readonly outcome: string | null
  readonly error_code: string | null
  readonly upstream_status: number | null
  readonly upstream_ms: number | null
}

export interface Tracing {
  /** A request that arrived, continuing the agent's trace when it sent a valid traceparent. */
  start(traceparent: unknown): RequestTrace
  /** The release of a held request: a new trace, linked to the hold's span. */
  startRelease(hold: TraceLink | null): RequestTrace
  /** The request or release has ended: its spans. */
  finish(t: RequestTrace, facts: TraceFacts): void
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** A valid W3C traceparent (version 00, ids not all zeros), or null. */
export function parseTraceparent(value: unknown): { traceId: string; spanId: string; flags: string } | null {
  const m = typeof value === 'string' ? TRACEPARENT.exec(value.trim()) : null
  if (m === null) return null
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string]
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null
  return { traceId, spanId, flags }
}

/** The traceparent the upstream receives: the same trace, Corridor's client span as the parent. */
export function traceparentOf(t: RequestTrace): string {
  return `00-${t.traceId}-${t.clientSpanId}-${t.flags}`
}

/** The upstream call starts (`startedAt` from performance.now()): a gathering request notes where it goes, for its client span. */
export function traceUpstream(trace: RequestTrace | null, startedAt: number, origin: string, path: string): void {
  if (trace !== null && trace.gathering) trace.upstream = { start: performance.timeOrigin + startedAt, origin, path }
}

/** The call logs of gathering requests' credential issues, by the deadline signal of each issue. */
const callLogs = new WeakMap<AbortSignal, CallLog>()

/** The calls made under `signal` (the deadline of a gathering request's credential issue) go into `log`. */
export function recordCallsUnder(signal: AbortSignal, log: CallLog | null): void {
  if (log !== null) callLogs.set(signal, log)
}

/** Where a call made under `signal` is recorded; undefined when nobody traces it. */
export function callLogOf(signal: AbortSignal | undefined): CallLog | undefined {
  return signal === undefined ? undefined : callLogs.get(signal)
}

/** A call made for a traced request: a span of it. */
export function logCall(log: CallLog, call: OutboundCall): void {
  ;(log.calls ??= []).push(call)
}

/**
 * A gathering request's credential was issued, or failed to be, since `startedAt` (from
 * performance.now()): the credential span's times, and the source the server span names.
 */
export function noteCredentialIssue(trace: RequestTrace, startedAt: number, source: string): void {
  trace.credential = {
    start: performance.timeOrigin + startedAt,
    end: performance.timeOrigin + performance.now(),
    source,
  }
}
