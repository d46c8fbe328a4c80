/**
 * The approval queue as the rest of Corridor sees it: the pipeline holds requests and waits on
 * them, the admin API lists and decides them, and a one-second sweep expires what nobody
 * decided, retires abandoned claims and releases approved requests whose releasing replica went
 * away. Every change is one atomic store transition; this class adds who may decide, the waiting,
 * the audit events and the notifications.
 */
import type { AuditSink } from '../audit/sink.ts'
import type { ApprovalsConfig } from '../config/server-config.ts'
import type { PolicyBundle } from '../policy/bundle.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { isTerminal, type Approval, type HeldRequest } from './approval.ts'
import { ApprovalStoreUnavailable, type ApprovalStore, type Persistence } from './approval-store.ts'
import { approvalEvent } from './audit-link.ts'
import { mayView, whyIneligible, type ApproverIdentity } from './eligibility.ts'
import type { ApprovalExecutor } from './executor.ts'
import { whyNoLongerPermitted } from './recheck.ts'
import type { ApprovalEvent, ApprovalNotifier } from './webhook.ts'

export interface ApprovalServiceDeps {
  readonly store: ApprovalStore
  readonly executor: ApprovalExecutor
  readonly config: ApprovalsConfig
  readonly policies: PolicyStore
  readonly audit: AuditSink
  readonly log: Logger
  readonly notifier: ApprovalNotifier | null
  readonly now: () => number
  /** Told when a person decided an approval (approved or rejected), with how long it waited (metrics). */
  readonly onDecided?: (outcome: 'approved' | 'rejected', waitedMs: number) => void
}

const SWEEP_MS = 1_000
/** Waiters re-read the store this often even without a change message (pub/sub is lost across a reconnect). */
const POLL_MS = 2_000
const SWEEP_BATCH = 500

export class ApprovalService {
  readonly #d: ApprovalServiceDeps
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #sweeper: NodeJS.Timeout
  #heldConnections = 0
  #sweeping = false
  #stopping = false

