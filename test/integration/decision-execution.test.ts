/**
 * Decision = execution, class by class, through a real Corridor and a recording upstream:
 * numbers written oddly, bracket and dot field names, framework overrides, lists, the agent's
 * key in unexpected places (including the Slack SDK's per-call token), and requests Node's own
 * parser refuses. Every refusal is problem+json with a stable code and exactly one audit record;
 * nothing refused reaches the upstream.
 */
import { WebClient } from '@slack/web-api'
import fc from 'fast-check'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'
import { secretNeedles } from '../../src/request/secret-needles.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - id: writer\n    owner: team-a\n    tier: transactional\n    connectors: [pay, mail, slack, lax]\n    api_keys: [{ hash: "${hash(AGENT_KEY)}" }]\n`,
      connectors: `connectors:
  - id: pay
    owner: team-a
    upstream: ${upstream.url}/pay
    certified_until: 2099-12-31
    credential: { source: env, env: PAY_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: refunds.create, method: POST, path: /refunds, risk: write }
      - { name: refunds.list, method: GET, path: /refunds, risk: read }
      - { name: refunds.delete, method: DELETE, path: "/refunds/{id}", risk: write }
      - { name: users.get, method: GET, path: "/users/{id}", risk: read }
  - id: mail
    owner: team-a
    upstream: ${upstream.url}/mail
    certified_until: 2099-12-31
    credential: { source: env, env: PAY_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: mail.send, method: POST, path: /send, risk: write }
  - id: slack
    owner: team-a
    upstream: ${upstream.url}/slack/api
    certified_until: 2099-12-31
    agent_key_fields: [token]
    credential: { source: env, env: PAY_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: chat.postMessage, method: POST, path: /chat.postMessage, risk: write }
  - id: lax
    owner: team-a
    upstream: ${upstream.url}/lax
    certified_until: 2099-12-31
    upstream_ignores: [method_override, matrix_params, body_on_get]
    credential: { source: env, env: PAY_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: things.get, method: GET, path: "/things/{id}", risk: read }
      - { name: things.create, method: POST, path: /things, risk: write }
`,
      policy: `version: 1
rules:
  - { id: refunds, effect: allow, match: { actions: [refunds.create, refunds.list, refunds.delete, users.get] } }
  - { id: big-refunds, effect: deny, reason: refunds over 5000 are not for agents, match: { actions: [refunds.create], body: { amount: { gt: 5000 } } } }
  - { id: big-lists, effect: deny, match: { actions: [refunds.list], query: { limit: { gt: 100 } } } }
  - { id: no-admin-role, effect: deny, match: { actions: [refunds.create], body: { metadata.role: admin } } }
  - { id: no-admin-user, effect: deny, match: { actions: [users.get], params: { id: admin } } }
  - { id: live-only, effect: deny, match: { actions: [refunds.create], headers: { x-dry-run: "false" } } }
  - { id: mail-internal, effect: allow, match: { actions: [mail.send], body: { "to.*.address": { all: { in: [a@corp.example, b@corp.example] } } } } }
  - { id: slack, effect: allow, match: { actions: [chat.postMessage] } }
  - { id: lax, effect: allow, match: { connectors: [lax] } }
`,
    },
    { PAY_TOKEN: 'pay-upstream-secret-0123456789' },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

beforeEach(() => {
  upstream.received.length = 0
})

interface Sent {
  status: number
  code: string | undefined
  requestId: string | undefined
  body: string
}

async function send(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Sent> {
  const res = await request(fx.corridor.agentUrl + path, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { authorization: `Bearer ${AGENT_KEY}`, ...init.headers },
    body: init.body,
  })
  const body = await res.body.text()
  const header = (name: string): string | undefined => {
    const v = res.headers[name]
    return Array.isArray(v) ? v[0] : v
  }
  return { status: res.statusCode, code: header('x-corridor-error'), requestId: header('x-corridor-request-id'), body }
}

const json = (body: unknown): { method: string; headers: Record<string, string>; body: string } => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
})
const form = (body: string): { method: string; headers: Record<string, string>; body: string } => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body,
})

