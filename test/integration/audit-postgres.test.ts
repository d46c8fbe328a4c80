/**
 * One audit trail across replicas, in a real PostgreSQL: three Corridor replicas under traffic
 * ship their local audit files to one database; PostgreSQL is killed mid-traffic and started
 * again. Forwarding never waits for it; afterwards every entry of every replica's file is in the
 * database exactly once, the hash chains verify on the copy, and `corridor audit query` reads
 * every replica's requests from it.
 */
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { verifyLines } from '../../src/audit/chain.ts'
import { PostgresAuditStore } from '../../src/audit/postgres-store.ts'
import { queryAuditLines } from '../../src/audit/query.ts'
import type { AuditRecord } from '../../src/audit/record.ts'
import { startPostgres, type PostgresProcess } from '../../testkit/postgres-process.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { sampleValue, scrapeMetrics } from '../helpers/prometheus.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash, READER_KEY, standardFiles } from '../helpers/standard-policy.ts'

const AUDITOR_KEY = 'cau_test_auditor_key_0001'

const run = promisify(execFile)
let postgres: PostgresProcess
let upstream: RecordingUpstream
const replicas: CorridorFixture[] = []

beforeAll(async () => {
  postgres = await startPostgres()
  upstream = await startRecordingUpstream()
  for (let i = 0; i < 3; i++)
    replicas.push(
      await startCorridorFixture(
        {
          ...standardFiles(upstream.url),
          agents: `${standardFiles(upstream.url).agents}auditors:\n  - { id: ines, keys: [{ hash: "${hash(AUDITOR_KEY)}" }] }\n`,
          auditConfig: `postgres: { url: "${postgres.url}", poll: 50ms, batch: 50, timeout: 1s }`,
        },
        { SVC_TOKEN: 'pg-token' },
      ),
    )
}, 40_000)

afterAll(async () => {
  for (const r of replicas) await r.close()
  await upstream?.close()
  await postgres?.stop()
})

function send(i: number): Promise<number> {
  const replica = replicas[i % 3] as CorridorFixture
  const key = i % 5 === 0 ? READER_KEY : AGENT_KEY
  const path = i % 7 === 0 ? '/svc/items/secret' : `/svc/items/${i}`
  return fetch(`${replica.corridor.agentUrl}${path}`, { headers: { 'x-api-key': key } }).then(async (r) => {
    await r.arrayBuffer()
    return r.status
  })
}

const LAG = 'corridor_audit_shipping_lag_bytes'

