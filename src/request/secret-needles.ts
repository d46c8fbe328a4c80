/**
 * The byte strings under which a secret can travel: as itself, percent-encoded (either case of
 * hex, `+` or `%20` for spaces), JSON-escaped, and inside base64 or base64url at any alignment
 * (HTTP Basic puts `user:secret` through base64, so the secret's own encoding depends on what
 * precedes it). Used both ways: to find the agent's key in a request and to mask the
 * connector's credential in a response.
 */

/** Shortest secret worth looking for; a shorter one would match ordinary text. */
export const MIN_SECRET_LENGTH = 8

export function secretNeedles(secret: string): Buffer[] {
  if (secret.length < MIN_SECRET_LENGTH) return []
  const forms = new Set<string>([secret])
  const encoded = encodeURIComponent(secret)
  forms.add(encoded)
  forms.add(encoded.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()))
  forms.add(encoded.replace(/%20/g, '+'))
  forms.add(strictEncode(secret))
  forms.add(JSON.stringify(secret).slice(1, -1))
  forms.add(JSON.stringify(secret).slice(1, -1).replace(/\//g, '\\/'))
  const bytes = Buffer.from(secret, 'utf8')
  for (let shift = 0; shift < 3; shift++) {
    // Prefix `shift` bytes so the secret starts at each alignment; keep only the characters that
    // depend on the secret's bytes alone.
    const padded = Buffer.concat([Buffer.alloc(shift), bytes])
    const b64 = padded.toString('base64').replace(/=+$/, '')
    const start = shift === 0 ? 0 : shift === 1 ? 2 : 3
    const end = Math.floor((padded.length * 8) / 6)
    const core = b64.slice(start, end)
    if (core.length >= MIN_SECRET_LENGTH) {
      forms.add(core)
      forms.add(core.replace(/\+/g, '-').replace(/\//g, '_'))
    }
  }
  return [...forms].map((f) => Buffer.from(f, 'utf8'))
}

function strictEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
}

/** A secret's needles, as bytes (for bodies) and as text (for headers, paths and queries). */
export class NeedleSet {
  readonly bytes: readonly Buffer[]
  readonly #texts: readonly string[]

  constructor(secret: string) {
    this.bytes = secretNeedles(secret)
    this.#texts = this.bytes.map((b) => b.toString('utf8'))
  }

  inText(text: string): boolean {
    for (const t of this.#texts) if (text.includes(t)) return true
    return false
  }

  inBytes(bytes: Buffer): boolean {
    for (const b of this.bytes) if (bytes.indexOf(b) !== -1) return true
    return false
  }
}

/** Agents present the same key on every request: its needles are built once (bounded, oldest dropped first). */
const cache = new Map<string, NeedleSet>()
const CACHE_SIZE = 1_000

export function needlesFor(secret: string): NeedleSet {
  let set = cache.get(secret)
  if (set === undefined) {
    set = new NeedleSet(secret)
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string)
    cache.set(secret, set)
  }
  return set
}
