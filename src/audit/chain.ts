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
import { hash, randomUUID, sign, verify, type KeyObject } from 'node:crypto'

export const GENESIS = '0'.repeat(64)

/** How every checkpoint line starts: the writer puts `type` first. */
export const CHECKPOINT_LINE_PREFIX = '{"type":"checkpoint",'
/** How a retention record's line starts (record.ts: RetentionAuditEvent). */
const RETENTION_LINE_PREFIX = '{"type":"retention",'
/** How the line starts that carries a checkpoint's signature when a signer elsewhere (Vault transit) made it later. */
export const CHECKPOINT_SIGNATURE_LINE_PREFIX = '{"type":"checkpoint_signature",'

const HASH_MEMBER = ',"hash":"'

const sha256 = (text: string): string => hash('sha256', text, 'hex')

/** The line for an entry: its JSON, then its hash as the last member, over everything before it. */
export function sealedLine(json: string): string {
  // `{...}` becomes `{...,"hash":"<sha256 of {...}>"}`.
  return json.slice(0, -1) + HASH_MEMBER + sha256(json) + '"}'
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

/** Where a checkpoint stands in its stream (its own entry number) and when it was written. */
export interface CheckpointMark {
  readonly seq: number
  readonly time: string
}

export interface Break {
  readonly stream: string
  /** The first sequence number at which the stream does not verify. */
  readonly seq: number
  readonly line: number
  readonly why: string
  /** The last checkpoint before the break that verified: what it vouches for is intact. */
  readonly lastCheckpoint: CheckpointMark | null
  /** The first checkpoint after the break (not verified: it only bounds the damaged range). */
  readonly nextCheckpoint: CheckpointMark | null
}

export interface VerifyReport {
  readonly entries: number
  readonly streams: number
  readonly checkpoints: number
  readonly unreadable: number
  /** Streams a witness holds that this trail holds none of (another replica's, or removed by retention). */
  readonly witnessedElsewhere: number
  /**
   * Streams that start at a checkpoint rather than at entry 1: the opening checkpoint of a rotated
   * file (`fileStart`: the files before it are not in this trail, deleted by retention), or, when
   * verifying from checkpoints, the first entry of a range or a time-bounded copy. The checkpoint
   * vouches for where the chain stood; with a key, that it was signed.
   */
  readonly startedLater: readonly {
    readonly stream: string
    readonly firstSeq: number
    readonly fileStart: boolean
    /**
     * For a file's opening checkpoint: whether a retention record in the trail (with an intact
     * chain) names a deleted file that ended exactly where this stream picks up. False: the files
     * before it went some other way, or before Corridor recorded retention.
     */
    readonly recorded: boolean
  }[]
  readonly breaks: readonly Break[]
  /** Streams whose last entry is not a final checkpoint (cut off after `lastSeq`, or their process died). */
  readonly unclosed: readonly { readonly stream: string; readonly lastSeq: number }[]
  /**
   * With a key, per stream: checkpoints whose signature was to follow (signed by Vault's transit
   * engine) and is not in what was read, past the last checkpoint a signature vouched for
   * (`vouchedUpTo`, 0: none). One that a later signed checkpoint covers is not listed: that
   * signature vouches for everything before it. What follows `vouchedUpTo` is not vouched for.
   */
  readonly unsigned: readonly {
    readonly stream: string
    readonly vouchedUpTo: number
    readonly checkpoints: readonly number[]
  }[]
}

interface StreamState {
  seq: number
  hash: string
  broken: boolean
  closed: boolean
  lastCheckpoint: CheckpointMark | null
  /** Its break, while the next checkpoint after it is looked for. */
  open: { readonly seq: number; nextCheckpoint: CheckpointMark | null } | null
  /** Checkpoints (by their own seq) whose signature is to follow: what they state, to check it against. */
  awaitingSignature: Map<number, { readonly atSeq: number; readonly atHash: string; readonly time: string }> | null
  /** A final checkpoint whose signature is to follow: the one entry that may still come after it. */
  finalAwaitingSignature: number | null
  /** The last checkpoint whose signature verified (0: none yet). */
  vouchedUpTo: number
}

/** The chain members every entry ends with, as the writer puts them: `,"stream":…,"seq":…,"prev":…,"hash":…}`. */
const CHAIN_TAIL =
  /^,"stream":"([^"\\]{1,100})","seq":([1-9]\d{0,15}),"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}$/
