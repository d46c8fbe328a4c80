/**
 * The request that leaves for the upstream: the canonical request's headers plus the framing
 * and forwarding facts Corridor states itself (never copied from the agent: no
 * X-Forwarded-Host rebuilt from the agent's Host), before the credential is placed.
 */

/** Methods whose requests carry a Content-Length even when the body is empty. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH'])

export interface OutgoingParts {
  /** Flat [name, value, name, value, …] list, as undici takes it. */
  headers: string[]
  /** Query string without '?', strictly encoded. */
  query: string
}

export function outgoingParts(method: string, headers: readonly (readonly [string, string])[], query: string, bodyLength: number, remoteAddress: string | null): OutgoingParts {
  const out: string[] = []
  for (const [name, value] of headers) out.push(name, value)
  if (bodyLength > 0 || BODY_METHODS.has(method)) out.push('content-length', String(bodyLength))
  // Identity only: Corridor reads every response to mask the injected credential in it.
  out.push('accept-encoding', 'identity')
  if (remoteAddress !== null) out.push('x-forwarded-for', remoteAddress, 'x-forwarded-proto', 'http')
  return { headers: out, query }
}

export function upstreamTarget(upstreamPath: string, query: string): string {
  return query === '' ? upstreamPath : `${upstreamPath}?${query}`
}
