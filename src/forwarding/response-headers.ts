/**
 * The headers that come back from the upstream: hop-by-hop headers, cookies and Corridor's own
 * are removed. (The headers that go upstream are the canonical request's, request/headers.ts.)
 */
import type { IncomingHttpHeaders } from 'node:http'
import { HOP_BY_HOP_HEADERS } from '../request/headers.ts'
import type { SecretMask } from '../request/secret-mask.ts'
import type { FollowUps } from './follow-ups.ts'

/** Response headers never passed back to the agent. */
const DROP_RESPONSE = new Set([...HOP_BY_HOP_HEADERS, 'set-cookie', 'proxy-authenticate'])

/** The upstream's headers as relayed to the agent, masked of the credential placed in the request. */
export function agentResponseHeaders(
  headers: IncomingHttpHeaders,
  requestId: string,
  mask: SecretMask | null = null,
  followUps: FollowUps | null = null,
): Record<string, string | string[]> {
  const masking = mask !== null && !mask.empty
  const connection = headers.connection
  const named = typeof connection === 'string' ? connection.split(',').map((t) => t.trim().toLowerCase()) : null
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (
      value === undefined ||
      DROP_RESPONSE.has(name) ||
      name.startsWith('x-corridor-') ||
      (named !== null && named.includes(name))
    )
      continue
    const masked = !masking ? value : Array.isArray(value) ? value.map((v) => mask.text(v)) : mask.text(value)
    // Location and Link pointing at a connector's upstream lead back through Corridor (follow-ups.ts).
    out[name] =
      followUps === null
        ? masked
        : Array.isArray(masked)
          ? masked.map((v) => followUps.header(name, v))
          : followUps.header(name, masked)
  }
  out['x-corridor-request-id'] = requestId
  return out
}
