/**
 * Approvers signed in with IdP tokens: the groups claim decides what they may see and decide,
 * the id claim names them in the audit trail, and the separation-of-duties rules apply to the
 * delegated user too (nobody approves a request made on their own behalf).
 */
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { agentCall, approvalFiles, approverCall, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
let idpKey: CryptoKey
let strangerKey: CryptoKey

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  const pair = await generateKeyPair('ES256')
  idpKey = pair.privateKey
  strangerKey = (await generateKeyPair('ES256')).privateKey
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' }] })
  const identity = `identity:
  user_jwt: { issuer: https://idp.test, audience: corridor-users, algorithms: [ES256], jwks_file: idp.jwks.json }
  approver_jwt: { issuer: https://idp.test, audience: corridor-approvers, algorithms: [ES256], jwks_file: idp.jwks.json, id_claim: email, operator_groups: [sre] }
approvals: { wait: 0s }
`
  fx = await startCorridorFixture(
    { ...approvalFiles(upstream.url, identity), files: { 'idp.jwks.json': jwks } },
    { SVC_TOKEN: 'idp-token' },
  )
})
afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

function token(audience: string, claims: Record<string, unknown>, key: CryptoKey = idpKey): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://idp.test')
    .setAudience(audience)
    .setSubject(String(claims.sub ?? 'u'))
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key)
}

it('lets an IdP user in the rule group approve, named by the id claim; refuses forged tokens and the requesting user', async () => {
  const userToken = await token('corridor-users', { sub: 'erin', groups: ['ops'] })
  const held = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', {
    body: { qty: 55, note: 'idp' },
    headers: { 'x-corridor-user': userToken },
  })
  const id = held.body.approval_id as string
  expect(id).toMatch(/^apr_/)

  const forged = await token(
    'corridor-approvers',
    { sub: 'mallory', email: 'mallory@example.com', groups: ['leads'] },
    strangerKey,
  )
  expect((await approverCall(fx.corridor.adminUrl, forged, `/approvals/${id}`)).status).toBe(401)
  const wrongAudience = await token('corridor-users', { sub: 'frank', email: 'frank@example.com', groups: ['leads'] })
  expect((await approverCall(fx.corridor.adminUrl, wrongAudience, `/approvals/${id}`)).status).toBe(401)

  // The delegated user may be a lead too, but not for a request made on their behalf.
  const self = await token('corridor-approvers', { sub: 'erin', email: 'erin', groups: ['leads'] })
  const selfDecision = await approverCall(fx.corridor.adminUrl, self, `/approvals/${id}/approve`, {
    reason: 'my own request',
  })
  expect(selfDecision.status).toBe(403)
  expect(selfDecision.body.detail).toContain('on your behalf')

  const lead = await token('corridor-approvers', { sub: 'frank-123', email: 'frank@example.com', groups: ['leads'] })
  const decided = await approverCall(fx.corridor.adminUrl, lead, `/approvals/${id}/approve`, { reason: 'looks right' })
  expect(decided.status).toBe(200)
  await eventually(() =>
    expect(upstream.received.filter((r) => r.body.toString().includes('"note":"idp"'))).toHaveLength(1),
  )
  await eventually(() => {
    const record = fx.auditRecords().find((r) => r.approval?.id === id && r.outcome === 'forwarded')
    expect(record?.approval?.approved_by[0]?.approver).toBe('frank@example.com')
    expect(record?.user).toBe('erin')
  })
})

it('an IdP user of an operator group may stop and resume agents, named by the id claim; other groups may not', async () => {
  const lead = await token('corridor-approvers', { sub: 'frank-123', email: 'frank@example.com', groups: ['leads'] })
  const refused = await approverCall(fx.corridor.adminUrl, lead, '/stops', { scope: {}, reason: 'x' })
  expect([refused.status, refused.body.code]).toEqual([401, 'operator_unauthenticated'])
  const sre = await token('corridor-approvers', { sub: 'gus-1', email: 'gus@example.com', groups: ['sre'] })
  const forged = await token(
    'corridor-approvers',
    { sub: 'gus-1', email: 'gus@example.com', groups: ['sre'] },
    strangerKey,
  )
  expect((await approverCall(fx.corridor.adminUrl, forged, '/stops', { scope: {}, reason: 'x' })).status).toBe(401)
  const ordered = await approverCall(fx.corridor.adminUrl, sre, '/stops', {
    scope: { agent: 'writer' },
    reason: 'drill',
  })
  expect(ordered.status).toBe(201)
  expect(ordered.body.stop).toMatchObject({ by: 'gus@example.com', via: 'https://idp.test' })
  expect((await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items')).body.code).toBe('agent_stopped')
  const id = (ordered.body.stop as { id: string }).id
  expect((await approverCall(fx.corridor.adminUrl, sre, `/stops/${id}/resume`, { reason: 'drill over' })).status).toBe(
    200,
  )
  expect((await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items')).status).toBe(200)
})
