/**
 * The audit record: one per request, however it ends. It links what the agent said it meant to
 * do (intent, task), what Corridor decided and why (rule, reason, limiting factor, policy
 * version, shadow rules), which credential was used (its reference, never its value) and what
 * came of it (upstream status, bytes, durations, outcome).
 */
import type { Decision, Effect, LimitingFactor, ShadowResult } from '../policy/decision.ts'
import type { LimitReport } from '../policy/limits.ts'
import type { ErrorCode } from '../shared/errors.ts'
import { CORRIDOR_KEY_PREFIXES } from '../registry/agents.ts'
import type { Outcome } from '../shared/outcomes.ts'

export type { Outcome }

/** What Corridor is about to do when it writes an intent entry: forward, hold for approval, release an approval. */
export type Act = 'forward' | 'hold' | 'release'

export interface AuditRecord {
  /** Written by the sink as the record's first field; absent on records still being built. */
  type?: 'request'
  v: 1
  request_id: string
  time: string
  /** The W3C trace this request belongs to, when traces are on (the agent's, or a new one). */
  trace_id: string | null
  agent: string | null
  owner: string | null
  tier: string | null
  user: string | null
  user_groups: readonly string[] | null
  intent: string | null
  task_id: string | null
  connector: string | null
  action: string | null
  risk: string | null
  method: string
  path: string
  query: string
  decision: Effect | null
  rule: string | null
  reason: string | null
  limiting_factor: LimitingFactor | null
  policy_version: string | null
  shadow: readonly ShadowResult[]
  approvers: readonly string[]
  /** What each limit that counted the request saw: used, remaining, exceeded (policy.yaml `limits:`). */
  limits: readonly LimitReport[]
  /** Set on every record that concerns a held request: the hold, the agent's retries and the release. */
  approval: ApprovalLink | null
  credential: { reference: string; lease_id: string | null } | null
  upstream_status: number | null
  status: number
  error_code: ErrorCode | null
  /** Why a dependency failed, audit-safe: vault_sealed, vault_timeout, oauth2_refused… */
  error_detail: string | null
  bytes_in: number
  bytes_out: number
  duration_ms: number
  upstream_ms: number | null
  outcome: Outcome
}

/** Where an approval stands (its audit records and its store say the same words). */
export const APPROVAL_STATES = [
  'pending', // waiting for approvers
  'approved', // enough approvals; not yet claimed for execution
  'executing', // claimed by one replica, which is forwarding it now
  'executed', // forwarded once; the result is kept for the result window
  'rejected',
  'expired',
  'cancelled', // the policy no longer permits it, or the agent was suspended
  'unknown', // the executing replica vanished mid-forward: it was sent at most once, never again
] as const
export type ApprovalState = (typeof APPROVAL_STATES)[number]

/** A step in an approval's life, as audit events and webhook notifications name it. */
export const APPROVAL_EVENTS = [
  'held',
  'approved',
  'approval_recorded',
  'rejected',
  'expired',
  'cancelled',
  'executed',
  'unknown',
] as const
export type ApprovalEvent = (typeof APPROVAL_EVENTS)[number]

export interface ApprovalLink {
  id: string
  state: ApprovalState
  digest: string
  /** The request that was held (its own record has outcome `held`). */
  held_request_id: string
  /** The record of the one forward, once released. */
  executed_request_id: string | null
  approved_by: readonly { approver: string; at: string; reason: string }[]
  rejected_by: { approver: string; at: string; reason: string } | null
}

/** A step in an approval's life that no agent request carries: a decision, an expiry, a cancellation. */
export interface ApprovalAuditEvent {
  type: 'approval'
  v: 1
  time: string
  event: ApprovalEvent
  approval_id: string
  held_request_id: string
  agent: string
  connector: string
  action: string | null
  digest: string
  policy_version: string
  state: ApprovalState
  by: string | null
  by_groups: readonly string[] | null
  via: string | null
  reason: string | null
}

