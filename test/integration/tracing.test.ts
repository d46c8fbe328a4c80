/**
 * OpenTelemetry traces: an agent's W3C traceparent is continued through Corridor to the upstream,
 * and a collector on loopback receives the server span (child of the agent's span, carrying the
 * audit request id), the credential span (a Vault lease issued for the request's agent) with the
 * Vault call under it, and the client span the upstream's traceparent names. The release of a held
 * request is a trace of its own, linked to the hold's span. Without a traceparent a new trace
 * starts; traces off, the agent's traceparent reaches the upstream untouched.
 */
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { approve, APPROVER_KEYS } from '../helpers/approvals-fixture.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'
import { startVaultForCorridor, vaultConfigYaml, type VaultSetup } from '../helpers/vault-fixture.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { Tracer } from '../../src/telemetry/tracing.ts'
import { traceUpstream } from '../../src/shared/trace-context.ts'
import { semconvProblems } from '../helpers/semconv.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'

interface Span {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[]
  status?: { code?: number }
}

let collector: Server
let upstream: RecordingUpstream
let vault: VaultSetup
let traced: CorridorFixture
let untraced: CorridorFixture
/** An OAuth2 token endpoint: a connector's credential is a token it issues. */
let tokenServer: Server
let tokenUrl: string
const OAUTH_SECRET = 'oauth-client-canary-51c2'
const OAUTH_TOKEN = 'oauth-token-canary-9e4d'
const spans: Span[] = []
/** The authorization header of every export the collector received. */
const exportAuthorizations: (string | undefined)[] = []
/** A hosted collector's API key, given percent-encoded as OTEL_EXPORTER_OTLP_HEADERS values are. */
const COLLECTOR_KEY = 'collector-canary-7f3a9c'

/** A tracer that records by sampling alone. */
const NOTHING_MORE = { outcomes: [], errors: false, slowerThanMs: null } as const

const AGENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const AGENT_SPAN = '00f067aa0ba902b7'

function files(upstreamUrl: string) {
  return {
    agents: `agents:\n  - { id: writer, owner: team-a, tier: bounded-write, connectors: [db, api], api_keys: [{ hash: "${hash(AGENT_KEY)}" }] }\napprovers:\n  - { id: alice, groups: [leads], keys: [{ hash: "${hash(APPROVER_KEYS.alice)}" }] }\n`,
    connectors: `connectors:
  - id: db
    owner: team-a
    upstream: ${upstreamUrl}/db
    certified_until: 2099-12-31
    credential:
      source: vault_dynamic
      path: database/creds/app
      scope: agent
      inject: { basic: { username: "{username}", password: "{password}" } }
    actions:
      - { name: rows.get, method: GET, path: "/rows/{id}", risk: read }
      - { name: rows.delete, method: DELETE, path: "/rows/{id}", risk: write }
  - id: api
    owner: team-a
    upstream: ${upstreamUrl}/api
    certified_until: 2099-12-31
    credential:
      source: oauth2
      token_url: ${tokenUrl}
      client_id: corridor-client
      client_secret: { env: OAUTH_CLIENT_SECRET }
      inject: { header: authorization, format: "Bearer {secret}" }
    actions:
      - { name: things.get, method: GET, path: "/things/{id}", risk: read }
`,
    policy:
      'version: 1\nrules:\n  - { id: reads, effect: allow, match: { actions: [rows.get, things.get] } }\n  - { id: deletes, effect: require_approval, approvers: [leads], match: { actions: rows.delete } }\n',
  }
}

beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      exportAuthorizations.push(req.headers.authorization)
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { scopeSpans: { spans: Span[] }[] }[]
      }
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r))
  upstream = await startRecordingUpstream()
  tokenServer = createServer((req, res) => {
    req.resume()
    req.on('end', () =>
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ access_token: OAUTH_TOKEN, token_type: 'Bearer', expires_in: 3600 })),
    )
  })
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r))
  tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth/token`
  vault = await startVaultForCorridor()
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  traced = await startCorridorFixture(
    {
      ...files(upstream.url),
      extraConfig: `${vaultConfigYaml(vault)}telemetry: { traces: { endpoint: "${endpoint}", headers_env: COLLECTOR_HEADERS } }\napprovals: { wait: 1s }\n`,
    },
    {
      CORRIDOR_SECRET_ID: vault.secretId,
      OAUTH_CLIENT_SECRET: OAUTH_SECRET,
      COLLECTOR_HEADERS: `Authorization=Bearer%20${COLLECTOR_KEY}`,
    },
  )
  untraced = await startCorridorFixture(
    { ...files(upstream.url), extraConfig: vaultConfigYaml(vault) },
    { CORRIDOR_SECRET_ID: vault.secretId, OAUTH_CLIENT_SECRET: OAUTH_SECRET },
  )
})

afterAll(async () => {
  await traced?.close()
  await untraced?.close()
  await upstream?.close()
  await vault?.vault.stop()
  await new Promise((r) => tokenServer?.close(r))
  collector?.closeAllConnections()
  await new Promise((r) => collector?.close(r))
})

const get = (fx: CorridorFixture, path: string, traceparent?: string, tracestate?: string) =>
  fetch(`${fx.corridor.agentUrl}${path}`, {
    headers: {
      authorization: `Bearer ${AGENT_KEY}`,
      ...(traceparent === undefined ? {} : { traceparent }),
      ...(tracestate === undefined ? {} : { tracestate }),
    },
  }).then(async (r) => {
    await r.arrayBuffer()
    return { status: r.status, requestId: r.headers.get('x-corridor-request-id') as string }
  })

const attr = (s: Span, key: string) => s.attributes.find((a) => a.key === key)?.value.stringValue

it('joins agent → Corridor → Vault credential → upstream in one trace', async () => {
  const answer = await get(traced, '/db/rows/1', `00-${AGENT_TRACE}-${AGENT_SPAN}-01`)
  expect(answer.status).toBe(200)
  const received = upstream.received.at(-1)?.headers.traceparent as string
  const [, traceId, parent] = received.split('-')
  expect(traceId).toBe(AGENT_TRACE)
  expect(parent).not.toBe(AGENT_SPAN)
  await eventually(() => expect(spans.filter((s) => s.traceId === AGENT_TRACE)).toHaveLength(5), 5_000)
  const ours = spans.filter((s) => s.traceId === AGENT_TRACE)
  const server = ours.find((s) => s.kind === 2) as Span
  const credential = ours.find((s) => s.kind === 1) as Span
  const vaultCalls = ours.filter((s) => s.kind === 3 && s.name.startsWith('vault '))
  const client = ours.find((s) => s.kind === 3 && !s.name.startsWith('vault ')) as Span
  expect(server.parentSpanId).toBe(AGENT_SPAN)
  expect(attr(server, 'corridor.request_id')).toBe(answer.requestId)
  expect(attr(server, 'corridor.decision')).toBe('allow')
  expect([attr(server, 'gen_ai.agent.id'), attr(server, 'gen_ai.tool.name')]).toEqual(['writer', 'rows.get'])
  // The route: the action's template as the agent addressed it, whatever the row's id.
  expect([attr(server, 'url.path'), attr(server, 'http.route')]).toEqual(['/rows/1', '/db/rows/{id}'])
  expect(credential).toMatchObject({ parentSpanId: server.spanId, name: 'credential vault_dynamic' })
  // The Vault calls that issued the lease (Corridor's first, so its login too), under the credential span.
  expect(vaultCalls.map((s) => [s.name, s.parentSpanId])).toEqual([
    ['vault POST /v1/auth/approle/login', credential.spanId],
    ['vault GET /v1/database/creds/app', credential.spanId],
  ])
  for (const call of vaultCalls) {
    expect(call.attributes.find((a) => a.key === 'http.response.status_code')?.value.intValue).toBe('200')
    expect(attr(call, 'url.full')).toMatch(new RegExp(`^${vault.vault.address}/v1/`))
  }
  expect(client).toMatchObject({ parentSpanId: server.spanId, spanId: parent })
  const upstreamPort = new URL(upstream.url).port
  expect(client.attributes.filter((a) => a.key.startsWith('server.')).map((a) => a.value)).toEqual([
    { stringValue: '127.0.0.1' },
    { intValue: upstreamPort },
  ])
  await eventually(() =>
    expect(traced.auditRecords().find((r) => r.request_id === answer.requestId)?.trace_id).toBe(AGENT_TRACE),
  )
  // The collector's key went, decoded, on every export, and nowhere else.
  expect(new Set(exportAuthorizations)).toEqual(new Set([`Bearer ${COLLECTOR_KEY}`]))
  expect(traced.allOutput()).not.toContain(COLLECTOR_KEY)
  expect(JSON.stringify(upstream.received)).not.toContain(COLLECTOR_KEY)
})

it("a token endpoint's call is an HTTP client span under the credential span, naming the endpoint and nothing it was sent or gave", async () => {
  const trace = '7bf92f3577b34da6a3ce929d0e0e4739'
  expect((await get(traced, '/api/things/1', `00-${trace}-${AGENT_SPAN}-01`)).status).toBe(200)
  expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${OAUTH_TOKEN}`)
  await eventually(() => expect(spans.filter((s) => s.traceId === trace)).toHaveLength(4), 5_000)
  const ours = spans.filter((s) => s.traceId === trace)
  const credential = ours.find((s) => s.kind === 1) as Span
  const call = ours.find((s) => s.name.startsWith('oauth2 ')) as Span
  expect(credential.name).toBe('credential oauth2')
  expect(call).toMatchObject({ name: 'oauth2 POST /oauth/token', kind: 3, parentSpanId: credential.spanId })
  expect([attr(call, 'http.request.method'), attr(call, 'url.full'), attr(call, 'server.address')]).toEqual([
    'POST',
    tokenUrl,
    '127.0.0.1',
  ])
  const text = JSON.stringify(ours)
  expect(text).not.toContain(OAUTH_SECRET)
  expect(text).not.toContain(OAUTH_TOKEN)
  for (const canary of [OAUTH_SECRET, OAUTH_TOKEN]) expect(traced.allOutput()).not.toContain(canary)
})