const TAIL_START = ',"stream":"'

/**
 * A line's chain members, read from its end (no JSON parse: the hash decides whether the bytes
 * are the ones written, so an entry in any other shape is not one this writer wrote).
 */
function chainFields(line: string): { stream: string; seq: number; prev: string; claimed: string } | null {
  const at = line.lastIndexOf(TAIL_START)
  if (at <= 0) return null
  const m = CHAIN_TAIL.exec(line.slice(at))
  if (m === null) return null
  return { stream: m[1] as string, seq: Number(m[2]), prev: m[3] as string, claimed: m[4] as string }
}

/** A line parsed as an entry of a chain (with its stream and sequence number), or null. */
export function chainedEntry(line: string): Record<string, unknown> | null {
  let e: Record<string, unknown>
  try {
    e = JSON.parse(line) as Record<string, unknown>
  } catch {
    return null
  }
  return typeof e['stream'] === 'string' && typeof e['seq'] === 'number' ? e : null
}

/** The hash of what a line's hash covers: everything before its hash member, as an object. */
const coveredHash = (line: string): string => sha256(line.slice(0, line.length - HASH_TAIL_LENGTH) + '}')

/** `,"hash":"<64 hex digits>"}`: what `sealedLine` appends. */
const HASH_TAIL_LENGTH = HASH_MEMBER.length + 64 + 2

export interface VerifyOptions {
  /**
   * Each stream may start at a checkpoint instead of its first entry: the range a store returns
   * from its checkpoint at or before some point. The checkpoint's signature (checked when a key is
   * given) vouches for the entries before it, which are not read.
   */
  readonly fromCheckpoints?: boolean
  /**
   * Checkpoint entries copied elsewhere as they were written (a witness): the trail must hold each
   * of them byte for byte, and reach at least as far, so that a trail cut short and a checkpoint
   * rewritten are both named, at their entry.
   */
  readonly witness?: Iterable<string>
}

/**
 * Verifies every stream in the lines fed to it: contiguous sequence numbers from 1, each entry's
 * `prev` the hash before it, each hash recomputed, each checkpoint matching the chain where it
 * stands and, given the public key, signed by it, nothing after a final checkpoint. The first
 * break of each stream is reported.
 */
export class ChainVerifier {
  /** The keys a checkpoint signature may verify under (several across a key rotation); none: not checked. */
  readonly #keys: readonly KeyObject[]
  readonly #fromCheckpoints: boolean
  readonly #streams = new Map<string, StreamState>()
  readonly #breaks: { -readonly [K in keyof Break]: Break[K] }[] = []
  /** Streams that start at a checkpoint, not at their first entry. */
  readonly #startedLater: { stream: string; firstSeq: number; fileStart: boolean; from: string }[] = []
  /** Where retention records say deleted files ended: `stream:seq:hash`. */
  readonly #retainedEnds = new Set<string>()
  /** Stream → seq → hash and time of the witnessed checkpoints. */
  readonly #witnessed = new Map<string, Map<number, { hash: string; time: string }>>()
  #entries = 0
  #checkpoints = 0
  #unreadable = 0
  #line = 0
  /** The entry being verified (kept as two fields: no object per line). */
  #currentSeq = 0
  #currentCheckpoint: { time: string } | null = null

