/**
 * The Vault contract: the API shapes and semantics Corridor relies on, checked through
 * Corridor's own Vault client and, for a few, through node-vault as an independent client. By
 * default it runs against the test server in this folder; with VAULT_ADDR and VAULT_TOKEN set it
 * runs the same tests against that Vault (see README, "Checking against your Vault").
 */
import vault from 'node-vault'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Secret } from '../../src/credentials/secret.ts'
import { VaultClient, VaultError } from '../../src/credentials/vault/vault-client.ts'
import { openVaultTarget, type VaultTarget } from './vault-target.ts'

let target: VaultTarget
let client: VaultClient
let root: Secret

beforeAll(async () => {
  target = await openVaultTarget()
  client = new VaultClient({ address: target.address, namespace: null, timeoutMs: 2_000, caFile: null })
  root = new Secret(target.rootToken)
  await target.setPolicy('corridor-contract', {
    [`${target.kvMount}/data/*`]: ['create', 'read', 'update', 'delete', 'list'],
    'auth/token/create': ['update'],
  })
})

afterAll(async () => {
  await client.close()
  await target.close()
})

async function rejection(promise: Promise<unknown>): Promise<VaultError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof VaultError) return err
    throw err
  }
  throw new Error('expected the Vault call to fail')
}

async function raw(
  method: string,
  path: string,
  token: string | null,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const headers: Record<string, string> = { ...extraHeaders }
  if (token !== null) headers['x-vault-token'] = token
  const res = await fetch(`${target.address}/v1/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

async function childToken(
  opts: { policies?: string[]; ttl?: string; num_uses?: number; renewable?: boolean } = {},
): Promise<{ token: string; accessor: string }> {
  const envelope = await client.call('POST', 'auth/token/create', {
    token: root,
    body: {
      policies: opts.policies ?? ['corridor-contract'],
      ttl: opts.ttl ?? '60s',
      num_uses: opts.num_uses ?? 0,
      renewable: opts.renewable ?? true,
    },
  })
  const auth = envelope?.auth
  if (!auth) throw new Error('no auth block')
  return { token: auth.client_token, accessor: auth.accessor }
}

describe(`Vault contract (${process.env.VAULT_ADDR ? 'real Vault at VAULT_ADDR' : 'test server'})`, () => {
  it('sys/health answers 200 with its own plain body, read by node-vault too', async () => {
    const res = await raw('GET', 'sys/health', null)
    expect(res.status).toBe(200)
    const body = JSON.parse(res.text) as Record<string, unknown>
    expect(body).toMatchObject({ initialized: true, sealed: false, standby: false })
    expect(body).not.toHaveProperty('request_id')
    const nv = vault({ endpoint: target.address, requestOptions: { timeout: 2_000 } })
    expect(await nv.health()).toMatchObject({ initialized: true, sealed: false })
  })

  it('the success envelope has all nine keys in order and Cache-Control: no-store', async () => {
    const res = await raw('GET', 'auth/token/lookup-self', target.rootToken)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(Object.keys(JSON.parse(res.text) as object)).toEqual([
      'request_id',
      'lease_id',
      'renewable',
      'lease_duration',
      'data',
      'wrap_info',
      'warnings',
      'auth',
      'mount_type',
    ])
  })

  it('KV v2: latest and pinned versions with metadata; a missing key is 404 {"errors":[]}', async () => {
    const { token } = await childToken()
    const t = new Secret(token)
    await client.call('POST', `${target.kvMount}/data/app`, { token: t, body: { data: { api_key: 'one' } } })
    const written = await client.call('POST', `${target.kvMount}/data/app`, {
      token: t,
      body: { data: { api_key: 'two' } },
    })
    expect(written?.data).toMatchObject({ version: 2, destroyed: false })
    const latest = await client.call('GET', `${target.kvMount}/data/app`, { token: t })
    expect(latest?.data).toMatchObject({
      data: { api_key: 'two' },
      metadata: { version: 2, destroyed: false, deletion_time: '' },
    })
    const pinned = await client.call('GET', `${target.kvMount}/data/app?version=1`, { token: t })
    expect(pinned?.data).toMatchObject({ data: { api_key: 'one' }, metadata: { version: 1 } })

    const missing = await raw('GET', `${target.kvMount}/data/nothing-here`, token)
    expect(missing.status).toBe(404)
    expect(JSON.parse(missing.text)).toEqual({ errors: [] })
    const err = await rejection(client.call('GET', `${target.kvMount}/data/nothing-here`, { token: t }))
    expect(err.kind).toBe('not_found')
  })

  it('KV v2: a soft-deleted version is 404 with a full success envelope, as node-vault also sees it', async () => {
    const { token } = await childToken()
    const t = new Secret(token)
    await client.call('POST', `${target.kvMount}/data/deleted`, { token: t, body: { data: { k: 'v' } } })
    expect(await client.call('GET', `${target.kvMount}/data/deleted`, { token: t })).not.toBeNull()
    await raw('DELETE', `${target.kvMount}/data/deleted`, token)
    const err = await rejection(client.call('GET', `${target.kvMount}/data/deleted`, { token: t }))
    expect(err.status).toBe(404)
    expect(err.envelope?.data).toMatchObject({ data: null, metadata: { destroyed: false } })
    expect((err.envelope?.data?.metadata as { deletion_time: string }).deletion_time).not.toBe('')

    const nv = vault({ endpoint: target.address, token, requestOptions: { timeout: 2_000 } })
    const nvErr = (await nv.read(`${target.kvMount}/data/deleted`).catch((e: unknown) => e)) as {
      message: string
      response: { statusCode: number; body: { data: { metadata: unknown } } }
    }
    expect(nvErr.message).toBe('Status 404')
    expect(nvErr.response.statusCode).toBe(404)
    expect(nvErr.response.body.data.metadata).toBeTruthy()
  })

  it('errors: unsupported path is a multierror 404; no capability is a multierror 403; a bad token is 403', async () => {
    const { token } = await childToken()
    const unsupported = await raw('GET', 'no-such-mount-anywhere/data/x', target.rootToken)
    expect(unsupported.status).toBe(404)
    expect((JSON.parse(unsupported.text) as { errors: string[] }).errors.join(' ')).toContain('unsupported path')

    const denied = await raw('GET', 'auth/token/lookup-accessor-not-allowed', token)
    expect([403, 404, 405]).toContain(denied.status)
    const deniedKv = await raw('GET', `${target.kvMount}/metadata/app`, token)
    expect(deniedKv.status).toBe(403)
    expect((JSON.parse(deniedKv.text) as { errors: string[] }).errors.join(' ')).toContain('permission denied')

    const bad = await rejection(
      client.call('GET', 'auth/token/lookup-self', { token: new Secret('hvs.notatokenatallnotatoken') }),
    )
    expect(bad.kind).toBe('permission_denied')
    expect(bad.message).not.toContain('notatokenatall')
  })

  it('X-Vault-Token wins over Authorization: Bearer', async () => {
    const res = await raw('GET', 'auth/token/lookup-self', target.rootToken, undefined, {
      authorization: 'Bearer hvs.wrongwrongwrongwrongwrong',
    })
    expect(res.status).toBe(200)
  })

  it('tokens: every use counts, lookup-self included; at zero the token is revoked; limited-use tokens cannot create children', async () => {
    const { token } = await childToken({ num_uses: 2 })
    const t = new Secret(token)
    const first = await client.call('GET', 'auth/token/lookup-self', { token: t })
    expect(first?.data).toMatchObject({ num_uses: 1, path: 'auth/token/create' })
    expect(first?.auth).toBeNull()
    const child = await rejection(
      client.call('POST', 'auth/token/create', { token: t, body: { policies: ['corridor-contract'] } }),
    )
    expect(child.status).toBe(400)
    const gone = await rejection(client.call('GET', 'auth/token/lookup-self', { token: t }))
    expect(gone.status).toBe(403)
  })

  it('renew-self returns the same token with a new lease_duration; a non-renewable token gets 400', async () => {
    const { token } = await childToken({ ttl: '60s' })
    const renewed = await client.call('POST', 'auth/token/renew-self', {
      token: new Secret(token),
      body: { increment: '120s' },
    })
    expect(renewed?.auth?.client_token).toBe(token)
    expect(renewed?.auth?.lease_duration).toBeGreaterThan(60)
    expect(renewed?.data).toBeNull()
    const fixed = await childToken({ renewable: false })
    const err = await rejection(
      client.call('POST', 'auth/token/renew-self', { token: new Secret(fixed.token), body: {} }),
    )
    expect(err.status).toBe(400)
  })

  it('revoking by accessor ends the token', async () => {
    const { token, accessor } = await childToken()
    expect(await client.call('POST', 'auth/token/revoke-accessor', { token: root, body: { accessor } })).toBeNull()
    expect((await rejection(client.call('GET', 'auth/token/lookup-self', { token: new Secret(token) }))).status).toBe(
      403,
    )
  })

  it('AppRole login: the token is in auth, with role_name metadata; a wrong secret is 400', async () => {
    const role = await target.appRole('corridor-contract', ['corridor-contract'], 120)
    const login = await client.call('POST', `auth/${role.mount}/login`, {
      body: { role_id: role.roleId, secret_id: role.secretId },
    })
    expect(login?.data).toBeNull()
    expect(login?.auth).toMatchObject({
      renewable: true,
      token_type: 'service',
      metadata: { role_name: 'corridor-contract' },
    })
    expect(login?.auth?.policies).toContain('corridor-contract')
    expect(login?.auth?.lease_duration).toBe(120)
    const lookup = await client.call('GET', 'auth/token/lookup-self', {
      token: new Secret(login?.auth?.client_token ?? ''),
    })
    expect(lookup?.data?.meta).toMatchObject({ role_name: 'corridor-contract' })

    const wrong = await rejection(
      client.call('POST', `auth/${role.mount}/login`, { body: { role_id: role.roleId, secret_id: 'not-the-secret' } }),
    )
    expect(wrong.status).toBe(400)
    // node-vault reads the same login (and, as documented, would overwrite its own token with it).
    const nv = vault({ endpoint: target.address, requestOptions: { timeout: 2_000 } })
    const nvLogin = (await nv.approleLogin({
      role_id: role.roleId,
      secret_id: role.secretId,
      mount_point: role.mount,
    })) as { auth: { client_token: string } }
    expect(nv.token).toBe(nvLogin.auth.client_token)
  })

  it('sys/leases: revoke is idempotent (204 for unknown ids); lookup of an unknown lease is 400', async () => {
    const revoke = await raw('PUT', 'sys/leases/revoke', target.rootToken, {
      lease_id: 'database/creds/readonly/doesnotexist0000000000',
    })
    expect(revoke.status).toBe(204)
    const lookup = await rejection(
      client.call('POST', 'sys/leases/lookup', {
        token: root,
        body: { lease_id: 'database/creds/readonly/doesnotexist0000000000' },
      }),
    )
    expect(lookup.status).toBe(400)
  })

  it('dynamic secrets: a lease id of <path>/<id>, renewal returns data: null, revoke ends it', async (ctx) => {
    if (target.dynamicPath === null) {
      ctx.skip(
        'set VAULT_CONTRACT_DYNAMIC_PATH (for example database/creds/readonly) to run lease tests against a real Vault',
      )
      return
    }
    const creds = await client.call('GET', target.dynamicPath, { token: root })
    expect(creds?.lease_id.startsWith(`${target.dynamicPath}/`)).toBe(true)
    expect(creds?.renewable).toBe(true)
    expect(creds?.lease_duration).toBeGreaterThan(0)
    const leaseId = creds?.lease_id ?? ''
    const lookup = await client.call('POST', 'sys/leases/lookup', { token: root, body: { lease_id: leaseId } })
    expect(lookup?.data).toMatchObject({ id: leaseId, renewable: true, last_renewal: null })
    const renewed = await client.call('POST', 'sys/leases/renew', {
      token: root,
      body: { lease_id: leaseId, increment: 30 },
    })
    expect(renewed).toMatchObject({ lease_id: leaseId, renewable: true, data: null })
    expect(renewed?.lease_duration).toBeGreaterThan(0)
    const after = await client.call('POST', 'sys/leases/lookup', { token: root, body: { lease_id: leaseId } })
    expect(after?.data?.last_renewal).not.toBeNull()
    expect(await client.call('POST', 'sys/leases/revoke', { token: root, body: { lease_id: leaseId } })).toBeNull()
    expect(
      (await rejection(client.call('POST', 'sys/leases/lookup', { token: root, body: { lease_id: leaseId } }))).status,
    ).toBe(400)
  })
})

describe('test-server fault switches (the test server only)', () => {
  it('sealed: 503 {"errors":["Vault is sealed"]} everywhere but health, which answers 503 with its body', async (ctx) => {
    const server = target.server
    if (server === null) {
      ctx.skip('sealing a real Vault is not part of a contract run')
      return
    }
    server.faults.sealed = true
    try {
      const res = await raw('GET', 'auth/token/lookup-self', target.rootToken)
      expect(res.status).toBe(503)
      expect(JSON.parse(res.text)).toEqual({ errors: ['Vault is sealed'] })
      const health = await raw('GET', 'sys/health', null)
      expect(health.status).toBe(503)
      expect(JSON.parse(health.text)).toMatchObject({ sealed: true })
      expect((await rejection(client.call('GET', 'auth/token/lookup-self', { token: root }))).kind).toBe('sealed')
    } finally {
      server.faults.sealed = false
    }
  })

  it('a silent Vault is a timeout within the client deadline, and the error carries no token', async (ctx) => {
    const server = target.server
    if (server === null) {
      ctx.skip('needs the test server')
      return
    }
    const quick = new VaultClient({ address: target.address, namespace: null, timeoutMs: 300, caFile: null })
    server.faults.blackhole = true
    try {
      const started = performance.now()
      const err = await rejection(quick.call('GET', 'auth/token/lookup-self', { token: root }))
      const elapsed = performance.now() - started
      expect(err.kind).toBe('timeout')
      expect(elapsed).toBeLessThan(1_000)
      expect(JSON.stringify({ ...err, message: err.message })).not.toContain(target.rootToken)
    } finally {
      server.faults.blackhole = false
      await quick.close()
    }
  })
})