describe('numbers are compared as every parser reads them', () => {
  // Every spelling below is read as more than 5000 by some common parser; none may be forwarded.
  const spellings = [
    '05001',
    '+5001',
    ' 5001',
    '5001\n',
    '5.001e3',
    '5e4',
    '0x1389',
    '5_001',
    '5001.5',
    '5001abc',
    '  +05001 ',
  ]

  it.each(spellings)('JSON string %j over the limit is never forwarded', async (text) => {
    const res = await send('/pay/refunds', json({ amount: text }))
    expect(res.status === 403 || res.status === 400).toBe(true)
    expect(upstream.received).toHaveLength(0)
  })

  it.each(spellings)('form field %j over the limit is never forwarded', async (text) => {
    const res = await send('/pay/refunds', form(`amount=${encodeURIComponent(text)}`))
    expect(res.status === 403 || res.status === 400).toBe(true)
    expect(upstream.received).toHaveLength(0)
  })

  it.each(spellings)('query value %j over the limit is never forwarded', async (text) => {
    const res = await send(
      `/pay/refunds?limit=${encodeURIComponent(text.replace('5001', '101').replace('5.001e3', '1.01e2'))}`,
    )
    expect(res.status === 403 || res.status === 400).toBe(true)
    expect(upstream.received).toHaveLength(0)
  })

  it('a list where a number is expected is refused, not skipped', async () => {
    expect((await send('/pay/refunds', json({ amount: [9000] }))).code).toBe('ambiguous_request')
    expect((await send('/pay/refunds', form('amount[]=9000'))).code).toBe('ambiguous_request')
    expect((await send('/pay/refunds', form('amount=1&amount=9000'))).code).toBe('ambiguous_request')
    expect(upstream.received).toHaveLength(0)
  })

  it('plain amounts under the limit still pass, in JSON and in forms', async () => {
    expect((await send('/pay/refunds', json({ amount: 4999 }))).status).toBe(200)
    expect((await send('/pay/refunds', form('amount=4999'))).status).toBe(200)
    expect((await send('/pay/refunds', json({ amount: '04999' }))).status).toBe(200)
    expect(upstream.received).toHaveLength(3)
  })

  it('property: no integer over the limit, in any spelling a parser accepts, is forwarded', async () => {
    const spelled = fc.tuple(
      fc.integer({ min: 5001, max: 10_000_000 }),
      fc.constantFrom('', '0', '00', '+', ' ', '+0'),
      fc.constantFrom('', ' ', '\n', '.0', '.9', 'x', 'e0'),
    )
    await fc.assert(
      fc.asyncProperty(spelled, fc.constantFrom('json', 'form'), async ([n, prefix, suffix], carrier) => {
        const text = `${prefix}${n}${suffix}`
        const res =
          carrier === 'json'
            ? await send('/pay/refunds', json({ amount: text }))
            : await send('/pay/refunds', form(`amount=${encodeURIComponent(text)}`))
        return res.status !== 200
      }),
      { numRuns: 150, seed: 42 },
    )
    expect(upstream.received).toHaveLength(0)
  })
})

