/**
 * Checks on the request as received, before anything reads its meaning. Node's parser already
 * refuses most smuggling forms (CL+TE, duplicate CL, bare LF, obs-fold); these are the ones it
 * accepts and a proxy must not (hostile-inputs.md §3.1): two Host headers, HTTP/1.0 with
 * chunked framing, header counts at the truncation cap, duplicated credential headers,
 * hop-by-hop tricks and method overrides.
 */
import type { IncomingMessage } from 'node:http'
import { CorridorError } from '../shared/errors.ts'

/** Headers that must appear at most once: a second copy is a parser-differential or a hidden credential. */
const SINGLETONS = new Set([
  'host', 'authorization', 'proxy-authorization', 'content-length', 'content-type', 'content-encoding', 'cookie',
  'idempotency-key', 'x-api-key', 'transfer-encoding', 'x-corridor-intent', 'x-corridor-task-id', 'x-corridor-user', 'x-corridor-approval',
])

/** Headers that `Connection` may not name: removing them would change what Corridor decided on. */
const PROTECTED = new Set([
  'host', 'authorization', 'proxy-authorization', 'cookie', 'content-length', 'content-type', 'content-encoding',
  'transfer-encoding', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-api-key',
])

const METHOD_OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override']

export interface InboundLimits {
  readonly maxHeaders: number
}

/** Returns the lower-case header names the agent's Connection header listed (to be dropped). */
export function inspectInbound(req: IncomingMessage, limits: InboundLimits, extraSingletons: readonly string[]): ReadonlySet<string> {
  const raw = req.rawHeaders
  // Node stops collecting at maxHeadersCount (set to the cap + 1): reaching it means some were cut.
  if (raw.length / 2 > limits.maxHeaders) throw new CorridorError('headers_too_large', `more than ${limits.maxHeaders} request headers`)

  const seen = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (SINGLETONS.has(name) || extraSingletons.includes(name)) {
      if (seen.has(name)) throw new CorridorError('ambiguous_request', `header '${name}' appears more than once`)
      seen.add(name)
    }
  }
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    throw new CorridorError('ambiguous_request', 'Transfer-Encoding is not defined for HTTP/1.0')
  }
  if (req.headers.upgrade !== undefined) throw new CorridorError('bad_request', 'protocol upgrades are not supported')
  for (const h of METHOD_OVERRIDES) {
    if (req.headers[h] !== undefined) throw new CorridorError('ambiguous_request', `'${h}' is refused: send the real method`)
  }
  const encoding = req.headers['content-encoding']
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new CorridorError('unsupported_media_type', 'compressed request bodies are not accepted')
  }

  const named = new Set<string>()
  const connection = req.headers.connection
  if (connection !== undefined) {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase()
      if (name === '' || name === 'close' || name === 'keep-alive') continue
      if (PROTECTED.has(name) || name.startsWith('x-forwarded-') || name.startsWith('x-corridor-')) {
        throw new CorridorError('ambiguous_request', `Connection may not name '${name}'`)
      }
      named.add(name)
    }
  }
  return named
}

/** Refuses a request that repeats a header only known once the connector is (its agent-key header). */
export function assertSingleHeader(req: IncomingMessage, name: string): void {
  if (req.headers[name] === undefined) return
  let count = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) if ((req.rawHeaders[i] as string).toLowerCase() === name) count++
  if (count > 1) throw new CorridorError('ambiguous_request', `header '${name}' appears more than once`)
}
