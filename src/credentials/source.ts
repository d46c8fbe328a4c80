/**
 * Where a connector's credential comes from. Every source hands back an IssuedCredential: named
 * secret fields (`secret` is the primary one; a database lease adds `username` and `password`),
 * plus a reference and lease id that are safe to audit, never the values.
 */
import type { Logger } from '../shared/logger.ts'
import type { Secret } from './secret.ts'
import type { CallLog } from '../shared/trace-context.ts'

export interface IssuedCredential {
  /** Field name → value; injection templates refer to them as `{secret}`, `{username}`… */
  readonly fields: ReadonlyMap<string, Secret>
  /** Safe to log and audit: names where the credential came from, never its value. */
  readonly reference: string
  readonly leaseId: string | null
}

export interface IssueContext {
  readonly agentId: string
  /** The action asks for a lease of its own, revoked when the response ends. */
  readonly perRequest: boolean
  /** The issuing bound (vault.timeout): a source that has to wait creates its deadline from it, only then. */
  readonly timeoutMs: number
  /** A traced request's calls to Vault or a token endpoint go here, for its spans. */
  readonly callLog?: CallLog | null
}

/** A credential plus what to do when the request that used it is over. */
export interface HeldCredential extends IssuedCredential {
  /** Called once the agent's response has closed (revokes per-request leases). */
  release(): void
  /** Called when the upstream answered 401/403 with it (drops it from the cache if the connector opts in). */
  rejected(): void
}

/**
 * After the upstream answered (or did not): reports a 401/403 and releases the credential. Never
 * throws, so that it can run after the audit record without costing anything else; a failing
 * hook is logged with `context`.
 */
export function settleCredential(
  credential: HeldCredential,
  upstreamStatus: number | null,
  log: Logger,
  context: Record<string, unknown>,
): void {
  try {
    if (upstreamStatus === 401 || upstreamStatus === 403) credential.rejected()
    credential.release()
  } catch (err) {
    log.error({ err, ...context }, 'releasing a credential after its request failed')
  }
}

export interface CredentialSource {
  /** Resolves a credential or throws (the broker turns any failure into credential_unavailable). */
  issue(context: IssueContext): Promise<HeldCredential> | HeldCredential
  /**
   * A stop: revokes the leases held for these agents (null: every lease, shared ones included)
   * and forgets them; how many were revoked (with dryRun, how many would be).
   */
  revoke?(agents: ReadonlySet<string> | null, dryRun?: boolean): Promise<number>
  /** Revokes whatever it holds (shutdown). */
  close?(): Promise<void>
}

// Header values must be RFC 9110 field values: no CR, LF or NUL can ride in a secret.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
export function isValidFieldValue(value: string): boolean {
  return FIELD_VALUE.test(value)
}

const NOTHING = (): void => {}

/** A credential whose lifetime is not tied to the request (env, file, cached leases). */
export function held(
  credential: IssuedCredential,
  hooks: { release?: () => void; rejected?: () => void } = {},
): HeldCredential {
  return { ...credential, release: hooks.release ?? NOTHING, rejected: hooks.rejected ?? NOTHING }
}
