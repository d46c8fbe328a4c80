/**
 * The embedded store: one process, no Redis. Transitions are synchronous, so they are atomic
 * by construction; they mirror the Lua scripts of the Redis store step for step (the store
 * contract suite runs the same tests against both). Approvals die with the process, which is
 * why Corridor warns at start when this store is in use.
 *
 * Indexed like the Redis store's sorted sets: the members of each live state, pending counts per
 * agent, the idempotency and same-request indexes, and finished entries in the order they are to
 * be forgotten, so that no operation scans every approval however many are kept.
 */
import type { Approval, ApprovalState, ExecutionResult, HeldRequest } from './approval.ts'
import {
  JOINABLE_STATES,
  type AbandonedClaim,
  type ApprovalStore,
  type CreateResult,
  type ApproverVerdict,
  type DecideResult,
  type StoreLimits,
} from './approval-store.ts'

interface Entry {
  approval: Approval
  claimToken: string | null
  claimDeadline: number
  retrySafe: boolean
}

type LiveState = 'pending' | 'approved' | 'executing'

export class MemoryApprovalStore implements ApprovalStore {
  readonly durable = false
  readonly persistence = 'memory'
  readonly #limits: StoreLimits
  readonly #now: () => number
  readonly #entries = new Map<string, Entry>()
  readonly #live: Record<LiveState, Set<string>> = { pending: new Set(), approved: new Set(), executing: new Set() }
  readonly #pendingByAgent = new Map<string, number>()
  /** Finished entries in the order they are forgotten (the keep time is the same for all). */
  readonly #dropQueue: { id: string; at: number }[] = []
  readonly #idempotency = new Map<string, { id: string; until: number }>()
  readonly #sameRequest = new Map<string, { id: string; until: number }>()
  readonly #listeners: ((id: string) => void)[] = []

  constructor(limits: StoreLimits, now: () => number = Date.now) {
    this.#limits = limits
    this.#now = now
  }

