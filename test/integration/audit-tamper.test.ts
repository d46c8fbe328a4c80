/**
 * Tamper evidence at scale: a trail of 100,000 requests written by the real file sink (signed
 * checkpoints every 1,000 entries), copied into a real PostgreSQL. 1,000 random single-entry
 * mutations of the file (delete, duplicate, swap with the next, edit, edit with the hash
 * recomputed, cut short) and 1,000 of the table (delete a row, swap two rows' places, edit a line,
 * edit a line and its hash and its columns, edit only a column, move a row, cut the table short,
 * append a forged entry). Each is verified from the last signed checkpoint before it (the same
 * verifier as a whole-trail run, starting where a checkpoint vouches for the chain; a sample is
 * also verified from the first entry): every mutation is found, at the right sequence number.
 * The untouched trail verifies clean on both.
 */
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ChainVerifier,
  CHECKPOINT_LINE_PREFIX,
  sealedLine,
  verifyLines,
  type VerifyReport,
} from '../../src/audit/chain.ts'
import { PostgresAuditStore, verificationRows } from '../../src/audit/postgres-store.ts'
import { newAuditRecord } from '../../src/audit/record.ts'
import { shippedEntry, type ShippedEntry } from '../../src/audit/shipper.ts'
import { FileAuditSink } from '../../src/audit/sink.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { startPostgres, type PostgresProcess } from '../../testkit/postgres-process.ts'
import { corridorCli } from '../helpers/cli.ts'
import { standardFiles } from '../helpers/standard-policy.ts'

const REQUESTS = 100_000
const CHECKPOINT_EVERY = 1_000
const MUTATIONS = 1_000
const TABLE = 'audit_tamper'
const keys = generateKeyPairSync('ed25519')

/** The trail, line i holding entry i + 1, and where its checkpoints stand (entry numbers). */
let lines: string[]
let stream: string
let checkpointSeqs: number[]
let postgres: PostgresProcess
let client: pg.Client

beforeAll(async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'corridor-tamper-')), 'audit.log')
  const sink = new FileAuditSink(file, createLogger('silent'), {
    signingKey: keys.privateKey,
    checkpointEntries: CHECKPOINT_EVERY,
  })
  const start = Date.parse('2026-11-30T00:00:00Z')
  for (let i = 0; i < REQUESTS; i++) {
    const record = newAuditRecord(`req-${i}`, start + i * 10, i % 3 === 0 ? 'POST' : 'GET', `/svc/items/${i}`)
    record.agent = `agent-${i % 17}`
    record.outcome = 'forwarded'
    sink.write(record)
  }
  stream = sink.stream
  sink.closeNow()
  lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
  checkpointSeqs = lines.flatMap((l, i) => (l.startsWith(CHECKPOINT_LINE_PREFIX) ? [i + 1] : []))

  postgres = await startPostgres()
  const store = new PostgresAuditStore({ url: postgres.url, table: TABLE, timeoutMs: 30_000 })
  const entries = lines.map((l) => shippedEntry(l) as ShippedEntry)
  for (let i = 0; i < entries.length; i += 5_000) await store.insert(entries.slice(i, i + 5_000))
  await store.close()
  client = new pg.Client({ connectionString: postgres.url })
  await client.connect()
}, 120_000)

afterAll(async () => {
  await client?.end()
  await postgres?.stop()
})

const isCheckpoint = (seq: number): boolean => (lines[seq - 1] as string).startsWith(CHECKPOINT_LINE_PREFIX)
/** The last checkpoint before entry `seq` (0: none, the range starts at the first entry). */
const checkpointBefore = (seq: number): number => checkpointSeqs.findLast((c) => c < seq) ?? 0
/** The first checkpoint after entry `seq` (the stream's final one at the latest). */
const checkpointAfter = (seq: number): number => checkpointSeqs.find((c) => c > seq) ?? lines.length

/** An entry with its `time` changed, its own hash left as it was. */
const edited = (line: string): string => line.replace(/"time":"[^"]*"/, '"time":"1999-01-01T00:00:00.000Z"')
/** The same edit by a forger who also recomputes the entry's own hash. */
const editedAndRehashed = (line: string): string => sealedLine(edited(line).replace(/,"hash":"[0-9a-f]{64}"\}$/, '}'))

/** A mutation's expected finding: the first broken entry, or a stream that ends (cut short) after an entry. */
type Finding = { broken: number } | { endsAfter: number }

