/**
 * The trails of one configured audit file: which files belong to it (the file itself and each
 * worker's, rotated files included, nothing else that shares the prefix), and how several are
 * read as one, merged by entry time with each trail's own order kept.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { eventually } from '../helpers/corridor-fixture.ts'
import {
  allTrailFiles,
  expireUnwrittenTrail,
  trailLines,
  trailsOf,
  unwrittenTrails,
  workerTrail,
} from '../../src/audit/trails.ts'
import type { RetentionAuditEvent } from '../../src/audit/record.ts'

const entry = (name: string, time?: string): string => JSON.stringify(time === undefined ? { name } : { name, time })

/** A directory holding `files` (name → lines). */
function directory(files: Record<string, string[]>): string {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-trails-'))
  for (const [name, lines] of Object.entries(files)) writeFileSync(join(dir, name), lines.map((l) => l + '\n').join(''))
  return dir
}

async function names(file: string): Promise<string[]> {
  const read: string[] = []
  for await (const line of trailLines(file)) read.push((JSON.parse(line) as { name: string }).name)
  return read
}

describe('trailsOf', () => {
  it("finds the file and each worker's trail, by place, and nothing else that shares the name", () => {
    const dir = directory({
      'audit.log': [],
      'audit.log.2026-01-01T00-00-00.000Z': [],
      'audit.log.worker-2': [],
      // A worker's trail whose live file is gone: its rotated files still count.
      'audit.log.worker-10.2026-01-01T00-00-00.000Z': [],
      'audit.log.worker-1.shipped': [],
      'audit.log.worker-1.shipped-otlp': [],
      'audit.log.worker-x': [],
      'audit.log.worker-0': [],
      'auditXlog.worker-3': [],
      'other.log.worker-4': [],
    })
    const file = join(dir, 'audit.log')
    expect(trailsOf(file)).toEqual([file, workerTrail(file, 2), workerTrail(file, 10)])
    expect(allTrailFiles(file)).toEqual([
      join(dir, 'audit.log.2026-01-01T00-00-00.000Z'),
      file,
      workerTrail(file, 2),
      join(dir, 'audit.log.worker-10.2026-01-01T00-00-00.000Z'),
      workerTrail(file, 10),
    ])
  })

  it('names as unwritten the trails that hold files and that no running process writes', () => {
    const dir = directory({
      'audit.log.worker-1': [],
      'audit.log.worker-2.2026-01-01T00-00-00.000Z': [],
      'audit.log.worker-3': [],
    })
    const file = join(dir, 'audit.log')
    // Workers 1 and 2 run: the third's trail is left; the configured file never existed.
    expect(unwrittenTrails(file, [workerTrail(file, 1), workerTrail(file, 2)])).toEqual([workerTrail(file, 3)])
    // A single process writes the file: every worker's trail is left, even one with only rotated files.
    expect(unwrittenTrails(file, [file])).toEqual([1, 2, 3].map((place) => workerTrail(file, place)))
  })

  it('is the file alone in a directory that does not exist', () => {
    expect(trailsOf('/nonexistent/corridor/audit.log')).toEqual(['/nonexistent/corridor/audit.log'])
  })
})

