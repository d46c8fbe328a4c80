/**
 * The embedded store: one process, no Redis. Transitions are synchronous, so they are atomic
 * by construction; they mirror the Lua scripts of the Redis store step for step (the store
 * contract suite runs the same tests against both). Approvals die with the process, which is
 * why Corridor warns at start when this store is in use.
 */
import type { Approval, ApprovalState, ExecutionResult, HeldRequest } from './approval.ts'
import type {
  AbandonedClaim,
  ApprovalStore,
  CreateResult,
  ApproverVerdict,
  DecideResult,
  StoreLimits,
} from './approval-store.ts'

interface Entry {
  approval: Approval
  /** When the entry is forgotten (finished entries only). */
  dropAt: number | null
  claimToken: string | null
  claimDeadline: number
  retrySafe: boolean
}

export class MemoryApprovalStore implements ApprovalStore {
  readonly durable = false
  readonly #limits: StoreLimits
  readonly #now: () => number
  readonly #entries = new Map<string, Entry>()
  readonly #idempotency = new Map<string, { id: string; until: number }>()
  readonly #listeners: ((id: string) => void)[] = []

  constructor(limits: StoreLimits, now: () => number = Date.now) {
    this.#limits = limits
    this.#now = now
  }

  async create(held: HeldRequest, idempotencyKey: string | null): Promise<CreateResult> {
    this.#sweepDropped()
    const idemKey = idempotencyKey === null ? null : `${held.agent}\u0000${idempotencyKey}`
    if (idemKey !== null) {
      const existing = this.#idempotency.get(idemKey)
      if (existing !== undefined && existing.until > this.#now() && this.#entries.has(existing.id))
        return { kind: 'exists', id: existing.id }
    }
    let pending = 0
    let agentPending = 0
    for (const e of this.#entries.values()) {
      if (e.approval.state !== 'pending') continue
      pending++
      if (e.approval.held.agent === held.agent) agentPending++
    }
    if (pending >= this.#limits.maxPending) return { kind: 'full' }
    if (agentPending >= this.#limits.maxPendingPerAgent) return { kind: 'agent_full' }
    this.#entries.set(held.id, {
      approval: { held, state: 'pending', approvals: [], rejection: null, cancelReason: null, result: null },
      dropAt: null,
      claimToken: null,
      claimDeadline: 0,
      retrySafe: false,
    })
    if (idemKey !== null) this.#idempotency.set(idemKey, { id: held.id, until: held.expiresAt + this.#limits.keepMs })
    this.#changed(held.id)
    return { kind: 'created' }
  }

  async get(id: string): Promise<Approval | null> {
    this.#sweepDropped()
    return this.#entries.get(id)?.approval ?? null
  }

  async list(state: 'pending' | 'approved' | 'executing', offset: number, limit: number): Promise<Approval[]> {
    const out: Approval[] = []
    for (const e of this.#entries.values()) if (e.approval.state === state) out.push(e.approval)
    out.sort((a, b) => a.held.createdAt - b.held.createdAt)
    return out.slice(offset, offset + limit)
  }

  async decide(id: string, decision: ApproverVerdict, nowMs: number): Promise<DecideResult> {
    const e = this.#entries.get(id)
    if (e === undefined) return { kind: 'not_found' }
    const a = e.approval
    if (a.state !== 'pending') return { kind: 'not_pending', state: a.state }
    if (nowMs >= a.held.expiresAt) {
      this.#finish(e, { ...a, state: 'expired' })
      return { kind: 'expired' }
    }
    if (decision.digest !== null && decision.digest !== a.held.digest) return { kind: 'digest_mismatch' }
    if (a.approvals.some((d) => d.approver === decision.by.approver)) return { kind: 'already_decided' }
    if (!decision.approve) {
      this.#finish(e, { ...a, state: 'rejected', rejection: decision.by })
      return { kind: 'rejected' }
    }
    const approvals = [...a.approvals, decision.by]
    const state: ApprovalState = approvals.length >= a.held.required ? 'approved' : 'pending'
    e.approval = { ...a, approvals, state }
    this.#changed(id)
    return { kind: state === 'approved' ? 'approved' : 'recorded' }
  }

  async claim(id: string, token: string, deadlineMs: number, retrySafe: boolean): Promise<boolean> {
    const e = this.#entries.get(id)
    if (e === undefined || e.approval.state !== 'approved') return false
    e.approval = { ...e.approval, state: 'executing' }
    e.claimToken = token
    e.claimDeadline = deadlineMs
    e.retrySafe = retrySafe
    this.#changed(id)
    return true
  }

  async complete(id: string, token: string, result: ExecutionResult): Promise<boolean> {
    const e = this.#entries.get(id)
    if (
      e === undefined ||
      e.claimToken !== token ||
      (e.approval.state !== 'executing' && e.approval.state !== 'unknown')
    )
      return false
    this.#finish(e, { ...e.approval, state: 'executed', result })
    return true
  }

  async cancel(id: string, reason: string): Promise<boolean> {
    const e = this.#entries.get(id)
    if (e === undefined || (e.approval.state !== 'pending' && e.approval.state !== 'approved')) return false
    this.#finish(e, { ...e.approval, state: 'cancelled', cancelReason: reason })
    return true
  }

  async expireDue(nowMs: number, limit: number): Promise<string[]> {
    const out: string[] = []
    for (const e of this.#entries.values()) {
      if (out.length >= limit) break
      if (e.approval.state === 'pending' && nowMs >= e.approval.held.expiresAt) {
        this.#finish(e, { ...e.approval, state: 'expired' })
        out.push(e.approval.held.id)
      }
    }
    return out
  }

  async abandonStale(nowMs: number, limit: number): Promise<AbandonedClaim[]> {
    const out: AbandonedClaim[] = []
    for (const e of this.#entries.values()) {
      if (out.length >= limit) break
      if (e.approval.state !== 'executing' || nowMs < e.claimDeadline) continue
      if (e.retrySafe) {
        e.approval = { ...e.approval, state: 'approved' }
        this.#changed(e.approval.held.id)
        out.push({ id: e.approval.held.id, outcome: 'retry' })
      } else {
        this.#finish(e, { ...e.approval, state: 'unknown' })
        out.push({ id: e.approval.held.id, outcome: 'unknown' })
      }
    }
    return out
  }

  onChange(listener: (id: string) => void): void {
    this.#listeners.push(listener)
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.#entries.clear()
  }

  #finish(e: Entry, next: Approval): void {
    e.approval = next
    e.dropAt = this.#now() + this.#limits.keepMs
    this.#changed(next.held.id)
  }

  #changed(id: string): void {
    // Listeners run after the transition has completed, as a Redis subscriber would see it.
    queueMicrotask(() => {
      for (const listener of this.#listeners) listener(id)
    })
  }

  #sweepDropped(): void {
    const now = this.#now()
    for (const [id, e] of this.#entries) if (e.dropAt !== null && e.dropAt <= now) this.#entries.delete(id)
    for (const [key, v] of this.#idempotency) if (v.until <= now) this.#idempotency.delete(key)
  }
}
