/**
 * GET /audit answered from the local audit file (no PostgreSQL): a query that stops at its limit
 * leaves no file open, however many an auditor sends.
 */
import { readdirSync, readlinkSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash, standardFiles } from '../helpers/standard-policy.ts'

const AUDITOR_KEY = 'cau_test_auditor_key_0002'
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      agents: `${standardFiles(upstream.url).agents}auditors:\n  - { id: ines, keys: [{ hash: "${hash(AUDITOR_KEY)}" }] }\n`,
    },
    { SVC_TOKEN: 'file-api-token' },
  )
})

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

/** Descriptors this process (Corridor runs in it) holds on the audit file. */
const openOnAuditFile = (): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === fx.auditFile
    } catch {
      return false
    }
  }).length

it('answers limited queries from the file and leaves no descriptor open for any of them', async () => {
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${fx.corridor.agentUrl}/svc/items/${i}`, { headers: { 'x-api-key': AGENT_KEY } })
    await r.arrayBuffer()
  }
  // The sink's own descriptor.
  const before = openOnAuditFile()
  for (let i = 0; i < 40; i++) {
    const r = await fetch(`${fx.corridor.adminUrl}/audit?limit=1`, {
      headers: { authorization: `Bearer ${AUDITOR_KEY}` },
    })
    const body = (await r.json()) as { source: string; records: unknown[]; more: boolean }
    expect(r.status).toBe(200)
    expect(body).toMatchObject({ source: 'file', more: true })
    expect(body.records).toHaveLength(1)
  }
  await eventually(() => expect(openOnAuditFile()).toBe(before))
})
