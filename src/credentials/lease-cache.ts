/**
 * Caches short-lived credentials per scope (connector, or connector + agent) until a safety
 * margin before they expire. Concurrent requests for one scope share a single in-flight call;
 * renewable leases are renewed in the background once half their life has passed,
 * while the still-valid credential keeps serving; a failure is remembered for a moment so that a
 * down Vault gets one call per scope per second, not one per request. Every lease ever cached is
 * revoked at shutdown.
 */
import type { Logger } from '../shared/logger.ts'
import { recordCallsUnder, type CallLog } from '../shared/trace-context.ts'
import type { IssuedCredential } from './source.ts'

export interface Lease {
  readonly credential: IssuedCredential
  readonly obtainedAt: number
  readonly expiresAt: number
  readonly renewable: boolean
}

/** What a leasing source knows how to do; renew and revoke are optional (KV reads have no lease). */
export interface LeaseProvider {
  obtain(scope: string, signal: AbortSignal): Promise<Lease>
  renew?(lease: Lease, signal: AbortSignal): Promise<Lease>
  revoke?(lease: Lease): Promise<void>
}

class TakenBackError extends Error {
  constructor() {
    super('the credential was taken back by a stop while it was being issued')
  }
}

export interface LeaseCacheOptions {
  readonly now: () => number
  readonly log: Logger
  /** A failed obtain is replayed to callers for this long before Vault is asked again. */
  readonly failureBackoffMs?: number
  /** Bound on background renewals and shutdown revocations. */
  readonly timeoutMs: number
}

interface Entry {
  lease: Lease
  renewing: boolean
}

/** Time kept in hand before expiry: a tenth of the lease, at least 1 s, at most 5 min, at most a third (so renewal at half-life comes first). */
export function safetyMarginMs(lease: Pick<Lease, 'obtainedAt' | 'expiresAt'>): number {
  const life = lease.expiresAt - lease.obtainedAt
  return Math.min(Math.max(life * 0.1, 1_000), 300_000, life / 3)
}

/** Half-way through its life: early enough that a failed renewal leaves time before the margin. */
export function renewalPoint(lease: Pick<Lease, 'obtainedAt' | 'expiresAt'>): number {
  return lease.obtainedAt + (lease.expiresAt - lease.obtainedAt) / 2
}

export class LeaseCache {
  readonly #provider: LeaseProvider
  readonly #options: LeaseCacheOptions
  readonly #entries = new Map<string, Entry>()
  readonly #inFlight = new Map<string, Promise<Lease>>()
  readonly #failures = new Map<string, { error: unknown; until: number }>()
  /** Every lease handed out and not yet known to be gone, with its scope, for revocation by a stop or at shutdown. */
  readonly #outstanding = new Map<Lease, string>()
  /**
   * The scopes each stop took back while a lease was being issued, in order: a lease obtained
   * while its scope was taken back is not kept. Emptied whenever nothing is being issued.
   */
  readonly #takenBack: ((scope: string) => boolean)[] = []
  /** Stops emptied from the front of #takenBack, so that positions in it stay comparable. */
  #takenBackDropped = 0
  /** Leases being issued now. */
  #obtaining = 0

  constructor(provider: LeaseProvider, options: LeaseCacheOptions) {
    this.#provider = provider
    this.#options = options
  }

  /** The scope's lease; the deadline timer is created only when Vault has to be asked (not on a cache hit). */
  async get(scope: string, timeoutMs: number, callLog: CallLog | null = null): Promise<Lease> {
    const now = this.#options.now()
    const entry = this.#entries.get(scope)
    if (entry !== undefined && now < entry.lease.expiresAt - safetyMarginMs(entry.lease)) {
      const { lease } = entry
      if (lease.renewable && !entry.renewing && now >= renewalPoint(lease)) this.#renewInBackground(scope, entry)
      return lease
    }
    const failure = this.#failures.get(scope)
    if (failure !== undefined && now < failure.until) throw failure.error
    const signal = AbortSignal.timeout(timeoutMs)
    let pending = this.#inFlight.get(scope)
    if (pending === undefined) {
      // The calls this obtain makes are the traced request's (others joining it wait on them).
      recordCallsUnder(signal, callLog)
      pending = this.#obtain(scope, signal)
      this.#inFlight.set(scope, pending)
    }
    return withSignal(pending, signal)
  }

  /** A fresh lease for one request, outside the cache; the caller revokes it with `revoke`. */
  obtainUncached(scope: string, timeoutMs: number, callLog: CallLog | null = null): Promise<Lease> {
    const signal = AbortSignal.timeout(timeoutMs)
    recordCallsUnder(signal, callLog)
    return this.#fresh(scope, signal)
  }