it('starts a trace when the agent sends none, and refuses nothing over a malformed traceparent', async () => {
  const fresh = await get(traced, '/db/rows/2')
  const received = String(upstream.received.at(-1)?.headers.traceparent)
  expect(received).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
  await eventually(() => {
    const record = traced.auditRecords().find((r) => r.request_id === fresh.requestId)
    expect(record?.trace_id).toBe(received.split('-')[1])
  })
  expect((await get(traced, '/db/rows/3', 'garbage')).status).toBe(200)
  expect(String(upstream.received.at(-1)?.headers.traceparent)).toMatch(/^00-[0-9a-f]{32}-/)
})

it("a trace Corridor starts carries none of the agent's tracestate; a trace it continues carries it on", async () => {
  // W3C Trace Context: a tracestate belongs to the traceparent it came with; without a valid one it is discarded.
  for (const traceparent of [
    undefined,
    'garbage',
    `01-${AGENT_TRACE}-${AGENT_SPAN}-01`,
    `00-${'0'.repeat(32)}-${AGENT_SPAN}-01`,
  ]) {
    expect((await get(traced, '/db/rows/12', traceparent, 'vendor1=a1')).status).toBe(200)
    const received = upstream.received.at(-1)
    expect(String(received?.headers.traceparent)).not.toContain(AGENT_SPAN)
    expect(received?.headers.tracestate).toBeUndefined()
  }
  // Not sampled: its spans would join the later tests' count of the agent's trace.
  await get(traced, '/db/rows/13', `00-7bf92f3577b34da6a3ce929d0e0e4739-${AGENT_SPAN}-00`, 'vendor1=a1')
  expect(upstream.received.at(-1)?.headers.tracestate).toBe('vendor1=a1')
  // With traces off Corridor takes no part in the trace: both reach the upstream as sent, even a malformed pair.
  await get(untraced, '/db/rows/14', 'garbage', 'vendor1=a1')
  expect(upstream.received.at(-1)?.headers).toMatchObject({ traceparent: 'garbage', tracestate: 'vendor1=a1' })
})

