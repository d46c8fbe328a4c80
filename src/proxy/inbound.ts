/**
 * Checks on the request as received, before anything reads its meaning. Node's parser already
 * refuses most smuggling forms (CL+TE, duplicate CL, bare LF, obs-fold); these are the ones it
 * accepts and a proxy must not: two Host headers, HTTP/1.0 with chunked framing, header counts
 * at the truncation cap, duplicated credential headers, `Connection` naming end-to-end headers,
 * upgrades and compressed bodies.
 */
import type { IncomingMessage } from 'node:http'
import { assertHeaderShape } from '../request/headers.ts'
import { CorridorError } from '../shared/errors.ts'

export interface InboundLimits {
  readonly maxHeaders: number
}

/** Framing and header-set checks; the header list itself is read by request/headers.ts. */
export function inspectInbound(req: IncomingMessage, limits: InboundLimits, extraSingletons: readonly string[]): void {
  const raw = req.rawHeaders
  // Node stops collecting at maxHeadersCount (set to the cap + 1): reaching it means some were cut.
  if (raw.length / 2 > limits.maxHeaders)
    throw new CorridorError('headers_too_large', `more than ${limits.maxHeaders} request headers`)
  assertHeaderShape(raw, extraSingletons)
  if (req.headers.host === undefined && req.httpVersionMinor === 1)
    throw new CorridorError('bad_request', 'HTTP/1.1 requests need a Host header')
  const expect = req.headers.expect
  if (expect !== undefined && expect.toLowerCase() !== '100-continue')
    throw new CorridorError('bad_request', `Expect: ${expect.slice(0, 64)} is not supported`)
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    throw new CorridorError('ambiguous_request', 'Transfer-Encoding is not defined for HTTP/1.0')
  }
  const transferEncoding = req.headers['transfer-encoding']
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') {
    throw new CorridorError('ambiguous_request', 'the only Transfer-Encoding accepted is chunked')
  }
  if (req.headers.upgrade !== undefined) throw new CorridorError('bad_request', 'protocol upgrades are not supported')
  const encoding = req.headers['content-encoding']
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new CorridorError('unsupported_media_type', 'compressed request bodies are not accepted')
  }
}

/** Refuses a request that repeats a header only known once the connector is (its agent-key header). */
export function assertSingleHeader(req: IncomingMessage, name: string): void {
  if (req.headers[name] === undefined) return
  let count = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) if ((req.rawHeaders[i] as string).toLowerCase() === name) count++
  if (count > 1) throw new CorridorError('ambiguous_request', `header '${name}' appears more than once`)
}