  /**
   * The upstream refused a credential: drop it so that the next request gets a fresh one. Only
   * the lease that was refused is dropped, so a burst of refusals replaces it once.
   */
  invalidate(scope: string, leaseId: string | null, reference: string): boolean {
    const entry = this.#entries.get(scope)
    if (entry === undefined) return false
    const current = entry.lease.credential
    if (current.leaseId !== leaseId || current.reference !== reference) return false
    this.#entries.delete(scope)
    void this.revoke(entry.lease)
    return true
  }

  async revoke(lease: Lease): Promise<void> {
    this.#outstanding.delete(lease)
    if (this.#provider.revoke === undefined) return
    try {
      await this.#provider.revoke(lease)
    } catch (err) {
      this.#options.log.warn(
        { err, leaseId: lease.credential.leaseId },
        'lease revocation failed; it will expire on its own',
      )
    }
  }

  /** Revokes every outstanding lease (shutdown). */
  async revokeAll(): Promise<void> {
    await this.revokeWhere(() => true)
  }

  /**
   * Revokes and forgets the outstanding leases of the scopes `taken` selects (a stop); a lease
   * being obtained for such a scope right now is revoked as soon as it arrives. How many were revoked.
   */
  async revokeWhere(taken: (scope: string) => boolean, dryRun = false): Promise<number> {
    if (dryRun) return [...this.#outstanding.values()].filter(taken).length
    if (this.#obtaining > 0) this.#takenBack.push(taken)
    for (const scope of [...this.#entries.keys()]) if (taken(scope)) this.#entries.delete(scope)
    const leases = [...this.#outstanding].filter(([, scope]) => taken(scope)).map(([lease]) => lease)
    await Promise.all(leases.map((l) => this.revoke(l)))
    return leases.length
  }

  /** A lease from the provider; one whose scope a stop took back while it was being issued is revoked, not kept. */
  async #fresh(scope: string, signal: AbortSignal): Promise<Lease> {
    const since = this.#takenBackDropped + this.#takenBack.length
    this.#obtaining++
    try {
      const lease = await this.#provider.obtain(scope, signal)
      this.#outstanding.set(lease, scope)
      if (this.#takenBack.slice(since - this.#takenBackDropped).some((taken) => taken(scope))) {
        await this.revoke(lease)
        throw new TakenBackError()
      }
      return lease
    } finally {
      // With nothing being issued, no issue can be overtaken by the stops recorded so far.
      if (--this.#obtaining === 0) {
        this.#takenBackDropped += this.#takenBack.length
        this.#takenBack.length = 0
      }
    }
  }

  async #obtain(scope: string, signal: AbortSignal): Promise<Lease> {
    try {
      const lease = await this.#fresh(scope, signal)
      // The lease it replaces is inside its margin and expires on its own; requests may still be using it.
      const replaced = this.#entries.get(scope)
      if (replaced !== undefined) this.#outstanding.delete(replaced.lease)
      this.#entries.set(scope, { lease, renewing: false })
      this.#failures.delete(scope)
      return lease
    } catch (err) {
      // Vault failing is replayed for a moment; a lease taken back by a stop is not a failure of the source.
      if (!(err instanceof TakenBackError))
        this.#failures.set(scope, {
          error: err,
          until: this.#options.now() + (this.#options.failureBackoffMs ?? 1_000),
        })
      throw err
    } finally {
      this.#inFlight.delete(scope)
    }
  }

  #renewInBackground(scope: string, entry: Entry): void {
    const renew = this.#provider.renew
    if (renew === undefined) return
    entry.renewing = true
    renew
      .call(this.#provider, entry.lease, AbortSignal.timeout(this.#options.timeoutMs))
      .then((renewed) => {
        if (!this.#outstanding.delete(entry.lease)) return // taken back by a stop meanwhile
        this.#outstanding.set(renewed, scope)
        if (this.#entries.get(scope) === entry) this.#entries.set(scope, { lease: renewed, renewing: false })
      })
      .catch((err: unknown) => {
        // The current lease still serves until its margin; then a new one is obtained.
        this.#options.log.warn(
          { err, leaseId: entry.lease.credential.leaseId },
          'lease renewal failed; a new lease will be obtained before this one expires',
        )
        entry.renewing = false
        if (this.#entries.get(scope) === entry)
          this.#entries.set(scope, { lease: { ...entry.lease, renewable: false }, renewing: false })
      })
  }
}

/** Lets one waiter give up at its own deadline without cancelling the shared call. */
function withSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e as Error)
      },
    )
  })
}
