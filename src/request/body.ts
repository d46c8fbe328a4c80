/**
 * What a request body means, read once: JSON or a form, in exactly one encoding, parsed so
 * that every common server stack reads the same fields.
 *
 *  - The media type is parsed by a real parser (the one body-parser uses). JSON and form bodies
 *    are accepted only as UTF-8: any other charset, a repeated parameter or a malformed header
 *    is refused rather than guessed at.
 *  - JSON: UTF-8 without BOM, no duplicate keys (JSON.parse keeps the last, other parsers the
 *    first), no `__proto__`, no lone surrogates (decoders replace or keep them), bounded nesting.
 *    The agent's bytes are forwarded: for JSON so validated, parsers agree.
 *  - Forms: the shared field model (fields.ts); the canonical serialisation is forwarded.
 */
import contentType from 'content-type'
import { CorridorError } from '../shared/errors.ts'
import { parseFormFields, serializePairs, type FormFields } from './fields.ts'

export type BodyKind = 'json' | 'form' | 'other' | 'none'

export interface ParsedBody {
  readonly kind: BodyKind
  /** JSON value or form field tree; undefined when the body was not parsed. */
  readonly fields: unknown
  /** Form pairs, for removing a declared key field and re-serialising. */
  readonly form: FormFields | null
  /** The bytes to forward. */
  readonly bytes: Buffer
}

// The parameter grammar of RFC 9110 §5.6.6, as the content-type package reads it; used only to count names.
const PARAMETER =
  /; *([!#$%&'*+.^_`|~0-9A-Za-z-]+) *= *("(?:[\u000b\u0020\u0021\u0023-\u005b\u005d-\u007e\u0080-\u00ff]|\\[\u000b\u0020-\u00ff])*"|[!#$%&'*+.^_`|~0-9A-Za-z-]+) */g

/** Clients send the same few Content-Type values over and over: each is parsed once (bounded; refusals are not kept). */
const kinds = new Map<string, BodyKind>()
const KINDS_CACHED = 256

/** The body kind a Content-Type announces; refuses types whose reading would be ambiguous. */
export function bodyKind(header: string | undefined): BodyKind {
  if (header === undefined) return 'other'
  const known = kinds.get(header)
  if (known !== undefined) return known
  const kind = parseKind(header)
  if (kinds.size >= KINDS_CACHED) kinds.clear()
  kinds.set(header, kind)
  return kind
}

function parseKind(header: string): BodyKind {
  let parsed: contentType.ParsedMediaType
  try {
    parsed = contentType.parse(header)
  } catch {
    throw new CorridorError('unsupported_media_type', 'the Content-Type header is malformed')
  }
  const type = parsed.type
  const kind: BodyKind =
    type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))
      ? 'json'
      : type === 'application/x-www-form-urlencoded'
        ? 'form'
        : 'other'
  if (kind === 'other') return kind
  const names = new Set<string>()
  for (const m of header.matchAll(PARAMETER)) {
    const name = (m[1] as string).toLowerCase()
    if (names.has(name))
      throw new CorridorError('unsupported_media_type', `the Content-Type parameter '${name}' is repeated`)
    names.add(name)
  }
  const charset = parsed.parameters['charset']
  if (charset !== undefined && charset.toLowerCase() !== 'utf-8')
    throw new CorridorError('unsupported_media_type', `${kind === 'json' ? 'JSON' : 'form'} bodies must be UTF-8`)
  return kind
}

/**
 * Parses the body when its type is JSON or a form. `mustRead` (a rule reads the body) refuses
 * bodies of any other type, which Corridor could not read as the upstream might.
 */