describe('one field model for JSON, forms and the query', () => {
  it('a rule on metadata.role sees metadata[role] in a form, the JSON object and the dotted name', async () => {
    expect((await send('/pay/refunds', form('amount=1&metadata[role]=admin'))).status).toBe(403)
    expect((await send('/pay/refunds', form('amount=1&metadata%5Brole%5D=admin'))).status).toBe(403)
    expect((await send('/pay/refunds', form('amount=1&metadata.role=admin'))).status).toBe(403)
    expect((await send('/pay/refunds', json({ amount: 1, metadata: { role: 'admin' } }))).status).toBe(403)
    expect(upstream.received).toHaveLength(0)
    expect((await send('/pay/refunds', form('amount=1&metadata[role]=viewer'))).status).toBe(200)
  })

  it('names parsers nest differently are refused', async () => {
    for (const body of [
      'a[b]c=1',
      'items[1][sku]=x',
      'items[][sku]=x',
      'tags[]=a&tags[1]=b',
      'a=1&a[b]=2',
      '_x[=1',
      'toString=1',
      'x[a][b][c][d][e][f]=1',
    ]) {
      const res = await send('/pay/refunds', form(`amount=1&${body}`))
      expect([res.code, body]).toEqual(['ambiguous_request', body])
    }
    expect(upstream.received).toHaveLength(0)
  })

  it('forwards the form and the query re-encoded, never the agent bytes (Rack splits on ;, qs does not)', async () => {
    expect(
      (await send('/pay/refunds?limit=5;limit=500&expand[]=a', form('amount=1;metadata[role]=admin'))).status,
    ).toBe(200)
    const got = upstream.received[0]!
    expect(got.url).toBe('/pay/refunds?limit=5%3Blimit%3D500&expand%5B%5D=a')
    expect(got.body.toString()).toBe('amount=1%3Bmetadata%5Brole%5D%3Dadmin')
  })

  it('accepts the query characters real SDKs send raw ([ ] for Stripe, ^ for ServiceNow, JQL)', async () => {
    expect(
      (await send('/pay/refunds?created[gte]=1&expand[]=data.charge&q=priority=1^state!=7&jql=cf[10010]~"x"')).status,
    ).toBe(200)
    expect(upstream.received[0]!.url).toBe(
      '/pay/refunds?created%5Bgte%5D=1&expand%5B%5D=data.charge&q=priority%3D1%5Estate%21%3D7&jql=cf%5B10010%5D~%22x%22',
    )
  })
})

describe('lists are read whole', () => {
  it('an external address as the second recipient is not allowed by a rule that reads every recipient', async () => {
    expect(
      (await send('/mail/send', json({ to: [{ address: 'a@corp.example' }, { address: 'b@corp.example' }] }))).status,
    ).toBe(200)
    expect(
      (await send('/mail/send', json({ to: [{ address: 'a@corp.example' }, { address: 'x@evil.example' }] }))).status,
    ).toBe(403)
    expect((await send('/mail/send', json({ to: [] }))).status).toBe(403) // all over nothing allows nothing
    expect((await send('/mail/send', json({}))).status).toBe(403)
    expect(upstream.received).toHaveLength(1)
  })
})

describe('headers the policy read are the headers forwarded', () => {
  it('a duplicated header a rule reads is refused, not joined', async () => {
    const response = await rawRequest(
      fx.corridor.agentUrl,
      `POST /pay/refunds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${AGENT_KEY}\r\nContent-Type: application/json\r\nX-Dry-Run: true\r\nX-Dry-Run: false\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{"amount":1}`,
    )
    expect(statusOf(response)).toBe(400)
    expect(response).toContain('ambiguous_request')
    expect(upstream.received).toHaveLength(0)
  })

  it('X-Forwarded-Host is never rebuilt from the agent, nor passed from it', async () => {
    expect((await send('/pay/refunds?limit=1', { headers: { 'x-forwarded-host': 'evil.example' } })).status).toBe(200)
    expect(upstream.received[0]!.headers['x-forwarded-host']).toBeUndefined()
  })
})

describe('framework reinterpretation is refused unless the connector says its upstream does not do it', () => {
  it.each([
    ['_method in the query', '/pay/refunds?_method=DELETE', form('amount=1')],
    ['_method in a form', '/pay/refunds', form('amount=1&_method=DELETE')],
    ['_method in JSON', '/pay/refunds', json({ amount: 1, _method: 'DELETE' })],
    ['a matrix parameter', '/pay/users/admin;jsessionid=1', {}],
    ['an encoded matrix parameter', '/pay/users/admin%3Bx=1', {}],
    [
      'a body on GET',
      '/pay/refunds',
      { method: 'GET', headers: { 'content-type': 'application/json' }, body: '{"limit":1}' },
    ],
    [
      'a body on DELETE',
      '/pay/refunds/r1',
      { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: '{"a":1}' },
    ],
  ])('%s', async (_name, path, init) => {
    const res = await send(path, init)
    expect(res.status).toBe(400)
    expect(upstream.received).toHaveLength(0)
  })

  it('a connector whose upstream ignores them forwards them', async () => {
    expect((await send('/lax/things?_method=DELETE', form('a=1'))).status).toBe(200)
    expect((await send('/lax/things/x;v=1')).status).toBe(200)
    expect(
      (await send('/lax/things/x', { method: 'GET', headers: { 'content-type': 'application/json' }, body: '{"a":1}' }))
        .status,
    ).toBe(200)
    expect(upstream.received).toHaveLength(3)
  })
})

