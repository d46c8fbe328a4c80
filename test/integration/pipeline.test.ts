import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { AGENT_KEY, READER_KEY, SUSPENDED_KEY, newCanary, standardFiles } from '../helpers/standard-policy.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
const canary = newCanary()

beforeAll(async () => {
  upstream = await startRecordingUpstream((req, res) => {
    if (req.url.startsWith('/base/slow')) return void setTimeout(() => res.end('late'), 3_000)
    if (req.url.startsWith('/base/redirect')) {
      res.writeHead(302, { location: 'http://127.0.0.1:1/elsewhere' })
      return void res.end()
    }
    res.writeHead(200, {
      'content-type': 'application/json',
      'set-cookie': 'upstream=1',
      connection: 'x-upstream-hop',
      'x-upstream-hop': '1',
      'x-real': 'yes',
    })
    res.end(JSON.stringify({ ok: true }))
  })
  fx = await startCorridorFixture(
    { ...standardFiles(upstream.url), extraConfig: 'approvals: { wait: 0s }\n' },
    { SVC_TOKEN: canary },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
  // The canary may appear only in what the upstream received, nowhere Corridor wrote.
  expect(fx.allOutput()).not.toContain(canary)
})

beforeEach(() => {
  upstream.received.length = 0
})

const call = (path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  request(fx.corridor.agentUrl + path, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { authorization: `Bearer ${AGENT_KEY}`, ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  })

async function recordFor(requestId: string) {
  let found
  await eventually(() => {
    const matches = fx.auditRecords().filter((r) => r.request_id === requestId)
    expect(matches).toHaveLength(1)
    found = matches[0]
  })
  return found as unknown as import('../../src/audit/record.ts').AuditRecord
}

describe('allowed requests', () => {
  it('forwards to the configured upstream with the agent credential swapped for the connector credential', async () => {
    const res = await call('/svc/items?limit=5', {
      headers: {
        cookie: 'session=agent-cookie',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        forwarded: 'for=6.6.6.6',
        'x-corridor-intent': 'list items for the weekly report',
        'x-corridor-task-id': 'task-42',
        'x-custom': 'kept',
      },
    })
    expect(res.statusCode).toBe(200)
    expect(await res.body.json()).toEqual({ ok: true })
    const requestId = res.headers['x-corridor-request-id'] as string
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect(res.headers['set-cookie']).toBeUndefined()
    expect(res.headers['x-upstream-hop']).toBeUndefined()
    expect(res.headers['x-real']).toBe('yes')

    expect(upstream.received).toHaveLength(1)
    const seen = upstream.received[0]!
    expect(seen.url).toBe('/base/items?limit=5')
    expect(seen.headers.authorization).toBe(`Bearer ${canary}`)
    expect(seen.headers.cookie).toBeUndefined()
    expect(seen.headers['proxy-authorization']).toBeUndefined()
    expect(seen.headers.forwarded).toBeUndefined()
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(seen.headers['x-forwarded-host']).not.toBe('evil.example')
    expect(seen.headers['x-corridor-intent']).toBeUndefined()
    expect(seen.headers['x-custom']).toBe('kept')
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(AGENT_KEY)

    const record = await recordFor(requestId)
    expect(record).toMatchObject({
      agent: 'writer',
      owner: 'team-a',
      tier: 'bounded-write',
      connector: 'svc',
      action: 'items.list',
      risk: 'read',
      method: 'GET',
      path: '/items',
      query: 'limit=5',
      decision: 'allow',
      rule: 'read-all',
      outcome: 'forwarded',
      status: 200,
      upstream_status: 200,
      intent: 'list items for the weekly report',
      task_id: 'task-42',
      credential: { reference: 'env:SVC_TOKEN', lease_id: null },
    })
    expect(record.policy_version).toMatch(/^sha256:[0-9a-f]{16}$/)
    expect(record.bytes_out).toBe(11)
  })

  it('reads the agent key from a connector-named header and from Basic auth, and strips both', async () => {
    const a = await request(fx.corridor.agentUrl + '/svc/items', { headers: { 'x-api-key': AGENT_KEY } })
    expect(a.statusCode).toBe(200)
    await a.body.dump()
    const b = await request(fx.corridor.agentUrl + '/svc/items', {
      headers: { authorization: 'Basic ' + Buffer.from(`${AGENT_KEY}:`).toString('base64') },
    })
    expect(b.statusCode).toBe(200)
    await b.body.dump()
    for (const seen of upstream.received) {
      expect(seen.headers['x-api-key']).toBeUndefined()
      expect(seen.headers.authorization).toBe(`Bearer ${canary}`)
    }
  })

  it('routes by Host for SDKs that take only a host name', async () => {
    const res = await request(fx.corridor.agentUrl + '/items/7', {
      headers: { host: 'svc.corridor.test', authorization: `Bearer ${AGENT_KEY}` },
    })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    expect(upstream.received[0]!.url).toBe('/base/items/7')
  })

  it('forwards the canonical path, the same one the policy decided on', async () => {
    const res = await call('/svc/x/..//items/%61b%7e')
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    expect(upstream.received[0]!.url).toBe('/base/items/ab~')
    const record = await recordFor(res.headers['x-corridor-request-id'] as string)
    expect(record.path).toBe('/items/ab~')
    expect(record.action).toBe('items.get')
  })

  it('records shadow rules without letting them change the outcome', async () => {
    const res = await call('/svc/items?limit=500')
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    const record = await recordFor(res.headers['x-corridor-request-id'] as string)
    expect(record.shadow).toEqual([{ rule: 'report-large-lists', effect: 'deny' }])
  })

  it('returns redirects to the agent instead of following them', async () => {
    const res = await call('/svc/redirect')
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe('http://127.0.0.1:1/elsewhere')
    await res.body.dump()
    expect(upstream.received).toHaveLength(1)
  })
})

describe('refusals carry problem+json with a stable code and are audited', () => {
  const cases: [string, () => Promise<Awaited<ReturnType<typeof call>>>, number, string, Record<string, unknown>][] = [
    [
      'no credential',
      () => request(fx.corridor.agentUrl + '/svc/items'),
      401,
      'identity_missing',
      { outcome: 'rejected' },
    ],
    [
      'unknown key',
      () => call('/svc/items', { headers: { authorization: 'Bearer cor_not_registered' } }),
      401,
      'identity_invalid',
      {},
    ],
    [
      'suspended agent',
      () => call('/svc/items', { headers: { authorization: `Bearer ${SUSPENDED_KEY}` } }),
      403,
      'agent_suspended',
      { limiting_factor: 'agent_status', outcome: 'denied' },
    ],
    [
      'tier caps risk',
      () =>
        call('/svc/items', {
          method: 'POST',
          headers: { authorization: `Bearer ${READER_KEY}`, 'content-type': 'application/json' },
          body: '{"qty":1}',
        }),
      403,
      'policy_denied',
      { limiting_factor: 'agent_tier', decision: 'deny' },
    ],
    [
      'explicit deny rule',
      () => call('/svc/items/secret'),
      403,
      'policy_denied',
      { rule: 'no-secret-items', reason: 'secret items are off limits', limiting_factor: 'policy_rule' },
    ],
    ['undeclared action', () => call('/svc/admin'), 403, 'policy_denied', { limiting_factor: 'connector_scope' }],
    [
      'privileged action over tier',
      () => call('/svc/items/1', { method: 'DELETE' }),
      403,
      'policy_denied',
      { limiting_factor: 'agent_tier' },
    ],
    [
      'held for approval',
      () => call('/svc/items', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"qty":50}' }),
      503,
      'approval_pending',
      { decision: 'require_approval', outcome: 'held', approvers: ['leads'] },
    ],
    ['unknown connector', () => call('/nowhere/items'), 404, 'connector_unknown', {}],
    ['encoded slash', () => call('/svc/items/a%2fb'), 400, 'invalid_path', {}],
    [
      'duplicate JSON keys',
      () =>
        call('/svc/items', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"qty":1,"qty":100}',
        }),
      400,
      'invalid_json',
      {},
    ],
    [
      'JSON too deep',
      () =>
        call('/svc/items', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"a":'.repeat(20) + '1' + '}'.repeat(20),
        }),
      400,
      'json_too_deep',
      {},
    ],
    [
      'body too large',
      () =>
        call('/svc/items', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ qty: 1, pad: 'x'.repeat(5000) }),
        }),
      413,
      'body_too_large',
      {},
    ],
    [
      'body rule on a non-JSON body',
      () => call('/svc/items', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'qty=1' }),
      415,
      'unsupported_media_type',
      {},
    ],
    [
      'compressed body',
      () =>
        call('/svc/items', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
          body: 'xx',
        }),
      415,
      'unsupported_media_type',
      {},
    ],
    [
      'method override',
      () => call('/svc/items', { headers: { 'x-http-method-override': 'DELETE' } }),
      400,
      'ambiguous_request',
      {},
    ],
    [
      'unsafe number in a policy field',
      () =>
        call('/svc/items', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"qty":1e400}' }),
      400,
      'invalid_json',
      {},
    ],
    [
      'two agent credentials',
      () => call('/svc/items', { headers: { 'x-api-key': READER_KEY } }),
      401,
      'identity_invalid',
      {},
    ],
  ]

  for (const [name, send, status, code, recordFields] of cases) {
    it(name, async () => {
      const res = await send()
      expect(res.statusCode).toBe(status)
      expect(res.headers['content-type']).toBe('application/problem+json')
      expect(res.headers['x-corridor-error']).toBe(code)
      const body = (await res.body.json()) as Record<string, unknown>
      expect(body).toMatchObject({ status, code, request_id: res.headers['x-corridor-request-id'] })
      expect(body.type).toBe(`/_corridor/errors#${code}`)
      expect(JSON.stringify(body)).not.toContain(canary)
      expect(upstream.received).toHaveLength(0)
      const record = await recordFor(body.request_id as string)
      expect(record).toMatchObject({ status, error_code: code, ...recordFields })
    })
  }

  it("a problem's type resolves, on the Corridor that answered, to that code's section of the error reference", async () => {
    const res = await call('/svc/items/secret')
    const body = (await res.body.json()) as { type: string; request_id: string }
    const page = await request(new URL(body.type, fx.corridor.agentUrl + '/svc/items/secret'))
    const html = await page.body.text()
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(html).toContain('<section id="policy_denied">')
    const reference = await recordFor(page.headers['x-corridor-request-id'] as string)
    expect(reference).toMatchObject({ outcome: 'served', status: 200 })
  })

  it('names the rule, reason and limiting factor so an agent can correct itself', async () => {
    const res = await call('/svc/items/secret')
    expect(await res.body.json()).toMatchObject({
      rule: 'no-secret-items',
      reason: 'secret items are off limits',
      limiting_factor: 'policy_rule',
    })
  })
})

