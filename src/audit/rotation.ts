/**
 * Audit file rotation: the live file (`audit.log`) is renamed to `audit.log.<UTC time>` when it
 * grows past `max_bytes` or gets older than `max_age`, and a new live file continues the same hash
 * chain (the stream and its sequence go on; the rotated file ends with a checkpoint). Rotated
 * files sort by name in the order they were written, so reading them in that order, then the live
 * file, reads the chain whole. Retention deletes rotated files past `retain`, never one that has
 * not been shipped yet, and the trail records each deletion with where the file's chain ended.
 */
import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync, unlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { RotationPolicy } from '../config/server-config.ts'
import { chainedEntry } from './chain.ts'
import type { ChainEnd, RetentionAuditEvent } from './record.ts'

export type { RotationPolicy }

/** The name a live file is rotated to: sortable, and the same on every filesystem. */
export function rotatedName(live: string, at: Date): string {
  return `${live}.${at.toISOString().replaceAll(':', '-')}`
}

/**
 * The name to rotate to now: after every rotated file already there, even when the clock was set
 * back since. Readers and shippers take the rotated files in name order, so a name that sorted
 * before an older file would be read out of order and skipped by a shipper already past it, and
 * an equal name would replace that file.
 */
export function nextRotatedName(live: string, now: Date): string {
  const newest = rotatedFiles(live).at(-1)
  const after = newest === undefined ? Number.NaN : rotatedAt(newest)
  return rotatedName(live, after >= now.getTime() ? new Date(after + 1) : now)
}

/** The time a rotated file's name ends with (`.2026-12-01T13-47-45.690Z`), epoch milliseconds. */
function rotatedAt(file: string): number {
  const m = /(\d{4}-\d{2}-\d{2}T\d{2})-(\d{2})-(\d{2}\.\d{3}Z)$/.exec(file)
  return m === null ? Number.NaN : Date.parse(`${m[1]}:${m[2]}:${m[3]}`)
}

/** What rotation appends to a live file's name (`.` and rotatedName's time), as a regular expression's source. */
export const ROTATED_SUFFIX = String.raw`\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z`

/** The rotated files of a live audit file, oldest first. */
const ROTATED = new RegExp(`^${ROTATED_SUFFIX}$`)

export function rotatedFiles(live: string): string[] {
  const dir = dirname(live)
  const prefix = `${basename(live)}.`
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  return names
    .filter((n) => n.startsWith(prefix) && ROTATED.test(n.slice(prefix.length - 1)))
    .sort()
    .map((n) => join(dir, n))
}

/** Every file of the trail in the order it was written: the rotated ones, then the live one. */
export function trailFiles(live: string): string[] {
  return [...rotatedFiles(live), live]
}

/** A file retention deleted, and where its chain ended (for the record of the deletion). */
export interface DeletedFile {
  readonly file: string
  readonly ends: ChainEnd | null
}

/** Deletes rotated files last written before `now - retainMs` that `mayDelete` allows; the files deleted (never throws). */
export function applyRetention(
  live: string,
  retainMs: number,
  now: number,
  mayDelete: (file: string) => boolean,
  failed: (file: string, err: unknown) => void,
): DeletedFile[] {
  const deleted: DeletedFile[] = []
  for (const file of rotatedFiles(live)) {
    let mtime: number
    try {
      mtime = statSync(file).mtimeMs
    } catch {
      continue
    }
    if (now - mtime < retainMs || !mayDelete(file)) continue
    const gone = deleteFile(file, failed)
    if (gone !== null) deleted.push(gone)
  }
  return deleted
}

/**
 * Deletes an audit file, noting first where its chain ended; null (and `failed` told) when it
 * could not: retention goes on with the next file, and what it did delete is still recorded.
 */
export function deleteFile(file: string, failed: (file: string, err: unknown) => void): DeletedFile | null {
  try {
    const ends = chainEndOf(file)
    unlinkSync(file)
    return { file, ends }
  } catch (err) {
    failed(file, err)
    return null
  }
}

/** The record of what retention deleted, to be appended to a trail. */
export function retentionEvent(live: string, retainMs: number, deleted: readonly DeletedFile[]): RetentionAuditEvent {
  return {
    type: 'retention',
    v: 1,
    time: new Date().toISOString(),
    trail: basename(live),
    retain_ms: retainMs,
    deleted: deleted.map(({ file, ends }) => ({ file: basename(file), ends })),
  }
}

/** How much of a file's end is read for its last entry: far more than any entry's line. */
const TAIL_BYTES = 256 * 1024

/** The last chained entry of a file (its last whole line that is one), or null. */
function chainEndOf(file: string): ChainEnd | null {
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch {
    return null
  }
  try {
    const size = fstatSync(fd).size
    const start = Math.max(0, size - TAIL_BYTES)
    const buf = Buffer.alloc(size - start)
    readSync(fd, buf, 0, buf.length, start)
    const lines = buf.toString('utf8').split('\n')
    for (let i = lines.length - 1; i >= (start === 0 ? 0 : 1); i--) {
      const e = chainedEntry(lines[i] as string)
      if (e !== null && typeof e['hash'] === 'string')
        return { stream: e['stream'] as string, seq: e['seq'] as number, hash: e['hash'] }
    }
    return null
  } finally {
    closeSync(fd)
  }
}