/** An operator stopping or resuming agents: who, through what, why, in what scope, and what it took back. */
export interface StopAuditEvent {
  type: 'stop'
  v: 1
  time: string
  event: 'stopped' | 'resumed'
  stop_id: string
  scope: Readonly<Record<string, string>>
  mode: string
  reason: string
  /** Who ordered the stop (on `resumed`, the stop as it was ordered). */
  stopped_by: string
  expires_at: string | null
  /** Who did this, how they authenticated, and the channel it came through. */
  by: string
  via: string
  channel: 'admin_api'
  /** Stops in force over any part of this scope before and after (id, scope, mode). */
  prior: readonly string[]
  resulting: readonly string[]
  /** What this replica took back at once (other replicas apply the stop within a second and log theirs). */
  affected: {
    readonly in_flight_cut: number
    readonly approvals_cancelled: number
    readonly leases_revoked: number
    readonly agents: readonly string[]
  } | null
}

/** Someone read the audit trail through the admin API: who, how, and what they asked for. */
export interface AuditQueryEvent {
  type: 'audit_query'
  v: 1
  time: string
  by: string
  via: string
  /** The query as asked (filters, or the id traced). */
  query: Readonly<Record<string, string>>
  matched: number
}

/**
 * Retention deleted audit files: which, and where each one's chain ended, so that a verifier can
 * tell a trail that starts later because retention said so from one whose files went otherwise.
 */
export interface RetentionAuditEvent {
  type: 'retention'
  v: 1
  time: string
  /** The trail's live file (a worker's, or one nobody writes any more). */
  trail: string
  /** `retain`, in milliseconds. */
  retain_ms: number
  /**
   * The files retention is deleting, written before it deletes them, oldest first; `ends`: the
   * last entry of the file (null when it held none).
   */
  deleted: readonly { readonly file: string; readonly ends: ChainEnd | null }[]
  /** Files an earlier record named that could not be deleted after all: they stay, and retention tries again. */
  kept?: readonly { readonly file: string; readonly ends: ChainEnd | null }[]
}

/** Where a stream stood at the end of a file. */
export interface ChainEnd {
  readonly stream: string
  readonly seq: number
  readonly hash: string
}

/** Fills the decision fields of a record. */
export function recordDecision(record: AuditRecord, decision: Decision): void {
  record.decision = decision.effect
  record.rule = decision.rule
  record.reason = decision.reason
  record.limiting_factor = decision.limitingFactor
  record.policy_version = decision.policyVersion
  record.shadow = decision.shadow
  record.approvers = decision.approvers
}

/** Most requests meet no limit: they share one empty list instead of allocating one each. */
const NO_LIMITS: readonly LimitReport[] = Object.freeze([])

export function newAuditRecord(requestId: string, startedAtMs: number, method: string, rawTarget: string): AuditRecord {
  return {
    v: 1,
    request_id: requestId,
    time: new Date(startedAtMs).toISOString(),
    trace_id: null,
    agent: null,
    owner: null,
    tier: null,
    user: null,
    user_groups: null,
    intent: null,
    task_id: null,
    connector: null,
    action: null,
    risk: null,
    method,
    // Until the target is canonicalised this is the raw target, truncated so that a hostile one cannot bloat the trail.
    path: withoutKeys(rawTarget.length > 512 ? rawTarget.slice(0, 512) + '…' : rawTarget),
    query: '',
    decision: null,
    rule: null,
    reason: null,
    limiting_factor: null,
    policy_version: null,
    shadow: [],
    approvers: [],
    limits: NO_LIMITS,
    approval: null,
    credential: null,
    upstream_status: null,
    status: 0,
    error_code: null,
    error_detail: null,
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 0,
    upstream_ms: null,
    outcome: 'rejected',
  }
}

/**
 * Credential shapes that must never reach the trail through a URL an agent sent: every kind of
 * key Corridor mints (agent, approver, operator, auditor) and JWTs (agent or user tokens). Until a
 * request is identified, its raw target is all there is to record, and an SDK may have put a key in it.
 */
const KEY_SHAPE = new RegExp(
  `\\b(${CORRIDOR_KEY_PREFIXES.map((p) => p.slice(0, -1)).join('|')})_[A-Za-z0-9_-]{8,}`,
  'g',
)
const JWT_SHAPE = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g

export function withoutKeys(text: string): string {
  let out = text
  if (CORRIDOR_KEY_PREFIXES.some((prefix) => out.includes(prefix))) out = out.replace(KEY_SHAPE, '$1_[redacted]')
  if (out.includes('eyJ')) out = out.replace(JWT_SHAPE, '[redacted-jwt]')
  return out
}
