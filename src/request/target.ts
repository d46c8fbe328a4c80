/**
 * The request-target, canonicalised once. Policy matches this form and the forwarder sends
 * exactly this form, so there is no second parser for an attacker to play against the first
 * (Envoy CVE-2019-9901, CVE-2021-29492, heimdall GHSA-3q34-rx83-r6mq).
 *
 * Rules, in the order they apply:
 *  - only origin-form targets: one leading '/', never '//' (protocol-relative), never absolute-form or '*';
 *  - no '#', no '\', no byte outside RFC 3986 pchar / query characters (control bytes, spaces, non-ASCII);
 *  - percent-escapes must be well formed; unreserved ones are decoded (%7e → ~, %2e → .), the rest are
 *    upper-cased; encoded '/', '\' and control bytes are refused;
 *  - empty segments are merged ('/a//b' → '/a/b'); '.' and '..' segments are resolved (RFC 3986 §5.2.4);
 *    '..' above the root and matrix-parameter dot segments ('..;x') are refused.
 */
import { CorridorError } from '../shared/errors.ts'

export interface RequestTarget {
  /** Canonical path, always starting with '/'. */
  readonly path: string
  /** Canonical path segments (still percent-encoded), for route matching. */
  readonly segments: readonly string[]
  /** Query string without the leading '?', as received (parsed and re-encoded by the canonical request). */
  readonly query: string
}

const HEX = '0123456789ABCDEF'

// RFC 3986 pchar minus '%' (handled separately): unreserved / sub-delims / ':' / '@'.
const PCHAR = new Uint8Array(128)
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@") {
  PCHAR[c.charCodeAt(0)] = 1
}
const UNRESERVED = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1

function refuse(reason: string): never {
  throw new CorridorError('invalid_path', reason)
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48
  if (code >= 65 && code <= 70) return code - 55
  if (code >= 97 && code <= 102) return code - 87
  return -1
}

/** Canonicalises one raw segment (between slashes); returns it percent-normalised. */
function canonicalSegment(raw: string): string {
  if (raw.indexOf('%') === -1) {
    for (let i = 0; i < raw.length; i++) {
      const code = raw.charCodeAt(i)
      if (code >= 128 || PCHAR[code] !== 1) refuse(`character 0x${code.toString(16)} is not allowed in a path`)
    }
    return raw
  }
  let out = ''
  let nonAscii = false
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i)
    if (code === 37 /* % */) {
      const hi = hexValue(raw.charCodeAt(i + 1))
      const lo = hexValue(raw.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) refuse('malformed percent-escape in path')
      const byte = hi * 16 + lo
      if (byte === 0x2f || byte === 0x5c) refuse('encoded slash or backslash in path')
      if (byte < 0x20 || byte === 0x7f) refuse('encoded control character in path')
      out += byte < 128 && UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : '%' + HEX[hi] + HEX[lo]
      if (byte >= 0x80) nonAscii = true
      i += 2
    } else if (code >= 128 || PCHAR[code] !== 1) {
      refuse(`character 0x${code.toString(16)} is not allowed in a path`)
    } else {
      out += raw[i]
    }
  }
  // Servers decode invalid UTF-8 differently (a replacement character, or the raw byte), so two
  // different paths could reach the same resource: only well-formed UTF-8 is accepted.
  if (nonAscii) {
    try {
      decodeURIComponent(out)
    } catch {
      refuse('percent-escapes in the path are not UTF-8')
    }
  }
  return out
}

function validateQuery(query: string): void {
  for (let i = 0; i < query.length; i++) {
    const code = query.charCodeAt(i)
    if (code === 37) {
      if (hexValue(query.charCodeAt(i + 1)) < 0 || hexValue(query.charCodeAt(i + 2)) < 0) {
        throw new CorridorError('invalid_path', 'malformed percent-escape in query')
      }
      i += 2
    } else if (code <= 0x20 || code >= 0x7f) {
      throw new CorridorError('invalid_path', `character 0x${code.toString(16)} is not allowed in a query`)
    }
  }
}

export function parseRequestTarget(rawTarget: string): RequestTarget {
  if (rawTarget.charCodeAt(0) !== 47 /* / */) refuse('only origin-form request targets are accepted')
  if (rawTarget.charCodeAt(1) === 47) refuse('protocol-relative request target')
  if (rawTarget.includes('#')) refuse('fragment in request target')
  if (rawTarget.includes('\\')) refuse('backslash in request target')

  const q = rawTarget.indexOf('?')
  const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q)
  const query = q === -1 ? '' : rawTarget.slice(q + 1)
  if (query !== '') validateQuery(query)

  const segments: string[] = []
  const rawSegments = rawPath.split('/')
  let trailingSlash = false
  for (let i = 1; i < rawSegments.length; i++) {
    const raw = rawSegments[i] as string
    const last = i === rawSegments.length - 1
    if (raw === '') {
      if (last) trailingSlash = true
      continue // merges duplicate slashes
    }
    const segment = canonicalSegment(raw)
    if (segment === '.') {
      if (last) trailingSlash = true
    } else if (segment === '..') {
      if (segments.pop() === undefined) refuse('path climbs above the root')
      if (last) trailingSlash = true
    } else if (segment.startsWith('..;') || segment.startsWith('.;')) {
      refuse('dot-segment with parameters')
    } else {
      segments.push(segment)
      trailingSlash = false
    }
  }
  let path = '/' + segments.join('/')
  if (trailingSlash && segments.length > 0) path += '/'
  return { path, segments, query }
}
