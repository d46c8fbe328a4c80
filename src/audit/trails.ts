/**
 * The trails of one configured audit file. A single process writes the file itself; with
 * `workers: N` each worker writes a trail of its own, `<file>.worker-<place>`, with its own
 * rotation and its own shipper, so that no two processes ever append to or rename the same file.
 * Whatever reads "the audit file" (query, trace, report, verify, the admin API) reads every
 * trail of it, rotated files included, merged by entry time.
 */
import { createReadStream, existsSync, readdirSync, statSync, unlinkSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { createInterface } from 'node:readline'
import {
  deleteRecorded,
  expiredRotatedFiles,
  ROTATED_SUFFIX,
  rotatedFiles,
  trailFiles,
  type DeletedFile,
  type RecordRetention,
} from './rotation.ts'
import { positionFiles } from './shipper.ts'

/** The live file the worker in `place` (1 to N) writes. */
export function workerTrail(file: string, place: number): string {
  return `${file}.worker-${place}`
}

/**
 * The live files of every trail of `file`: the file itself, then each worker's by place. A trail
 * counts when its live file or any of its rotated files exists (a live file may be gone while its
 * rotated ones remain); `file` always counts, existing or not.
 */
export function trailsOf(file: string): string[] {
  let names: string[]
  try {
    names = readdirSync(dirname(file))
  } catch {
    return [file]
  }
  const worker = new RegExp(`^${escapeRegExp(basename(file))}\\.worker-([1-9]\\d*)(?:${ROTATED_SUFFIX})?$`)
  const places = new Set<number>()
  for (const name of names) {
    const m = worker.exec(name)
    if (m !== null) places.add(Number(m[1]))
  }
  return [file, ...[...places].sort((a, b) => a - b).map((place) => workerTrail(file, place))]
}

/** The trails of `file` that hold any file and that none of `written` (the live files being written now) is. */
export function unwrittenTrails(file: string, written: readonly string[]): string[] {
  return trailsOf(file).filter((trail) => !written.includes(trail) && trailFiles(trail).some((f) => existsSync(f)))
}

/**
 * Retention over a trail nobody writes any more, which no rotation of its own reaches: its rotated
 * files past `retainMs` go when `mayDelete` allows (shipped), then its live file once it is the
 * last one left, past `retainMs` and allowed (shipped whole), and the shipping positions kept
 * for it. Each deletion is recorded first (see deleteRecorded). The files deleted, with where
 * each one's chain ended.
 */
export function expireUnwrittenTrail(
  trail: string,
  retainMs: number,
  now: number,
  mayDelete: (file: string) => boolean,
  record: RecordRetention,
  failed: (file: string, err: unknown) => void,
): DeletedFile[] {
  const deleted = deleteRecorded(trail, retainMs, expiredRotatedFiles(trail, retainMs, now, mayDelete), record, failed)
  let mtime: number
  try {
    mtime = statSync(trail).mtimeMs
  } catch {
    return deleted // only rotated files, or none
  }
  if (rotatedFiles(trail).length > 0 || now - mtime < retainMs || !mayDelete(trail)) return deleted
  const live = deleteRecorded(trail, retainMs, [trail], record, failed)
  if (live.length === 0) return deleted
  deleted.push(...live)
  for (const position of positionFiles(trail))
    try {
      unlinkSync(position)
    } catch (err) {
      failed(position, err)
    }
  return deleted
}

/** Every file of every trail of `file`, in the order each trail was written. */
export function allTrailFiles(file: string): string[] {
  return trailsOf(file).flatMap(trailFiles)
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Every line of one trail: its rotated files, oldest first, then its live file. */
async function* oneTrailLines(live: string): AsyncGenerator<string> {
  for (const f of trailFiles(live)) {
    const input = createReadStream(f, { encoding: 'utf8' })
    const lines = createInterface({ input, crlfDelay: Infinity })
    try {
      yield* lines
    } catch (err) {
      // A file that is not there (a worker's trail that has only rotated files, a rotated file
      // deleted by retention while it was being read: its entries have been shipped).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    } finally {
      // Closing the reader leaves its file open: a reader that stopped early (a query's limit
      // reached) would otherwise keep a descriptor for as long as the process runs.
      lines.close()
      input.destroy()
    }
  }
}

/**
 * Every line of every trail of `file`. One trail is read as written. Several are merged by the
 * time their entries were written, each trail's own order kept (a line without a time, one a full
 * disk cut short, stays where it was in its trail), so that a query's first N matches are the
 * earliest across the workers and an intent still comes before its request record.
 */
export async function* trailLines(file: string): AsyncGenerator<string> {
  const trails = trailsOf(file)
  if (trails.length === 1) {
    yield* oneTrailLines(file)
    return
  }
  const heads: { readonly lines: AsyncGenerator<string>; line: string; time: string }[] = []
  try {
    for (const trail of trails) {
      const lines = oneTrailLines(trail)
      const first = await lines.next()
      if (first.done !== true) heads.push({ lines, line: first.value, time: timeOf(first.value, '') })
    }
    while (heads.length > 0) {
      let earliest = 0
      for (let i = 1; i < heads.length; i++) if (heads[i]!.time < heads[earliest]!.time) earliest = i
      const head = heads[earliest]!
      yield head.line
      const next = await head.lines.next()
      if (next.done === true) heads.splice(earliest, 1)
      else {
        head.line = next.value
        head.time = timeOf(next.value, head.time)
      }
    }
  } finally {
    for (const head of heads) await head.lines.return(undefined)
  }
}

/** An entry's `time` (ISO 8601 in UTC, which sorts as text); `before` for a line without one. */
function timeOf(line: string, before: string): string {
  try {
    const time = (JSON.parse(line) as { time?: unknown }).time
    return typeof time === 'string' && time > before ? time : before
  } catch {
    return before
  }
}