  constructor(deps: ApprovalServiceDeps) {
    this.#d = deps
    deps.store.onChange((id) => this.#wake(id))
    this.#sweeper = setInterval(() => void this.#sweep(), SWEEP_MS)
    this.#sweeper.unref()
  }

  get durable(): boolean {
    return this.#d.store.durable
  }

  /** Whether the store answers now (readiness report). */
  /** Whether the store answers now, and what survives a restart of it. */
  async ping(): Promise<{ reachable: boolean; persistence: Persistence }> {
    try {
      await this.#d.store.ping()
      return { reachable: true, persistence: this.#d.store.persistence }
    } catch {
      return { reachable: false, persistence: this.#d.store.persistence }
    }
  }

  get heldConnections(): number {
    return this.#heldConnections
  }

  /** Persists a held request. With an Idempotency-Key the agent already used, returns that approval instead. */
  async hold(held: HeldRequest, idempotencyKey: string | null): Promise<Approval> {
    let result
    try {
      result = await this.#d.store.create(held, idempotencyKey)
    } catch (err) {
      if (!(err instanceof ApprovalStoreUnavailable)) throw err
      // The create may still have happened (a stalled store runs it late, or its answer was lost), so the
      // agent is told the id it would have, not "nothing was held": a retry of the same request joins it.
      throw new CorridorError(
        err.code,
        `the approval queue did not confirm the hold; if it was recorded it is approval ${held.id}, and retrying the same request joins it rather than opening another`,
        { cause: err, details: { approval_id: held.id, state: 'unknown' } },
      )
    }
    switch (result.kind) {
      case 'exists': {
        const existing = await this.get(result.id)
        if (existing === null) throw new CorridorError('approval_not_found', `approval '${result.id}' no longer exists`)
        return existing
      }
      case 'full':
        throw new CorridorError(
          'approval_capacity',
          `the approval queue holds its maximum of ${this.#d.config.maxPending} pending requests; try again later`,
        )
      case 'agent_full':
        throw new CorridorError(
          'approval_capacity',
          `agent '${held.agent}' already has ${this.#d.config.maxPendingPerAgent} requests waiting for approval`,
        )
      case 'created': {
        const approval: Approval = {
          held,
          state: 'pending',
          approvals: [],
          rejection: null,
          cancelReason: null,
          result: null,
        }
        this.#d.audit.writeEvent(approvalEvent('held', approval, this.#d.now()))
        this.#d.notifier?.notify('held', approval)
        return approval
      }
    }
  }

  /** Takes one of the bounded held-connection slots; false when all are taken. */
  takeConnectionSlot(): boolean {
    if (this.#heldConnections >= this.#d.config.maxHeldConnections) return false
    this.#heldConnections++
    return true
  }

  releaseConnectionSlot(): void {
    this.#heldConnections--
  }

  async get(id: string): Promise<Approval | null> {
    return this.#store(() => this.#d.store.get(id))
  }

  async list(state: 'pending' | 'approved' | 'executing', offset: number, limit: number): Promise<Approval[]> {
    return this.#store(() => this.#d.store.list(state, offset, limit))
  }

  /**
   * Waits up to `waitMs` for an answer the agent can use (a result, a rejection, an expiry…)
   * and returns the approval as it then stands. An approved request found on the way is
   * released here, so it runs even if the replica that approved it went away.
   */
  async waitForAnswer(known: Approval, waitMs: number, signal: AbortSignal): Promise<Approval | null> {
    const id = known.held.id
    const deadline = this.#d.now() + waitMs
    // The caller has just read (or created) it: the first round starts from that, not from another read.
    let next: Approval | null = known
    for (;;) {
      const approval: Approval | null = next ?? (await this.get(id))
      next = null
      // A finished approval is the agent's answer: a result, or the reason there never will be one.
      if (approval === null || isTerminal(approval.state)) return approval
      if (approval.state === 'approved') void this.#d.executor.release(id)
      const remaining = deadline - this.#d.now()
      if (remaining <= 0 || signal.aborted || this.#stopping) return approval
      await this.#changeOf(id, Math.min(remaining, POLL_MS), signal)
    }
  }

  /** An approver's decision: eligibility here, then the atomic transition in the store. */
  async decide(
    id: string,
    approver: ApproverIdentity,
    approve: boolean,
    reason: string,
    digest: string | null,
  ): Promise<Approval> {
    // A decision nobody could audit is not taken.
    if (!this.#d.audit.healthy)
      throw new CorridorError('audit_unavailable', 'the audit trail cannot be written; decisions wait until it can')
    const now = this.#d.now()
    const approval = await this.get(id)
    if (approval === null || !mayView(approver, approval.held))
      throw new CorridorError(
        'approval_not_found',
        `no approval '${id}' that you may see (finished approvals are kept for ${Math.round(this.#d.config.keepResultsMs / 60_000)} minutes)`,
      )
    const why = whyIneligible(approver, approval.held)
    if (why !== null) throw new CorridorError('approver_not_eligible', why)
    const result = await this.#store(() =>
      this.#d.store.decide(
        id,
        { approve, by: { approver: approver.id, groups: approver.groups, reason, at: now }, digest },
        now,
      ),
    )
    switch (result.kind) {
      case 'not_found':
        throw new CorridorError('approval_not_found', `no approval '${id}'`)
      case 'expired':
        await this.#settled(id, 'expired')
        throw new CorridorError('approval_conflict', 'this approval expired before your decision')
      case 'digest_mismatch':
        throw new CorridorError(
          'approval_conflict',
          'the held request is not the one you reviewed (digest differs); show it again',
        )
      case 'already_decided':
        throw new CorridorError(
          'approval_conflict',
          'you have already approved this request; it needs a different approver',
        )
      case 'not_pending':
        throw new CorridorError('approval_conflict', `this approval is already ${result.state}`)
      case 'recorded':
      case 'approved':
      case 'rejected':
        break // recorded below
    }
    // The decision is recorded; if the store cannot be read back now, report it from what we know.
    const after = (await this.#d.store.get(id).catch(() => null)) ?? approval
    const event: ApprovalEvent = result.kind === 'recorded' ? 'approval_recorded' : result.kind
    this.#d.audit.writeEvent(approvalEvent(event, after, now, approver, reason))
    this.#d.notifier?.notify(event, after)
    this.#d.log.info({ approvalId: id, approver: approver.id, event }, 'approval decision')
    if (result.kind === 'approved' || result.kind === 'rejected')
      this.#d.onDecided?.(result.kind, now - approval.held.createdAt)
    if (result.kind === 'approved') void this.#d.executor.release(id)
    return after
  }

  /** After a policy change: cancels pending and approved requests the new policy no longer permits as they were held. */
  async recheckAll(bundle: PolicyBundle): Promise<void> {
    try {
      const cancelled = await this.cancelWhere((held) => whyNoLongerPermitted(bundle, held, this.#d.now()))
      if (cancelled > 0)
        this.#d.log.warn({ cancelled, version: bundle.version }, 'policy change cancelled held requests')
    } catch (err) {
      // The next release re-checks each request anyway; this pass only tells people sooner.
      this.#d.log.error({ err }, 'approvals could not be re-checked against the new policy')
    }
  }

  /** How many requests wait for approvers now (pending), for metrics. */
  pendingCount(): Promise<number> {
    return this.#store(() => this.#d.store.count('pending'))
  }

  /** How many pending or approved requests `matches` selects (a stop's dry run). */
  async countWhere(matches: (held: HeldRequest) => boolean): Promise<number> {
    let n = 0
    await this.#eachWaiting(async (a) => {
      if (matches(a.held)) n++
    })
    return n
  }

  /** Cancels every pending or approved request for which `why` gives a reason; how many. Throws when the store fails. */
  async cancelWhere(why: (held: HeldRequest) => string | null): Promise<number> {
    let cancelled = 0
    await this.#eachWaiting(async (a) => {
      const reason = why(a.held)
      if (reason !== null && (await this.#d.store.cancel(a.held.id, reason, this.#d.now()))) {
        cancelled++
        await this.#settled(a.held.id, 'cancelled', reason)
      }
    })
    return cancelled
  }

  /** Read in full before any is visited: a cancellation shifts the pages of what is left. */
  async #eachWaiting(visit: (a: Approval) => Promise<void>): Promise<void> {
    const waiting: Approval[] = []
    for (const state of ['pending', 'approved'] as const) {
      for (let offset = 0; ; offset += SWEEP_BATCH) {
        const batch = await this.list(state, offset, SWEEP_BATCH)
        waiting.push(...batch)
        if (batch.length < SWEEP_BATCH) break
      }
    }
    for (const a of waiting) await visit(a)
  }

  /** Audit event and notification for a change made outside decide(): expiry, cancellation, release. */
  async #settled(id: string, event: ApprovalEvent, reason: string | null = null): Promise<void> {
    const approval = await this.#d.store.get(id).catch(() => null)
    if (approval === null) return
    this.#d.audit.writeEvent(approvalEvent(event, approval, this.#d.now(), null, reason))
    this.#d.notifier?.notify(event, approval)
  }

  /** Called by the executor when it cancelled or released an approval. */
  settledByExecutor(id: string, event: 'cancelled' | 'executed', reason: string | null): void {
    void this.#settled(id, event, reason)
  }

  /**
   * Shutdown, first step: every call still waiting is answered now (202 with its approval id, so
   * the agent can come back to it on another replica) instead of being cut off with the socket.
   * Resolves when they have been answered, or after `timeoutMs`.
   */
  async answerWaitingCalls(timeoutMs: number): Promise<void> {
    this.#stopping = true
    for (const wake of [...this.#waiters.values()].flatMap((s) => [...s])) wake()
    const deadline = Date.now() + timeoutMs
    while (this.#heldConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  }

  /** Stops sweeping and lets releases in flight finish until `deadline` (ms since the epoch). */
  async close(deadline = Date.now() + 5_000): Promise<void> {
    clearInterval(this.#sweeper)
    await this.answerWaitingCalls(0)
    await this.#d.executor.drain(Math.max(0, deadline - Date.now()))
  }

  /**
   * One sweep, now, finished when the releases it started are: expiries, abandoned claims and
   * approved requests nobody released. The interval runs the same pass every second; tests call
   * this with the clock they gave the service instead of waiting for it.
   */
  async sweepNow(): Promise<void> {
    await Promise.all(await this.#sweep())
  }

  async #sweep(): Promise<Promise<void>[]> {
    const releases: Promise<void>[] = []
    // Expiries and re-releases are audited events too: they wait while the audit sink is failing.
    if (this.#sweeping || !this.#d.audit.healthy) return releases
    this.#sweeping = true
    try {
      const now = this.#d.now()
      for (const id of await this.#d.store.expireDue(now, SWEEP_BATCH)) await this.#settled(id, 'expired')
      for (const { id, outcome } of await this.#d.store.abandonStale(now, SWEEP_BATCH)) {
        if (outcome === 'retry') {
          // Its forward carries an idempotency key the upstream honours: sending it again cannot run it twice.
          this.#d.log.warn(
            { approvalId: id },
            'a released request lost its releasing replica mid-forward; released again under the same idempotency key',
          )
          continue
        }
        this.#d.log.error(
          { approvalId: id },
          'a released request lost its releasing replica mid-forward; it is marked unknown and never sent again',
        )
        await this.#settled(id, 'unknown')
      }
      // Approved but not released: the approving replica went away, or the release failed (credential, audit).
      for (const a of await this.#d.store.list('approved', 0, SWEEP_BATCH))
        releases.push(this.#d.executor.release(a.held.id))
    } catch (err) {
      if (!(err instanceof ApprovalStoreUnavailable)) this.#d.log.error({ err }, 'approval sweep failed')
    } finally {
      this.#sweeping = false
    }
    return releases
  }

  #changeOf(id: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(id)
      if (set === undefined) this.#waiters.set(id, (set = new Set()))
      const waiters = set
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        waiters.delete(done)
        if (waiters.size === 0) this.#waiters.delete(id)
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      signal.addEventListener('abort', done, { once: true })
      waiters.add(done)
    })
  }

  #wake(id: string): void {
    const set = this.#waiters.get(id)
    if (set !== undefined) for (const wake of [...set]) wake()
  }

  async #store<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (err) {
      if (err instanceof ApprovalStoreUnavailable)
        throw new CorridorError(err.code, 'the approval queue cannot be reached; nothing was held or decided', {
          cause: err,
        })
      throw err
    }
  }
}
