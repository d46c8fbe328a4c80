/**
 * The headers that go upstream and the ones that come back. Everything that carries a
 * credential, controls the hop, claims to be forwarding information or belongs to Corridor is
 * removed from the agent's request before the connector's credential is added; hop-by-hop
 * headers and cookies are removed from the upstream's response.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'

/** Request headers never forwarded from the agent. */
const DROP_REQUEST = new Set([
  // hop-by-hop (RFC 9110 §7.6.1) and framing Corridor sets itself
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'host',
  'content-length', 'http2-settings',
  // credentials of any kind: the agent's own is a Corridor credential and must never leave
  'authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key', 'x-auth-token', 'private-token',
  // forwarding information only Corridor may state
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-prefix',
  'x-forwarded-uri', 'x-real-ip', 'x-original-url', 'x-original-uri', 'x-rewrite-url', 'via',
])

/** Response headers never passed back to the agent. */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'set-cookie', 'proxy-authenticate'])

export interface RequestHeaderOptions {
  /** Header names the agent's Connection header listed. */
  readonly connectionNamed: ReadonlySet<string>
  /** Connector-specific headers to drop (Connector.dropHeaders). */
  readonly alsoDrop: ReadonlySet<string>
  readonly bodyLength: number
  readonly hasBody: boolean
}

export function upstreamRequestHeaders(req: IncomingMessage, options: RequestHeaderOptions): string[] {
  const out: string[] = []
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (DROP_REQUEST.has(name) || name.startsWith('x-corridor-') || options.connectionNamed.has(name) || options.alsoDrop.has(name)) continue
    out.push(name, raw[i + 1] as string)
  }
  if (options.hasBody) out.push('content-length', String(options.bodyLength))
  const host = req.headers.host
  out.push('x-forwarded-for', req.socket.remoteAddress ?? 'unknown', 'x-forwarded-proto', 'http')
  if (host !== undefined) out.push('x-forwarded-host', host)
  return out
}

export function agentResponseHeaders(headers: IncomingHttpHeaders, requestId: string): Record<string, string | string[]> {
  const connection = headers.connection
  const named = typeof connection === 'string' ? connection.split(',').map((t) => t.trim().toLowerCase()) : null
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || DROP_RESPONSE.has(name) || name.startsWith('x-corridor-') || (named !== null && named.includes(name))) continue
    out[name] = value
  }
  out['x-corridor-request-id'] = requestId
  return out
}
