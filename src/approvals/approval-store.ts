/**
 * Where held requests live. Every state change is one atomic transition (a Lua script in Redis,
 * a synchronous step in memory), so two replicas, or an approver racing an expiry, can never
 * both win: an approval executes at most once.
 *
 *   pending ──approve (enough)──▶ approved ──claim──▶ executing ──complete──▶ executed
 *      │ reject / expire / cancel     │ cancel  ▲        │ claim deadline passed
 *      ▼                              ▼         ├────────┤ retry-safe claim (upstream idempotency key): approved again
 *   rejected · expired · cancelled              │        ▼ otherwise
 *                                               │     unknown (complete still lands if the result arrives)
 *                                               └─ unclaim: the claim holder, who knows it sent nothing
 *
 * The same request (same agent, same digest) joins the approval already open for it, and, for the
 * retry window after it ran, gets its result: an SDK's automatic retry never opens a second approval
 * or causes a second execution.
 *
 * A command that timed out may still run later (a stalled Redis runs what was already on its
 * socket when it resumes). Creating and claiming therefore carry a deadline the Redis store checks
 * against the server's clock before acting, and a claim the caller gave up on is taken back with
 * `unclaim`, which runs after it on the same connection.
 */
import type { Approval, ApprovalState, ApproverDecision, ExecutionResult, HeldRequest } from './approval.ts'

export interface StoreLimits {
  /** Pending approvals across all agents. */
  readonly maxPending: number
  readonly maxPendingPerAgent: number
  /** How long finished approvals (and their results) are kept. */
  readonly keepMs: number
  /** How long after it ran a repeat of the same request is answered with its result instead of held again. */
  readonly retryWindowMs: number
}

/** States a repeat of the same request joins instead of opening a new approval. */
export const JOINABLE_STATES: ReadonlySet<ApprovalState> = new Set([
  'pending',
  'approved',
  'executing',
  'executed',
  'unknown',
])

export type CreateResult =
  | { readonly kind: 'created' }
  | { readonly kind: 'exists'; readonly id: string }
  | { readonly kind: 'full' }
  | { readonly kind: 'agent_full' }

export type DecideResult =
  | { readonly kind: 'recorded' | 'approved' | 'rejected' }
  | { readonly kind: 'not_found' | 'expired' | 'digest_mismatch' | 'already_decided' }
  | { readonly kind: 'not_pending'; readonly state: ApprovalState }

export interface AbandonedClaim {
  readonly id: string
  readonly outcome: 'retry' | 'unknown'
}

export interface ApproverVerdict {
  readonly approve: boolean
  readonly by: ApproverDecision
  /** The digest the approver reviewed; when given it must match the held request's. */
  readonly digest: string | null
}

/**
 * What survives a restart of the store's backend: `always` (append-only file, fsync on every
 * write), `everysec` (up to a second lost), `none` (nothing: held approvals vanish), `memory`
 * (the in-memory store), or `unknown` (the backend does not say, e.g. CONFIG is disabled).
 */
export type Persistence = 'always' | 'everysec' | 'no-fsync' | 'none' | 'memory' | 'unknown'

export interface ApprovalStore {
  /** False for the in-memory store: its approvals die with the process. */
  readonly durable: boolean
  /** As last measured (at every connect and readiness check). */
  readonly persistence: Persistence
  /**
   * Persists a new pending approval. An existing approval wins: the same agent's with the same
   * idempotency key, else the same agent's open one for the same request (same digest), or its
   * executed one within the retry window.
   */
  create(held: HeldRequest, idempotencyKey: string | null): Promise<CreateResult>
  get(id: string): Promise<Approval | null>
  /** Approvals in a non-terminal state, oldest first. */
  list(state: 'pending' | 'approved' | 'executing', offset: number, limit: number): Promise<Approval[]>
  /** How many approvals are in the state now, without reading them (metrics read it at every scrape). */
  count(state: 'pending' | 'approved' | 'executing'): Promise<number>
  decide(id: string, decision: ApproverVerdict, nowMs: number): Promise<DecideResult>
  /**
   * approved → executing for the caller holding `token`; false when someone else did, or it is no
   * longer approved. `retrySafe`: the forward carries an idempotency key the upstream honours.
   */
  claim(id: string, token: string, deadlineMs: number, retrySafe: boolean): Promise<boolean>
  /** executing (or unknown) → approved, for the claim holder only, who knows nothing was sent. */
  unclaim(id: string, token: string): Promise<boolean>
  /** executing (or unknown) → executed with its result, for the claim holder only. */
  complete(id: string, token: string, result: ExecutionResult): Promise<boolean>
  /** pending or approved → cancelled. */
  cancel(id: string, reason: string, nowMs: number): Promise<boolean>
  /** pending past its expiry → expired; returns the ids it expired. */
  expireDue(nowMs: number, limit: number): Promise<string[]>
  /** executing past its claim deadline → approved again if the claim was retry-safe, else unknown. */
  abandonStale(nowMs: number, limit: number): Promise<AbandonedClaim[]>
  /** Called with an approval's id whenever its state changes, on any replica. */
  onChange(listener: (id: string) => void): void
  /** Throws unless the store can take writes now (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

/** Thrown by a store that cannot reach its backend: holds and decisions fail closed. */
export class ApprovalStoreUnavailable extends Error {
  override name = 'ApprovalStoreUnavailable'
  /** The code the agent's refusal carries. */
  readonly code = 'approval_unavailable'
}
