/**
 * Two failures that used to be recognised by error-message text, now by error codes: a request
 * body that does not arrive before the request deadline is recorded as `request_timeout` (408),
 * not as the agent leaving; an identity provider whose key set cannot be fetched makes identity
 * unavailable (503), not the token invalid.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPair, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startDroppingServer, type DroppingServer } from '../helpers/dropping-server.ts'
import { rawRequest } from '../helpers/raw-http.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

/** corridor.yaml's identity section: agent JWTs verified against the key set at `jwksUrl`. */
const jwtIdentity = (jwksUrl: string): string =>
  `identity:\n  agent_jwt: { issuer: https://idp.test, audience: corridor, algorithms: [ES256], jwks_url: "${jwksUrl}" }\n`

let upstream: RecordingUpstream
let fx: CorridorFixture
let keySetHost: DroppingServer

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  // An identity provider that drops every connection unanswered.
  keySetHost = await startDroppingServer()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      extraConfig: `limits: { headers_timeout: 1s, request_timeout: 1s }\n${jwtIdentity(`${keySetHost.url}/jwks.json`)}`,
    },
    { SVC_TOKEN: 'svc-upstream-token-0123456789' },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await keySetHost?.close()
})

describe('slow bodies and unreachable key sets', () => {
  it('a body that stops arriving is recorded as request_timeout, and nothing is forwarded', async () => {
    const before = fx.auditRecords().length
    // Headers complete, then 5 of the 50 promised body bytes, then silence past the 1 s deadline.
    await rawRequest(
      fx.corridor.agentUrl,
      `POST /svc/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${AGENT_KEY}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"qty`,
      8_000,
    )
    await eventually(() => expect(fx.auditRecords().length).toBeGreaterThan(before), 5_000)
    const record = fx.auditRecords().at(-1)
    expect(record).toMatchObject({ outcome: 'rejected', error_code: 'request_timeout', status: 408 })
    expect(upstream.received).toHaveLength(0)
  })

  it('a JWT whose key set cannot be fetched gets 503 identity_unavailable, not 401', async () => {
    await expectIdentityUnavailable(fx)
  })

  it('so does one whose identity provider answers its key set with an error status', async () => {
    const failing = createServer((_req, res) => res.writeHead(503).end('upstream connect error'))
    await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve))
    const other = await startCorridorFixture(
      {
        ...standardFiles(upstream.url),
        extraConfig: jwtIdentity(`http://127.0.0.1:${(failing.address() as AddressInfo).port}/jwks.json`),
      },
      { SVC_TOKEN: 'svc-upstream-token-0123456789' },
    )
    try {
      await expectIdentityUnavailable(other)
    } finally {
      await other.close()
      await new Promise<void>((resolve) => failing.close(() => resolve()))
    }
  })
})

/** A JWT the key set would have to verify is refused as 503 identity_unavailable, and nothing is forwarded. */
async function expectIdentityUnavailable(corridor: CorridorFixture): Promise<void> {
  const { privateKey } = await generateKeyPair('ES256')
  const jwt = await new SignJWT({ sub: 'writer' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://idp.test')
    .setAudience('corridor')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey)
  const res = await request(`${corridor.corridor.agentUrl}/svc/items`, { headers: { authorization: `Bearer ${jwt}` } })
  await res.body.text()
  expect(res.statusCode).toBe(503)
  expect(res.headers['x-corridor-error']).toBe('identity_unavailable')
  expect(upstream.received).toHaveLength(0)
}
