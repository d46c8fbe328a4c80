/**
 * Masks a credential in what comes back from the upstream: echo endpoints, 401 bodies,
 * `WWW-Authenticate` challenges and redirects that quote the request can hand the connector's
 * secret to the agent. Every occurrence, in every encoding `secret-needles.ts` knows, is
 * overwritten with '*' of the same length, so Content-Length stays true and nothing is buffered:
 * the body is masked chunk by chunk, holding back only a tail that could be the start of a
 * secret split across chunks (so streams such as server-sent events are not delayed).
 */
import { MIN_SECRET_LENGTH, secretNeedles } from './secret-needles.ts'

const STAR = 0x2a

export class SecretMask {
  readonly #needles: readonly Buffer[]
  readonly #texts: readonly string[]
  readonly #firstBytes: Uint8Array
  readonly #longest: number

  constructor(secrets: readonly string[]) {
    const needles = new Map<string, Buffer>()
    for (const secret of secrets) for (const n of secretNeedles(secret)) needles.set(n.toString('latin1'), n)
    this.#needles = [...needles.values()].sort((a, b) => b.length - a.length)
    this.#texts = this.#needles.map((n) => n.toString('utf8'))
    this.#firstBytes = new Uint8Array(256)
    for (const n of this.#needles) this.#firstBytes[n[0] as number] = 1
    this.#longest = this.#needles.reduce((max, n) => Math.max(max, n.length), 0)
  }

  get empty(): boolean {
    return this.#needles.length === 0
  }

  /** Masks a header value (or a list of them). */
  text(value: string): string {
    let out = value
    for (const needle of this.#texts) if (out.includes(needle)) out = out.split(needle).join('*'.repeat(needle.length))
    return out
  }

  headers<T extends Record<string, string | string[] | undefined>>(headers: T): T {
    if (this.empty) return headers
    const out: Record<string, string | string[] | undefined> = {}
    for (const name in headers) {
      const value = headers[name]
      out[name] = value === undefined ? value : Array.isArray(value) ? value.map((v) => this.text(v)) : this.text(value)
    }
    return out as T
  }

  /** Masks a whole body at once. */
  buffer(body: Buffer): Buffer {
    const stream = this.stream()
    const head = stream.push(body)
    const tail = stream.end()
    return tail.length === 0 ? head : Buffer.concat([head, tail])
  }

  stream(): MaskStream {
    return new MaskStream(this.#needles, this.#firstBytes, this.#longest)
  }
}

export class MaskStream {
  readonly #needles: readonly Buffer[]
  readonly #firstBytes: Uint8Array
  readonly #longest: number
  // The held-back tail twice: as received (matches are found in raw bytes, so masking one secret
  // never hides the start of another) and with what is already masked in it.
  #tailRaw: Buffer | null = null
  #tailMasked: Buffer | null = null

  constructor(needles: readonly Buffer[], firstBytes: Uint8Array, longest: number) {
    this.#needles = needles
    this.#firstBytes = firstBytes
    this.#longest = longest
  }

  /** Returns the bytes that can be sent now (possibly none); the rest waits for the next chunk or end(). */
  push(chunk: Buffer): Buffer {
    if (this.#needles.length === 0) return chunk
    const raw = this.#tailRaw === null ? chunk : Buffer.concat([this.#tailRaw, chunk])
    let masked: Buffer | null = this.#tailMasked === null ? null : Buffer.concat([this.#tailMasked, chunk])
    for (const needle of this.#needles) {
      for (let at = raw.indexOf(needle); at !== -1; at = raw.indexOf(needle, at + 1)) {
        // Copied on the first match only: masking never writes into a buffer that belongs to someone else.
        masked ??= Buffer.from(raw)
        masked.fill(STAR, at, at + needle.length)
      }
    }
    const out = masked ?? raw
    const hold = this.#heldBack(raw)
    if (hold === 0) {
      this.#tailRaw = this.#tailMasked = null
      return out
    }
    // The tail is kept past this call: copied, since the chunk is not ours to hold on to.
    this.#tailRaw = Buffer.from(raw.subarray(raw.length - hold))
    this.#tailMasked = Buffer.from(out.subarray(out.length - hold))
    return out.subarray(0, out.length - hold)
  }

  end(): Buffer {
    const tail = this.#tailMasked ?? Buffer.alloc(0)
    this.#tailRaw = this.#tailMasked = null
    return tail
  }

  /** Length of the longest suffix that is a proper prefix of some needle. */
  #heldBack(data: Buffer): number {
    const from = Math.max(0, data.length - this.#longest + 1)
    for (let p = from; p < data.length; p++) {
      if (this.#firstBytes[data[p] as number] !== 1) continue
      const rest = data.subarray(p)
      for (const needle of this.#needles)
        if (needle.length > rest.length && needle.subarray(0, rest.length).equals(rest)) return data.length - p
    }
    return 0
  }
}

export { MIN_SECRET_LENGTH }
