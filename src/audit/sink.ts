/**
 * Where audit records go. The file sink writes each record as one JSON line with a synchronous
 * write (so the record is in the kernel before the request is finished), separate from the
 * operational log. Before Corridor forwards, holds or releases anything it writes an intent
 * entry (the record so far: who, what, the decision, the credential lease) and acts only if that
 * write succeeded; the request record follows with the outcome, under the same request id. A
 * crash mid-forward thus leaves the intent in the trail, and queries show it as `incomplete`. Records are plain data, so JSON.stringify is the whole serializer (pino's
 * per-field path cost ~5% of a small request's CPU). When a write fails the sink turns unhealthy, and the pipeline refuses
 * to forward anything until a probe write succeeds again: Corridor does not act unaudited
 * (Vault's blocked-audit-device rule).
 */
import type { KeyObject } from 'node:crypto'
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { ChainWriter, checkpointPayload, signCheckpoint } from './chain.ts'
import type {
  Act,
  ApprovalAuditEvent,
  AuditQueryEvent,
  AuditRecord,
  RetentionAuditEvent,
  StopAuditEvent,
} from './record.ts'
import { deleteRecorded, expiredRotatedFiles, nextRotatedName, type RotationPolicy } from './rotation.ts'

export interface FileSinkOptions {
  readonly signingKey?: KeyObject | null
  /**
   * A signer elsewhere (Vault's transit engine): a checkpoint is written at once with
   * `signature_follows`, and its signature is appended as a `checkpoint_signature` entry when the
   * signer answers. One that does not answer leaves the checkpoint unsigned, which verify names.
   */
  readonly signLater?: SignLater | null
  readonly rotation?: RotationPolicy | null
  /** A checkpoint every this many entries as well as every minute. */
  readonly checkpointEntries?: number | null
  /** Whether a rotated file may be deleted by retention (not while it is still being shipped). */
  readonly mayDelete?: (file: string) => boolean
  /**
   * Told the rotated file's new name after each rotation, so a shipper finishes it first. An option,
   * not a later registration: the opening entry can already rotate a file its predecessor left full.
   */
  readonly onRotate?: (file: string) => void
}

/** How often a checkpoint states how far the stream went (and, with a key, signs it). */
const CHECKPOINT_MS = 60_000

export interface AuditSink {
  /** False while records cannot be written; nothing may be forwarded then. */
  readonly healthy: boolean
  /** Entries that could not be written since the sink opened. */
  readonly writeFailures: number
  /** Writes one record. Returns false if it could not be written (the record then goes to the operational log). */
  write(record: AuditRecord): boolean
  /**
   * Writes the intent entry of an act about to be taken; throws audit_unavailable when it cannot,
   * and the act is then not taken.
   */
  writeIntent(record: AuditRecord, act: Act, approvalId: string | null): void
  /** Writes an approval lifecycle event (decision, expiry, cancellation) to the same trail. */
  writeEvent(event: ApprovalAuditEvent | StopAuditEvent | AuditQueryEvent | RetentionAuditEvent): boolean
  /** Writes the final checkpoint (waiting for its signature when the signer is elsewhere) and closes. */
  close(): Promise<void>
}

/** A signer elsewhere: the base64 signature, and the version of its key that made it (recorded, for verifiers). */
export type SignLater = (payload: Buffer) => Promise<{ signature: string; keyVersion: number | null }>

type SinkPhase = 'open' | 'closing' | 'final' | 'closed'

/** Signatures asked of a signer elsewhere at once; a checkpoint beyond them stays unsigned (the next one covers it). */
const MAX_SIGNING = 8