describe('ambiguous framing is refused before it reaches policy', () => {
  const host = 'Host: 127.0.0.1\r\n'
  const auth = `Authorization: Bearer ${AGENT_KEY}\r\n`
  const cases: [string, string, number][] = [
    ['two Host headers', `GET /svc/items HTTP/1.1\r\n${host}Host: evil.example\r\n${auth}\r\n`, 400],
    ['absolute-form target', `GET http://evil.example/svc/items HTTP/1.1\r\n${host}${auth}\r\n`, 400],
    ['protocol-relative target', `GET //evil.example/svc/items HTTP/1.1\r\n${host}${auth}\r\n`, 400],
    ['fragment in target', `GET /svc/items#frag HTTP/1.1\r\n${host}${auth}\r\n`, 400],
    ['backslash in target', `GET /svc\\items HTTP/1.1\r\n${host}${auth}\r\n`, 400],
    [
      'HTTP/1.0 with chunked framing',
      `POST /svc/items HTTP/1.0\r\n${host}${auth}Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n9\r\n{"qty":1}\r\n0\r\n\r\n`,
      400,
    ],
    [
      'Content-Length with Transfer-Encoding',
      `POST /svc/items HTTP/1.1\r\n${host}${auth}Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{"qty":1}\r\n0\r\n\r\n`,
      400,
    ],
    ['two Authorization headers', `GET /svc/items HTTP/1.1\r\n${host}${auth}Authorization: Bearer other\r\n\r\n`, 400],
    [
      'too many headers',
      `GET /svc/items HTTP/1.1\r\n${host}${auth}${Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`,
      431,
    ],
    ['climbing above the root', `GET /svc/../../etc/passwd HTTP/1.1\r\n${host}${auth}\r\n`, 400],
    [
      'Connection naming Authorization',
      `GET /svc/items HTTP/1.1\r\n${host}${auth}Connection: authorization\r\n\r\n`,
      400,
    ],
    ['asterisk-form target', `OPTIONS * HTTP/1.1\r\n${host}${auth}\r\n`, 400],
  ]
  for (const [name, payload, status] of cases) {
    it(name, async () => {
      const response = await rawRequest(fx.corridor.agentUrl, payload, 1_500)
      expect(statusOf(response)).toBe(status)
      expect(upstream.received).toHaveLength(0)
    })
  }

  it('refuses a Connection header naming an end-to-end header (it would be removed after the policy read it)', async () => {
    const response = await rawRequest(
      fx.corridor.agentUrl,
      `GET /svc/items HTTP/1.1\r\n${host}${auth}Connection: x-dry-run\r\nX-Dry-Run: true\r\n\r\n`,
      500,
    )
    expect(statusOf(response)).toBe(400)
    expect(response).toContain('ambiguous_request')
    expect(upstream.received).toHaveLength(0)
  })

  it('writes an audit record for refusals Corridor itself answers', async () => {
    const response = await rawRequest(
      fx.corridor.agentUrl,
      `GET /svc/items HTTP/1.1\r\n${host}Host: evil.example\r\n${auth}\r\n`,
      1_500,
    )
    const requestId = /x-corridor-request-id: ([0-9a-f-]+)/i.exec(response)?.[1]
    expect(requestId).toBeDefined()
    expect(await recordFor(requestId!)).toMatchObject({
      error_code: 'ambiguous_request',
      outcome: 'rejected',
      status: 400,
    })
  })
})

describe('upstream failures', () => {
  it('answers 504 when the upstream does not answer in time, and audits it', async () => {
    const started = Date.now()
    const res = await call('/svc/slow')
    expect(res.statusCode).toBe(504)
    expect(Date.now() - started).toBeLessThan(2_900)
    const body = (await res.body.json()) as { code: string; request_id: string }
    expect(body.code).toBe('upstream_timeout')
    expect(await recordFor(body.request_id)).toMatchObject({ outcome: 'upstream_timeout', status: 504 })
  })
})