function expectFinding(report: VerifyReport, finding: Finding): void {
  if ('broken' in finding) {
    expect(report.breaks.map((b) => [b.stream, b.seq])).toEqual([[stream, finding.broken]])
    // The checkpoints that bound the damage: the last one before it (verified) and the first past it.
    const before = checkpointBefore(finding.broken)
    expect(report.breaks[0]?.lastCheckpoint?.seq ?? 0).toBe(before)
    expect(report.breaks[0]?.nextCheckpoint?.seq ?? null).toBe(checkpointSeqs.find((c) => c > finding.broken) ?? null)
  } else {
    expect(report.breaks).toEqual([])
    expect(report.unclosed).toEqual([{ stream, lastSeq: finding.endsAfter }])
  }
}

describe('the untouched trail', () => {
  it(`verifies clean from its first entry: ${REQUESTS.toLocaleString('en')} requests, a signed checkpoint every ${CHECKPOINT_EVERY.toLocaleString('en')}`, async () => {
    expect(lines.length).toBeGreaterThan(REQUESTS)
    expect(verifyLines(lines, keys.publicKey)).toEqual({
      entries: lines.length,
      streams: 1,
      checkpoints: checkpointSeqs.length,
      unreadable: 0,
      witnessedElsewhere: 0,
      startedLater: [],
      breaks: [],
      unclosed: [],
      unsigned: [],
    })
    const verifier = new ChainVerifier(keys.publicKey)
    for await (const row of verificationRows(client, TABLE)) verifier.add(row.line, row.problem)
    expect(verifier.report()).toEqual(verifyLines(lines, keys.publicKey))
  })

  it('verifies clean in every range between two checkpoints, in the file and in PostgreSQL', async () => {
    for (const from of checkpointSeqs.slice(0, -1)) {
      const to = checkpointAfter(from)
      const fileReport = verifyLines(lines.slice(from - 1, to), keys.publicKey, { fromCheckpoints: true })
      expect(fileReport.breaks).toEqual([])
      if (from % 10_000 > CHECKPOINT_EVERY) continue // PostgreSQL: every tenth range
      const verifier = new ChainVerifier(keys.publicKey, { fromCheckpoints: true })
      for await (const row of verificationRows(client, TABLE, { stream, fromSeq: from, toSeq: to }))
        verifier.add(row.line, row.problem)
      expect(verifier.report().breaks).toEqual([])
    }
  })

  it("a range does not start at a checkpoint signed by someone else's key", () => {
    const from = checkpointSeqs[5] as number
    const report = verifyLines(lines.slice(from - 1, checkpointAfter(from)), generateKeyPairSync('ed25519').publicKey, {
      fromCheckpoints: true,
    })
    expect(report.breaks).toEqual([
      expect.objectContaining({ seq: from, why: 'the checkpoint signature does not verify' }),
    ])
  })
})

const FILE_KINDS = ['delete', 'duplicate', 'swap', 'edit', 'edit-and-rehash', 'truncate'] as const

it(`the file: ${MUTATIONS.toLocaleString('en')} random single-entry mutations, each found at the right entry`, () => {
  const mutations = fc.sample(
    fc.record({ kind: fc.constantFrom(...FILE_KINDS), seq: fc.integer({ min: 1, max: lines.length - 1 }) }),
    { numRuns: MUTATIONS, seed: 20261130 },
  )
  const found = new Map<string, number>()
  mutations.forEach(({ kind, seq }, n) => {
    const copy = [...lines]
    const at = seq - 1
    let finding: Finding
    switch (kind) {
      case 'delete':
        copy.splice(at, 1)
        finding = { broken: seq }
        break
      case 'duplicate':
        copy.splice(at + 1, 0, copy[at] as string)
        finding = { broken: seq + 1 }
        break
      case 'swap':
        ;[copy[at], copy[at + 1]] = [copy[at + 1] as string, copy[at] as string]
        finding = { broken: seq }
        break
      case 'edit':
        copy[at] = edited(copy[at] as string)
        finding = { broken: seq }
        break
      case 'edit-and-rehash':
        // The edited entry verifies on its own; the next one's link to it does not, and a
        // checkpoint's signature no longer covers its time.
        copy[at] = editedAndRehashed(copy[at] as string)
        finding = { broken: isCheckpoint(seq) ? seq : seq + 1 }
        break
      case 'truncate':
        copy.splice(at + 1)
        finding = { endsAfter: seq }
        break
    }
    // From the last checkpoint before the mutation to the first checkpoint after it (or the end).
    const from = checkpointBefore(seq)
    const to = kind === 'truncate' ? copy.length : checkpointAfter(seq + 1) + 1
    expectFinding(
      verifyLines(copy.slice(Math.max(from - 1, 0), to), keys.publicKey, { fromCheckpoints: true }),
      finding,
    )
    // Every 50th, the whole trail from its first entry finds the same.
    if (n % 50 === 0) expectFinding(verifyLines(copy, keys.publicKey), finding)
    found.set(kind, (found.get(kind) ?? 0) + 1)
  })
  expect([...found.values()].reduce((a, b) => a + b)).toBe(MUTATIONS)
  for (const kind of FILE_KINDS) expect(found.get(kind)).toBeGreaterThan(100)
}, 120_000)