export function parseBody(
  header: string | undefined,
  bytes: Buffer,
  maxJsonDepth: number,
  mustRead: boolean,
): ParsedBody {
  if (bytes.length === 0) return { kind: 'none', fields: undefined, form: null, bytes }
  const kind = bodyKind(header)
  if (kind === 'json') return { kind, fields: parseJsonStrict(bytes, maxJsonDepth), form: null, bytes }
  if (kind === 'form') {
    const form = parseFormFields(decodeUtf8(bytes, 'the form body'), 'form field')
    return { kind, fields: form.tree, form, bytes: Buffer.from(serializePairs(form.pairs)) }
  }
  if (mustRead)
    throw new CorridorError(
      'unsupported_media_type',
      'this action is decided on its body; send it as JSON or a form (UTF-8)',
    )
  return { kind, fields: undefined, form: null, bytes }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function decodeUtf8(bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new CorridorError('bad_request', `${what} is not valid UTF-8`)
  }
}

export function parseJsonStrict(body: Buffer, maxDepth: number): unknown {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new CorridorError('invalid_json', 'the body is not valid UTF-8')
  }
  scanStructure(text, maxDepth)
  try {
    return JSON.parse(text)
  } catch {
    throw new CorridorError('invalid_json')
  }
}

const LONE_SURROGATE =
  /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/

/**
 * A number every parser reads as the same value: parsers keep integers beyond 2^53 exactly
 * (Python, Ruby, Jackson) while JavaScript rounds them, and overflow is Infinity to some, an
 * error to others. Returns the index after the number.
 */
function checkNumber(text: string, start: number): number {
  let end = start + 1
  let integer = true
  let exponent = false
  for (; end < text.length; end++) {
    const d = text.charCodeAt(end)
    if (d === 46) integer = false
    else if (d === 101 || d === 69) {
      integer = false
      exponent = true
    } else if (!((d >= 48 && d <= 57) || d === 43 || d === 45)) break
  }
  if (end - start < 16 && !exponent) return end
  const value = Number(text.slice(start, end))
  if (!Number.isFinite(value) || (integer && !Number.isSafeInteger(value))) {
    throw new CorridorError(
      'invalid_json',
      `the number ${text.slice(start, Math.min(end, start + 32))} is read differently by different parsers (beyond 2^53 or out of range)`,
    )
  }
  return end
}

/** One pass over the text: nesting depth, duplicate keys, `__proto__`, lone surrogates and inexact numbers, which JSON.parse cannot report. */
function scanStructure(text: string, maxDepth: number): void {
  const keys: (Set<string> | null)[] = []
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 /* " */) {
      // Jump from quote to quote (indexOf is far faster than a character loop on long strings);
      // a quote preceded by an odd number of backslashes is escaped.
      const start = i + 1
      let end = text.indexOf('"', start)
      while (end !== -1) {
        let backslashes = 0
        for (let b = end - 1; b >= start && text.charCodeAt(b) === 92; b--) backslashes++
        if (backslashes % 2 === 0) break
        end = text.indexOf('"', end + 1)
      }
      if (end === -1) end = text.length
      const backslash = text.indexOf('\\', start)
      const escaped = backslash !== -1 && backslash < end
      i = end
      if (escaped && LONE_SURROGATE.test(text.slice(start, end)))
        throw new CorridorError(
          'invalid_json',
          'the body holds a lone surrogate escape, which parsers decode differently',
        )
      const top = keys[keys.length - 1]
      if (expectKey && top) {
        const raw = text.slice(start, end)
        let key = raw
        if (escaped) {
          try {
            key = JSON.parse(`"${raw}"`) as string
          } catch {
            throw new CorridorError('invalid_json')
          }
        }
        if (key === '__proto__') throw new CorridorError('invalid_json', "the key '__proto__' is refused")
        if (top.has(key)) throw new CorridorError('invalid_json', `duplicate key '${key.slice(0, 64)}'`)
        top.add(key)
        expectKey = false
      }
    } else if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      i = checkNumber(text, i) - 1
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (keys.length >= maxDepth)
        throw new CorridorError('json_too_deep', `the body nests deeper than ${maxDepth} levels`)
      keys.push(c === 123 ? new Set() : null)
      expectKey = c === 123
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      keys.pop()
      expectKey = false
    } else if (c === 44 /* , */) {
      expectKey = keys[keys.length - 1] != null
    }
  }
}
