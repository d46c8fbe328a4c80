/**
 * Shipping the audit trail to an OpenTelemetry collector as OTLP logs: a receiver on loopback that
 * refuses the first exports (503) gets every entry in the end, each body the line as written, so
 * the hash chain verifies on the collector's copy. How far behind shipping is shows on /readyz
 * and in /metrics, by target.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { verifyLines } from '../../src/audit/chain.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startOtlpLogReceiver, type OtlpLogReceiver } from '../helpers/otlp-log-receiver.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { sampleValue, scrapeMetrics } from '../helpers/prometheus.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

let collector: OtlpLogReceiver
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  collector = await startOtlpLogReceiver({ refuseFirst: 3 })
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      auditConfig: `otlp: { endpoint: "${collector.url}", headers_env: OTLP_HEADERS, poll: 50ms, timeout: 1s }`,
    },
    { SVC_TOKEN: 'otlp-token', OTLP_HEADERS: 'x-api-key=collector-secret' },
  )
})

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await collector?.close()
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
  // stream:seq → line, as the collector received them (a batch sent again is stored once).
  const received = () =>
    new Map(
      collector.records.map((r) => [
        `${r.attributes['corridor.audit.stream']}:${r.attributes['corridor.audit.seq']}`,
        r.line,
      ]),
    )
  await eventually(() => expect(received().size).toBe(written().length), 10_000)
  expect(collector.refused()).toBe(3)
  expect(new Set(received().values())).toEqual(new Set(written()))
  const ordered = [...received().entries()].sort(([a], [b]) => Number(a.split(':')[1]) - Number(b.split(':')[1]))
  expect(
    verifyLines(
      ordered.map(([, line]) => line),
      null,
    ).breaks,
  ).toEqual([])
  expect(new Set(collector.records.map((r) => r.headers['x-api-key']))).toEqual(new Set(['collector-secret']))
  // Named as the spans name it (OpenTelemetry's GenAI conventions).
  expect(
    new Set(collector.records.filter((r) => r.line.includes('"agent":"')).map((r) => r.attributes['gen_ai.agent.id'])),
  ).toEqual(new Set(['writer']))
})

it("shows how far the collector's copy is behind on /readyz and in /metrics, failing while the collector refuses", async () => {
  const shipping = async () =>
    (await (await fetch(`${fx.corridor.adminUrl}/readyz`)).json()) as {
      ready: boolean
      audit_shipping?: Record<string, { lag_bytes: number; failing: boolean; shipped: number }>
    }
  const lag = async () =>
    sampleValue((await scrapeMetrics(fx.corridor.adminUrl)).samples, 'corridor_audit_shipping_lag_bytes', {
      target: 'otlp',
    })
  await eventually(async () => expect((await shipping()).audit_shipping?.otlp?.lag_bytes).toBe(0), 10_000)
  collector.refuseAll(true)
  try {
    for (let i = 0; i < 10; i++) {
      const r = await fetch(`${fx.corridor.agentUrl}/svc/items/${i}`, { headers: { 'x-api-key': AGENT_KEY } })
      await r.arrayBuffer()
    }
    await eventually(async () => {
      const s = await shipping()
      expect(s.audit_shipping?.otlp).toMatchObject({ failing: true })
      expect(s.audit_shipping?.otlp?.lag_bytes).toBeGreaterThan(0)
      // Shipping runs behind the trail: it never makes Corridor unready.
      expect(s.ready).toBe(true)
    }, 5_000)
    expect(await lag()).toBeGreaterThan(0)
  } finally {
    collector.refuseAll(false)
  }
  await eventually(async () => {
    expect((await shipping()).audit_shipping?.otlp).toMatchObject({ lag_bytes: 0, failing: false })
    expect(await lag()).toBe(0)
  }, 20_000)
}, 40_000)