  async create(held: HeldRequest, idempotencyKey: string | null): Promise<CreateResult> {
    this.#forgetDue()
    const now = this.#now()
    const idemKey = idempotencyKey === null ? null : `${held.agent}\u0000${idempotencyKey}`
    if (idemKey !== null) {
      const existing = this.#idempotency.get(idemKey)
      if (existing !== undefined && existing.until > now && this.#entries.has(existing.id))
        return { kind: 'exists', id: existing.id }
    }
    const sameKey = `${held.agent}\u0000${held.digest}`
    const same = this.#sameRequest.get(sameKey)
    if (same !== undefined && same.until > now) {
      const state = this.#entries.get(same.id)?.approval.state
      if (state !== undefined && JOINABLE_STATES.has(state)) return { kind: 'exists', id: same.id }
    }
    if (this.#live.pending.size >= this.#limits.maxPending) return { kind: 'full' }
    if ((this.#pendingByAgent.get(held.agent) ?? 0) >= this.#limits.maxPendingPerAgent) return { kind: 'agent_full' }
    const entry: Entry = {
      approval: { held, state: 'pending', approvals: [], rejection: null, cancelReason: null, result: null },
      claimToken: null,
      claimDeadline: 0,
      retrySafe: false,
    }
    this.#entries.set(held.id, entry)
    this.#enter(entry, 'pending')
    if (idemKey !== null) this.#idempotency.set(idemKey, { id: held.id, until: held.expiresAt + this.#limits.keepMs })
    this.#sameRequest.set(sameKey, { id: held.id, until: held.expiresAt })
    this.#changed(held.id)
    return { kind: 'created' }
  }

  async get(id: string): Promise<Approval | null> {
    this.#forgetDue()
    return this.#entries.get(id)?.approval ?? null
  }

  async list(state: LiveState, offset: number, limit: number): Promise<Approval[]> {
    const out: Approval[] = []
    for (const id of this.#live[state]) out.push((this.#entries.get(id) as Entry).approval)
    out.sort((a, b) => a.held.createdAt - b.held.createdAt)
    return out.slice(offset, offset + limit)
  }

  async count(state: LiveState): Promise<number> {
    return this.#live[state].size
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
    if (approvals.length < a.held.required) {
      e.approval = { ...a, approvals }
      this.#changed(id)
      return { kind: 'recorded' }
    }
    this.#move(e, { ...a, approvals, state: 'approved' })
    return { kind: 'approved' }
  }

  async claim(id: string, token: string, deadlineMs: number, retrySafe: boolean): Promise<boolean> {
    const e = this.#entries.get(id)
    if (e === undefined || e.approval.state !== 'approved') return false
    e.claimToken = token
    e.claimDeadline = deadlineMs
    e.retrySafe = retrySafe
    this.#move(e, { ...e.approval, state: 'executing' })
    return true
  }

  async unclaim(id: string, token: string): Promise<boolean> {
    const e = this.#entries.get(id)
    if (e === undefined || e.claimToken !== token) return false
    if (e.approval.state !== 'executing' && e.approval.state !== 'unknown') return false
    e.claimToken = null
    this.#move(e, { ...e.approval, state: 'approved' })
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
    // A retry of the same request within the retry window gets this result, never a second execution.
    this.#sameRequest.set(`${e.approval.held.agent}\u0000${e.approval.held.digest}`, {
      id,
      until: this.#now() + this.#limits.retryWindowMs,
    })
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
    for (const id of [...this.#live.pending]) {
      if (out.length >= limit) break
      const e = this.#entries.get(id) as Entry
      if (nowMs < e.approval.held.expiresAt) continue
      this.#finish(e, { ...e.approval, state: 'expired' })
      out.push(id)
    }
    return out
  }

  async abandonStale(nowMs: number, limit: number): Promise<AbandonedClaim[]> {
    const out: AbandonedClaim[] = []
    for (const id of [...this.#live.executing]) {
      if (out.length >= limit) break
      const e = this.#entries.get(id) as Entry
      if (nowMs < e.claimDeadline) continue
      if (e.retrySafe) {
        this.#move(e, { ...e.approval, state: 'approved' })
        out.push({ id, outcome: 'retry' })
      } else {
        this.#finish(e, { ...e.approval, state: 'unknown' })
        out.push({ id, outcome: 'unknown' })
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
    for (const set of Object.values(this.#live)) set.clear()
    this.#pendingByAgent.clear()
  }

  /** Moves an entry to another state, keeping the indexes in step. */
  #move(e: Entry, next: Approval): void {
    this.#leave(e)
    e.approval = next
    this.#enter(e, next.state)
    this.#changed(next.held.id)
  }

  #finish(e: Entry, next: Approval): void {
    this.#move(e, next)
    this.#dropQueue.push({ id: next.held.id, at: this.#now() + this.#limits.keepMs })
  }

  #enter(e: Entry, state: ApprovalState): void {
    if (state !== 'pending' && state !== 'approved' && state !== 'executing') return
    this.#live[state].add(e.approval.held.id)
    if (state === 'pending') {
      const agent = e.approval.held.agent
      this.#pendingByAgent.set(agent, (this.#pendingByAgent.get(agent) ?? 0) + 1)
    }
  }

  #leave(e: Entry): void {
    const { state, held } = e.approval
    if (state !== 'pending' && state !== 'approved' && state !== 'executing') return
    this.#live[state].delete(held.id)
    if (state === 'pending') {
      const left = (this.#pendingByAgent.get(held.agent) ?? 1) - 1
      if (left === 0) this.#pendingByAgent.delete(held.agent)
      else this.#pendingByAgent.set(held.agent, left)
    }
  }

  #changed(id: string): void {
    // Listeners run after the transition has completed, as a Redis subscriber would see it.
    queueMicrotask(() => {
      for (const listener of this.#listeners) listener(id)
    })
  }

  #forgetDue(): void {
    const now = this.#now()
    let n = 0
    while (n < this.#dropQueue.length && (this.#dropQueue[n] as { at: number }).at <= now) {
      const { id } = this.#dropQueue[n] as { id: string }
      const e = this.#entries.get(id)
      // Only a finished entry is forgotten (an unknown one that completed later is finished again, and queued again).
      if (
        e !== undefined &&
        !this.#live.pending.has(id) &&
        !this.#live.approved.has(id) &&
        !this.#live.executing.has(id)
      )
        this.#entries.delete(id)
      n++
    }
    if (n > 0) this.#dropQueue.splice(0, n)
    if (this.#idempotency.size > 0 || this.#sameRequest.size > 0) this.#forgetKeys(now)
  }

  #lastKeySweep = 0

  /** Expired index keys are dropped once a second at most (they are checked for expiry when read anyway). */
  #forgetKeys(now: number): void {
    if (now - this.#lastKeySweep < 1_000) return
    this.#lastKeySweep = now
    for (const [key, v] of this.#idempotency) if (v.until <= now) this.#idempotency.delete(key)
    for (const [key, v] of this.#sameRequest) if (v.until <= now) this.#sameRequest.delete(key)
  }
}