describe('trailLines', () => {
  it("reads one trail as written, rotated files first, whatever its entries' times", async () => {
    const dir = directory({
      'audit.log.2026-01-01T00-00-00.000Z': [entry('a', '2026-01-01T00:00:05.000Z')],
      'audit.log': [entry('b', '2026-01-01T00:00:09.000Z'), entry('c', '2026-01-01T00:00:01.000Z')],
    })
    expect(await names(join(dir, 'audit.log'))).toEqual(['a', 'b', 'c'])
  })

  it("merges several trails by time, each trail's order kept, a line without a time staying behind the one before it", async () => {
    const dir = directory({
      'audit.log': [entry('base-1', '2026-01-01T00:00:00.000Z')],
      'audit.log.worker-1': [
        entry('w1-1', '2026-01-01T00:00:01.000Z'),
        entry('w1-3', '2026-01-01T00:00:03.000Z'),
        'a line a full disk cut sh',
        // Earlier than the line before it (a request record carries its start time): still after it.
        entry('w1-late', '2026-01-01T00:00:02.500Z'),
        entry('w1-5', '2026-01-01T00:00:05.000Z'),
      ],
      'audit.log.worker-2.2026-01-01T00-00-02.000Z': [entry('w2-2', '2026-01-01T00:00:02.000Z')],
      'audit.log.worker-2': [entry('w2-4', '2026-01-01T00:00:04.000Z'), entry('w2-6', '2026-01-01T00:00:06.000Z')],
    })
    const read: string[] = []
    for await (const line of trailLines(join(dir, 'audit.log'))) read.push(line)
    expect(read.map((l) => (l.startsWith('{') ? (JSON.parse(l) as { name: string }).name : l))).toEqual([
      'base-1',
      'w1-1',
      'w2-2',
      'w1-3',
      'a line a full disk cut sh',
      'w1-late',
      'w2-4',
      'w1-5',
      'w2-6',
    ])
  })

  it("reads the workers' trails when the configured file itself was never written", async () => {
    const dir = directory({
      'audit.log.worker-1': [entry('w1', '2026-01-01T00:00:02.000Z')],
      'audit.log.worker-2': [entry('w2', '2026-01-01T00:00:01.000Z')],
    })
    expect(await names(join(dir, 'audit.log'))).toEqual(['w2', 'w1'])
  })

  it.each([
    ['one trail', { 'audit.log': [entry('a', '2026-01-01T00:00:01.000Z'), entry('b', '2026-01-01T00:00:02.000Z')] }],
    [
      'several trails',
      {
        'audit.log.worker-1': [entry('w1', '2026-01-01T00:00:02.000Z')],
        'audit.log.worker-2': [entry('w2', '2026-01-01T00:00:01.000Z'), entry('w2b', '2026-01-01T00:00:03.000Z')],
      },
    ],
  ])('closes every file when its reader stops early (%s)', async (_, files) => {
    const dir = directory(files)
    const open = (): string[] =>
      readdirSync('/proc/self/fd').flatMap((fd) => {
        try {
          const target = readlinkSync(`/proc/self/fd/${fd}`)
          return target.startsWith(dir) ? [target] : []
        } catch {
          return []
        }
      })
    for await (const line of trailLines(join(dir, 'audit.log'))) {
      // A query that has its first match and its limit of one.
      expect(open().length).toBeGreaterThan(0)
      expect(line).toBeTruthy()
      break
    }
    await eventually(() => expect(open()).toEqual([]))
  })
})