export class FileAuditSink implements AuditSink {
  #fd: number
  readonly #path: string
  readonly #log: Logger
  readonly #rotation: RotationPolicy | null
  readonly #mayDelete: (file: string) => boolean
  readonly #onRotate: (file: string) => void
  /** Bytes in the live file, and when it was opened (for rotation). */
  #bytes = 0
  #openedAt = Date.now()
  /** Every line is an entry of this process's hash chain (chain.ts). */
  readonly #chain = new ChainWriter()
  readonly #signingKey: KeyObject | null
  readonly #signLater: SignLater | null
  readonly #signing = new Set<Promise<void>>()
  readonly #checkpoints: NodeJS.Timeout
  readonly #checkpointEntries: number | null
  #sinceCheckpoint = 0
  #healthy = true
  #writeFailures = 0
  #probe: NodeJS.Timeout | null = null
  /**
   * open: taking entries; closing: no new signatures are asked (the final checkpoint covers what
   * they would); final: the final checkpoint is written and only its late signature may follow it;
   * closed: the file is closed. An entry offered after the final checkpoint is refused, not written
   * where verify would call it a break (or to a descriptor the process has reused).
   */
  #phase: SinkPhase = 'open'
  /** The close under way, when a signer elsewhere makes it wait for the final signature. */
  #closed: Promise<void> | null = null