it('an agent that did not sample its trace gets none recorded, and the upstream still gets the context', async () => {
  const before = spans.length
  const unsampled = '5bf92f3577b34da6a3ce929d0e0e4737'
  await get(traced, '/db/rows/5', `00-${unsampled}-${AGENT_SPAN}-00`)
  expect(String(upstream.received.at(-1)?.headers.traceparent)).toMatch(new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`))
  await get(traced, '/db/rows/6', `00-${AGENT_TRACE}-${AGENT_SPAN}-01`)
  // The lease is cached by now: the server span (naming the credential source) and the upstream call.
  await eventually(() => expect(spans.length).toBeGreaterThanOrEqual(before + 2), 5_000)
  const cached = spans.slice(before).filter((s) => s.traceId === AGENT_TRACE)
  expect(cached.map((s) => s.kind).sort()).toEqual([2, 3])
  expect(attr(cached.find((s) => s.kind === 2) as Span, 'corridor.credential.source')).toBe('vault_dynamic')
  expect(spans.filter((s) => s.traceId === unsampled)).toEqual([])
})

it("an agent's tracestate, split over two lines as W3C Trace Context allows, reaches the upstream whole", async () => {
  const host = `Host: ${new URL(traced.corridor.agentUrl).host}\r\n`
  const response = await rawRequest(
    traced.corridor.agentUrl,
    `GET /db/rows/11 HTTP/1.1\r\n${host}Authorization: Bearer ${AGENT_KEY}\r\ntraceparent: 00-${AGENT_TRACE}-${AGENT_SPAN}-01\r\ntracestate: vendor1=a1\r\ntracestate: vendor2=b2\r\nConnection: close\r\n\r\n`,
  )
  expect(statusOf(response)).toBe(200)
  const received = upstream.received.at(-1)
  expect(received?.url).toBe('/db/rows/11')
  expect(received?.headers.tracestate).toBe('vendor1=a1, vendor2=b2')
})

it('a collector key named and not set stops the start, rather than exporting without it', async () => {
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  await expect(
    startCorridorFixture(
      {
        ...files(upstream.url),
        extraConfig: `${vaultConfigYaml(vault)}telemetry: { traces: { endpoint: "${endpoint}", headers_env: UNSET_COLLECTOR_HEADERS } }\n`,
      },
      { CORRIDOR_SECRET_ID: vault.secretId, OAUTH_CLIENT_SECRET: OAUTH_SECRET },
    ),
  ).rejects.toThrow('telemetry.traces.headers_env names UNSET_COLLECTOR_HEADERS, which is not set')
})

it("with follow_agent_sampling: false an agent's sampled flag records nothing: the share decides, and the upstream is told", async () => {
  // The decision alone, both ways: the agent's trace always continues, its flag decides only when followed.
  const decisions = (sample: number, followAgentSampling: boolean) => {
    const tracer = new Tracer({
      endpoint: 'http://127.0.0.1:9',
      headers: {},
      sample,
      followAgentSampling,
      alwaysRecord: NOTHING_MORE,
      scheme: 'http',
      timeoutMs: 300,
      log: createLogger('silent'),
    })
    void tracer.close()
    return ['01', '00'].map((flags) => {
      const t = tracer.start(`00-${AGENT_TRACE}-${AGENT_SPAN}-${flags}`)
      expect(t.traceId).toBe(AGENT_TRACE)
      return t.sampled
    })
  }
  expect(decisions(0, true)).toEqual([true, false])
  expect(decisions(0, false)).toEqual([false, false])
  expect(decisions(1, false)).toEqual([true, true])
  // Through a running Corridor configured so: nothing recorded, and the upstream continues the trace unsampled.
  const ownTrace = '6bf92f3577b34da6a3ce929d0e0e4738'
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  const unfollowing = await startCorridorFixture(
    {
      ...files(upstream.url),
      extraConfig: `${vaultConfigYaml(vault)}telemetry: { traces: { endpoint: "${endpoint}", sample: 0, follow_agent_sampling: false } }\n`,
    },
    { CORRIDOR_SECRET_ID: vault.secretId, OAUTH_CLIENT_SECRET: OAUTH_SECRET },
  )
  try {
    expect((await get(unfollowing, '/db/rows/8', `00-${ownTrace}-${AGENT_SPAN}-01`)).status).toBe(200)
    expect(String(upstream.received.at(-1)?.headers.traceparent)).toMatch(
      new RegExp(`^00-${ownTrace}-[0-9a-f]{16}-00$`),
    )
  } finally {
    // Closing flushes what waits for export: a recorded span would have reached the collector by now.
    await unfollowing.close()
  }
  expect(spans.filter((s) => s.traceId === ownTrace)).toEqual([])
})

it("a held request's release is a trace of its own, linked to the hold's span, carried to the upstream", async () => {
  const holdTrace = '6bf92f3577b34da6a3ce929d0e0e4738'
  const held = await fetch(`${traced.corridor.agentUrl}/db/rows/9`, {
    method: 'DELETE',
    headers: {
      authorization: `Bearer ${AGENT_KEY}`,
      traceparent: `00-${holdTrace}-${AGENT_SPAN}-01`,
      tracestate: 'vendor1=hold',
    },
  })
  expect(held.status).toBe(503)
  const approvalId = ((await held.json()) as { approval_id: string }).approval_id
  expect(approvalId).toMatch(/^apr_/)
  await eventually(() => expect(spans.filter((s) => s.traceId === holdTrace && s.kind === 2)).toHaveLength(1), 5_000)
  const holdSpan = spans.find((s) => s.traceId === holdTrace && s.kind === 2) as Span
  expect(attr(holdSpan, 'corridor.decision')).toBe('require_approval')

  expect((await approve(traced.corridor.adminUrl, 'alice', approvalId)).status).toBe(200)
  await eventually(() => expect(upstream.received.some((r) => r.method === 'DELETE')).toBe(true), 5_000)
  const sent = upstream.received.find((r) => r.method === 'DELETE')
  const [, releaseTrace, releaseParent] = String(sent?.headers.traceparent).split('-')
  expect(releaseTrace).toMatch(/^[0-9a-f]{32}$/)
  expect(releaseTrace).not.toBe(holdTrace)
  // The agent's tracestate went with the hold's trace, not this one.
  expect(sent?.headers.tracestate).toBeUndefined()
  // Its root span and its upstream call (the agent's lease is cached: no credential span).
  await eventually(() => expect(spans.filter((s) => s.traceId === releaseTrace)).toHaveLength(2), 5_000)
  const release = spans.find((s) => s.traceId === releaseTrace && s.name.startsWith('release ')) as Span & {
    links?: { traceId: string; spanId: string }[]
  }
  expect(release).toMatchObject({ name: 'release DELETE db rows.delete', kind: 1 })
  expect(release.parentSpanId).toBeUndefined()
  expect(release.links).toEqual([expect.objectContaining({ traceId: holdTrace, spanId: holdSpan.spanId })])
  const client = spans.find((s) => s.traceId === releaseTrace && s.kind === 3 && !s.name.startsWith('vault ')) as Span
  expect(client).toMatchObject({ parentSpanId: release.spanId, spanId: releaseParent })
  await eventually(() =>
    expect(
      traced.auditRecords().find((r) => r.approval?.id === approvalId && r.approval.state === 'executed')?.trace_id,
    ).toBe(releaseTrace),
  )
})

it("with traces off the agent's traceparent reaches the upstream as it was sent, and nothing is recorded", async () => {
  const answer = await get(untraced, '/db/rows/4', `00-${AGENT_TRACE}-${AGENT_SPAN}-01`)
  expect(upstream.received.at(-1)?.headers.traceparent).toBe(`00-${AGENT_TRACE}-${AGENT_SPAN}-01`)
  await eventually(() =>
    expect(untraced.auditRecords().find((r) => r.request_id === answer.requestId)?.trace_id).toBeNull(),
  )
})

/**
 * A tracer whose collector takes the connection and the request, and never writes a byte back; and
 * a way to finish `n` forwarded requests of two spans each (server and upstream call) on it.
 */
async function silentCollectorTracer() {
  const sockets = new Set<Socket>()
  const silent = createNetServer((socket) => {
    sockets.add(socket)
    socket.resume()
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const tracer = new Tracer({
    endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    headers: {},
    sample: 1,
    followAgentSampling: true,
    alwaysRecord: NOTHING_MORE,
    scheme: 'http',
    timeoutMs: 300,
    log: createLogger('silent'),
  })
  const finishForwarded = (n: number) => {
    for (let i = 0; i < n; i++) {
      const t = tracer.start(undefined)
      traceUpstream(t, performance.now(), 'http://127.0.0.1:9', '/rows')
      tracer.finish(t, {
        request_id: `req_${i}`,
        duration_ms: 2,
        agent: 'writer',
        connector: 'db',
        action: 'rows.read',
        method: 'GET',
        path: '/rows',
        status: 200,
        decision: 'allow',
        rule: 'read',
        outcome: 'forwarded',
        error_code: null,
        upstream_status: 200,
        upstream_ms: 1,
      })
    }
  }
  const stop = () => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  }
  return { tracer, sockets, finishForwarded, stop }
}

it('a collector that accepts connections and never answers costs dropped spans, counted, not a stuck shutdown', async () => {
  const { tracer, sockets, finishForwarded, stop } = await silentCollectorTracer()
  try {
    finishForwarded(5)
    const started = performance.now()
    await tracer.close()
    // Two spans a request, dropped after the export timed out.
    expect(tracer.dropped).toBe(10)
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(sockets.size).toBe(1)
  } finally {
    stop()
  }
})

it('spans that find the buffer full while an export hangs are dropped, counted as those written would be', async () => {
  const { tracer, finishForwarded, stop } = await silentCollectorTracer()
  const requests = 6_000
  try {
    // Some 1,800 requests' spans fill a buffer; the first full batch goes out and never comes back.
    finishForwarded(requests)
    expect(tracer.dropped).toBeGreaterThan(0)
    expect(tracer.dropped).toBeLessThan(2 * requests)
    await tracer.close()
    // Every span, written or not, is dropped once: the exports time out.
    expect(tracer.dropped).toBe(2 * requests)
  } finally {
    stop()
  }
})

it('with none sampled, a request refused, failed, slow or held is recorded all the same, and one that went well is not', async () => {
  // An upstream that fails one row and is slow with another.
  const picky = await startRecordingUpstream((req, res) => {
    if (req.url.endsWith('/rows/500')) {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}')
      return
    }
    setTimeout(
      () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
      req.url.endsWith('/rows/slow') ? 400 : 0,
    )
  })
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  const tail = await startCorridorFixture(
    {
      ...files(picky.url),
      extraConfig: `${vaultConfigYaml(vault)}telemetry: { traces: { endpoint: "${endpoint}", sample: 0, always_record: { outcomes: [denied, held], errors: true, slower_than: 300ms } } }\napprovals: { wait: 200ms }\n`,
    },
    { CORRIDOR_SECRET_ID: vault.secretId, OAUTH_CLIENT_SECRET: OAUTH_SECRET },
  )
  // Each request in a trace of its own, which the agent did not sample: only Corridor's choice at the end records it.
  const traceOf = (n: number) => `${n}cf92f3577b34da6a3ce929d0e0e47${String(n).padStart(2, '0')}`
  const unsampled = (n: number) => `00-${traceOf(n)}-${AGENT_SPAN}-00`
  let closed = false
  try {
    expect((await get(tail, '/db/rows/1', unsampled(1))).status).toBe(200)
    expect((await get(tail, '/db/undeclared', unsampled(2))).status).toBe(403)
    expect((await get(tail, '/db/rows/500', unsampled(3))).status).toBe(500)
    const failedSentWith = String(picky.received.at(-1)?.headers.traceparent)
    expect((await get(tail, '/db/rows/slow', unsampled(4))).status).toBe(200)
    const held = await fetch(`${tail.corridor.agentUrl}/db/rows/9`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${AGENT_KEY}`, traceparent: unsampled(5) },
    })
    expect(held.status).toBe(503)
    const { approval_id: approvalId, status_url: statusUrl } = (await held.json()) as {
      approval_id: string
      status_url: string
    }
    // The agent reads where its approval stands: outcome held too, but a request to Corridor itself.
    const read = await fetch(`${tail.corridor.agentUrl}${statusUrl}`, {
      headers: { authorization: `Bearer ${AGENT_KEY}`, traceparent: unsampled(6) },
    })
    expect(read.status).toBe(200)
    expect(((await read.json()) as { state: string }).state).toBe('pending')
    expect((await approve(tail.corridor.adminUrl, 'alice', approvalId)).status).toBe(200)
    await eventually(() => expect(picky.received.some((r) => r.method === 'DELETE')).toBe(true), 5_000)
    const releaseSentWith = String(picky.received.find((r) => r.method === 'DELETE')?.headers.traceparent)
    const [, releaseTrace, releaseParent, releaseFlags] = releaseSentWith.split('-')
    await eventually(() =>
      expect(tail.auditRecords().filter((r) => r.request_id !== '').length).toBeGreaterThanOrEqual(7),
    )
    expect(tail.auditRecords().find((r) => r.path === statusUrl)).toMatchObject({ outcome: 'held', status: 200 })
    // Closing flushes what waits for export: every recorded span has reached the collector by now.
    closed = true
    await tail.close()

    const serverSpan = (trace: string) => spans.find((s) => s.traceId === trace && s.kind === 2)
    // Went well, quickly: nothing, though what its spans needed was gathered (the Vault lease was issued for it).
    expect(spans.filter((s) => s.traceId === traceOf(1))).toEqual([])
    expect(attr(serverSpan(traceOf(2)) as Span, 'corridor.outcome')).toBe('denied')
    // The upstream's 500: the server span an error, and the upstream call's client span, whose id
    // the upstream received, told the trace was not sampled.
    const failed = spans.filter((s) => s.traceId === traceOf(3))
    const failedServer = serverSpan(traceOf(3)) as Span
    expect(failedServer.status?.code).toBe(2)
    expect(attr(failedServer, 'corridor.outcome')).toBe('forwarded')
    expect(attr(failedServer, 'http.route')).toBe('/db/rows/{id}')
    const failedClient = failed.find((s) => s.kind === 3) as Span
    expect(failedSentWith).toBe(`00-${traceOf(3)}-${failedClient.spanId}-00`)
    expect(failedClient.parentSpanId).toBe(failedServer.spanId)
    expect(failedClient.attributes.find((a) => a.key === 'http.response.status_code')?.value.intValue).toBe('500')
    // Slow: recorded with its upstream call, which took the upstream's 400 ms.
    const slow = spans.filter((s) => s.traceId === traceOf(4))
    expect(slow.map((s) => s.kind).sort()).toEqual([2, 3])
    const slowClient = slow.find((s) => s.kind === 3) as Span & { startTimeUnixNano: string; endTimeUnixNano: string }
    expect(
      Number(BigInt(slowClient.endTimeUnixNano) - BigInt(slowClient.startTimeUnixNano)) / 1e6,
    ).toBeGreaterThanOrEqual(390)
    // Held: the hold, and its release, sampled so that the upstream records it too, linked to the hold.
    const holdSpan = serverSpan(traceOf(5)) as Span
    expect(attr(holdSpan, 'corridor.outcome')).toBe('held')
    expect(releaseFlags).toBe('01')
    const release = spans.find((s) => s.traceId === releaseTrace && s.kind === 1) as Span & {
      links?: { traceId: string; spanId: string }[]
    }
    expect(release.links).toEqual([expect.objectContaining({ traceId: traceOf(5), spanId: holdSpan.spanId })])
    expect(spans.find((s) => s.traceId === releaseTrace && s.kind === 3)?.spanId).toBe(releaseParent)
    // The status read: not recorded for its outcome.
    expect(spans.filter((s) => s.traceId === traceOf(6))).toEqual([])
  } finally {
    if (!closed) await tail.close()
    await picky.close()
  }
})

