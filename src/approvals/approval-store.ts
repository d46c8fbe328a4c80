/**
 * Where held requests live. Every state change is one atomic transition (a Lua script in Redis,
 * a synchronous step in memory), so two replicas, or an approver racing an expiry, can never
 * both win: an approval executes at most once.
 *
 *   pending ──approve (enough)──▶ approved ──claim──▶ executing ──complete──▶ executed
 *      │ reject / expire / cancel     │ cancel  ▲        │ claim deadline passed
 *      ▼                              ▼         └────────┤ retry-safe claim (upstream idempotency key): approved again
 *   rejected · expired · cancelled                       ▼ otherwise
 *                                                     unknown (complete still lands if the result arrives)
 */
import type { Approval, ApprovalState, ApproverDecision, ExecutionResult, HeldRequest } from './approval.ts'

export interface StoreLimits {
  /** Pending approvals across all agents. */
  readonly maxPending: number
  readonly maxPendingPerAgent: number
  /** How long finished approvals (and their results) are kept. */
  readonly keepMs: number
}

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

export interface ApprovalStore {
  /** False for the in-memory store: its approvals die with the process. */
  readonly durable: boolean
  /** Persists a new pending approval; with an idempotency key, an existing approval for the same agent and key wins. */
  create(held: HeldRequest, idempotencyKey: string | null): Promise<CreateResult>
  get(id: string): Promise<Approval | null>
  /** Approvals in a non-terminal state, oldest first. */
  list(state: 'pending' | 'approved' | 'executing', offset: number, limit: number): Promise<Approval[]>
  decide(id: string, decision: ApproverVerdict, nowMs: number): Promise<DecideResult>
  /**
   * approved → executing for the caller holding `token`; false when someone else did, or it is no
   * longer approved. `retrySafe`: the forward carries an idempotency key the upstream honours.
   */
  claim(id: string, token: string, deadlineMs: number, retrySafe: boolean): Promise<boolean>
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
}
