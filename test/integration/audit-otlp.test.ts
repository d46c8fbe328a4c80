/**
 * Shipping the audit trail to an OpenTelemetry collector as OTLP logs: a receiver on loopback that
 * refuses the first exports (503) gets every entry in the end, each body the line as written, so
 * the hash chain verifies on the collector's copy.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { verifyLines } from '../../src/audit/chain.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

interface LogRecord {
  body: { stringValue: string }
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[]
}

let collector: Server
let upstream: RecordingUpstream
let fx: CorridorFixture
let refusals = 0
/** stream:seq → line, as the collector received them (a batch sent again is stored once). */
const received = new Map<string, string>()
const headersSeen: string[] = []
/** The agent attribute of every log record that named one. */
const agentsSeen = new Set<string | undefined>()

beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (refusals < 3) {
        refusals++
        res.writeHead(503)
        return void res.end()
      }
      headersSeen.push(String(req.headers['x-api-key']))
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceLogs: { scopeLogs: { logRecords: LogRecord[] }[] }[]
      }
      for (const r of body.resourceLogs[0]?.scopeLogs[0]?.logRecords ?? []) {
        const attr = (k: string) => r.attributes.find((a) => a.key === k)?.value
        if (r.body.stringValue.includes('"agent":"')) agentsSeen.add(attr('gen_ai.agent.id')?.stringValue)
        received.set(
          `${attr('corridor.audit.stream')?.stringValue}:${attr('corridor.audit.seq')?.intValue}`,
          r.body.stringValue,
        )
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r))
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      auditConfig: `otlp: { endpoint: "http://127.0.0.1:${(collector.address() as AddressInfo).port}", headers_env: OTLP_HEADERS, poll: 50ms, timeout: 1s }`,
    },
    { SVC_TOKEN: 'otlp-token', OTLP_HEADERS: 'x-api-key=collector-secret' },
  )
})

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  collector?.closeAllConnections()
  await new Promise((r) => collector?.close(r))
})

it('every entry reaches the collector, through refusals, and the chain verifies on its copy', async () => {
  for (let i = 0; i < 50; i++) {
    const r = await fetch(`${fx.corridor.agentUrl}/svc/items/${i}`, { headers: { 'x-api-key': AGENT_KEY } })
    await r.arrayBuffer()
  }
  const written = () =>
    readFileSync(fx.auditFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"stream":'))
  await eventually(() => expect(received.size).toBe(written().length), 10_000)
  expect(refusals).toBe(3)
  expect(new Set(received.values())).toEqual(new Set(written()))
  const ordered = [...received.entries()].sort(([a], [b]) => Number(a.split(':')[1]) - Number(b.split(':')[1]))
  expect(
    verifyLines(
      ordered.map(([, line]) => line),
      null,
    ).breaks,
  ).toEqual([])
  expect(new Set(headersSeen)).toEqual(new Set(['collector-secret']))
  // Named as the spans name it (OpenTelemetry's GenAI conventions).
  expect(agentsSeen).toEqual(new Set(['writer']))
})
