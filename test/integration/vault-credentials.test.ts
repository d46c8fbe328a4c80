/**
 * Each Vault credential kind end to end: Corridor logs in with AppRole, obtains the credential,
 * injects it, and a real upstream checks it against Vault. Also: caching per scope, one Vault
 * call for concurrent requests, per-request leases revoked when the response ends, renewal,
 * OAuth2 client credentials with the client secret from Vault, and revocation at shutdown.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import type { RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash, newCanary } from '../helpers/standard-policy.ts'
import {
  startCheckingUpstream,
  startVaultForCorridor,
  vaultConfigYaml,
  type CheckedCall,
  type VaultSetup,
} from '../helpers/vault-fixture.ts'

const KEY_A = 'cor_vault_agent_a_0001'
const KEY_B = 'cor_vault_agent_b_0002'
const KEY_C = 'cor_vault_agent_c_0003'
/** Used only by the renewal test, so that its lease's age is that test's own. */
const KEY_D = 'cor_vault_agent_d_0004'
const kvCanary = newCanary()
const oauthSecretCanary = newCanary()
const oauthTokenCanary = newCanary()

let setup: VaultSetup
let upstream: RecordingUpstream & { verdicts: CheckedCall[] }
let fx: CorridorFixture
let tokenServer: Server
const tokenRequests: { authorization: string; body: string }[] = []

beforeAll(async () => {
  setup = await startVaultForCorridor({ dbTtlSec: 6, dbMaxTtlSec: 600 })
  setup.vault.kvPut('kv', 'records/api', { api_key: kvCanary, note: 'multi\nline is left out' })
  setup.vault.kvPut('kv', 'oauth/client', { client_secret: oauthSecretCanary })
  upstream = await startCheckingUpstream(setup, [kvCanary, oauthTokenCanary])

  tokenServer = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      tokenRequests.push({ authorization: String(req.headers.authorization ?? ''), body })
      const expected = 'Basic ' + Buffer.from(`corridor-client:${oauthSecretCanary}`).toString('base64')
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_client' }))
        return
      }
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ access_token: oauthTokenCanary, token_type: 'Bearer', expires_in: 3600 }))
    })
  })
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r))
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth/token`

  const connector = (
    id: string,
    credential: string,
    actions = '[{ name: get, method: GET, path: /things, risk: read }, { name: write, method: POST, path: /things, risk: write, lease: per_request }]',
  ) => `  - id: ${id}
    owner: t
    upstream: ${upstream.url}/${id}
    certified_until: 2099-01-01
    credential:
${credential}
    actions: ${actions}
`
  fx = await startCorridorFixture(
    {
      agents: `agents:
  - { id: a, owner: t, tier: bounded-write, connectors: [kv, db, tok, oidc, oauth], api_keys: [{ hash: "${hash(KEY_A)}" }] }
  - { id: b, owner: t, tier: bounded-write, connectors: [kv, db, tok, oidc, oauth], api_keys: [{ hash: "${hash(KEY_B)}" }] }
  - { id: c, owner: t, tier: bounded-write, connectors: [kv, db, tok, oidc, oauth], api_keys: [{ hash: "${hash(KEY_C)}" }] }
  - { id: d, owner: t, tier: bounded-write, connectors: [db], api_keys: [{ hash: "${hash(KEY_D)}" }] }
`,
      connectors: `connectors:
