/**
 * A credential source backed by leases: the scope decides who shares a lease (every agent of the
 * connector, or each agent its own), per-request actions get a lease of their own that is revoked
 * when the response ends, and an upstream's 401/403 drops the refused lease only when the
 * connector opts in (once per lease, never a retry loop).
 */
import type { CredentialScope } from '../registry/connectors.ts'
import type { Logger } from '../shared/logger.ts'
import { LeaseCache, type LeaseProvider } from './lease-cache.ts'
import { held, type CredentialSource, type HeldCredential, type IssueContext, type IssuedCredential } from './source.ts'

export interface LeasingSourceOptions {
  readonly scope: CredentialScope
  readonly refreshOnReject: boolean
  readonly now: () => number
  readonly log: Logger
  readonly timeoutMs: number
}

const AGENT_SCOPE = 'agent:'

export class LeasingSource implements CredentialSource {
  readonly #cache: LeaseCache
  readonly #scope: CredentialScope
  readonly #refreshOnReject: boolean
  readonly #canRevoke: boolean
  readonly #held = new WeakMap<IssuedCredential, HeldCredential>()

  constructor(provider: LeaseProvider, options: LeasingSourceOptions) {
    this.#cache = new LeaseCache(provider, { now: options.now, log: options.log, timeoutMs: options.timeoutMs })
    this.#scope = options.scope
    this.#refreshOnReject = options.refreshOnReject
    this.#canRevoke = provider.revoke !== undefined
  }

  async issue(context: IssueContext): Promise<HeldCredential> {
    const scope = this.#scope === 'agent' ? AGENT_SCOPE + context.agentId : 'connector'
    if (context.perRequest && this.#canRevoke) {
      const lease = await this.#cache.obtainUncached(scope, context.timeoutMs, context.callLog ?? null)
      let released = false
      return held(lease.credential, {
        release: () => {
          if (released) return
          released = true
          void this.#cache.revoke(lease)
        },
      })
    }
    const { credential } = await this.#cache.get(scope, context.timeoutMs, context.callLog ?? null)
    // Built once per credential (renewals keep it), not once per request.
    let shared = this.#held.get(credential)
    if (shared === undefined) {
      shared = this.#refreshOnReject
        ? held(credential, {
            rejected: () => void this.#cache.invalidate(scope, credential.leaseId, credential.reference),
          })
        : held(credential)
      this.#held.set(credential, shared)
    }
    return shared
  }

  /** Agent-scoped leases of these agents; with null, every lease (a shared lease serves agents out of scope too). */
  revoke(agents: ReadonlySet<string> | null, dryRun = false): Promise<number> {
    return this.#cache.revokeWhere(
      (scope) =>
        agents === null ? true : scope.startsWith(AGENT_SCOPE) && agents.has(scope.slice(AGENT_SCOPE.length)),
      dryRun,
    )
  }

  close(): Promise<void> {
    return this.#cache.revokeAll()
  }
}
