/**
 * The shipper follows the file it reads through rotations: one it is told of, one it is not (the
 * writer is another process, or rotated before telling anyone), and one between its last saved
 * position and a restart. Every entry reaches the target, none twice, however the live file has
 * grown since.
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AuditShipper, type ShippedEntry, type ShipTarget } from '../../src/audit/shipper.ts'
import { newAuditRecord } from '../../src/audit/record.ts'
import { FileAuditSink } from '../../src/audit/sink.ts'
import { rotatedFiles, rotatedName } from '../../src/audit/rotation.ts'
import { createLogger } from '../../src/shared/logger.ts'

/** A target that keeps what it takes: the shipper's file-following is what is under test here. */
class Collected implements ShipTarget {
  readonly name = 'collected'
  readonly keys: string[] = []
  /** How many entries it takes before it refuses every batch (a target gone away). */
  readonly takes: number
  constructor(takes = Infinity) {
    this.takes = takes
  }
  insert(entries: readonly ShippedEntry[]): Promise<number> {
    if (this.keys.length + entries.length > this.takes) return Promise.reject(new Error('refused'))
    this.keys.push(...entries.map((e) => `${e.stream}:${e.seq}`))
    return Promise.resolve(entries.length)
  }
  close(): Promise<void> {
    return Promise.resolve()
  }
}

const lines = (from: number, to: number): string =>
  Array.from({ length: to - from + 1 }, (_, i) => JSON.stringify({ stream: 's', seq: from + i, pad: 'x'.repeat(80) }))
    .map((l) => l + '\n')
    .join('')

const keys = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `s:${from + i}`)

const log = createLogger('silent')

/** A live audit file's path in a directory of its own. */
const newLiveFile = (): string => join(mkdtempSync(join(tmpdir(), 'corridor-ship-')), 'audit.log')

function shipperOf(file: string, target: Collected): AuditShipper<Collected> {
  return new AuditShipper({ file, store: target, log, batch: 4, pollMs: 60_000 })
}

/** What a writer does at rotation: the live file gets a rotated name, and a new live file is started. */
function rotateBehindItsBack(live: string, at: Date): string {
  const rotated = rotatedName(live, at)
  renameSync(live, rotated)
  return rotated
}