${connector('kv', '      source: vault_kv\n      mount: kv\n      path: records/api\n      field: api_key\n      cache: 60s\n      inject: { header: authorization, format: "Bearer {secret}" }')}${connector('db', '      source: vault_dynamic\n      path: database/creds/app\n      scope: agent\n      inject: { basic: { username: "{username}", password: "{password}" } }')}${connector('tok', '      source: vault_token\n      role: corridor-minted\n      policies: [records-read]\n      ttl: 60s\n      scope: agent\n      inject: { header: x-vault-token }')}${connector('oidc', '      source: vault_identity\n      role: upstream\n      inject: { header: authorization, format: "Bearer {secret}" }')}${connector('oauth', `      source: oauth2\n      token_url: ${tokenUrl}\n      client_id: corridor-client\n      client_secret: { vault_kv: { mount: kv, path: oauth/client, field: client_secret } }\n      scopes: [records.read]\n      inject: { header: authorization, format: "Bearer {secret}" }`)}`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
      extraConfig: vaultConfigYaml(setup),
    },
    { CORRIDOR_SECRET_ID: setup.secretId },
  )
})

let closed = false
afterAll(async () => {
  if (!closed) await fx.close()
  await upstream.close()
  await new Promise<void>((r) => tokenServer.close(() => r()))
  await setup.vault.stop()
})

const send = (key: string, path: string, method: 'GET' | 'POST' = 'GET') =>
  request(fx.corridor.agentUrl + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    body: method === 'POST' ? '{"x":1}' : undefined,
  })

async function ok(key: string, path: string, method: 'GET' | 'POST' = 'GET'): Promise<void> {
  const res = await send(key, path, method)
  const text = await res.body.text()
  expect(res.statusCode, text).toBe(200)
  expect(JSON.parse(text)).toEqual({ verdict: 'live' })
}

const records = (connector: string) => fx.auditRecords().filter((r) => r.connector === connector)

describe('Vault credential kinds through Corridor', () => {
  it('KV v2: the secret field is injected, cached, and audited by reference and version only', async () => {
    const before = setup.vault.callCount('kv/data/records')
    await ok(KEY_A, '/kv/things')
    await ok(KEY_B, '/kv/things')
    await ok(KEY_A, '/kv/things')
    expect(setup.vault.callCount('kv/data/records') - before).toBe(1)
    await eventually(() => expect(records('kv')).toHaveLength(3))
    expect(records('kv')[0]?.credential).toEqual({ reference: 'vault:kv/records/api@v1', lease_id: null })
  })

  it('dynamic secrets: username and password fill the Basic template; a lease per agent; the lease id is audited', async () => {
    await ok(KEY_A, '/db/things')
    await ok(KEY_A, '/db/things')
    await ok(KEY_B, '/db/things')
    const users = upstream.received
      .filter((r) => r.url.startsWith('/db/'))
      .map((r) => Buffer.from(String(r.headers.authorization).slice(6), 'base64').toString().split(':')[0])
    expect(users[0]).toMatch(/^v-token-app-/)
    expect(users[0]).toBe(users[1])
    expect(users[2]).not.toBe(users[0])
    await eventually(() => expect(records('db')).toHaveLength(3))
    const leaseIds = records('db').map((r) => r.credential?.lease_id)
    expect(leaseIds[0]).toMatch(/^database\/creds\/app\/[A-Za-z0-9]{24}$/)
    expect(leaseIds[1]).toBe(leaseIds[0])
    expect(leaseIds[2]).not.toBe(leaseIds[0])
    expect(setup.vault.liveLeases('database/creds/app').map((l) => l.id)).toEqual(
      expect.arrayContaining([leaseIds[0], leaseIds[2]]),
    )
  })

  it('concurrent requests for one scope share a single Vault call', async () => {
    const before = setup.vault.callCount('database/creds/app')
    await Promise.all(Array.from({ length: 20 }, () => ok(KEY_C, '/db/things')))
    expect(setup.vault.callCount('database/creds/app') - before).toBe(1)
  })

  it('a per-request action gets a fresh lease after the decision, revoked when the response ends', async () => {
    const before = setup.vault.callCount('database/creds/app')
    await ok(KEY_A, '/db/things', 'POST')
    expect(setup.vault.callCount('database/creds/app') - before).toBe(1)
    await eventually(() => expect(records('db').filter((r) => r.method === 'POST')).toHaveLength(1))
    const leaseId = records('db').find((r) => r.method === 'POST')?.credential?.lease_id
    expect(leaseId).toMatch(/^database\/creds\/app\//)
    await eventually(() => expect(setup.vault.liveLeases('database/creds/app').map((l) => l.id)).not.toContain(leaseId))
    // The shared lease of the same agent is untouched.
    await ok(KEY_A, '/db/things')
  })

  it('renewable leases are renewed in the background once half their life has passed', async () => {
    // A lease of the test's own: the app role's leases last 6 s, renewed from 3 s, replaced from 5 s.
    await ok(KEY_D, '/db/things')
    const issued = performance.now()
    await eventually(() => expect(records('db').filter((r) => r.agent === 'd')).toHaveLength(1))
    const leaseBefore = records('db').find((r) => r.agent === 'd')?.credential?.lease_id
    expect(leaseBefore).toMatch(/^database\/creds\/app\//)
    const renewBefore = setup.vault.callCount('sys/leases/renew')
    await new Promise((r) => setTimeout(r, 3_300 - (performance.now() - issued)))
    await ok(KEY_D, '/db/things')
    await eventually(() => expect(setup.vault.callCount('sys/leases/renew') - renewBefore).toBeGreaterThanOrEqual(1))
    await ok(KEY_D, '/db/things')
    // Renewed, not replaced: every request kept the one lease.
    await eventually(() => expect(records('db').filter((r) => r.agent === 'd')).toHaveLength(3))
    expect(
      new Set(
        records('db')
          .filter((r) => r.agent === 'd')
          .map((r) => r.credential?.lease_id),
      ),
    ).toEqual(new Set([leaseBefore]))
  })

  it('Vault tokens are minted per agent with exactly the configured policies', async () => {
    await ok(KEY_A, '/tok/things')
    const token = String(upstream.received.filter((r) => r.url.startsWith('/tok/')).at(-1)?.headers['x-vault-token'])
    const lookup = await fetch(`${setup.vault.address}/v1/auth/token/lookup-self`, {
      headers: { 'x-vault-token': token },
    })
    const data = ((await lookup.json()) as { data: { policies: string[]; meta: Record<string, string> } }).data
    expect(data.policies).toEqual(['records-read'])
    expect(data.meta).toEqual({ corridor_connector: 'tok', corridor_agent: 'a' })
    await eventually(() => expect(records('tok').at(-1)?.credential?.lease_id).toMatch(/^accessor:/))
  })

  it('identity tokens: the upstream verifies the JWT against Vault’s JWKS', async () => {
    await ok(KEY_A, '/oidc/things')
    await ok(KEY_B, '/oidc/things')
    expect(setup.vault.callCount('identity/oidc/token')).toBe(1)
  })

  it('OAuth2 client credentials: client secret from Vault KV, token cached until expiry', async () => {
    await ok(KEY_A, '/oauth/things')
    await ok(KEY_B, '/oauth/things')
    expect(tokenRequests).toHaveLength(1)
    expect(new URLSearchParams(tokenRequests[0]?.body).get('grant_type')).toBe('client_credentials')
    expect(new URLSearchParams(tokenRequests[0]?.body).get('scope')).toBe('records.read')
    await eventually(() =>
      expect(records('oauth').at(-1)?.credential?.reference).toMatch(/^oauth2:127\.0\.0\.1:\d+\/corridor-client$/),
    )
  })

  it('no secret reached the operational log or the audit trail, and nothing unchecked reached the upstream', async () => {
    const output = fx.allOutput()
    for (const canary of [kvCanary, oauthSecretCanary, oauthTokenCanary]) expect(output).not.toContain(canary)
    for (const r of upstream.received) {
      const auth = String(r.headers.authorization ?? r.headers['x-vault-token'] ?? '')
      const secret = auth.startsWith('Basic ')
        ? (Buffer.from(auth.slice(6), 'base64').toString().split(':')[1] ?? '')
        : auth.replace(/^Bearer /, '')
      expect(secret.length).toBeGreaterThan(8)
      expect(output).not.toContain(secret)
    }
    expect(upstream.verdicts.every((v) => v.verdict === 'live')).toBe(true)
  })

  it('shutdown revokes every lease and minted token Corridor holds', async () => {
    const mintedTokens = upstream.received
      .filter((r) => r.url.startsWith('/tok/'))
      .map((r) => String(r.headers['x-vault-token']))
    expect(setup.vault.liveLeases('database/creds/app').length).toBeGreaterThan(0)
    closed = true
    await fx.close()
    expect(setup.vault.liveLeases('database/creds/app')).toHaveLength(0)
    for (const token of mintedTokens) expect(setup.vault.isLive(token)).toBe(false)
  })
})
