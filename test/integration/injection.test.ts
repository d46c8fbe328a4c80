import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash, newCanary } from '../helpers/standard-policy.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
const canary = newCanary()

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  const connector = (id: string, inject: string) => `  - id: ${id}
    owner: t
    upstream: ${upstream.url}
    certified_until: 2099-01-01
    credential: { source: env, env: TOKEN, inject: ${inject} }
    actions: [{ name: get, method: GET, path: /things, risk: read }]
`
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: a, owner: t, tier: read-only, connectors: [hdr, qry, basic], api_keys: [{ hash: "${hash(AGENT_KEY)}" }] }\n`,
      connectors: `connectors:\n${connector('hdr', '{ header: x-service-key }')}${connector('qry', '{ query: api_key }')}${connector('basic', '{ basic: { username: bot, password: "{secret}" } }')}`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
    },
    { TOKEN: canary },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
  expect(fx.allOutput()).not.toContain(canary)
})

const get = (path: string, headers: Record<string, string> = {}) =>
  request(fx.corridor.agentUrl + path, { headers: { authorization: `Bearer ${AGENT_KEY}`, ...headers } })

describe('the injected credential is the only one the upstream sees', () => {
  it('drops an agent-sent copy of the header the credential goes into', async () => {
    const res = await get('/hdr/things', { 'x-service-key': 'agent-chosen-key' })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    const seen = upstream.received.at(-1)!
    expect(seen.rawHeaders.filter((h) => h.toLowerCase() === 'x-service-key')).toHaveLength(1)
    expect(seen.headers['x-service-key']).toBe(canary)
  })

  it('refuses an agent-sent copy of the query parameter the credential goes into', async () => {
    const before = upstream.received.length
    const res = await get('/qry/things?api_key=agent-chosen-key')
    expect(res.statusCode).toBe(400)
    expect(((await res.body.json()) as { code: string }).code).toBe('ambiguous_request')
    expect(upstream.received.length).toBe(before)
    const ok = await get('/qry/things?x=1')
    await ok.body.dump()
    expect(upstream.received.at(-1)!.url).toBe(`/things?x=1&api_key=${encodeURIComponent(canary)}`)
  })

  it("places Basic credentials and drops the agent's Authorization", async () => {
    const res = await get('/basic/things')
    await res.body.dump()
    expect(upstream.received.at(-1)!.headers.authorization).toBe(
      'Basic ' + Buffer.from(`bot:${canary}`).toString('base64'),
    )
  })

  it('keeps a credential placed in the query out of the audit record', async () => {
    const res = await get('/qry/things?x=2')
    const requestId = res.headers['x-corridor-request-id'] as string
    await res.body.dump()
    // The record is written when the response closes, a moment after the body ends.
    await eventually(() => expect(fx.auditRecords().find((r) => r.request_id === requestId)?.query).toBe('x=2'))
  })
})