describe('expireUnwrittenTrail', () => {
  const DAY = 86_400_000
  const files = (deleted: readonly { file: string }[]): string[] => deleted.map((d) => d.file)
  const unexpected = (file: string, err: unknown): never => {
    throw new Error(`${file} could not be deleted`, { cause: err })
  }
  /** A trail that takes every retention record. */
  const recorded = (): boolean => true
  const now = Date.now()
  /** Sets a file's modification time `days` ago. */
  const age = (file: string, days: number): void =>
    utimesSync(file, new Date(now - days * DAY), new Date(now - days * DAY))
  /** Retention of a week over `trail`, everything shipped. */
  const expireWeekOld = (
    trail: string,
    record: (event: RetentionAuditEvent) => boolean,
    failed: (file: string, err: unknown) => void,
  ) => expireUnwrittenTrail(trail, 7 * DAY, now, () => true, record, failed)
  const trailDirectory = (): string => {
    const dir = directory({
      'audit.log.worker-3.2026-01-01T00-00-00.000Z': [entry('a')],
      'audit.log.worker-3.2026-01-02T00-00-00.000Z': [entry('b')],
      'audit.log.worker-3': [entry('c')],
      'audit.log.worker-3.shipped': ['{}'],
      'audit.log.worker-3.shipped-otlp': ['{}'],
      'audit.log.worker-1': [entry('other')],
      'audit.log.worker-1.shipped': ['{}'],
    })
    for (const f of readdirSync(dir)) age(join(dir, f), 10)
    return dir
  }

  it('deletes a trail past retention whole, its shipping positions with it, and nothing of another trail', () => {
    const dir = trailDirectory()
    const trail = join(dir, 'audit.log.worker-3')
    const present: string[][] = []
    const records: RetentionAuditEvent[] = []
    const record = (event: RetentionAuditEvent): boolean => {
      present.push(event.deleted.map((d) => d.file).filter((name) => existsSync(join(dir, name))))
      records.push(event)
      return true
    }
    expect(expireWeekOld(trail, record, unexpected)).toHaveLength(3)
    expect(readdirSync(dir).sort()).toEqual(['audit.log.worker-1', 'audit.log.worker-1.shipped'])
    // Recorded before deleted: the rotated files together, then the live file once it was the last one left.
    expect(records).toMatchObject([
      {
        type: 'retention',
        trail: 'audit.log.worker-3',
        retain_ms: 7 * DAY,
        deleted: [
          { file: 'audit.log.worker-3.2026-01-01T00-00-00.000Z', ends: null },
          { file: 'audit.log.worker-3.2026-01-02T00-00-00.000Z', ends: null },
        ],
      },
      { deleted: [{ file: 'audit.log.worker-3', ends: null }] },
    ])
    expect(present).toEqual(records.map((r) => r.deleted.map((d) => d.file)))
    expect(records.some((r) => 'kept' in r)).toBe(false)
  })

  it('deletes nothing when the trail cannot record the deletion, and says so for each file', () => {
    const dir = trailDirectory()
    const trail = join(dir, 'audit.log.worker-3')
    const failed: string[] = []
    const refused: RetentionAuditEvent[] = []
    const deleted = expireWeekOld(
      trail,
      (event) => {
        refused.push(event)
        return false
      },
      (file, err) => failed.push(`${basename(file)}: ${(err as Error).message}`),
    )
    expect(deleted).toEqual([])
    expect(refused).toHaveLength(1)
    expect(failed).toEqual([
      'audit.log.worker-3.2026-01-01T00-00-00.000Z: not deleted: the audit trail could not record its deletion',
      'audit.log.worker-3.2026-01-02T00-00-00.000Z: not deleted: the audit trail could not record its deletion',
    ])
    expect(readdirSync(dir)).toHaveLength(7)
  })

  it('records as kept a file it named and then could not delete', () => {
    const dir = trailDirectory()
    const trail = join(dir, 'audit.log.worker-3')
    const oldest = join(dir, 'audit.log.worker-3.2026-01-01T00-00-00.000Z')
    const records: RetentionAuditEvent[] = []
    const failed: string[] = []
    const deleted = expireWeekOld(
      trail,
      (event) => {
        records.push(event)
        // Between the record and the deletion, the oldest file turns into something unlink refuses.
        if (records.length === 1) {
          unlinkSync(oldest)
          mkdirSync(oldest)
        }
        return true
      },
      (file) => failed.push(file),
    )
    expect(deleted.map((d) => d.file)).toEqual([join(dir, 'audit.log.worker-3.2026-01-02T00-00-00.000Z')])
    expect(failed).toEqual([oldest])
    expect(records).toMatchObject([
      { deleted: [{ file: basename(oldest) }, { file: 'audit.log.worker-3.2026-01-02T00-00-00.000Z' }] },
      { deleted: [], kept: [{ file: basename(oldest), ends: null }] },
    ])
    // A rotated file is left: the live file stays.
    expect(readdirSync(dir)).toContain('audit.log.worker-3')
  })

  it('keeps what is not shipped, what is younger than retention, and a live file while rotated files remain', () => {
    const dir = trailDirectory()
    const trail = join(dir, 'audit.log.worker-3')
    // The newer rotated file not shipped: it stays, and so does the live file after it.
    const second = join(dir, 'audit.log.worker-3.2026-01-02T00-00-00.000Z')
    expect(files(expireUnwrittenTrail(trail, 7 * DAY, now, (f) => f !== second, recorded, unexpected))).toEqual([
      join(dir, 'audit.log.worker-3.2026-01-01T00-00-00.000Z'),
    ])
    expect(readdirSync(dir)).toContain('audit.log.worker-3')
    // All rotated files shipped and gone; the live file not shipped whole: it stays.
    expect(files(expireUnwrittenTrail(trail, 7 * DAY, now, (f) => f !== trail, recorded, unexpected))).toEqual([second])
    expect(readdirSync(dir)).toContain('audit.log.worker-3.shipped')
    // Younger than retention: it stays.
    age(trail, 3)
    expect(files(expireUnwrittenTrail(trail, 7 * DAY, now, () => true, recorded, unexpected))).toEqual([])
    expect(files(expireUnwrittenTrail(trail, 2 * DAY, now, () => true, recorded, unexpected))).toEqual([trail])
  })
  it('goes on past a file it cannot delete, and reports it; the live file stays while that one does', () => {
    const dir = trailDirectory()
    const trail = join(dir, 'audit.log.worker-3')
    // A directory where the oldest rotated file was: it cannot be read or unlinked as a file.
    const stuck = join(dir, 'audit.log.worker-3.2026-01-01T00-00-00.000Z')
    unlinkSync(stuck)
    mkdirSync(stuck)
    age(stuck, 10)
    const failed: string[] = []
    expect(files(expireWeekOld(trail, recorded, (file) => failed.push(file)))).toEqual([
      join(dir, 'audit.log.worker-3.2026-01-02T00-00-00.000Z'),
    ])
    expect(failed).toEqual([stuck])
    expect(readdirSync(dir)).toContain('audit.log.worker-3')
  })
})
