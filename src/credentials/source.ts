/**
 * Where a connector's credential comes from. Every source hands back an IssuedCredential: the
 * secret plus a reference that is safe to audit (the environment variable or file it came from;
 * for leased sources, the lease id), never the value.
 */
import type { Secret } from './secret.ts'

export interface IssuedCredential {
  readonly secret: Secret
  /** Safe to log and audit: names where the credential came from, never its value. */
  readonly reference: string
  readonly leaseId: string | null
}

export interface CredentialSource {
  /** Resolves a credential or throws CorridorError('credential_unavailable'). */
  issue(signal?: AbortSignal): Promise<IssuedCredential> | IssuedCredential
}

// Header values must be RFC 9110 field values: no CR, LF or NUL can ride in a secret.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
export function isValidFieldValue(value: string): boolean {
  return FIELD_VALUE.test(value)
}
