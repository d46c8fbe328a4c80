/**
 * Audit file rotation: the live file (`audit.log`) is renamed to `audit.log.<UTC time>` when it
 * grows past `max_bytes` or gets older than `max_age`, and a new live file continues the same hash
 * chain (the stream and its sequence go on; the rotated file ends with a checkpoint). Rotated
 * files sort by name in the order they were written, so reading them in that order, then the live
 * file, reads the chain whole. Retention deletes rotated files past `retain`, never one that has
 * not been shipped yet, and the trail records each deletion, with where the file's chain ended,
 * before it deletes.
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

const ROTATED = new RegExp(`^${ROTATED_SUFFIX}$`)

/** The rotated files of a live audit file, oldest first. */
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

/** Appends a retention record to a trail; false when it could not be written. */
export type RecordRetention = (event: RetentionAuditEvent) => boolean

/** The rotated files of `live` last written before `now - retainMs` that `mayDelete` allows, oldest first. */
export function expiredRotatedFiles(
  live: string,
  retainMs: number,
  now: number,
  mayDelete: (file: string) => boolean,
): string[] {
  return rotatedFiles(live).filter((file) => {
    let mtime: number
    try {
      mtime = statSync(file).mtimeMs
    } catch {
      return false
    }
    return now - mtime >= retainMs && mayDelete(file)
  })
}

/**
 * Deletes `files` of the trail whose live file is `live`, recorded first: the trail names each
 * one, with where its chain ended, before any is deleted. A crash in between leaves a record of
 * a deletion that did not happen (the file is still there, and still verifies) rather than a
 * deletion nobody recorded. Nothing is deleted when that record cannot be written. A file that
 * then cannot be deleted is recorded as kept, and `failed` is told; the next retention tries it
 * again. Returns the files deleted (never throws).
 */
export function deleteRecorded(
  live: string,
  retainMs: number,
  files: readonly string[],
  record: RecordRetention,
  failed: (file: string, err: unknown) => void,
): DeletedFile[] {
  const named: DeletedFile[] = []
  for (const file of files)
    try {
      named.push({ file, ends: chainEndOf(file) })
    } catch (err) {
      failed(file, err)
    }
  if (named.length === 0) return []
  if (!record(retentionEvent(live, retainMs, named, []))) {
    for (const { file } of named) failed(file, new Error('not deleted: the audit trail could not record its deletion'))
    return []
  }
  const deleted: DeletedFile[] = []
  const kept: DeletedFile[] = []
  for (const one of named)
    try {
      unlinkSync(one.file)
      deleted.push(one)
    } catch (err) {
      // Gone already (removed by hand since it was named): not kept, whoever removed it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      failed(one.file, err)
      kept.push(one)
    }
  if (kept.length > 0) record(retentionEvent(live, retainMs, [], kept))
  return deleted
}

/** The record of what retention deletes, or of what it named and could not delete after all. */
function retentionEvent(
  live: string,
  retainMs: number,
  deleted: readonly DeletedFile[],
  kept: readonly DeletedFile[],
): RetentionAuditEvent {
  const named = (files: readonly DeletedFile[]) => files.map(({ file, ends }) => ({ file: basename(file), ends }))
  return {
    type: 'retention',
    v: 1,
    time: new Date().toISOString(),
    trail: basename(live),
    retain_ms: retainMs,
    deleted: named(deleted),
    ...(kept.length === 0 ? {} : { kept: named(kept) }),
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