it('a tracer that records by sampling alone gathers nothing for a request it does not sample; one that may record it at its end does', async () => {
  const gathers = (alwaysRecord: ConstructorParameters<typeof Tracer>[0]['alwaysRecord']) => {
    const tracer = new Tracer({
      endpoint: 'http://127.0.0.1:9',
      headers: {},
      sample: 0,
      followAgentSampling: true,
      alwaysRecord,
      scheme: 'http',
      timeoutMs: 300,
      log: createLogger('silent'),
    })
    void tracer.close()
    const t = tracer.start(undefined)
    expect(t.sampled).toBe(false)
    return [t.gathering, t.start > 0]
  }
  expect(gathers(NOTHING_MORE)).toEqual([false, false])
  expect(gathers({ ...NOTHING_MORE, outcomes: ['denied'] })).toEqual([true, true])
  expect(gathers({ ...NOTHING_MORE, errors: true })).toEqual([true, true])
  expect(gathers({ ...NOTHING_MORE, slowerThanMs: 1_000 })).toEqual([true, true])
})

it("every span the collector received, from all the tests above, uses only the registry's attributes as the HTTP conventions require", () => {
  // Server, credential, Vault call, upstream call, hold and release spans, sampled by the agent or by Corridor.
  expect(new Set(spans.map((s) => s.kind))).toEqual(new Set([1, 2, 3]))
  expect(spans.flatMap((span) => semconvProblems(span, 'corridor.'))).toEqual([])
})
