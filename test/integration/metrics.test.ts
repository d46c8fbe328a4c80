/**
 * /metrics on the admin listener: read by a real Prometheus text-format parser (the Python
 * prometheus_client), carrying decisions, refusals, limits, stops and durations, and bounded in
 * cardinality: 2,000 agents sending to 10,000 distinct paths add no series of their own.
 */
import { Pool, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { hash, standardFiles } from '../helpers/standard-policy.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hasSample, sampleValue, scrapeMetrics, type Sample } from '../helpers/prometheus.ts'
import { metricNamingProblems } from '../helpers/semconv.ts'

const AGENTS = 2_000
const PATHS = 10_000
const keyOf = (i: number) => `cor_metrics_agent_${String(i).padStart(6, '0')}`

let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  const base = standardFiles(upstream.url)
  const many = Array.from(
    { length: AGENTS },
    (_, i) =>
      `  - { id: bot-${i}, owner: team-${i % 7}, tier: bounded-write, connectors: [svc], api_keys: [{ hash: "${hash(keyOf(i))}" }] }\n`,
  ).join('')
  fx = await startCorridorFixture(
    {
      ...base,
      agents: `${base.agents}${many}approvers:\n  - { id: alice, groups: [leads], keys: [{ hash: "${hash('cap_metrics_alice_0001')}" }] }\n`,
      extraConfig: 'approvals: { wait: 0s }\n',
      policy: `${base.policy}limits:\n  - { id: list-rate, match: { actions: items.list }, rate: 3/1h }\n  - { id: create-budget, match: { actions: items.create }, budget: { sum: qty, max: 20, window: 1d } }\n`,
    },
    { SVC_TOKEN: 'metrics-token' },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

const scrape = async (): Promise<Sample[]> => (await scrapeMetrics(fx.corridor.adminUrl)).samples

it('counts decisions, refusals, limits and stops, and times requests and upstream calls', async () => {
  const call = (key: string, path: string, init: { method?: string; body?: string } = {}) =>
    request(`${fx.corridor.agentUrl}${path}`, {
      method: (init.method ?? 'GET') as 'GET',
      headers: { 'x-api-key': key, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: init.body ?? null,
    }).then((r) => r.body.text().then(() => r.statusCode))
  const before = await scrape()
  expect(await call('cor_test_agent_key_0001', '/svc/items/1')).toBe(200)
  expect(await call('cor_test_agent_key_0001', '/svc/items/secret')).toBe(403)
  expect(await call('cor_nobody', '/svc/items/1')).toBe(401)
  for (let i = 0; i < 4; i++) await call('cor_test_agent_key_0001', '/svc/items')
  const create = (qty: number) =>
    call('cor_test_agent_key_0001', '/svc/items', { method: 'POST', body: JSON.stringify({ qty }) })
  expect(await create(5)).toBe(200)
  const midway = await scrape()
  expect(await create(10)).toBe(200)
  const after = await scrape()
  const delta = (name: string, labels: Record<string, string>) =>
    sampleValue(after, name, labels) - sampleValue(before, name, labels)
  expect(delta('corridor_decisions_total', { connector: 'svc', effect: 'allow' })).toBe(7)
  expect(delta('corridor_decisions_total', { connector: 'svc', effect: 'deny', limiting_factor: 'policy_rule' })).toBe(
    1,
  )
  expect(delta('corridor_refusals_total', { code: 'identity_invalid' })).toBe(1)
  expect(delta('corridor_refusals_total', { code: 'rate_limited' })).toBe(1)
  expect(delta('corridor_limit_checks_total', { limit: 'list-rate', result: 'admitted' })).toBe(3)
  expect(delta('corridor_limit_checks_total', { limit: 'list-rate', result: 'exceeded' })).toBe(1)
  expect(
    delta('http_server_request_duration_seconds_count', {
      corridor_connector: 'svc',
      http_response_status_code: '200',
    }),
  ).toBe(6)
  expect(delta('http_client_request_duration_seconds_count', { corridor_connector: 'svc' })).toBe(6)
  // The upstream named as the HTTP conventions name a server: its address and port.
  expect(
    delta('http_client_request_duration_seconds_count', {
      server_address: '127.0.0.1',
      server_port: new URL(upstream.url).port,
      http_request_method: 'POST',
    }),
  ).toBe(2)
  expect(delta('corridor_credential_issue_duration_seconds_count', { connector: 'svc', source: 'env' })).toBe(6)
  // What is left of each limit: the rate used up, the budget at 15 of 20 (absent before it counted anything).
  expect(before.some(([n, l]) => n === 'corridor_limit_remaining_ratio' && l.limit === 'create-budget')).toBe(false)
  expect(sampleValue(midway, 'corridor_limit_remaining_ratio', { limit: 'create-budget', kind: 'budget' })).toBeCloseTo(
    0.75,
  )
  expect(sampleValue(after, 'corridor_limit_remaining_ratio', { limit: 'create-budget', kind: 'budget' })).toBeCloseTo(
    0.25,
  )
  expect(sampleValue(after, 'corridor_limit_remaining_ratio', { limit: 'list-rate', kind: 'rate' })).toBe(0)
  expect(sampleValue(after, 'corridor_stops_in_force', { mode: 'stop' })).toBe(0)
  expect(sampleValue(after, 'corridor_audit_sink_healthy', {})).toBe(1)
  expect(hasSample(after, 'corridor_audit_write_failures_total')).toBe(true)
  expect(sampleValue(after, 'corridor_audit_write_failures_total', {})).toBe(0)
  // Features that are off show no figure at all, not a zero that reads as a measurement.
  expect(hasSample(after, 'corridor_trace_spans_dropped_total')).toBe(false)
  expect(hasSample(after, 'corridor_audit_shipping_lag_bytes')).toBe(false)
  // The process and runtime figures under the names every Prometheus client library gives them.
  for (const name of [
    'process_cpu_seconds_total',
    'process_start_time_seconds',
    'process_resident_memory_bytes',
    'process_open_fds',
    'process_max_fds',
    'nodejs_eventloop_lag_seconds',
  ])
    expect(hasSample(after, name), name).toBe(true)
  expectWellFormedHistograms(after)
  // Families not Corridor's own or the client library's standard ones are OpenTelemetry's, named as the registry names them.
  expect(metricNamingProblems(after, 'corridor_', ['process_', 'nodejs_'])).toEqual([])
  // The check itself: a name the registry lacks, a deprecated attribute as a label.
  expect(metricNamingProblems([['http_server_latency_seconds_count', { http_method: 'GET' }, 1]], 'corridor_')).toEqual(
    [
      'http_server_latency_seconds is not a registry metric',
      'http_server_latency_seconds: label http_method is not a registry attribute',
    ],
  )
})

/** Every histogram series: buckets ascending by bound, counts cumulative, +Inf equal to _count. */
function expectWellFormedHistograms(samples: Sample[]): void {
  const series = new Map<string, { buckets: [number, number][]; count: number | null }>()
  let histograms = 0
  for (const [name, labels, v] of samples) {
    const match = /^(.*)_(bucket|count)$/.exec(name)
    if (match === null) continue
    const { le, ...rest } = labels
    const key = `${match[1]}${JSON.stringify(Object.entries(rest).sort())}`
    const entry = series.get(key) ?? { buckets: [], count: null }
    series.set(key, entry)
    if (match[2] === 'bucket') entry.buckets.push([le === '+Inf' ? Infinity : Number(le), v])
    else entry.count = v
  }
  for (const [key, { buckets, count }] of series) {
    if (buckets.length === 0) continue
    histograms++
    const bounds = buckets.map(([b]) => b)
    expect(bounds, key).toEqual([...bounds].sort((a, b) => a - b))
    const counts = buckets.map(([, c]) => c)
    expect(counts, key).toEqual([...counts].sort((a, b) => a - b))
    expect(buckets.at(-1), key).toEqual([Infinity, count])
  }
  expect(histograms).toBeGreaterThan(3)
}

it(`${AGENTS.toLocaleString('en')} agents on ${PATHS.toLocaleString('en')} distinct paths add no series`, async () => {
  const before = (await scrape()).length
  const pool = new Pool(fx.corridor.agentUrl, { connections: 16 })
  try {
    const statuses = await Promise.all(
      Array.from({ length: PATHS }, (_, i) =>
        pool
          .request({ method: 'GET', path: `/svc/items/item-${i}`, headers: { 'x-api-key': keyOf(i % AGENTS) } })
          .then((r) => r.body.text().then(() => r.statusCode)),
      ),
    )
    expect(statuses.filter((s) => s === 200)).toHaveLength(PATHS)
  } finally {
    await pool.close()
  }
  const after = await scrape()
  expect(after.length).toBeLessThan(2_000)
  // What grows with traffic is values, not series: at most the new histogram buckets of one label set.
  expect(after.length - before).toBeLessThanOrEqual(40)
}, 60_000)

it('counts requests waiting for approvers, and how long a person took to decide', async () => {
  const held = await request(`${fx.corridor.agentUrl}/svc/items`, {
    method: 'POST',
    headers: { 'x-api-key': 'cor_test_agent_key_0001', 'content-type': 'application/json' },
    body: JSON.stringify({ qty: 50 }),
  })
  const id = ((await held.body.json()) as { approval_id: string }).approval_id
  expect(sampleValue(await scrape(), 'corridor_approvals_pending', {})).toBe(1)
  const admin = (path: string, body?: unknown) =>
    request(`${fx.corridor.adminUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: 'Bearer cap_metrics_alice_0001', 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    }).then(async (r) => (await r.body.json()) as Record<string, unknown>)
  const shown = await admin(`/approvals/${id}`)
  await admin(`/approvals/${id}/approve`, { reason: 'fine', digest: shown.digest })
  const after = await scrape()
  expect(sampleValue(after, 'corridor_approvals_pending', {})).toBe(0)
  expect(sampleValue(after, 'corridor_approval_time_to_decide_seconds_count', { outcome: 'approved' })).toBe(1)
})
