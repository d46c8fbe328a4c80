/**
 * The audit trail as a hash chain, so that an entry deleted, inserted, reordered, edited or cut
 * off is detected. Each process start opens a stream (a random id); every entry it writes carries
 * the stream, a sequence number, the previous entry's hash and its own: SHA-256 over the line as
 * written, up to its `hash` member. Hashing the bytes written, not a canonical re-serialisation,
 * costs one hash per line (about 1 µs) on the path of every request; the price is that a copy
 * verifies only as the raw lines (ship the lines, not re-encoded JSON).
 *
 * Checkpoints, signed with an Ed25519 key when one is configured, state how far a stream went
 * (its last sequence number and hash) and when; copied elsewhere, they let a witness show that
 * the file was cut short. The last entry of a stream that was closed cleanly is a final
 * checkpoint: a stream that ends otherwise was cut off, or its process died.
 */
import { createHash, randomUUID, sign, verify, type KeyObject } from 'node:crypto'

export const GENESIS = '0'.repeat(64)

const HASH_MEMBER = ',"hash":"'
const HASH_TAIL = /,"hash":"([0-9a-f]{64})"\}$/

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

/** The line for an entry: its JSON, then its hash as the last member, over everything before it. */
export function sealedLine(json: string): string {
  // `{...}` becomes `{...,"hash":"<sha256 of {...}>"}`.
  return json.slice(0, -1) + HASH_MEMBER + sha256(json) + '"}'
}

/** The hash a line claims and the hash of what it covers; null when the line carries no hash member. */
export function lineHashes(line: string): { claimed: string; actual: string } | null {
  const m = HASH_TAIL.exec(line)
  if (m === null) return null
  return { claimed: m[1] as string, actual: sha256(line.slice(0, m.index) + '}') }
}

export class ChainWriter {
  readonly stream = randomUUID()
  #seq = 0
  #prev = GENESIS

  /**
   * The line for an entry given as its JSON object text (chain fields and hash appended, without
   * copying the entry), and a commit to call once the line is durably written.
   */
  seal(json: string): { line: string; commit: () => void } {
    const seq = this.#seq + 1
    const line = sealedLine(`${json.slice(0, -1)},"stream":"${this.stream}","seq":${seq},"prev":"${this.#prev}"}`)
    return {
      line,
      commit: () => {
        this.#seq = seq
        this.#prev = line.slice(-66, -2)
      },
    }
  }

  get position(): { seq: number; hash: string } {
    return { seq: this.#seq, hash: this.#prev }
  }
}

/** What a checkpoint signs: how far a stream went, and when. */
export function checkpointPayload(stream: string, seq: number, hash: string, time: string): Buffer {
  return Buffer.from(JSON.stringify({ stream, seq, hash, time }))
}

export function signCheckpoint(key: KeyObject, payload: Buffer): string {
  return sign(null, payload, key).toString('base64')
}

export interface Break {
  readonly stream: string
  /** The first sequence number at which the stream does not verify. */
  readonly seq: number
  readonly line: number
  readonly why: string
}

export interface VerifyReport {
  readonly entries: number
  readonly streams: number
  readonly checkpoints: number
  readonly unreadable: number
  readonly breaks: readonly Break[]
  /** Streams whose last entry is not a final checkpoint (cut off, or their process died). */
  readonly unclosed: readonly string[]
}

interface StreamState {
  seq: number
  hash: string
  broken: boolean
  closed: boolean
}

/**
 * Verifies every stream in the lines: contiguous sequence numbers from 1, each entry's `prev`
 * the hash before it, each hash recomputed, each checkpoint matching the chain where it stands
 * and, given the public key, signed by it. The first break of each stream is reported.
 */
export function verifyLines(lines: Iterable<string>, publicKey: KeyObject | null): VerifyReport {
  const streams = new Map<string, StreamState>()
  const breaks: Break[] = []
  let entries = 0
  let checkpoints = 0
  let unreadable = 0
  let lineNo = 0
  const fail = (stream: string, state: StreamState, seq: number, why: string): void => {
    state.broken = true
    breaks.push({ stream, seq, line: lineNo, why })
  }
  for (const line of lines) {
    lineNo++
    if (line === '') continue
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(line) as Record<string, unknown>
    } catch {
      unreadable++
      continue
    }
    const { stream, seq, prev } = entry
    const hashes = lineHashes(line)
    if (typeof stream !== 'string' || typeof seq !== 'number' || typeof prev !== 'string' || hashes === null) {
      unreadable++
      continue
    }
    entries++
    let state = streams.get(stream)
    if (state === undefined) streams.set(stream, (state = { seq: 0, hash: GENESIS, broken: false, closed: false }))
    if (state.broken) continue
    if (seq !== state.seq + 1) {
      fail(
        stream,
        state,
        state.seq + 1,
        seq > state.seq + 1
          ? `entries ${state.seq + 1} to ${seq - 1} are missing`
          : `entry ${seq} is out of order or repeated`,
      )
      continue
    }
    if (prev !== state.hash) {
      fail(stream, state, seq, 'its link to the entry before does not match (an entry was removed, inserted or edited)')
      continue
    }
    if (hashes.actual !== hashes.claimed) {
      fail(stream, state, seq, 'its content does not match its hash (edited)')
      continue
    }
    state.closed = false
    if (entry.type === 'checkpoint') {
      checkpoints++
      if (entry.at_seq !== state.seq || entry.at_hash !== state.hash)
        fail(stream, state, seq, 'the checkpoint does not match the chain where it stands')
      else if (publicKey !== null) {
        const payload = checkpointPayload(stream, state.seq, state.hash, String(entry.time))
        const signature = typeof entry.signature === 'string' ? Buffer.from(entry.signature, 'base64') : Buffer.alloc(0)
        if (!verify(null, payload, publicKey, signature))
          fail(stream, state, seq, 'the checkpoint signature does not verify')
      }
      state.closed = entry.final === true
    }
    state.seq = seq
    state.hash = hashes.claimed
  }
  const unclosed = [...streams].filter(([, s]) => !s.closed && !s.broken).map(([id]) => id)
  return { entries, streams: streams.size, checkpoints, unreadable, breaks, unclosed }
}
