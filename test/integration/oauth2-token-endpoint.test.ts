/**
 * What the audit record says when an OAuth2 token endpoint answers with something Corridor will
 * not read: a body over 64 KiB is `oauth2_invalid_response` (it answered; it is not unreachable),
 * and nothing reaches the upstream.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash, newCanary } from '../helpers/standard-policy.ts'

const KEY = 'cor_oauth2_endpoint_agent_0001'
const clientSecret = newCanary()
let upstream: RecordingUpstream
let tokenServer: Server
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  tokenServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ access_token: 'x'.repeat(70 * 1024), token_type: 'Bearer' }))
  })
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r))
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth/token`
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: a, owner: t, tier: read-only, connectors: [oauth], api_keys: [{ hash: "${hash(KEY)}" }] }\n`,
      connectors: `connectors:
  - id: oauth
    owner: t
    upstream: ${upstream.url}/oauth
    certified_until: 2099-01-01
    credential: { source: oauth2, token_url: "${tokenUrl}", client_id: corridor, client_secret: { env: CLIENT_SECRET }, inject: { header: authorization, format: "Bearer {secret}" } }
    actions: [{ name: get, method: GET, path: /things, risk: read }]
`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
    },
    { CLIENT_SECRET: clientSecret },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
  tokenServer.closeAllConnections()
  await new Promise<void>((r) => tokenServer.close(() => r()))
})

it('records a token response too large to read as invalid, not as unreachable, and forwards nothing', async () => {
  const res = await request(`${fx.corridor.agentUrl}/oauth/things`, { headers: { authorization: `Bearer ${KEY}` } })
  expect(res.statusCode).toBe(503)
  expect(await res.body.json()).toMatchObject({ code: 'credential_unavailable' })
  expect(upstream.received).toEqual([])
  expect(fx.auditRecords().at(-1)).toMatchObject({
    error_code: 'credential_unavailable',
    error_detail: 'oauth2_invalid_response',
  })
  expect(fx.allOutput()).not.toContain(clientSecret)
})
