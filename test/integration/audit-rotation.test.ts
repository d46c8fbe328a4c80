/**
 * Audit rotation: the live file is rotated by size, each rotated file ends with a checkpoint, the
 * chain runs on unbroken across the files, shipping to PostgreSQL finishes every rotated file
 * (through a PostgreSQL outage), and retention deletes only rotated files already shipped.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { verifyLines } from '../../src/audit/chain.ts'
import { PostgresAuditStore } from '../../src/audit/postgres-store.ts'
import { trailLines } from '../../src/audit/trails.ts'
import { rotatedFiles } from '../../src/audit/rotation.ts'
import { startPostgres, type PostgresProcess } from '../../testkit/postgres-process.ts'
import { corridorCli } from '../helpers/cli.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

let postgres: PostgresProcess
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  postgres = await startPostgres()
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      auditConfig: `rotate: { max_bytes: 16KiB }, retain: 0s, postgres: { url: "${postgres.url}", poll: 50ms, timeout: 1s }`,
    },
    { SVC_TOKEN: 'rotation-token' },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await postgres?.stop()
})

async function traffic(from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    const r = await fetch(`${fx.corridor.agentUrl}/svc/items/${i}`, { headers: { 'x-api-key': AGENT_KEY } })
    await r.arrayBuffer()
    expect(r.status).toBe(200)
  }
}

async function trail(): Promise<string[]> {
  const lines: string[] = []
  for await (const line of trailLines(fx.auditFile)) if (line !== '') lines.push(line)
  return lines
}

it('rotates by size with the chain unbroken, ships every rotated file through an outage, and deletes only what was shipped', async () => {
  await postgres.kill()
  await traffic(0, 200)
  // PostgreSQL is down: rotated files pile up, and none may be deleted (not shipped).
  const rotated = rotatedFiles(fx.auditFile)
  expect(rotated.length).toBeGreaterThanOrEqual(3)
  for (const file of rotated) {
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ type: 'checkpoint', final: false })
  }
  const written = await trail()
  const report = verifyLines(written, null)
  expect(report.breaks).toEqual([])
  expect(report.streams).toBe(1)
  expect(written.filter((l) => l.startsWith('{"type":"request"'))).toHaveLength(200)

  await postgres.start()
  await eventually(() => expect(fx.corridor.shipper?.status()).toMatchObject({ failing: false, lagBytes: 0 }), 20_000)
  // The next rotation applies retention: the shipped files go.
  await traffic(200, 260)
  await eventually(() => expect(rotatedFiles(fx.auditFile).filter((f) => rotated.includes(f))).toEqual([]), 5_000)
  // What is left of the trail still verifies: it starts at the opening checkpoint of its oldest file.
  const left = await trail()
  const afterRetention = verifyLines(left, null)
  expect(afterRetention.breaks).toEqual([])
  // And the trail says so: a retention record names each deleted file and where its chain ended,
  // which is exactly where the oldest file left picks up.
  expect(afterRetention.startedLater).toEqual([
    {
      stream: expect.any(String),
      firstSeq: (JSON.parse(left[0] as string) as { seq: number }).seq,
      fileStart: true,
      recorded: true,
    },
  ])
  expect(left[0]).toMatch(/^\{"type":"checkpoint",.*"file_start":true/)
  const records = left
    .filter((l) => l.startsWith('{"type":"retention"'))
    .map((l) => JSON.parse(l) as { deleted: { file: string; ends: { seq: number } | null }[] })
  // (With retain: 0s, a later rotation also deleted the files holding the earlier records.)
  const recorded = records.flatMap((r) => r.deleted)
  expect(recorded.length).toBeGreaterThan(0)
  expect(recorded.filter((d) => d.ends === null || existsSync(join(dirname(fx.auditFile), d.file)))).toEqual([])
  // The oldest file alone, without the later one that holds the record: nothing says where its predecessors went.
  const oldest = readFileSync(rotatedFiles(fx.auditFile)[0] as string, 'utf8')
    .trimEnd()
    .split('\n')
  expect(verifyLines(oldest, null).startedLater).toMatchObject([{ fileStart: true, recorded: false }])
  // What the command tells an auditor.
  const verified = await corridorCli(['audit', 'verify', '--config', join(fx.dir, 'corridor.yaml')])
  expect(verified.code).toBe(0)
  expect(verified.stdout).toMatch(
    /the files before it were deleted by retention, as a retention record in the trail says/,
  )

  const store = new PostgresAuditStore({ url: postgres.url, table: 'corridor_audit', timeoutMs: 2_000 })
  try {
    await fx.corridor.shipper?.flush()
    const stored: string[] = []
    for await (const line of store.lines({})) stored.push(line)
    // Everything written before the outage ended is in PostgreSQL, once, and verifies there.
    const storedSet = new Set(stored)
    expect(written.filter((l) => l.includes('"stream":') && !storedSet.has(l))).toEqual([])
    expect(stored.length).toBe(storedSet.size)
    expect(verifyLines(stored, null).breaks).toEqual([])
  } finally {
    await store.close()
  }
}, 60_000)
