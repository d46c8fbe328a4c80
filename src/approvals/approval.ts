/**
 * A held request and its approval: the exact request Corridor will forward if it is approved
 * (credentials already stripped), who asked and why, what policy decided, who may release it,
 * and where it stands. The request part never changes after the hold; the digest over it is
 * what approvers approve and what a retry must match.
 */
import { createHash } from 'node:crypto'

import type { ApprovalState } from '../audit/record.ts'
import type { ErrorCode } from '../shared/errors.ts'
import type { TraceLink } from '../shared/trace-context.ts'

export type { ApprovalState }

const TERMINAL_STATES: ReadonlySet<ApprovalState> = new Set(['executed', 'rejected', 'expired', 'cancelled', 'unknown'])

/** Exactly what is forwarded on release (before the connector's credential is placed). */
export interface HeldHttpRequest {
  readonly method: string
  /** As the agent addressed it: connector prefix, canonical path and query (for re-evaluation and display). */
  readonly target: string
  readonly host: string | null
  /** Base path + canonical path: the upstream request path. */
  readonly upstreamPath: string
  /** The raw query string (without '?'), as forwarded. */
  readonly query: string
  /** name, value pairs, lower-case names, agent credentials and Corridor headers already removed. */
  readonly headers: readonly (readonly [string, string])[]
  readonly bodyBase64: string
}

export interface HeldRequest {
  readonly id: string
  /** The audit request id of the request that was held. */
  readonly heldRequestId: string
  readonly digest: string
  readonly request: HeldHttpRequest
  readonly agent: string
  readonly owner: string
  readonly tier: string
  readonly user: string | null
  readonly userGroups: readonly string[] | null
  readonly intent: string | null
  readonly taskId: string | null
  readonly connector: string
  readonly action: string | null
  readonly risk: string | null
  readonly rule: string | null
  readonly reason: string
  readonly policyVersion: string
  /** Approver groups named by the rule; an approver must belong to one of them. */
  readonly approverGroups: readonly string[]
  /** Distinct approvals needed (two for privileged actions). */
  readonly required: number
  readonly perRequestLease: boolean
  readonly createdAt: number
  readonly expiresAt: number
  /** The hold's span, when traces are on: its release links to it. Not part of the digest. */
  readonly trace?: TraceLink | null
}

export interface ApproverDecision {
  readonly approver: string
  readonly groups: readonly string[]
  readonly reason: string
  readonly at: number
}

/** What came back from the one forward: the upstream's response, or why there was none. */
export interface ExecutionResult {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[]>>
  readonly bodyBase64: string
  /** Set when the forward failed (upstream_unreachable, upstream_timeout, approval_response_too_large…). */
  readonly errorCode: ErrorCode | null
  readonly executedRequestId: string
  readonly completedAt: number
}

export interface Approval {
  readonly held: HeldRequest
  readonly state: ApprovalState
  readonly approvals: readonly ApproverDecision[]
  readonly rejection: ApproverDecision | null
  readonly cancelReason: string | null
  readonly result: ExecutionResult | null
}

/**
 * Headers that legitimately change between an agent's attempts (proxy hops, tracing, SDK retry
 * counters and per-call request ids) and so are left out of the digest; everything else the
 * upstream sees is in it. A connector may name more (`per_attempt_headers`). The held copy keeps
 * its own values: a release forwards what was approved, not the retry's.
 */
const PER_ATTEMPT_HEADERS = new Set([
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'traceparent',
  'tracestate',
  'baggage',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'sentry-trace',
  'x-cloud-trace-context',
  'x-datadog-trace-id',
  'x-datadog-parent-id',
  'x-request-id',
  'request-id',
  'client-request-id',
  'x-client-request-id',
  'x-ms-client-request-id',
  'x-amzn-trace-id',
  'amz-sdk-invocation-id',
  'amz-sdk-request',
  'x-stainless-retry-count',
  'x-stainless-timeout',
  'x-stainless-read-timeout',
])

const NONE: ReadonlySet<string> = new Set()

export function requestDigest(
  connector: string,
  request: Omit<HeldHttpRequest, 'target' | 'host'>,
  perAttempt: ReadonlySet<string> = NONE,
): string {
  const headers = request.headers
    .filter(([name]) => !PER_ATTEMPT_HEADERS.has(name) && !perAttempt.has(name))
    .map(([n, v]) => `${n}:${v}`)
  headers.sort()
  const canonical = JSON.stringify([
    connector,
    request.method,
    request.upstreamPath,
    request.query,
    headers,
    request.bodyBase64,
  ])
  return 'sha256:' + createHash('sha256').update(canonical).digest('hex')
}

export function isTerminal(state: ApprovalState): boolean {
  return TERMINAL_STATES.has(state)
}
