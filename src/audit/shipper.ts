/**
 * Copies the local audit file to PostgreSQL (or an OpenTelemetry collector). The file stays the
 * record written before Corridor acts; the shipper follows it from a saved position (file, byte
 * offset and the file's identity, in `<audit file>.shipped`), in batches, and saves the position
 * only after the target has taken a batch: at least once, and stored once in PostgreSQL (entries
 * are keyed by stream and sequence). A target never shipped to starts at the trail's oldest file.
 * When the live file is rotated the shipper finishes the rotated file, then any later one, then
 * goes on with the live file. It knows the file it reads by identity (device and inode, which a
 * rename keeps), so a rotation it was not told of, or one between its last save and a restart, is
 * followed to the renamed file rather than skipped. Retention deletes no rotated file it has not
 * finished. It reads at most a batch's worth at a time (bounded memory), retries with backoff
 * while the target is away, and picks up where it stopped after an outage or a restart.
 * Forwarding never waits for it; how far behind it is shows on /readyz and in the metrics.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  type BigIntStats,
} from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Logger } from '../shared/logger.ts'
import { rotatedFiles } from './rotation.ts'

/** One line of a local audit file, parsed as far as a target needs (the PostgreSQL columns, the OTLP attributes). */
export interface ShippedEntry {
  readonly stream: string
  readonly seq: number
  readonly line: string
  readonly type: string
  readonly time: string | null
  readonly requestId: string | null
  readonly approvalId: string | null
  readonly agent: string | null
}

/** What a target takes of one line of the audit file; null for a line that is not a chained entry. */
export function shippedEntry(line: string): ShippedEntry | null {
  if (line === '') return null
  let value: Record<string, unknown>
  try {
    value = JSON.parse(line) as Record<string, unknown>
  } catch {
    return null
  }
  const { stream, seq } = value
  if (typeof stream !== 'string' || typeof seq !== 'number') return null
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null)
  const approval = value['approval'] as { id?: unknown } | null | undefined
  return {
    stream,
    seq,
    line,
    type: text(value['type']) ?? 'unknown',
    time: text(value['time']),
    requestId: text(value['request_id']),
    approvalId: text(value['approval_id']) ?? text(approval?.id),
    agent: text(value['agent']),
  }
}

/** Where entries are shipped to: PostgreSQL (postgres-store.ts), an OpenTelemetry collector (otlp-target.ts). */
export interface ShipTarget {
  /** What the position file and the logs call it: postgres, otlp. */
  readonly name: string
  /** Takes a batch, or throws (the batch is then sent again). */
  insert(entries: readonly ShippedEntry[]): Promise<number>
  close(): Promise<void>
}

export interface ShipperOptions<T extends ShipTarget = ShipTarget> {
  readonly file: string
  readonly store: T
  readonly log: Logger
  /** Lines per INSERT. */
  readonly batch: number
  /** How often the file is looked at when there is nothing to ship. */
  readonly pollMs: number
}

export interface ShippingStatus {
  /** Bytes of the audit file not yet taken by the target. */
  readonly lagBytes: number
  readonly shipped: number
  /** Lines that are not chained entries (a line a full disk cut short): kept in the file, not shipped. */
  readonly skipped: number
  readonly failing: boolean
  readonly lastShippedAt: number | null
}

/**
 * Where shipping stands for each target (postgres, otlp), over every trail shipped to it: bytes
 * and entries added up, failing while any of its shippers fails, the latest time any shipped.
 */
export function shippingByTarget(shippers: readonly AuditShipper[]): Map<string, ShippingStatus> {
  const byTarget = new Map<string, ShippingStatus>()
  for (const shipper of shippers) {
    const s = shipper.status()
    const before = byTarget.get(shipper.store.name)
    byTarget.set(
      shipper.store.name,
      before === undefined
        ? s
        : {
            lagBytes: before.lagBytes + s.lagBytes,
            shipped: before.shipped + s.shipped,
            skipped: before.skipped + s.skipped,
            failing: before.failing || s.failing,
            lastShippedAt: latest(before.lastShippedAt, s.lastShippedAt),
          },
    )
  }
  return byTarget
}

const latest = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b))

const MAX_READ = 1024 * 1024

export class AuditShipper<T extends ShipTarget = ShipTarget> {
  readonly #o: ShipperOptions<T>
  readonly #offsetFile: string
  /** The file being shipped: the live one, or a rotated one still to finish. */
  #file: string
  #offset: number
  /** Which file that is (device and inode), followed when a rotation renames it; null before it exists. */
  #id: string | null
  #shipped = 0
  #skipped = 0
  #failing = false
  #lastShippedAt: number | null = null
  #timer: NodeJS.Timeout | null = null
  /** Drains run one after another (the timer's and flush()'s), never two over the same offset. */
  #queue: Promise<void> = Promise.resolve()
  #closed = false
  #backoffMs = 0

