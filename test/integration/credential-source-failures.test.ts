/**
 * Vault and an OAuth2 token endpoint over TLS, as production runs them, and what the audit record
 * says when either cannot be used. Vault's CA given with `vault.ca_file` is trusted and the
 * credential arrives; without it, and for a token endpoint whose certificate this process does not
 * trust, the handshake fails before anything is sent: the agent gets 503 credential_unavailable,
 * the audit record says which certificate was refused (`vault_certificate_rejected`,
 * `oauth2_certificate_rejected`), and nothing reaches the upstream. A token endpoint that answers
 * with a body over 64 KiB answered: `oauth2_invalid_response`, not unreachable.
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeCertificates, type Certificates } from '../helpers/certificates.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash, newCanary } from '../helpers/standard-policy.ts'
import { startVaultForCorridor, vaultConfigYaml, type VaultSetup } from '../helpers/vault-fixture.ts'

const KEY = 'cor_tls_sources_agent_0001'
const kvCanary = newCanary()
const clientSecret = newCanary()

let certs: Certificates
let setup: VaultSetup
let upstream: RecordingUpstream
let tokenServer: Server
let tokenUrl: string
/** A token endpoint on plain HTTP (loopback) whose token is too large to read. */
let oversizedTokenServer: ReturnType<typeof createHttpServer>
let oversizedTokenUrl: string
let tokenRequests = 0
let tokenHandshakesFailed = 0
const fixtures: CorridorFixture[] = []

beforeAll(async () => {
  certs = makeCertificates(mkdtempSync(join(tmpdir(), 'corridor-sources-tls-')))
  const tls = { cert: readFileSync(certs.cert), key: readFileSync(certs.key) }
  setup = await startVaultForCorridor({ tls })
  setup.vault.kvPut('kv', 'records/api', { api_key: kvCanary })
  upstream = await startRecordingUpstream()
  tokenServer = createServer(tls, (_req, res) => {
    tokenRequests++
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"access_token":"t","token_type":"Bearer"}')
  })
  tokenServer.on('tlsClientError', () => tokenHandshakesFailed++)
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r))
  tokenUrl = `https://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth/token`
  oversizedTokenServer = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ access_token: 'x'.repeat(70 * 1024), token_type: 'Bearer' }))
  })
  await new Promise<void>((r) => oversizedTokenServer.listen(0, '127.0.0.1', r))
  oversizedTokenUrl = `http://127.0.0.1:${(oversizedTokenServer.address() as AddressInfo).port}/oauth/token`
})

afterAll(async () => {
  for (const fx of fixtures) await fx.close()
  await upstream.close()
  for (const server of [tokenServer, oversizedTokenServer]) {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
  await setup.vault.stop()
})

/** A Corridor whose `kv` connector takes its credential from Vault and `oauth` from the token endpoint. */
async function corridor(vaultExtra: string, oauthTokenUrl = tokenUrl): Promise<CorridorFixture> {
  const fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: a, owner: t, tier: read-only, connectors: [kv, oauth], api_keys: [{ hash: "${hash(KEY)}" }] }\n`,
      connectors: `connectors:
  - id: kv
    owner: t
    upstream: ${upstream.url}/kv
    certified_until: 2099-01-01
    credential: { source: vault_kv, mount: kv, path: records/api, field: api_key, inject: { header: authorization, format: "Bearer {secret}" } }
    actions: [{ name: get, method: GET, path: /things, risk: read }]
  - id: oauth
    owner: t
    upstream: ${upstream.url}/oauth
    certified_until: 2099-01-01
    credential: { source: oauth2, token_url: "${oauthTokenUrl}", client_id: corridor, client_secret: { env: CLIENT_SECRET }, inject: { header: authorization, format: "Bearer {secret}" } }
    actions: [{ name: get, method: GET, path: /things, risk: read }]
`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
      extraConfig: vaultConfigYaml(setup, vaultExtra),
    },
    { CORRIDOR_SECRET_ID: setup.secretId, CLIENT_SECRET: clientSecret },
  )
  fixtures.push(fx)
  return fx
}

const get = (fx: CorridorFixture, connector: string) =>
  request(`${fx.corridor.agentUrl}/${connector}/things`, { headers: { authorization: `Bearer ${KEY}` } }).then(
    async (res) => ({ status: res.statusCode, body: await res.body.text() }),
  )

/** The agent's call was refused for want of a credential, the audit record says why, and nothing was forwarded. */
async function expectRefused(fx: CorridorFixture, connector: string, detail: string, secret: string): Promise<void> {
  const before = upstream.received.length
  const res = await get(fx, connector)
  expect(res.status).toBe(503)
  expect(JSON.parse(res.body)).toMatchObject({ code: 'credential_unavailable' })
  expect(upstream.received.length).toBe(before)
  expect(fx.auditRecords().at(-1)).toMatchObject({
    connector,
    error_code: 'credential_unavailable',
    error_detail: detail,
  })
  expect(fx.allOutput()).not.toContain(secret)
}

describe('credential sources over TLS, and answers Corridor will not read', () => {
  it('reads a Vault secret over HTTPS when vault.ca_file names Vault’s CA', async () => {
    expect(setup.vault.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const fx = await corridor(`  ca_file: ${JSON.stringify(certs.ca)}\n`)
    const before = upstream.received.length
    const res = await get(fx, 'kv')
    expect(res.status, res.body).toBe(200)
    expect(upstream.received.slice(before).map((r) => r.headers.authorization)).toEqual([`Bearer ${kvCanary}`])
  })

  it('refuses a Vault whose certificate does not verify: 503, the cause recorded, nothing forwarded', async () => {
    await expectRefused(await corridor(''), 'kv', 'vault_certificate_rejected', kvCanary)
  })

  it('refuses a token endpoint whose certificate does not verify: the client secret is never sent', async () => {
    const fx = await corridor(`  ca_file: ${JSON.stringify(certs.ca)}\n`)
    const handshakes = tokenHandshakesFailed
    await expectRefused(fx, 'oauth', 'oauth2_certificate_rejected', clientSecret)
    // The token endpoint saw a handshake fail and no request: the client secret went nowhere.
    await eventually(() => expect(tokenHandshakesFailed).toBeGreaterThan(handshakes))
    expect(tokenRequests).toBe(0)
  })

  it('records a token response too large to read as invalid, not as unreachable, and forwards nothing', async () => {
    await expectRefused(await corridor('', oversizedTokenUrl), 'oauth', 'oauth2_invalid_response', clientSecret)
  })
})