const TABLE_KINDS = [
  'delete',
  'swap',
  'edit',
  'edit-and-rehash',
  'edit-column',
  'move',
  'truncate',
  'append-after-final',
] as const

it(`PostgreSQL: ${MUTATIONS.toLocaleString('en')} random single-row mutations, each found at the right entry`, async () => {
  const mutations = fc.sample(
    fc.record({
      kind: fc.constantFrom(...TABLE_KINDS),
      seq: fc.integer({ min: 1, max: lines.length - 1 }),
      column: fc.constantFrom('agent', 'request_id', 'time', 'type'),
    }),
    { numRuns: MUTATIONS, seed: 20261201 },
  )
  const sql = (text: string, ...params: unknown[]) => client.query(text, params)
  const found = new Map<string, number>()
  for (const [n, { kind, seq, column }] of mutations.entries()) {
    await sql('BEGIN')
    let finding: Finding
    let toEnd = false
    switch (kind) {
      case 'delete':
        await sql(`DELETE FROM ${TABLE} WHERE stream = $1 AND seq = $2`, stream, seq)
        finding = { broken: seq }
        break
      case 'swap':
        // Rows have no order but their seq column: two rows trade places.
        await sql(`UPDATE ${TABLE} SET seq = -1 WHERE stream = $1 AND seq = $2`, stream, seq)
        await sql(`UPDATE ${TABLE} SET seq = $2 WHERE stream = $1 AND seq = $3`, stream, seq, seq + 1)
        await sql(`UPDATE ${TABLE} SET seq = $2 WHERE stream = $1 AND seq = -1`, stream, seq + 1)
        finding = { broken: seq }
        break
      case 'edit':
        await sql(
          `UPDATE ${TABLE} SET line = $3 WHERE stream = $1 AND seq = $2`,
          stream,
          seq,
          edited(lines[seq - 1] as string),
        )
        finding = { broken: seq }
        break
      case 'edit-and-rehash': {
        // A forger who recomputes the hash and keeps the columns in step with the line.
        const line = editedAndRehashed(lines[seq - 1] as string)
        await sql(
          `UPDATE ${TABLE} SET line = $3, time = $4 WHERE stream = $1 AND seq = $2`,
          stream,
          seq,
          line,
          shippedEntry(line)?.time,
        )
        finding = { broken: isCheckpoint(seq) ? seq : seq + 1 }
        break
      }
      case 'edit-column': {
        // The line untouched, a column edited: a query by that column would find or miss the row wrongly.
        const set = {
          agent: `agent = 'someone-else'`,
          request_id: `request_id = 'req-forged'`,
          time: `time = time + interval '1 hour'`,
          type: `type = CASE type WHEN 'request' THEN 'intent' ELSE 'request' END`,
        }[column]
        await sql(`UPDATE ${TABLE} SET ${set} WHERE stream = $1 AND seq = $2`, stream, seq)
        finding = { broken: seq }
        break
      }
      case 'move':
        await sql(`UPDATE ${TABLE} SET seq = seq + 10000000 WHERE stream = $1 AND seq = $2`, stream, seq)
        finding = { broken: seq }
        break
      case 'truncate':
        await sql(`DELETE FROM ${TABLE} WHERE stream = $1 AND seq > $2`, stream, seq)
        finding = { endsAfter: seq }
        toEnd = true
        break
      case 'append-after-final': {
        // A forged entry chained after the stream's final checkpoint, as the writer would have written it.
        const last = lines.length
        const forged = sealedLine(
          `{"type":"request","v":1,"request_id":"req-forged","time":"2026-11-30T12:00:00.000Z","agent":"agent-1","stream":"${stream}","seq":${last + 1},"prev":"${(lines[last - 1] as string).slice(-66, -2)}"}`,
        )
        const entry = shippedEntry(forged) as ShippedEntry
        await sql(
          `INSERT INTO ${TABLE} (stream, seq, type, time, request_id, approval_id, agent, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          entry.stream,
          entry.seq,
          entry.type,
          entry.time,
          entry.requestId,
          entry.approvalId,
          entry.agent,
          entry.line,
        )
        finding = { broken: last + 1 }
        toEnd = true
        break
      }
    }
    const target = 'broken' in finding ? finding.broken : seq
    const range = toEnd
      ? { stream, fromSeq: Math.max(Math.min(target, lines.length) - 1, 1) }
      : { stream, fromSeq: Math.max(seq - 1, 1), toSeq: checkpointAfter(seq + 1) }
    const verifier = new ChainVerifier(keys.publicKey, { fromCheckpoints: true })
    for await (const row of verificationRows(client, TABLE, range)) verifier.add(row.line, row.problem)
    expectFinding(verifier.report(), finding)
    // Every 250th, the whole table from its first entry finds the same.
    if (n % 250 === 0) {
      const whole = new ChainVerifier(keys.publicKey)
      for await (const row of verificationRows(client, TABLE)) whole.add(row.line, row.problem)
      expectFinding(whole.report(), finding)
    }
    await sql('ROLLBACK')
    found.set(kind, (found.get(kind) ?? 0) + 1)
  }
  expect([...found.values()].reduce((a, b) => a + b)).toBeGreaterThan(MUTATIONS * 0.95)
  for (const kind of TABLE_KINDS) expect(found.get(kind)).toBeGreaterThan(80)
}, 300_000)

it('corridor audit verify --store postgres --stream --from-seq: exit 0 on an intact range, 1 naming the deleted entry', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-tamper-cli-'))
  const files = standardFiles('http://127.0.0.1:9')
  for (const name of ['agents', 'connectors', 'policy'] as const) writeFileSync(join(dir, `${name}.yaml`), files[name])
  writeFileSync(
    join(dir, 'corridor.yaml'),
    `listen: { host: 127.0.0.1, port: 0 }\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log, postgres: { url: "${postgres.url}", table: ${TABLE} } }\n`,
  )
  writeFileSync(join(dir, 'checkpoints.pub.pem'), keys.publicKey.export({ type: 'spki', format: 'pem' }))
  const verify = (...range: string[]) =>
    corridorCli([
      'audit',
      'verify',
      '--store',
      'postgres',
      '--config',
      join(dir, 'corridor.yaml'),
      '--public-key',
      join(dir, 'checkpoints.pub.pem'),
      ...range,
    ])
  // The checkpoints a witness would copy, read from the table by their lines.
  const copied = await corridorCli([
    'audit',
    'checkpoints',
    '--store',
    'postgres',
    '--config',
    join(dir, 'corridor.yaml'),
  ])
  expect(copied.code).toBe(0)
  expect(copied.stdout.trim().split('\n')).toEqual(lines.filter((l) => l.startsWith(CHECKPOINT_LINE_PREFIX)))
  writeFileSync(join(dir, 'witness.jsonl'), copied.stdout)
  const range = ['--stream', stream, '--from-seq', '50500', '--to-seq', '52000']
  const intact = await verify(...range)
  expect(intact.stdout).toContain(
    `PostgreSQL, stream ${stream} from its last checkpoint at or before entry 50500 to entry 52000`,
  )
  expect(intact.stdout).toContain('chain intact')
  expect(intact.code).toBe(0)
  const deleted = await client.query(`DELETE FROM ${TABLE} WHERE stream = $1 AND seq = 51234 RETURNING *`, [stream])
  try {
    const broken = await verify(...range)
    expect(broken.code).toBe(1)
    expect(broken.stderr).toContain(`BROKEN stream ${stream} at entry 51234`)
    // A range from the checkpoint after the gap does not read it.
    expect(checkpointBefore(53_000)).toBeGreaterThan(51_234)
    const after = await verify('--stream', stream, '--from-seq', '53000')
    expect(after.stdout).toContain('chain intact')
    expect(after.code).toBe(0)
    expect((await verify('--from-seq', '52000')).stderr).toContain('a range needs both --stream and --from-seq')
    const unknown = await verify('--stream', 'no-such-stream', '--from-seq', '1')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain("no entries of stream 'no-such-stream' in that range")
    // The whole table against the witness: the gap, bounded by the checkpoints on either side.
    const whole = await verify('--witness', join(dir, 'witness.jsonl'))
    expect(whole.code).toBe(1)
    expect(whole.stdout).toContain(`checked against ${checkpointSeqs.length} witnessed checkpoint(s)`)
    expect(whole.stderr).toContain(`BROKEN stream ${stream} at entry 51234`)
    expect(whole.stderr).toContain(`covered by the checkpoint at entry ${checkpointBefore(51_234)} (`)
    expect(whole.stderr).toContain(`the next checkpoint stands at entry ${checkpointAfter(51_234)} (`)
  } finally {
    const row = deleted.rows[0] as Record<string, unknown>
    await client.query(`INSERT INTO ${TABLE} SELECT * FROM json_populate_record(NULL::${TABLE}, $1)`, [
      JSON.stringify(row),
    ])
  }
}, 60_000)
