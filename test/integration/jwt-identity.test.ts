import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { newCanary, standardFiles } from '../helpers/standard-policy.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
let agentKey: CryptoKey
let userKey: CryptoKey
let otherKey: CryptoKey

beforeAll(async () => {
  const agentPair = await generateKeyPair('ES256')
  agentKey = agentPair.privateKey
  const userPair = await generateKeyPair('ES256')
  userKey = userPair.privateKey
  otherKey = (await generateKeyPair('ES256')).privateKey
  const jwks = async (k: CryptoKey) =>
    JSON.stringify({ keys: [{ ...(await exportJWK(k)), kid: 'k1', alg: 'ES256', use: 'sig' }] })
  upstream = await startRecordingUpstream()
  const files = standardFiles(upstream.url, {
    rulesExtra: `  - { id: ops-only-delete-check, effect: allow, match: { actions: items.list, user_groups: [ops] } }\n`,
  })
  fx = await startCorridorFixture(
    {
      ...files,
      files: { 'agents.jwks.json': await jwks(agentPair.publicKey), 'users.jwks.json': await jwks(userPair.publicKey) },
      extraConfig: `identity:
  agent_jwt: { issuer: https://idp.test, audience: corridor, algorithms: [ES256], jwks_file: agents.jwks.json, clock_skew: 5s }
  user_jwt: { issuer: https://idp.test, audience: corridor-users, algorithms: [ES256], jwks_file: users.jwks.json }
`,
    },
    { SVC_TOKEN: newCanary() },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
})

async function token(
  key: CryptoKey,
  claims: JWTPayload,
  opts: { aud?: string; exp?: string | number | null; alg?: string } = {},
) {
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: 'k1' })
    .setIssuer('https://idp.test')
    .setAudience(opts.aud ?? 'corridor')
    .setIssuedAt()
  if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? '5m')
  return jwt.sign(key)
}

const call = async (bearer: string, extra: Record<string, string> = {}) => {
  const res = await request(fx.corridor.agentUrl + '/svc/items', {
    headers: { authorization: `Bearer ${bearer}`, ...extra },
  })
  const body = res.statusCode >= 400 ? ((await res.body.json()) as { code: string }) : (await res.body.dump(), null)
  return { status: res.statusCode, code: body?.code }
}

describe('JWT agent credentials', () => {
  it('accepts a valid token whose subject is a registered agent', async () => {
    expect(await call(await token(agentKey, { sub: 'writer' }))).toEqual({ status: 200, code: undefined })
  })
  it.each([
    ['wrong audience', () => token(agentKey, { sub: 'writer' }, { aud: 'other' })],
    ['no exp', () => token(agentKey, { sub: 'writer' }, { exp: null })],
    ['expired beyond the skew', () => token(agentKey, { sub: 'writer' }, { exp: Math.floor(Date.now() / 1000) - 60 })],
    ['signed by another key', () => token(otherKey, { sub: 'writer' })],
    ['unregistered subject', () => token(agentKey, { sub: 'ghost' })],
    [
      'alg none',
      async () =>
        `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'writer', aud: 'corridor', iss: 'https://idp.test', exp: 9e9, iat: 1 })).toString('base64url')}.x`,
    ],
    ['a user token presented as an agent token', () => token(userKey, { sub: 'writer' }, { aud: 'corridor-users' })],
  ])('rejects %s with 401 and forwards nothing', async (_name, make) => {
    const before = upstream.received.length
    expect(await call(await make())).toEqual({ status: 401, code: 'identity_invalid' })
    expect(upstream.received.length).toBe(before)
  })
})

describe('delegated user tokens', () => {
  it('brings the user and groups into the policy and the audit record', async () => {
    const agent = await token(agentKey, { sub: 'writer' })
    const user = await token(userKey, { sub: 'alice', groups: ['ops'] }, { aud: 'corridor-users' })
    expect(await call(agent, { 'x-corridor-user': user })).toEqual({ status: 200, code: undefined })
    expect(upstream.received.at(-1)!.headers['x-corridor-user']).toBeUndefined()
    const records = fx.auditRecords()
    expect(records.at(-1)).toMatchObject({ user: 'alice', user_groups: ['ops'] })
  })
  it('rejects a forged user token', async () => {
    const agent = await token(agentKey, { sub: 'writer' })
    const forged = await token(otherKey, { sub: 'alice', groups: ['ops'] }, { aud: 'corridor-users' })
    expect(await call(agent, { 'x-corridor-user': forged })).toEqual({ status: 401, code: 'user_token_invalid' })
  })
})
