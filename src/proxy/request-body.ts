/**
 * Reads the request body into memory, bounded by the connector's limit (counting bytes as they
 * arrive, whatever Content-Length claimed), and validates JSON bodies strictly: UTF-8 only,
 * no duplicate keys (JSON.parse keeps the last, other parsers the first), no `__proto__`
 * keys, bounded nesting. Policy then sees exactly the bytes that are forwarded.
 */
import type { IncomingMessage } from 'node:http'
import { CorridorError } from '../shared/errors.ts'
import { ClientAbortedError } from './client-aborted.ts'

export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBytes) {
    return Promise.reject(new CorridorError('body_too_large', `the body exceeds this connector's limit of ${maxBytes} bytes`))
  }
  if (declared === '0' || (declared === undefined && req.headers['transfer-encoding'] === undefined)) return Promise.resolve(EMPTY)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        reject(new CorridorError('body_too_large', `the body exceeds this connector's limit of ${maxBytes} bytes`))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size))
    }
    const onAbort = (): void => {
      cleanup()
      reject(new ClientAbortedError())
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(err.message.includes('timeout') ? new CorridorError('request_timeout') : new ClientAbortedError())
    }
    const cleanup = (): void => {
      req.off('data', onData).off('end', onEnd).off('aborted', onAbort).off('error', onError)
    }
    req.on('data', onData).on('end', onEnd).on('aborted', onAbort).on('error', onError)
  })
}

const EMPTY = Buffer.alloc(0)

export function isJsonMediaType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false
  const semi = contentType.indexOf(';')
  const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  if (type !== 'application/json' && !(type.startsWith('application/') && type.endsWith('+json'))) return false
  const charset = /charset\s*=\s*"?([^";\s]+)/i.exec(contentType)
  if (charset && (charset[1] as string).toLowerCase() !== 'utf-8') {
    throw new CorridorError('unsupported_media_type', 'JSON bodies must be UTF-8')
  }
  return true
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

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

/** One pass over the text: nesting depth, duplicate keys and `__proto__`, which JSON.parse cannot report. */
function scanStructure(text: string, maxDepth: number): void {
  const keys: (Set<string> | null)[] = []
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 /* " */) {
      const start = i + 1
      let escaped = false
      i++
      while (i < text.length) {
        const d = text.charCodeAt(i)
        if (d === 92 /* \ */) {
          escaped = true
          i += 2
          continue
        }
        if (d === 34) break
        i++
      }
      const top = keys[keys.length - 1]
      if (expectKey && top) {
        const raw = text.slice(start, i)
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
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (keys.length >= maxDepth) throw new CorridorError('json_too_deep', `the body nests deeper than ${maxDepth} levels`)
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

export function isFormMediaType(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded'
}

/**
 * Form bodies (Stripe's API takes them) become a flat object of field → value. A repeated
 * field is ambiguous (frameworks keep the first, the last, or all) unless it is a declared
 * list (`name[]`), which becomes an array.
 */
export function parseFormStrict(body: Buffer): Record<string, string | string[]> {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new CorridorError('bad_request', 'the form body is not valid UTF-8')
  }
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>
  for (const [name, value] of new URLSearchParams(text)) {
    const existing = out[name]
    if (name.endsWith('[]')) out[name] = existing === undefined ? [value] : [...(existing as string[]), value]
    else if (existing !== undefined) throw new CorridorError('ambiguous_request', `form field '${name.slice(0, 64)}' is repeated`)
    else out[name] = value
  }
  return out
}