  constructor(path: string, log: Logger, options: FileSinkOptions = {}) {
    mkdirSync(dirname(path), { recursive: true })
    this.#path = path
    this.#fd = this.#open()
    this.#log = log
    this.#signingKey = options.signingKey ?? null
    this.#signLater = options.signLater ?? null
    this.#rotation = options.rotation ?? null
    this.#checkpointEntries = options.checkpointEntries ?? null
    this.#mayDelete = options.mayDelete ?? (() => true)
    this.#onRotate = options.onRotate ?? (() => {})
    // Prove at start that the sink takes writes; a sink that cannot is unhealthy from the first request.
    this.#append(JSON.stringify({ type: 'audit_sink_opened', v: 1, time: new Date().toISOString() }), null)
    this.#checkpoints = setInterval(() => {
      this.#checkpoint(false)
      this.#rotateIfDue()
    }, CHECKPOINT_MS)
    this.#checkpoints.unref()
  }

  /** Rotates now if the live file is over its size or age (also checked after every write and every minute). */
  rotateIfDue(): void {
    this.#rotateIfDue()
  }

  get stream(): string {
    return this.#chain.stream
  }

  get healthy(): boolean {
    return this.#healthy
  }

  get writeFailures(): number {
    return this.#writeFailures
  }

  write(record: AuditRecord): boolean {
    // `type` first, as every line of the trail starts with it.
    return this.#append('{"type":"request",' + JSON.stringify(record).slice(1), record)
  }

  writeIntent(record: AuditRecord, act: Act, approvalId: string | null): void {
    // What is known before acting; the outcome fields belong to the request record that follows.
    const intent = {
      type: 'intent',
      v: record.v,
      request_id: record.request_id,
      time: record.time,
      intent_time: new Date().toISOString(),
      act,
      approval_id: approvalId ?? record.approval?.id ?? null,
      agent: record.agent,
      user: record.user,
      intent: record.intent,
      task_id: record.task_id,
      connector: record.connector,
      action: record.action,
      risk: record.risk,
      method: record.method,
      path: record.path,
      query: record.query,
      decision: record.decision,
      rule: record.rule,
      reason: record.reason,
      policy_version: record.policy_version,
      approvers: record.approvers,
      credential: record.credential,
    }
    if (!this.#healthy || !this.#append(JSON.stringify(intent), null)) throw auditUnavailable()
  }

  writeEvent(event: ApprovalAuditEvent | StopAuditEvent | AuditQueryEvent | RetentionAuditEvent): boolean {
    return this.#append(JSON.stringify(event), null)
  }

  close(): Promise<void> {
    if (this.#signLater === null) return Promise.resolve(this.closeNow())
    this.#closed ??= this.#closeSigned()
    return this.#closed
  }

  async #closeSigned(): Promise<void> {
    if (this.#phase !== 'open') return
    this.#stopTimers()
    this.#phase = 'closing'
    // Signatures in flight land before the final checkpoint; only the final one's may follow it.
    await Promise.allSettled([...this.#signing])
    // closeNow, called meanwhile, has already ended the stream (the await may have changed the phase).
    if ((this.#phase as SinkPhase) !== 'closing') return
    const final = this.#checkpoint(true)
    this.#phase = 'final'
    if (final !== null) await this.#requestSignature(final.seq, final.payload, true)
    this.#closeFile()
  }

  /**
   * Closes at once: the last entry of a stream closed cleanly is its final checkpoint (a stream
   * that ends otherwise was cut off, or its process died); signed only by a key file.
   */
  closeNow(): void {
    if (this.#phase === 'final' || this.#phase === 'closed') return
    this.#stopTimers()
    // No longer open: the final checkpoint's own write starts no rotation and no checkpoint after it.
    this.#phase = 'closing'
    this.#checkpoint(true)
    this.#closeFile()
  }

  /** Closes the file; timers again, since a final write that failed starts the recovery probe. */
  #closeFile(): void {
    closeSync(this.#fd)
    this.#phase = 'closed'
    this.#stopTimers()
  }

  #stopTimers(): void {
    clearInterval(this.#checkpoints)
    if (this.#probe) clearInterval(this.#probe)
  }

  #open(): number {
    const fd = openSync(this.#path, 'a', 0o640)
    this.#bytes = fstatSync(fd).size
    this.#openedAt = Date.now()
    return fd
  }

  #rotating = false

  #rotateIfDue(): void {
    const r = this.#rotation
    if (r === null || !this.#healthy || this.#rotating || this.#phase !== 'open') return
    const due =
      (r.maxBytes !== null && this.#bytes >= r.maxBytes) ||
      (r.maxAgeMs !== null && this.#bytes > 0 && Date.now() - this.#openedAt >= r.maxAgeMs)
    if (!due) return
    this.#rotating = true
    const rotated = nextRotatedName(this.#path, new Date())
    try {
      // The rotated file ends with a checkpoint; the live one goes on with the same stream and sequence.
      this.#checkpoint(false)
      renameSync(this.#path, rotated)
      closeSync(this.#fd)
      this.#fd = this.#open()
      // The new file opens with a checkpoint too: once retention deletes the files before it, the
      // trail still starts at a signed statement of where the chain stood.
      this.#checkpoint(false, true)
    } catch (err) {
      // Not rotated: the live file keeps growing, which loses nothing.
      this.#log.error({ err }, 'audit file could not be rotated; it keeps growing')
      return
    } finally {
      this.#rotating = false
    }
    this.#onRotate(rotated)
    if (r.retainMs === null) return
    // The trail records what retention takes, where each file's chain ended, before it takes it:
    // verify tells a trail that starts later because of it from one whose files went otherwise. A
    // file that cannot be deleted stays for the next rotation; it is no failure to write the trail.
    // Still rotating: the record's own write must not start a rotation, and retention, inside this one.
    this.#rotating = true
    let deleted: readonly { file: string }[]
    try {
      deleted = deleteRecorded(
        this.#path,
        r.retainMs,
        expiredRotatedFiles(this.#path, r.retainMs, Date.now(), this.#mayDelete),
        (event) => this.#append(JSON.stringify(event), null),
        (file, err) =>
          this.#log.error(
            { err, file },
            'audit file past its retention could not be deleted; tried again at the next rotation',
          ),
      )
    } finally {
      this.#rotating = false
    }
    for (const { file } of deleted) this.#log.info({ file }, 'audit file past its retention deleted')
  }

  /**
   * States how far the stream went, signed when a key is configured. Returns the checkpoint's own
   * sequence number and what it states, for a signer elsewhere to sign.
   */
  #checkpoint(final: boolean, fileStart = false): { seq: number; payload: Buffer } | null {
    if (!this.#healthy) return null
    const { seq, hash } = this.#chain.position
    const time = new Date().toISOString()
    const payload = checkpointPayload(this.#chain.stream, seq, hash, time)
    const signature = this.#signingKey === null ? null : signCheckpoint(this.#signingKey, payload)
    this.#sinceCheckpoint = 0
    const entry = {
      type: 'checkpoint',
      v: 1,
      time,
      at_seq: seq,
      at_hash: hash,
      signature,
      final,
      ...(this.#signLater === null ? {} : { signature_follows: true }),
      ...(fileStart ? { file_start: true } : {}),
    }
    if (!this.#append(JSON.stringify(entry), null)) return null
    const own = { seq: this.#chain.position.seq, payload }
    if (!final && this.#signLater !== null && this.#phase === 'open' && this.#signing.size < MAX_SIGNING)
      void this.#requestSignature(own.seq, own.payload, false)
    return own
  }

  /** Asks the signer elsewhere, and appends its signature of the checkpoint at `forSeq` when it answers. */
  #requestSignature(forSeq: number, payload: Buffer, ofFinal: boolean): Promise<void> {
    const asked = (this.#signLater as SignLater)(payload).then(
      ({ signature, keyVersion }) => {
        this.#append(
          JSON.stringify({
            type: 'checkpoint_signature',
            v: 1,
            time: new Date().toISOString(),
            for_seq: forSeq,
            signature,
            ...(keyVersion === null ? {} : { key_version: keyVersion }),
          }),
          null,
          ofFinal,
        )
      },
      (err: unknown) =>
        this.#log.warn(
          { err, checkpoint: forSeq },
          'audit checkpoint not signed: the signer did not answer; it stays unsigned',
        ),
    )
    this.#signing.add(asked)
    void asked.finally(() => this.#signing.delete(asked))
    return asked
  }

  /** Appends one chained line; on failure the sink turns unhealthy (a record goes to the operational log instead). */
  #append(json: string, record: AuditRecord | null, finalSignature = false): boolean {
    if (this.#phase === 'closed' || (this.#phase === 'final' && !finalSignature)) {
      this.#writeFailures++
      if (record !== null)
        this.#log.error({ auditRecord: record }, 'audit record arrived after the audit trail was closed; not written')
      else this.#log.error('audit entry arrived after the audit trail was closed; not written')
      return false
    }
    try {
      const { line, commit } = this.#chain.seal(json)
      this.#bytes += writeAll(this.#fd, line + '\n')
      commit()
      // Only while open: once closing, the next entry is the final checkpoint, and nothing may follow it.
      if (this.#phase !== 'open') return true
      if (this.#checkpointEntries !== null && ++this.#sinceCheckpoint >= this.#checkpointEntries)
        this.#checkpoint(false)
      if (this.#rotation?.maxBytes != null && this.#bytes >= this.#rotation.maxBytes) this.#rotateIfDue()
      return true
    } catch (err) {
      this.#fail(err, record)
      return false
    }
  }

  #fail(err: unknown, record: AuditRecord | null): void {
    this.#writeFailures++
    if (record !== null)
      this.#log.error(
        { err, auditRecord: record },
        'audit record could not be written; Corridor refuses requests until the sink recovers',
      )
    else this.#log.error({ err }, 'audit sink is not writable; Corridor refuses requests until it recovers')
    if (!this.#healthy) return
    this.#healthy = false
    this.#probe = setInterval(() => {
      // A leading newline ends any line a failed write left half-written.
      const { line, commit } = this.#chain.seal(
        JSON.stringify({ type: 'audit_sink_recovered', v: 1, time: new Date().toISOString() }),
      )
      try {
        writeAll(this.#fd, '\n' + line + '\n')
      } catch {
        return
      }
      commit()
      this.#healthy = true
      if (this.#probe) clearInterval(this.#probe)
      this.#probe = null
      this.#log.warn('audit sink recovered')
    }, 1_000)
    this.#probe.unref()
  }
}

function writeAll(fd: number, text: string): number {
  const buf = Buffer.from(text)
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off)
  return buf.length
}

function auditUnavailable(): CorridorError {
  return new CorridorError('audit_unavailable', 'the audit trail cannot be written; nothing is forwarded until it can')
}

/** Refuse rather than act unaudited: nothing is forwarded or held while the sink cannot write. */
export function assertAuditable(audit: AuditSink): void {
  if (!audit.healthy) throw auditUnavailable()
}
