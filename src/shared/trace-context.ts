/**
 * W3C trace context: what a request's spans need to know as it goes, the interface the request
 * path and the approval executor trace through (telemetry/tracing.ts implements it), and the
 * outbound calls made while a credential is issued. Which request a Vault or identity-provider call
 * serves is known only where the call is made, deep inside a credential source and its cache; an
 * AsyncLocalStorage carries a request's call list there rather than every source and cache taking
 * it as an argument. Nothing is recorded unless traces are on and the request is sampled.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

/** A call Corridor made on a request's behalf (Vault, an identity provider's token endpoint). */
export interface OutboundCall {
  /** `vault`, `oauth2`. */
  readonly system: string
  readonly method: string
  /** The path called (names of roles and mounts, never a secret). */
  readonly path: string
  /** Epoch milliseconds, with a fraction. */
  readonly start: number
  readonly end: number
  readonly status: number | null
}

/** The span a later part of the same work links to: a release links to its hold. */
export interface TraceLink {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/** One request's (or one release's) place in its trace. */
export interface RequestTrace {
  readonly traceId: string
  /** The agent's span, when it sent a traceparent. */
  readonly parentSpanId: string | null
  readonly serverSpanId: string
  readonly clientSpanId: string
  readonly flags: string
  /** Whether its spans are recorded (the trace context is passed on either way). */
  readonly sampled: boolean
  /** A release: the hold it carries out (its own trace, since it runs later and elsewhere). */
  readonly link: TraceLink | null
  credential: { start: number; end: number; source: string } | null
  /** Calls made while the credential was issued; null when not sampled. */
  readonly calls: OutboundCall[] | null
  upstreamStart: number | null
}

/** What a request's spans say about it: the fields of its audit record that they carry. */
export interface TraceFacts {
  readonly request_id: string
  readonly time: string
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

/** The calls of one credential issue; closed once it has returned, so that later timers it started record nothing. */
interface CallList {
  readonly calls: OutboundCall[]
  open: boolean
}

const issuing = new AsyncLocalStorage<CallList>()

/**
 * Runs `issue`, recording into the trace the outbound calls made for it, and the span of the
 * whole issue. Without a sampled trace it only runs `issue`.
 */
export async function traceIssue<T>(trace: RequestTrace | null, source: string, issue: () => Promise<T>): Promise<T> {
  if (trace === null || trace.calls === null) return issue()
  const list: CallList = { calls: trace.calls, open: true }
  const start = performance.timeOrigin + performance.now()
  try {
    return await issuing.run(list, issue)
  } finally {
    list.open = false
    trace.credential = { start, end: performance.timeOrigin + performance.now(), source }
  }
}

/** Whether a call made now would be recorded (a credential issue of a sampled request is under way). */
export function recordingCalls(): boolean {
  return issuing.getStore()?.open === true
}

/** Records a call made for the credential issue under way, if any. */
export function recordCall(call: OutboundCall): void {
  const list = issuing.getStore()
  if (list?.open === true) list.calls.push(call)
}
