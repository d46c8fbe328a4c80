/**
 * `retain` reaches the audit trails no process writes any more (a worker's place after `workers`
 * was lowered): no rotation of theirs will apply it, so the process that ships them does, and
 * never to what it has not shipped yet.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startOtlpLogReceiver, type OtlpLogReceiver } from '../helpers/otlp-log-receiver.ts'
import { standardFiles } from '../helpers/standard-policy.ts'

let fx: CorridorFixture | undefined
let receiver: OtlpLogReceiver | undefined

afterEach(async () => {
  await fx?.close()
  await receiver?.close()
  fx = undefined
  receiver = undefined
})

const DAY = 86_400_000

/** A trail a third worker left: two rotated files and its live one, three entries each, `days` old. */
function leftTrail(dir: string, name: string, stream: string, days: number): string[] {
  const files = [`${name}.2026-01-01T00-00-00.000Z`, `${name}.2026-01-02T00-00-00.000Z`, name]
  files.forEach((file, i) => {
    const lines = [1, 2, 3].map(
      (n) => JSON.stringify({ type: 'request', stream, seq: i * 3 + n, hash: `h${i * 3 + n}` }) + '\n',
    )
    writeFileSync(join(dir, file), lines.join(''))
    const then = new Date(Date.now() - days * DAY)
    utimesSync(join(dir, file), then, then)
  })
  return files
}

it('deletes a trail nobody writes once it is past retention, and leaves a younger one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-retain-'))
  const old = leftTrail(dir, 'audit.log.worker-3', 'old', 10)
  const young = leftTrail(dir, 'audit.log.worker-4', 'young', 3)
  fx = await startCorridorFixture(
    {
      ...standardFiles('http://127.0.0.1:9'),
      auditFile: join(dir, 'audit.log'),
      auditConfig: 'retain: 7d, retain_floor: 7d',
    },
    {},
  )
  expect(old.filter((f) => existsSync(join(dir, f)))).toEqual([])
  expect(young.filter((f) => existsSync(join(dir, f)))).toEqual(young)
  // This process's own trail records the deletion, each file with where its chain ended.
  const records = readFileSync(join(dir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"type":"retention"'))
    .map((l) => JSON.parse(l) as { trail: string; deleted: { file: string; ends: { stream: string; seq: number } }[] })
  // The rotated files in one record, then the live file once it was the last one left, each
  // recorded before it was deleted.
  expect(records.map((r) => r.trail)).toEqual(['audit.log.worker-3', 'audit.log.worker-3'])
  expect(records.flatMap((r) => r.deleted)).toMatchObject(
    old.map((file, i) => ({ file, ends: { stream: 'old', seq: i * 3 + 3 } })),
  )
  expect(records[1]?.deleted.map((d) => d.file)).toEqual(['audit.log.worker-3'])
  // The process's own trail is untouched.
  expect(readdirSync(dir)).toContain('audit.log')
})

it('ships a trail past retention before it deletes any of it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-retain-'))
  const old = leftTrail(dir, 'audit.log.worker-3', 'old', 10)
  receiver = await startOtlpLogReceiver()
  fx = await startCorridorFixture(
    {
      ...standardFiles('http://127.0.0.1:9'),
      auditFile: join(dir, 'audit.log'),
      auditConfig: `retain: 7d, otlp: { endpoint: "${receiver.url}", poll: 50ms }`,
    },
    {},
  )
  // At start nothing of it had been shipped: all of it is kept, and all of it arrives.
  expect(old.filter((f) => existsSync(join(dir, f)))).toEqual(old)
  const shipped = (): number[] =>
    receiver!.records
      .map((r) => JSON.parse(r.line) as { stream: string; seq: number })
      .filter((e) => e.stream === 'old')
      .map((e) => e.seq)
      .sort((a, b) => a - b)
  await eventually(() => expect(shipped()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]), 5_000)
  // Shipped whole: the next sweep (here, the next start's) deletes it, with its shipping position.
  await fx.close()
  fx = await startCorridorFixture(
    {
      ...standardFiles('http://127.0.0.1:9'),
      auditFile: join(dir, 'audit.log'),
      auditConfig: `retain: 7d, otlp: { endpoint: "${receiver.url}", poll: 50ms }`,
    },
    {},
  )
  expect(readdirSync(dir).filter((f) => f.startsWith('audit.log.worker-3'))).toEqual([])
})
