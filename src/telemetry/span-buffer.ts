/**
 * Spans waiting for export, kept as the bytes of the OTLP/HTTP JSON request that will carry them,
 * in two fixed buffers outside the JS heap: one fills while the other is being sent. Spans kept as
 * objects until their export (up to a second) outlived the young generation together with their
 * request's audit record, and the garbage collector's copying and marking of them cost more than
 * writing them. When the filling buffer is full, spans are refused and the caller counts them
 * dropped: memory stays bounded however slow the collector is. Once it has refused spans it refuses
 * all until it is taken for export, so that a caller can skip writing spans that would be dropped.
 */
import { EXPORT_PREFIX, EXPORT_SUFFIX } from './span-json.ts'

/** One export's body, taken from the buffer; give it back once it is sent or given up on. */
export interface SpanBatch {
  readonly body: Buffer
  readonly spans: number
}

const COMMA = 0x2c
/** Bytes a UTF-16 code unit can take in UTF-8, at most. */
const MAX_UTF8_PER_UNIT = 3

export class SpanBuffer {
  readonly #capacity: number
  #filling: Buffer
  /** Bytes written to `#filling`, the export's opening included. */
  #length = 0
  #spans = 0
  /** Whether spans were refused since the filling buffer was last taken. */
  #full = false
  /** The other buffer, when no export holds it. */
  #spare: Buffer | null
  /** The batch an export holds, and the buffer it is written in. */
  #out: { readonly batch: SpanBatch; readonly buffer: Buffer } | null = null

  constructor(capacityBytes: number) {
    if (capacityBytes < EXPORT_PREFIX.length + EXPORT_SUFFIX.length + 1)
      throw new RangeError('span buffer too small for one export')
    this.#capacity = capacityBytes
    // allocUnsafeSlow: buffers of their own, not slices of Node's shared pool; every byte sent is written first.
    this.#spare = Buffer.allocUnsafeSlow(capacityBytes)
    this.#filling = Buffer.allocUnsafeSlow(capacityBytes)
    this.#reset()
  }

  /** Bytes of spans waiting in the filling buffer (the export's opening is ASCII: one byte a character). */
  get bytes(): number {
    return this.#length - EXPORT_PREFIX.length
  }

  /** True from the first spans refused until the buffer is taken: everything appended meanwhile is refused. */
  get full(): boolean {
    return this.#full
  }

  /** Adds `count` spans written as comma-separated JSON; false, and nothing added, when they do not fit or the buffer is full. */
  append(json: string, count: number): boolean {
    if (this.#full) return false
    const room = this.#capacity - this.#length - EXPORT_SUFFIX.length - 1
    if (json.length * MAX_UTF8_PER_UNIT > room && Buffer.byteLength(json) > room) {
      this.#full = true
      return false
    }
    if (this.#spans > 0) this.#filling[this.#length++] = COMMA
    this.#length += this.#filling.write(json, this.#length)
    this.#spans += count
    return true
  }

  /**
   * The spans waiting, as one export's body; the spare buffer fills from now on. Null when none
   * wait or the last batch taken has not been given back.
   */
  take(): SpanBatch | null {
    if (this.#spans === 0 || this.#spare === null) return null
    this.#length += this.#filling.write(EXPORT_SUFFIX, this.#length, 'latin1')
    const batch = { body: this.#filling.subarray(0, this.#length), spans: this.#spans }
    this.#out = { batch, buffer: this.#filling }
    this.#filling = this.#spare
    this.#spare = null
    this.#reset()
    return batch
  }

  /**
   * The batch taken last is done with. Sent: its buffer fills again next. Failed: a socket torn
   * down mid-write may still hold it, so it is left to the garbage collector and a new one takes its place.
   */
  giveBack(batch: SpanBatch, sent: boolean): void {
    if (batch !== this.#out?.batch) throw new Error('span batch given back twice or out of turn')
    this.#spare = sent ? this.#out.buffer : Buffer.allocUnsafeSlow(this.#capacity)
    this.#out = null
  }

  #reset(): void {
    this.#length = this.#filling.write(EXPORT_PREFIX, 0, 'latin1')
    this.#spans = 0
    this.#full = false
  }
}
