/**
 * Corridor's own Vault login methods other than AppRole: a given token (renewed before it
 * expires) and Kubernetes/JWT login from a projected token file.
 */
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { hash } from '../helpers/standard-policy.ts'
import { startCheckingUpstream, startVaultForCorridor, type VaultSetup } from '../helpers/vault-fixture.ts'

const KEY = 'cor_login_agent_0001'
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function corridorWith(
  setup: VaultSetup,
  auth: string,
  env: Record<string, string>,
  files: Record<string, string> = {},
): Promise<CorridorFixture> {
  const upstream = await startCheckingUpstream(setup)
  cleanups.push(
    () => upstream.close(),
    () => setup.vault.stop(),
  )
  const fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: a, owner: t, tier: bounded-write, connectors: [db], api_keys: [{ hash: "${hash(KEY)}" }] }\n`,
      connectors: `connectors:\n  - id: db\n    owner: t\n    upstream: ${upstream.url}\n    certified_until: 2099-01-01\n    credential: { source: vault_dynamic, path: database/creds/app, inject: { basic: { username: "{username}", password: "{password}" } } }\n    actions: [{ name: w, method: POST, path: /things, risk: write, lease: per_request }]\n`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
      extraConfig: `vault:\n  address: ${setup.vault.address}\n  auth:\n${auth}`,
      files,
    },
    env,
  )
  cleanups.push(() => fx.close())
  return fx
}

const post = async (fx: CorridorFixture): Promise<number> => {
  const res = await request(fx.corridor.agentUrl + '/db/things', {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: '{}',
  })
  await res.body.dump()
  return res.statusCode
}

describe('Corridor’s own Vault login', () => {
  it('a given token is looked up, renewed before it expires, and keeps working past its first TTL', async () => {
    const setup = await startVaultForCorridor()
    const token = setup.vault.createToken({ policies: ['corridor'], ttlSec: 2, maxTtlSec: 60 })
    const fx = await corridorWith(setup, '    method: token\n    token_env: CORRIDOR_VAULT_TOKEN\n', {
      CORRIDOR_VAULT_TOKEN: token,
    })
    const deadline = Date.now() + 3_500
    while (Date.now() < deadline) {
      expect(await post(fx)).toBe(200)
      await new Promise((r) => setTimeout(r, 300))
    }
    expect(setup.vault.callCount('auth/token/renew-self')).toBeGreaterThanOrEqual(1)
    expect(setup.vault.isLive(token)).toBe(true)
    expect(fx.allOutput()).not.toContain(token)
  })

  it('Kubernetes login reads the service-account JWT from its file and logs in with the role', async () => {
    const setup = await startVaultForCorridor()
    const { privateKey, publicKey } = await generateKeyPair('ES256')
    setup.vault.addJwtRole(
      'kubernetes',
      { keys: [{ ...(await exportJWK(publicKey)), kid: 'k8s', alg: 'ES256' }] },
      'corridor',
      { policies: ['corridor'], ttlSec: 300, audience: 'vault' },
    )
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k8s' })
      .setSubject('system:serviceaccount:corridor:corridor')
      .setAudience('vault')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey)
    const fx = await corridorWith(
      setup,
      '    method: kubernetes\n    role: corridor\n    jwt_file: sa-token\n',
      {},
      { 'sa-token': jwt },
    )
    expect(await post(fx)).toBe(200)
    expect(setup.vault.callCount('auth/kubernetes/login')).toBe(1)
    expect(fx.allOutput()).not.toContain(jwt)
  })

  it('a JWT that Vault refuses fails closed with 503 and says so in the audit record', async () => {
    const setup = await startVaultForCorridor()
    const { publicKey } = await generateKeyPair('ES256')
    const other = await generateKeyPair('ES256')
    setup.vault.addJwtRole('jwt', { keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' }] }, 'corridor', {
      policies: ['corridor'],
      ttlSec: 300,
      audience: 'vault',
    })
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k' })
      .setSubject('corridor')
      .setAudience('vault')
      .setExpirationTime('1h')
      .sign(other.privateKey)
    const fx = await corridorWith(setup, '    method: jwt\n    role: corridor\n    jwt_env: CORRIDOR_JWT\n', {
      CORRIDOR_JWT: forged,
    })
    expect(await post(fx)).toBe(503)
    await new Promise((r) => setTimeout(r, 50))
    expect(fx.auditRecords().at(-1)).toMatchObject({
      error_code: 'credential_unavailable',
      error_detail: 'vault_bad_request',
    })
    expect(fx.allOutput()).not.toContain(forged)
  })
})