describe('audit shipper', () => {
  it('follows a rotation nobody told it of to the renamed file, however far the new live file has grown', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 5))
    const target = new Collected()
    const shipper = shipperOf(live, target)
    await shipper.flush()
    expect(target.keys).toEqual(keys(1, 5))
    appendFileSync(live, lines(6, 8))
    rotateBehindItsBack(live, new Date())
    // Longer than the offset it stopped at: a size check alone would read on in the wrong file.
    writeFileSync(live, lines(9, 30))
    await shipper.flush()
    expect(target.keys).toEqual(keys(1, 30))
    await shipper.close()
  })

  it('after a restart, picks up in the file its position names, wherever rotation put it', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 5))
    const target = new Collected()
    const first = shipperOf(live, target)
    await first.flush()
    await first.close()
    appendFileSync(live, lines(6, 8))
    rotateBehindItsBack(live, new Date(Date.now() - 1000))
    appendFileSync(live, lines(9, 12))
    rotateBehindItsBack(live, new Date())
    writeFileSync(live, lines(13, 40))
    const second = shipperOf(live, target)
    await second.flush()
    expect(target.keys).toEqual(keys(1, 40))
    await second.close()
  })

  it('a file deleted by hand while shipping stopped in it: goes on with the next one, from its start', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 8))
    const first = rotateBehindItsBack(live, new Date(Date.now() - 2000))
    writeFileSync(live, lines(9, 11))
    // The target takes one batch (4 entries), then refuses: shipping stops in the rotated file.
    const refusing = new Collected(4)
    const stopped = shipperOf(live, refusing)
    await stopped.flush()
    await stopped.close()
    expect(refusing.keys).toEqual(keys(1, 4))
    rotateBehindItsBack(live, new Date(Date.now() - 1000))
    writeFileSync(live, lines(12, 14))
    unlinkSync(first)
    const target = new Collected()
    const shipper = shipperOf(live, target)
    await shipper.flush()
    expect(target.keys).toEqual(keys(9, 14))
    await shipper.close()
  })

  it('reads a position file without an identity (an earlier version) as before', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 5))
    const offset = Buffer.byteLength(lines(1, 3))
    writeFileSync(`${live}.shipped-collected`, JSON.stringify({ file: live, offset }) + '\n')
    // Rotated after that save; the new live file is still shorter than the offset.
    rotateBehindItsBack(live, new Date())
    writeFileSync(live, lines(6, 6))
    const target = new Collected()
    const shipper = shipperOf(live, target)
    await shipper.flush()
    expect(target.keys).toEqual(keys(4, 6))
    // The position it saves now names the file by identity as well.
    expect(JSON.parse(readFileSync(`${live}.shipped-collected`, 'utf8'))).toMatchObject({ id: expect.any(String) })
    await shipper.close()
  })

  it('ships all of the trail still on disk to a target it never shipped to, oldest file first', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 3))
    rotateBehindItsBack(live, new Date(Date.now() - 1000))
    writeFileSync(live, lines(4, 6))
    rotateBehindItsBack(live, new Date())
    writeFileSync(live, lines(7, 9))
    const target = new Collected()
    const shipper = shipperOf(live, target)
    // Until it has, retention may delete none of the rotated files.
    expect(
      readdirSync(join(live, '..')).filter(
        (f) => f.startsWith('audit.log.20') && shipper.hasShipped(join(live, '..', f)),
      ),
    ).toEqual([])
    await shipper.flush()
    expect(target.keys).toEqual(keys(1, 9))
    await shipper.close()
  })

  it('a position it cannot read ships the whole trail again rather than guessing', async () => {
    const live = newLiveFile()
    writeFileSync(live, lines(1, 3))
    rotateBehindItsBack(live, new Date())
    writeFileSync(live, lines(4, 6))
    writeFileSync(`${live}.shipped-collected`, '{"file": 3')
    const target = new Collected()
    const shipper = shipperOf(live, target)
    await shipper.flush()
    expect(target.keys).toEqual(keys(1, 6))
    await shipper.close()
  })

  it('a sink opened on a file its predecessor left full rotates at once, and the shipper started before it still ships all of it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-ship-'))
    const live = join(dir, 'audit.log')
    const rotation = { maxBytes: 4096, maxAgeMs: null, retainMs: null }
    // A predecessor killed after its last write and before that write's rotation.
    writeFileSync(live, lines(1, 40))
    const target = new Collected()
    const shipper = shipperOf(live, target)
    const told: string[] = []
    const sink = new FileAuditSink(live, log, {
      rotation,
      onRotate: (file) => {
        told.push(file)
        shipper.rotated(file)
      },
    })
    expect(told).toHaveLength(1)
    expect(readdirSync(dir).filter((f) => f.startsWith('audit.log.20'))).toHaveLength(1)
    await shipper.flush()
    sink.closeNow()
    await shipper.flush()
    const shipped = target.keys
    expect(shipped.slice(0, 40)).toEqual(keys(1, 40))
    // And the new stream: its opening entry and checkpoints, in the rotated file and in the live one.
    const written = [...readFileSync(told[0] as string, 'utf8').split('\n'), ...readFileSync(live, 'utf8').split('\n')]
      .filter((l) => l.includes('"hash"'))
      .map((l) => JSON.parse(l) as { stream: string; seq: number })
      .map((e) => `${e.stream}:${e.seq}`)
    expect(shipped.slice(40)).toEqual(written)
    expect(new Set(shipped).size).toBe(shipped.length)
    await shipper.close()
  })

  it('after the clock was set back, a rotation still sorts after the rotated files there, and the shipper past them ships it once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-ship-'))
    const live = join(dir, 'audit.log')
    writeFileSync(live, lines(1, 3))
    // Rotated while the clock ran an hour ahead.
    const ahead = rotateBehindItsBack(live, new Date(Date.now() + 3_600_000))
    const target = new Collected()
    const shipper = shipperOf(live, target)
    await shipper.flush()
    expect(target.keys).toEqual(keys(1, 3))
    const sink = new FileAuditSink(live, log, {
      rotation: { maxBytes: 1024, maxAgeMs: null, retainMs: null },
      onRotate: (file) => shipper.rotated(file),
    })
    for (let i = 0; i < 10; i++)
      expect(sink.write(newAuditRecord(`req-${i}`, Date.now(), 'GET', `/svc/items/${i}`))).toBe(true)
    const rotated = rotatedFiles(live)
    expect(rotated[0]).toBe(ahead)
    expect(rotated.length).toBeGreaterThan(1)
    await shipper.flush()
    // Nothing shipped twice: the files rotated now come after the one it had finished.
    expect(new Set(target.keys).size).toBe(target.keys.length)
    expect(target.keys.length).toBeGreaterThan(13)
    sink.closeNow()
    await shipper.close()
  })
})
