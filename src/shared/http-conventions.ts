/**
 * OpenTelemetry's HTTP conventions as spans and metrics both apply them, so that a trace and a
 * dashboard call the same request failed and name the same server:
 * - a method the conventions do not know is `_OTHER`;
 * - a server span or duration failed when the server answered 5xx or nothing at all for a reason
 *   of its own (a 4xx refuses the client's request: it is not the server failing);
 * - a client call failed when it was answered 4xx or 5xx, or not at all;
 * - a failure's `error.type` is the status as text or, without one, the error's own code;
 * - `server.address` is an IPv6 address without its URL brackets, `server.port` the scheme's
 *   default when the URL has none.
 */

const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'QUERY', 'TRACE'])

/** The method as the conventions name it: itself when they know it, else `_OTHER`. */
export const conventionalMethod = (method: string): string => (KNOWN_METHODS.has(method) ? method : '_OTHER')

/** A server's answer (`status` 0: none sent), with Corridor's error code if any: its error type, or null when it did not fail. */
export function serverErrorType(status: number, errorCode: string | null): string | null {
  if (status >= 500) return errorCode ?? String(status)
  return status === 0 ? errorCode : null
}

/** A client call's answer (`status` null: none came), with the error code of what went wrong if any: its error type, or null. */
export function clientErrorType(status: number | null, errorCode: string | null): string | null {
  if (status === null) return errorCode
  return status >= 400 ? String(status) : null
}

export interface ServerOf {
  readonly address: string
  readonly port: number
  readonly scheme: string
}

const servers = new Map<string, ServerOf>()
/** Origins come from configuration; this only bounds what many policy reloads could leave behind. */
const MAX_ORIGINS = 1_000

/** Where an origin (`scheme://host[:port]`) points; worked out once per origin. */
export function serverOf(origin: string): ServerOf {
  let server = servers.get(origin)
  if (server === undefined) {
    const url = new URL(origin)
    const scheme = url.protocol.slice(0, -1)
    server = {
      address: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port),
      scheme,
    }
    if (servers.size >= MAX_ORIGINS) servers.clear()
    servers.set(origin, server)
  }
  return server
}