describe("the agent's key never reaches an upstream, a record or a log", () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  const places: [string, string, { method?: string; headers?: Record<string, string>; body?: string }][] = [
    ['X-Goog-Api-Key', '/pay/refunds?limit=1', { headers: { 'x-goog-api-key': AGENT_KEY } }],
    ['apikey', '/pay/refunds?limit=1', { headers: { apikey: AGENT_KEY } }],
    ['Ocp-Apim-Subscription-Key', '/pay/refunds?limit=1', { headers: { 'ocp-apim-subscription-key': AGENT_KEY } }],
    ['X-Authorization', '/pay/refunds?limit=1', { headers: { 'x-authorization': `Bearer ${AGENT_KEY}` } }],
    ['a custom header', '/pay/refunds?limit=1', { headers: { 'x-my-key': AGENT_KEY } }],
    ['Referer', '/pay/refunds?limit=1', { headers: { referer: `https://app.example/?key=${AGENT_KEY}` } }],
    ['base64 in a header', '/pay/refunds?limit=1', { headers: { 'x-blob': b64(`user:${AGENT_KEY}`) } }],
    ['query api_key', `/pay/refunds?limit=1&api_key=${AGENT_KEY}`, {}],
    [
      'query access_token, URL-encoded',
      `/pay/refunds?limit=1&access_token=${encodeURIComponent(AGENT_KEY).replace(/_/g, '%5F')}`,
      {},
    ],
    ['query key', `/pay/refunds?key=${AGENT_KEY}`, {}],
    ['the path', `/pay/users/${AGENT_KEY}`, {}],
    ['a JSON body', '/pay/refunds', json({ amount: 1, note: AGENT_KEY })],
    ['a JSON body, base64', '/pay/refunds', json({ amount: 1, blob: b64(`x${AGENT_KEY}`) })],
    ['a form body', '/pay/refunds', form(`amount=1&token=${AGENT_KEY}`)],
  ]

  it.each(places)('in %s', async (_where, path, init) => {
    const res = await send(path, init)
    if (res.status === 200) {
      // Stripped (a known credential header): then it must not have been forwarded.
      const got = upstream.received[0]!
      const forwarded = Buffer.concat([Buffer.from(got.url + JSON.stringify(got.rawHeaders)), got.body])
      for (const needle of secretNeedles(AGENT_KEY)) expect(forwarded.includes(needle)).toBe(false)
    } else {
      expect(res.code).toBe('agent_key_misplaced')
      expect(upstream.received).toHaveLength(0)
    }
    const output = Buffer.from(fx.allOutput())
    for (const needle of secretNeedles(AGENT_KEY)) expect(output.includes(needle)).toBe(false)
  })

  it('a key or token in a URL Corridor refuses before it knows the agent never reaches the audit trail', async () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3cml0ZXIifQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu'
    // Unknown connector and an invalid path: refused before identity, so the raw target is what gets recorded.
    expect((await send(`/nowhere/x?api_key=${AGENT_KEY}&token=${jwt}`)).code).toBe('connector_unknown')
    expect((await send(`/pay/x%2Fy?api_key=${AGENT_KEY}&token=${jwt}`)).code).toBe('invalid_path')
    // Every other kind of key Corridor mints, too (approver, operator, auditor).
    const others = ['cap_canary_approver_0001', 'cop_canary_operator_0001', 'cau_canary_auditor_0001']
    expect((await send(`/nowhere/y?a=${others[0]}&b=${others[1]}&c=${others[2]}`)).code).toBe('connector_unknown')
    const trail = Buffer.from(fx.allOutput())
    for (const needle of [...secretNeedles(AGENT_KEY), Buffer.from(jwt), ...others.map((k) => Buffer.from(k))])
      expect(trail.includes(needle)).toBe(false)
    expect(fx.auditRecords().some((r) => r.path.includes('[redacted-jwt]'))).toBe(true)
    expect(fx.auditRecords().some((r) => r.path.includes('cau_[redacted]'))).toBe(true)
  })

  it("the Slack SDK's per-call token is removed where the connector declares it, and the call goes through", async () => {
    upstream.received.length = 0
    const slack = new WebClient(AGENT_KEY, {
      slackApiUrl: `${fx.corridor.agentUrl}/slack/`,
      retryConfig: { retries: 0 },
    })
    await slack.chat.postMessage({ channel: 'C1', text: 'hello', token: AGENT_KEY }).catch(() => undefined)
    expect(upstream.received).toHaveLength(1)
    const got = upstream.received[0]!
    expect(new URLSearchParams(got.body.toString()).get('channel')).toBe('C1')
    expect(new URLSearchParams(got.body.toString()).has('token')).toBe(false)
    const forwarded = Buffer.concat([Buffer.from(got.url + JSON.stringify(got.rawHeaders)), got.body])
    for (const needle of secretNeedles(AGENT_KEY)) expect(forwarded.includes(needle)).toBe(false)
  })
})