  constructor(publicKeys: KeyObject | readonly KeyObject[] | null, options: VerifyOptions = {}) {
    this.#keys = publicKeys === null ? [] : Array.isArray(publicKeys) ? publicKeys : [publicKeys as KeyObject]
    this.#fromCheckpoints = options.fromCheckpoints === true
    let n = 0
    for (const line of options.witness ?? []) {
      n++
      if (line.trim() === '') continue
      const fields = chainFields(line)
      const checkpoint = line.startsWith(CHECKPOINT_LINE_PREFIX) ? this.#checkpointOf(line) : null
      // A witness vouches only for what Corridor wrote: its own hash, and its signature when a key is given.
      if (
        fields === null ||
        checkpoint === null ||
        coveredHash(line) !== fields.claimed ||
        (this.#keys.length > 0 &&
          // A checkpoint signed later is vouched for by its signature entry in the trail.
          !(checkpoint.signatureFollows && checkpoint.signature.length === 0) &&
          !this.#signed(
            checkpointPayload(fields.stream, checkpoint.atSeq, checkpoint.atHash, checkpoint.time),
            checkpoint.signature,
          ))
      )
        throw new Error(
          `witness line ${n} is not a checkpoint as Corridor wrote it (its hash or signature does not verify)`,
        )
      let seqs = this.#witnessed.get(fields.stream)
      if (seqs === undefined) this.#witnessed.set(fields.stream, (seqs = new Map()))
      seqs.set(fields.seq, { hash: fields.claimed, time: checkpoint.time })
    }
  }

  /**
   * One line, in the order written. `problem`: something the line's store found wrong about it
   * (a copy whose columns disagree with the line), reported as a break at this entry.
   */
  add(line: string, problem: string | null = null): void {
    this.#line++
    if (line === '') return
    const fields = chainFields(line)
    if (fields === null) {
      this.#unreadable++
      return
    }
    const { stream, seq, prev } = fields
    this.#entries++
    const checkpoint = line.startsWith(CHECKPOINT_LINE_PREFIX) ? this.#checkpointOf(line) : null
    this.#currentSeq = seq
    this.#currentCheckpoint = checkpoint
    let state = this.#streams.get(stream)
    if (state === undefined) {
      state = {
        seq: 0,
        hash: GENESIS,
        broken: false,
        closed: false,
        lastCheckpoint: null,
        open: null,
        awaitingSignature: null,
        finalAwaitingSignature: null,
        vouchedUpTo: 0,
      }
      // A range that starts at a checkpoint starts where the checkpoint says the chain stood; so
      // does a trail whose earlier files retention deleted (it starts at a file's opening checkpoint).
      if (checkpoint !== null && seq > 1 && (this.#fromCheckpoints || checkpoint.fileStart)) {
        state.seq = checkpoint.atSeq
        state.hash = checkpoint.atHash
        this.#startedLater.push({
          stream,
          firstSeq: seq,
          fileStart: checkpoint.fileStart,
          from: `${stream}:${checkpoint.atSeq}:${checkpoint.atHash}`,
        })
      }
      this.#streams.set(stream, state)
    }
    if (state.broken) return this.#boundBreak(state, seq, checkpoint)
    const lateSignature = line.startsWith(CHECKPOINT_SIGNATURE_LINE_PREFIX) ? this.#lateSignatureOf(line) : null
    if (state.closed && (lateSignature === null || lateSignature.forSeq !== state.finalAwaitingSignature))
      return this.#fail(stream, state, seq, 'an entry follows the final checkpoint of its stream')
    if (seq !== state.seq + 1)
      return this.#fail(
        stream,
        state,
        state.seq + 1,
        seq > state.seq + 1
          ? `entries ${state.seq + 1} to ${seq - 1} are missing`
          : `entry ${seq} is out of order or repeated`,
      )
    if (prev !== state.hash)
      return this.#fail(
        stream,
        state,
        seq,
        'its link to the entry before does not match (an entry was removed, inserted or edited)',
      )
    if (coveredHash(line) !== fields.claimed)
      return this.#fail(stream, state, seq, 'its content does not match its hash (edited)')
    if (problem !== null) return this.#fail(stream, state, seq, problem)
    if (checkpoint !== null) {
      this.#checkpoints++
      if (checkpoint.atSeq !== state.seq || checkpoint.atHash !== state.hash)
        return this.#fail(stream, state, seq, 'the checkpoint does not match the chain where it stands')
      if (this.#keys.length > 0 && checkpoint.signatureFollows && checkpoint.signature.length === 0)
        (state.awaitingSignature ??= new Map()).set(seq, {
          atSeq: state.seq,
          atHash: state.hash,
          time: checkpoint.time,
        })
      else if (
        this.#keys.length > 0 &&
        !this.#signed(checkpointPayload(stream, state.seq, state.hash, checkpoint.time), checkpoint.signature)
      )
        return this.#fail(stream, state, seq, 'the checkpoint signature does not verify')
      else if (this.#keys.length > 0) state.vouchedUpTo = seq
      state.closed = checkpoint.final
      if (checkpoint.final && checkpoint.signatureFollows) state.finalAwaitingSignature = seq
      state.lastCheckpoint = { seq, time: checkpoint.time }
    }
    if (lateSignature !== null) {
      if (lateSignature.forSeq === state.finalAwaitingSignature) state.finalAwaitingSignature = null
      if (this.#keys.length > 0) {
        const stated = state.awaitingSignature?.get(lateSignature.forSeq)
        if (stated === undefined)
          return this.#fail(
            stream,
            state,
            seq,
            `it signs entry ${lateSignature.forSeq}, not a checkpoint awaiting a signature`,
          )
        if (!this.#signed(checkpointPayload(stream, stated.atSeq, stated.atHash, stated.time), lateSignature.signature))
          return this.#fail(
            stream,
            state,
            seq,
            `the signature of the checkpoint at entry ${lateSignature.forSeq} does not verify${lateSignature.keyVersion === null ? '' : ` (made with key version ${lateSignature.keyVersion}: add that version's public key)`}`,
          )
        state.awaitingSignature?.delete(lateSignature.forSeq)
        state.vouchedUpTo = Math.max(state.vouchedUpTo, lateSignature.forSeq)
      }
    }
    const witnessed = this.#witnessed.get(stream)?.get(seq)
    if (witnessed !== undefined && witnessed.hash !== fields.claimed)
      return this.#fail(stream, state, seq, 'it differs from the copy of this checkpoint held elsewhere (rewritten)')
    if (line.startsWith(RETENTION_LINE_PREFIX)) this.#noteRetention(line)
    state.seq = seq
    state.hash = fields.claimed
  }

  #noteRetention(line: string): void {
    let record: { deleted?: unknown; kept?: unknown }
    try {
      record = JSON.parse(line) as { deleted?: unknown; kept?: unknown }
    } catch {
      return // chained, but not a record this reads: it accounts for nothing
    }
    // A file named as deleted and then as kept was not deleted after all: its end accounts for nothing.
    for (const end of endsNamed(record.deleted)) this.#retainedEnds.add(end)
    for (const end of endsNamed(record.kept)) this.#retainedEnds.delete(end)
  }

  report(): VerifyReport {
    const breaks = [...this.#breaks]
    // A witnessed checkpoint beyond where the trail ends: the trail was cut short.
    const cut = new Set<string>()
    let elsewhere = 0
    for (const [stream, seqs] of this.#witnessed) {
      const state = this.#streams.get(stream)
      // A stream the trail does not hold at all: another replica's, or one retention removed.
      if (state === undefined) {
        elsewhere++
        continue
      }
      const reached = Math.max(...seqs.keys())
      if (state.broken || state.seq >= reached) continue
      const from = state.seq + 1
      cut.add(stream)
      breaks.push({
        stream,
        seq: from,
        line: this.#line,
        why: `entries ${from} to ${reached} are missing: a copy of a checkpoint held elsewhere shows the stream reached entry ${reached} (cut short)`,
        lastCheckpoint: state.lastCheckpoint,
        nextCheckpoint: { seq: reached, time: seqs.get(reached)?.time ?? '' },
      })
    }
    return {
      entries: this.#entries,
      streams: this.#streams.size,
      checkpoints: this.#checkpoints,
      unreadable: this.#unreadable,
      witnessedElsewhere: elsewhere,
      startedLater: this.#startedLater.map(({ from, ...started }) => ({
        ...started,
        recorded: started.fileStart && this.#retainedEnds.has(from),
      })),
      breaks,
      unclosed: [...this.#streams]
        .filter(([stream, s]) => !s.closed && !s.broken && !cut.has(stream))
        .map(([stream, s]) => ({ stream, lastSeq: s.seq })),
      unsigned: [...this.#streams].flatMap(([stream, s]) => {
        const checkpoints = [...(s.awaitingSignature?.keys() ?? [])].filter((seq) => seq > s.vouchedUpTo)
        return s.broken || checkpoints.length === 0 ? [] : [{ stream, vouchedUpTo: s.vouchedUpTo, checkpoints }]
      }),
    }
  }

  #checkpointOf(line: string): {
    atSeq: number
    atHash: string
    time: string
    signature: Buffer
    final: boolean
    fileStart: boolean
    signatureFollows: boolean
  } | null {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>
      return {
        atSeq: typeof entry['at_seq'] === 'number' ? entry['at_seq'] : -1,
        atHash: typeof entry['at_hash'] === 'string' ? entry['at_hash'] : '',
        time: String(entry['time']),
        signature: signatureOf(entry),
        final: entry['final'] === true,
        fileStart: entry['file_start'] === true,
        signatureFollows: entry['signature_follows'] === true,
      }
    } catch {
      return null
    }
  }

  /** Whether one of the keys made `signature` over `payload`. */
  #signed(payload: Buffer, signature: Buffer): boolean {
    return this.#keys.some((key) => verify(null, payload, key, signature))
  }

  /** A `checkpoint_signature` entry: which checkpoint (by its seq) it signs, the signature, and the key version. */
  #lateSignatureOf(line: string): { forSeq: number; signature: Buffer; keyVersion: number | null } | null {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>
      return {
        forSeq: typeof entry['for_seq'] === 'number' ? entry['for_seq'] : -1,
        signature: signatureOf(entry),
        keyVersion: typeof entry['key_version'] === 'number' ? entry['key_version'] : null,
      }
    } catch {
      return null
    }
  }

  #fail(stream: string, state: StreamState, seq: number, why: string): void {
    state.broken = true
    const broken = { stream, seq, line: this.#line, why, lastCheckpoint: state.lastCheckpoint, nextCheckpoint: null }
    state.open = broken
    this.#breaks.push(broken)
    // The line that showed the break may itself be the checkpoint that bounds it.
    this.#boundBreak(state, this.#currentSeq, this.#currentCheckpoint)
  }

  /** The first checkpoint past a stream's break bounds the range its break leaves unvouched for. */
  #boundBreak(state: StreamState, seq: number, checkpoint: { time: string } | null): void {
    if (checkpoint === null || state.open === null || seq <= state.open.seq) return
    state.open.nextCheckpoint = { seq, time: checkpoint.time }
    state.open = null
  }
}

/** The entry's base64 `signature` (empty when it has none). */
const signatureOf = (entry: Record<string, unknown>): Buffer =>
  typeof entry['signature'] === 'string' ? Buffer.from(entry['signature'], 'base64') : Buffer.alloc(0)

export function verifyLines(
  lines: Iterable<string>,
  publicKey: KeyObject | readonly KeyObject[] | null,
  options: VerifyOptions = {},
): VerifyReport {
  const verifier = new ChainVerifier(publicKey, options)
  for (const line of lines) verifier.add(line)
  return verifier.report()
}

/** `stream:seq:hash` of each file a retention record's list names with where its chain ended. */
function endsNamed(list: unknown): string[] {
  const items = Array.isArray(list) ? (list as ({ ends?: Record<string, unknown> | null } | null)[]) : []
  const ends: string[] = []
  for (const item of items) {
    const end = item?.ends
    if (end != null) ends.push(`${String(end['stream'])}:${String(end['seq'])}:${String(end['hash'])}`)
  }
  return ends
}
