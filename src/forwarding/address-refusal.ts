/**
 * How an upstream call refused for where its host resolved is told: the operator's log names the
 * host and the address, the audit record the kind.
 */
import { AddressRefused } from '../shared/checked-lookup.ts'
import type { RefusedAddressKind } from '../shared/egress-addresses.ts'
import type { Logger } from '../shared/logger.ts'

/**
 * When `err` is an upstream call refused for where its host resolved: the kind of address, for the
 * audit record's `error_detail`, after the operator's log has the host and the address. Else null.
 */
export function noteAddressRefusal(
  err: unknown,
  log: Logger,
  context: Readonly<Record<string, unknown>>,
): RefusedAddressKind | null {
  const cause = err instanceof Error ? err.cause : undefined
  if (!(cause instanceof AddressRefused)) return null
  log.warn(
    { err: cause, detail: cause.kind, ...context },
    'upstream host resolved to an address Corridor never connects to; request not forwarded',
  )
  return cause.kind
}