  /** The target it ships to (closed by whoever closes the shipper). */
  readonly store: T

  constructor(options: ShipperOptions<T>) {
    this.#o = options
    this.store = options.store
    this.#offsetFile = positionFile(options.file, options.store.name)
    const saved = readPosition(this.#offsetFile, options.file, options.log)
    this.#file = saved.file
    this.#offset = saved.offset
    this.#id = saved.id ?? fileId(saved.file)
  }

  /** The live file was renamed to `file`: what is left of it is shipped from there. */
  rotated(file: string): void {
    if (this.#file === this.#o.file) this.#file = file
  }

  /** Whether every entry of a rotated file is in PostgreSQL (retention may delete it then). */
  hasShipped(file: string): boolean {
    return this.#file === this.#o.file || file < this.#file
  }

  start(): void {
    this.#schedule(0)
  }

  status(): ShippingStatus {
    const size = (file: string): number => {
      try {
        return statSync(file).size
      } catch {
        return 0 // no file yet
      }
    }
    let lag = size(this.#file) - this.#offset
    if (this.#file !== this.#o.file)
      for (const later of [...rotatedFiles(this.#o.file).filter((f) => f > this.#file), this.#o.file])
        lag += size(later)
    return {
      lagBytes: Math.max(0, lag),
      shipped: this.#shipped,
      skipped: this.#skipped,
      failing: this.#failing,
      lastShippedAt: this.#lastShippedAt,
    }
  }

  /** Ships what the file holds now (tests, shutdown); resolves when caught up or when PostgreSQL refuses. */
  flush(): Promise<void> {
    return this.#serial()
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    await this.#queue
  }

  #serial(): Promise<void> {
    const run = this.#queue.then(() => this.#drain())
    this.#queue = run.catch(() => {})
    return run
  }

  #schedule(ms: number): void {
    if (this.#closed) return
    this.#timer = setTimeout(() => {
      void this.#serial().finally(() => this.#schedule(this.#backoffMs > 0 ? this.#backoffMs : this.#o.pollMs))
    }, ms)
    this.#timer.unref()
  }

  /** Ships batch after batch until the end of the file, or until a batch fails. */
  async #drain(): Promise<void> {
    for (;;) {
      const chunk = this.#read()
      if (chunk === null) {
        // At the end of a rotated file: on to the next one (it was finished, and is never written again).
        if (this.#file === this.#o.file) return
        this.#file = rotatedFiles(this.#o.file).find((f) => f > this.#file) ?? this.#o.file
        this.#offset = 0
        this.#id = fileId(this.#file)
        this.#save()
        continue
      }
      const { entries, consumed, skipped } = chunk
      try {
        if (entries.length > 0) await this.#o.store.insert(entries)
      } catch (err) {
        if (!this.#failing)
          this.#o.log.error(
            { err, target: this.#o.store.name },
            'audit shipping failed; the local file keeps every entry, shipping resumes when the target answers',
          )
        this.#failing = true
        this.#backoffMs = Math.min(10_000, Math.max(500, this.#backoffMs * 2))
        return
      }
      if (this.#failing) this.#o.log.warn({ target: this.#o.store.name }, 'audit shipping resumed')
      this.#failing = false
      this.#backoffMs = 0
      this.#offset += consumed
      this.#shipped += entries.length
      this.#skipped += skipped
      this.#lastShippedAt = Date.now()
      this.#save()
    }
  }

  #save(): void {
    const tmp = `${this.#offsetFile}.tmp`
    writeFileSync(tmp, JSON.stringify({ file: this.#file, offset: this.#offset, id: this.#id }) + '\n')
    renameSync(tmp, this.#offsetFile)
  }

  /** The next whole lines after the offset, at most a batch; null when there are none yet. */
  #read(): { entries: ShippedEntry[]; consumed: number; skipped: number } | null {
    let fd: number
    try {
      fd = openSync(this.#file, 'r')
    } catch {
      return null
    }
    try {
      const id = identity(fstatSync(fd, { bigint: true }))
      if (this.#id !== null && id !== this.#id) {
        // Another file has the name now: the one being read was rotated, and nobody said so.
        const moved = rotatedFiles(this.#o.file).find((f) => fileId(f) === this.#id)
        if (moved !== undefined) {
          this.#file = moved
          return this.#read()
        }
        this.#o.log.warn(
          { file: this.#file, offset: this.#offset },
          'the audit file being shipped is gone; shipping goes on from the start of the file now in its place',
        )
        this.#offset = 0
      }
      this.#id = id
      // A file smaller than the offset was truncated: ship it from the start (stored entries are not stored twice).
      if (statSync(this.#file).size < this.#offset) this.#offset = 0
      const buf = Buffer.allocUnsafe(MAX_READ)
      const n = readSync(fd, buf, 0, MAX_READ, this.#offset)
      if (n === 0) return null
      const text = buf.subarray(0, n)
      const entries: ShippedEntry[] = []
      let consumed = 0
      let skipped = 0
      while (entries.length < this.#o.batch) {
        const nl = text.indexOf(10, consumed)
        if (nl === -1) break // a line still being written
        const line = text.subarray(consumed, nl).toString('utf8')
        consumed = nl + 1
        const entry = shippedEntry(line)
        if (entry === null) skipped++
        else entries.push(entry)
      }
      if (consumed === 0 && n === MAX_READ) {
        // One line longer than the read: not a Corridor entry; step over it.
        this.#o.log.warn({ offset: this.#offset }, 'audit shipping skipped an overlong line')
        return { entries: [], consumed: n, skipped: 1 }
      }
      return consumed === 0 ? null : { entries, consumed, skipped }
    } finally {
      closeSync(fd)
    }
  }
}

/** Where the shipper of trail `file` to `target` keeps its position. PostgreSQL keeps the name it always had. */
function positionFile(file: string, target: string): string {
  return target === 'postgres' ? `${file}${POSITION_SUFFIX}` : `${file}${POSITION_SUFFIX}-${target}`
}

const POSITION_SUFFIX = '.shipped'

/** The position files of every target's shipper of trail `file` (and a save left half done). */
export function positionFiles(file: string): string[] {
  const prefix = basename(file) + POSITION_SUFFIX
  try {
    return readdirSync(dirname(file))
      .filter((name) => name.startsWith(prefix))
      .map((name) => join(dirname(file), name))
  } catch {
    return []
  }
}

/** A file's identity, which a rename keeps: device and inode. */
const identity = (stats: BigIntStats): string => `${stats.dev}:${stats.ino}`

function fileId(file: string): string | null {
  try {
    return identity(statSync(file, { bigint: true }))
  } catch {
    return null // not there (yet)
  }
}

interface Position {
  readonly file: string
  readonly offset: number
  /** Null when the position file predates identities, or there was no file to name. */
  readonly id: string | null
}

/**
 * Where shipping stopped. The file is found by its identity, wherever rotation renamed it. Without
 * one (a position file from an earlier version), or when that file is gone (deleted by hand), the
 * name decides: a rotated file that no longer exists is skipped to the next. No position yet, or
 * one that cannot be read: the start of the trail's oldest file.
 */
function readPosition(stateFile: string, live: string, log: Logger): Position {
  // Never shipped to this target: all of the trail still on disk goes, oldest file first, so a
  // store added to a running deployment holds what the files hold (and retention waits for it).
  const start: Position = { file: rotatedFiles(live)[0] ?? live, offset: 0, id: null }
  let text: string
  try {
    text = readFileSync(stateFile, 'utf8')
  } catch {
    return start
  }
  const saved = parsedPosition(text)
  const offset = Number(saved?.offset)
  if (saved === null || typeof saved.file !== 'string' || !Number.isSafeInteger(offset) || offset < 0) {
    log.warn({ stateFile }, 'audit shipping position unreadable; shipping the whole trail again (at least once)')
    return start
  }
  const file = saved.file
  if (typeof saved.id === 'string') {
    const found = [file, ...rotatedFiles(live), live].find((f) => fileId(f) === saved.id)
    if (found !== undefined) return { file: found, offset, id: saved.id }
    log.warn({ file, offset }, 'the audit file shipping stopped in is gone; shipping goes on from the next one')
    return { file: file === live ? live : (rotatedFiles(live).find((f) => f > file) ?? live), offset: 0, id: null }
  }
  if (file !== live && !existsSync(file))
    return { file: rotatedFiles(live).find((f) => f > file) ?? live, offset: 0, id: null }
  // Stopped between a rotation and saving it: the position is in the newest rotated file.
  if (file === live && existsSync(live) && statSync(live).size < offset) {
    const newest = rotatedFiles(live).at(-1)
    if (newest !== undefined && statSync(newest).size >= offset) return { file: newest, offset, id: null }
  }
  return { file, offset, id: null }
}

function parsedPosition(text: string): { file?: unknown; offset?: unknown; id?: unknown } | null {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null ? value : null
  } catch {
    return null
  }
}