const chained = (file: string): string[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"stream":'))

it('every entry of every replica reaches PostgreSQL exactly once, through a PostgreSQL crash, without holding up a request', async () => {
  const statuses: number[] = []
  for (let i = 0; i < 150; i++) statuses.push(await send(i))
  await postgres.kill()
  // PostgreSQL is gone: requests are served all the same, and the shippers fall behind.
  for (let i = 150; i < 300; i++) statuses.push(await send(i))
  expect(statuses.filter((s) => s !== 200 && s !== 403)).toEqual([])
  await eventually(() => {
    for (const r of replicas) expect(r.corridor.shipper?.status().failing).toBe(true)
  }, 10_000)
  const lagging = replicas.find((r) => (r.corridor.shipper?.status().lagBytes ?? 0) > 0)
  expect(lagging).toBeDefined()
  // Operators see the lag where they alert: /metrics, as a Prometheus parser reads it.
  const lagOf = async () =>
    sampleValue((await scrapeMetrics((lagging as CorridorFixture).corridor.adminUrl)).samples, LAG)
  expect(await lagOf()).toBeGreaterThan(0)
  await postgres.start()
  await eventually(() => {
    for (const r of replicas) expect(r.corridor.shipper?.status()).toMatchObject({ failing: false, lagBytes: 0 })
  }, 20_000)
  await eventually(async () => expect(await lagOf()).toBe(0), 10_000)

  const store = new PostgresAuditStore({ url: postgres.url, table: 'corridor_audit', timeoutMs: 2_000 })
  try {
    const stored: string[] = []
    for await (const line of store.lines({})) stored.push(line)
    const written = replicas.flatMap((r) => chained(r.auditFile))
    // Exactly once: the same lines, no more (the table's key is stream and sequence).
    expect(stored.length).toBe(written.length)
    expect(new Set(stored)).toEqual(new Set(written))
    const report = verifyLines(stored, null)
    expect(report.breaks).toEqual([])
    expect(report.streams).toBe(3)

    // Every request of every replica, once, through the same query the CLI runs.
    const records: AuditRecord[] = []
    await queryAuditLines(store.lines({}), {}, (r) => records.push(r))
    const ids = records.map((r) => r.request_id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(records.filter((r) => r.path.startsWith('/items/'))).toHaveLength(300)
  } finally {
    await store.close()
  }
}, 60_000)

it('corridor audit query reads every replica from PostgreSQL; --store file reads only its own', async () => {
  const config = join((replicas[0] as CorridorFixture).dir, 'corridor.yaml')
  const cli = (...args: string[]) =>
    run(process.execPath, ['bin/corridor.js', 'audit', 'query', '--config', config, ...args], { timeout: 20_000 })
  const all = await cli('--agent', 'reader')
  expect(all.stdout.trim().split('\n')).toHaveLength(60)
  expect(all.stderr).toContain('from PostgreSQL')
  const own = await cli('--agent', 'reader', '--store', 'file')
  expect(own.stdout.trim().split('\n')).toHaveLength(20)
  const one = (JSON.parse(all.stdout.split('\n')[0] as string) as AuditRecord).request_id
  const traced = await cli('--request-id', one)
  expect(traced.stdout.trim().split('\n')).toHaveLength(1)
  const verified = await run(
    process.execPath,
    ['bin/corridor.js', 'audit', 'verify', '--store', 'postgres', '--config', config],
    { timeout: 20_000 },
  )
  expect(verified.stdout).toMatch(/^PostgreSQL: \d+ entries in 3 stream\(s\)/)
  expect(verified.stdout).toContain('chain intact')
})

it("GET /audit answers auditors with every replica's records, and writes down each query", async () => {
  const admin = (replicas[1] as CorridorFixture).corridor.adminUrl
  const get = (path: string, token: string | null) =>
    fetch(`${admin}${path}`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } }).then(
      async (r) => ({
        status: r.status,
        body: (await r.json()) as Record<string, any>,
      }),
    )
  expect((await get('/audit', null)).status).toBe(401)
  expect((await get('/audit', AGENT_KEY)).body.code).toBe('auditor_unauthenticated')
  const answer = await get('/audit?agent=reader&limit=1000', AUDITOR_KEY)
  expect(answer.status).toBe(200)
  expect(answer.body.source).toBe('postgres')
  expect(answer.body.records).toHaveLength(60)
  expect(new Set((answer.body.records as { request_id: string }[]).map((r) => r.request_id)).size).toBe(60)
  expect((await get('/audit?agent=reader&limit=5', AUDITOR_KEY)).body).toMatchObject({ limit: 5, more: true })
  // Pages by cursor: 25, 25, then the last 10, each record once.
  const paged: string[] = []
  let cursor: string | null = null
  for (let page = 0; page < 5; page++) {
    const p = await get(`/audit?agent=reader&limit=25${cursor === null ? '' : `&after=${cursor}`}`, AUDITOR_KEY)
    paged.push(...(p.body.records as { request_id: string }[]).map((r) => r.request_id))
    cursor = p.body.next as string | null
    if (!(p.body.more as boolean)) break
  }
  expect(paged).toHaveLength(60)
  expect(new Set(paged)).toEqual(new Set((answer.body.records as { request_id: string }[]).map((r) => r.request_id)))
  expect((await get('/audit?nonsense=1', AUDITOR_KEY)).status).toBe(400)
  // A forwarded one (a denied request has no intent entry: nothing was about to be done).
  const id = (answer.body.records as { request_id: string; outcome: string }[]).find((r) => r.outcome === 'forwarded')
    ?.request_id as string
  const trace = await get(`/audit/trace/${id}`, AUDITOR_KEY)
  expect(trace.body.steps.map((s: { what: string }) => s.what)).toEqual([
    expect.stringMatching(/^intent to forward: reader → svc\.items\.get/),
    expect.stringContaining(`request ${id} forwarded 200`),
  ])
  await eventually(() => {
    const queries = readFileSync((replicas[1] as CorridorFixture).auditFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{"type":"audit_query"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(queries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          by: 'ines',
          via: 'auditor_key',
          query: { agent: 'reader', limit: '1000' },
          matched: 60,
        }),
        expect.objectContaining({ by: 'ines', query: { trace: id }, matched: 2 }),
      ]),
    )
  })
  // PostgreSQL away: a stable 503 with nothing half-read, and the query answers again once it is back.
  await postgres.kill()
  try {
    const away = await get('/audit?agent=reader', AUDITOR_KEY)
    expect(away).toMatchObject({ status: 503, body: { code: 'audit_store_unavailable' } })
    expect(JSON.stringify(away.body)).not.toContain(postgres.url)
  } finally {
    await postgres.start()
  }
  await eventually(async () => expect((await get('/audit?agent=reader&limit=1', AUDITOR_KEY)).status).toBe(200), 10_000)
}, 30_000)

it("an OCSF export from PostgreSQL bounded by --since holds every replica's requests since then, and verifies", async () => {
  const config = join((replicas[0] as CorridorFixture).dir, 'corridor.yaml')
  await new Promise((resolve) => setTimeout(resolve, 20))
  const since = new Date().toISOString()
  for (let i = 1000; i < 1009; i++) expect([200, 403]).toContain(await send(i))
  await eventually(() => {
    for (const r of replicas) expect(r.corridor.shipper?.status()).toMatchObject({ failing: false, lagBytes: 0 })
  }, 20_000)
  const exported = await run(
    process.execPath,
    [
      'bin/corridor.js',
      'audit',
      'export',
      '--format',
      'ocsf',
      '--store',
      'postgres',
      '--since',
      since,
      '--config',
      config,
    ],
    { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 },
  )
  const events = exported.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { class_uid: number; http_request?: { url: { path: string } } })
  const paths = events.flatMap((e) => (e.class_uid === 6003 ? [e.http_request?.url.path] : []))
  for (let i = 1000; i < 1009; i++) if (i % 7 !== 0) expect(paths.filter((p) => p === `/items/${i}`)).toHaveLength(1)
  // No checkpoint came before --since in these young streams: each copy starts at its first entry.
  const copy = join((replicas[0] as CorridorFixture).dir, 'pg-window.jsonl')
  writeFileSync(copy, exported.stdout)
  const verified = await run(process.execPath, ['bin/corridor.js', 'audit', 'verify', '--ocsf', copy, '--bounded'], {
    timeout: 20_000,
  })
  expect(verified.stdout).toMatch(/: \d+ entries in 3 stream\(s\)/)
  expect(verified.stdout).toContain('chain intact')
})