describe("requests Node's parser refuses are answered and audited once", () => {
  const auth = `Authorization: Bearer ${AGENT_KEY}\r\n`
  const vectors: [string, string][] = [
    [
      'CL + TE',
      `POST /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'duplicate Content-Length',
      `POST /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
    ],
    [
      'obfuscated Transfer-Encoding',
      `POST /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
    ],
    ['bare LF', `GET /pay/refunds HTTP/1.1\nHost: x\n${auth}\n`],
    ['obs-fold', `GET /pay/refunds HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n${auth}\r\n`],
    ['NUL in a header', `GET /pay/refunds HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n${auth}\r\n`],
    ['lower-case method', `get /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
    ['HTTP/1.2', `GET /pay/refunds HTTP/1.2\r\nHost: x\r\n${auth}\r\n`],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    [
      'header bytes over the cap',
      `GET /pay/refunds HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n${auth}\r\n`,
    ],
    ['missing Host', `GET /pay/refunds HTTP/1.1\r\n${auth}Connection: close\r\n\r\n`],
    [
      'Expect other than 100-continue',
      `GET /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}Expect: something\r\nConnection: close\r\n\r\n`,
    ],
    ['CONNECT', `CONNECT upstream.example:443 HTTP/1.1\r\nHost: upstream.example:443\r\n${auth}\r\n`],
  ]

  it.each(vectors)('%s', async (_name, payload) => {
    const before = fx.auditRecords().length
    const response = await rawRequest(fx.corridor.agentUrl, payload, 2_000)
    expect(statusOf(response)).toBeGreaterThanOrEqual(400)
    expect(response).toMatch(/x-corridor-error: [a-z_]+/)
    expect(response).toContain('"code":')
    await eventually(() => expect(fx.auditRecords().length).toBeGreaterThan(before))
    await new Promise((r) => setTimeout(r, 50)) // a second record, if one were written, would come now
    const added = fx.auditRecords().slice(before)
    expect(added).toHaveLength(1)
    expect(added[0]!.outcome).toBe('rejected')
    expect(added[0]!.error_code).not.toBeNull()
    expect(upstream.received).toHaveLength(0)
  })

  it('a broken chunk inside a body is audited as a malformed request, not as the agent leaving', async () => {
    const before = fx.auditRecords().length
    const started = Date.now()
    await rawRequest(
      fx.corridor.agentUrl,
      `POST /pay/refunds HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"amo\r\nZZ\r\n`,
      10_000,
    )
    // The connection is closed at once (framing lost), not left to the request timeout.
    expect(Date.now() - started).toBeLessThan(5_000)
    await eventually(() => expect(fx.auditRecords().length).toBeGreaterThan(before))
    await new Promise((r) => setTimeout(r, 50)) // a second record, if one were written, would come now
    const added = fx.auditRecords().slice(before)
    expect(added).toHaveLength(1)
    expect(added[0]).toMatchObject({ outcome: 'rejected', error_code: 'bad_request', status: 400 })
    expect(upstream.received).toHaveLength(0)
  })
})
