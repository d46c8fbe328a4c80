/**
 * Every outgoing HTTP connection Corridor makes besides the upstream call is judged by where its
 * host resolves, as the upstream's is: Vault, an OAuth2 token endpoint, an identity provider's key
 * set, the approval webhook, and the OTLP collectors for traces and for the audit trail. Each
 * client is the real one, against a real server on loopback; DNS is stood in for by a table that
 * answers `service.internal` with the address under test. Resolved to a refused address, the
 * call fails as that client fails (closed) and no connection is made; resolved to loopback, it
 * reaches the server through the same lookup. A host written as a refused address is refused
 * when corridor.yaml is read.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { VaultClient } from '../../src/credentials/vault/vault-client.ts'
import { OAuth2Provider } from '../../src/credentials/oauth2-source.ts'
import { Secret } from '../../src/credentials/secret.ts'
import { JwtVerifier } from '../../src/identity/jwt-verifier.ts'
import { WebhookNotifier } from '../../src/approvals/webhook.ts'
import type { Approval } from '../../src/approvals/approval.ts'
import { OtlpLogTarget } from '../../src/audit/otlp-target.ts'
import { Tracer } from '../../src/telemetry/tracing.ts'
import { eventually } from '../helpers/corridor-fixture.ts'
import { capturedLog } from '../helpers/captured-log.ts'
import { tableResolver } from '../helpers/table-resolver.ts'

const keys = await generateKeyPair('ES256')
let server: Server
let port: number
let connections = 0
const paths: string[] = []

beforeAll(async () => {
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256' }] })
  server = createServer((req, res) => {
    paths.push(req.url ?? '')
    req.resume()
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      if (req.url === '/token') res.end('{"access_token":"token-from-idp","token_type":"Bearer","expires_in":300}')
      else if (req.url === '/jwks') res.end(jwks)
      else if (req.url?.startsWith('/v1/secret/'))
        res.end(
          JSON.stringify({
            request_id: 'r-1',
            lease_id: '',
            renewable: false,
            lease_duration: 0,
            data: { data: { secret: 'from-vault' }, metadata: { version: 1 } },
            wrap_info: null,
            warnings: null,
            auth: null,
          }),
        )
      else res.end('{}')
    })
  })
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

/** DNS answering `service.internal` with `address`. */
const resolvingTo = (address: string) => tableResolver((host) => (host === 'service.internal' ? [address] : null))
/**
 * The refused address under test: unspecified, which Linux connects to the host itself, so that a
 * client missing the check would reach this test's own server (and fail the test), never a
 * metadata service the machine might have.
 */
const REFUSED = '0.0.0.0'

/** The messages of an error and of every cause under it. */
function causes(err: unknown): string {
  const messages: string[] = []
  for (let e = err; e instanceof Error; e = e.cause) messages.push(e.message)
  return messages.join(' <- ')
}

const base = (): string => `http://service.internal:${port}`

/**
 * Runs `call` with DNS answering a refused address, then loopback: the first must fail with
 * `refused` and make no connection, the second must reach the server at `path`.
 */
async function judged(
  call: (resolve: ReturnType<typeof resolvingTo>) => Promise<unknown>,
  refused: (err: unknown) => void,
  path: string,
): Promise<void> {
  const before = connections
  let failure: unknown = null
  await call(resolvingTo(REFUSED)).catch((err: unknown) => (failure = err))
  refused(failure)
  expect(connections).toBe(before)
  const seen = paths.length
  await call(resolvingTo('127.0.0.1'))
  expect(connections).toBeGreaterThan(before)
  expect(paths.slice(seen)).toContain(path)
}

describe('outgoing connections besides the upstream call, judged by where their host resolves', () => {
  it('Vault', async () => {
    await judged(
      (resolve) =>
        new VaultClient({ address: base(), namespace: null, timeoutMs: 2_000, caFile: null }, resolve).call(
          'GET',
          'secret/data/x',
        ),
      (err) =>
        expect(err).toMatchObject({
          kind: 'unreachable',
          message: "Vault's host resolved to an address Corridor never connects to (unspecified); nothing was sent",
        }),
      '/v1/secret/data/x',
    )
  })

  it('an OAuth2 token endpoint', async () => {
    const clientSecret = {
      issue: () => ({
        fields: new Map([['secret', new Secret('client-secret')]]),
        reference: 'test',
        leaseId: null,
        release: () => {},
        rejected: () => {},
      }),
    }
    const spec = { clientId: 'corridor', scopes: [], audience: null, authMethod: 'basic', timeoutMs: 2_000 } as const
    await judged(
      (resolve) =>
        new OAuth2Provider({ ...spec, tokenUrl: `${base()}/token` }, clientSecret, Date.now, resolve).obtain(
          'svc',
          AbortSignal.timeout(2_000),
        ),
      (err) =>
        expect(err).toMatchObject({
          code: 'oauth2_unreachable',
          message:
            "the token endpoint's host resolved to an address Corridor never connects to (unspecified); nothing was sent",
        }),
      '/token',
    )
  })

  it("an identity provider's key set", async () => {
    const token = await new SignJWT({ sub: 'billing-bot' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://idp.example')
      .setAudience('corridor')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(keys.privateKey)
    const config = {
      issuer: 'https://idp.example',
      audience: 'corridor',
      algorithms: ['ES256'],
      jwksFile: null,
      clockSkewSec: 30,
      maxTokenAgeSec: null,
    }
    await judged(
      (resolve) => new JwtVerifier({ ...config, jwksUrl: `${base()}/jwks` }, 'identity_invalid', resolve).verify(token),
      (err) => {
        // Not a rejection of the token: the key set that would judge it was not fetched (fail closed).
        expect(err).toMatchObject({ code: 'identity_unavailable' })
        expect(causes(err)).toContain("'service.internal' resolved to 0.0.0.0 (unspecified)")
      },
      '/jwks',
    )
  })

  it('the approval webhook', async () => {
    const { log, lines: logs } = capturedLog('warn')
    const approval: Approval = {
      held: {
        id: 'appr-1',
        heldRequestId: 'req-1',
        digest: 'd',
        request: {
          method: 'POST',
          target: '/svc/items',
          host: null,
          upstreamPath: '/items',
          query: '',
          headers: [],
          bodyBase64: '',
        },
        agent: 'billing-bot',
        owner: 'payments',
        tier: 'standard',
        user: null,
        userGroups: null,
        intent: null,
        taskId: null,
        connector: 'svc',
        action: 'items.create',
        risk: 'write',
        rule: 'hold-writes',
        reason: 'writes need a person',
        policyVersion: 'v1',
        approverGroups: ['payments-leads'],
        required: 1,
        perRequestLease: false,
        createdAt: Date.now(),
        expiresAt: Date.now() + 60_000,
      },
      state: 'pending',
      approvals: [],
      rejection: null,
      cancelReason: null,
      result: null,
    }
    await judged(
      async (resolve) => {
        const seen = paths.length
        new WebhookNotifier(`${base()}/hook`, 2_000, log, resolve).notify('held', approval)
        // Fire and forget: done when the server has it, or the failure is logged.
        await eventually(() => expect(paths.length > seen || logs.length > 0).toBe(true), 3_000)
        if (logs.length > 0) throw new Error(logs.join(''))
      },
      (err) => {
        expect(String(err)).toContain('approval webhook could not be notified')
        expect(String(err)).toContain('(unspecified), an address Corridor never connects to')
        logs.length = 0
      },
      '/hook',
    )
  })

  it("the OTLP collector of the audit trail's copy", async () => {
    const entry = {
      stream: 's',
      seq: 1,
      line: '{}',
      type: 'request',
      time: new Date().toISOString(),
      requestId: 'req-1',
      approvalId: null,
      agent: null,
    }
    await judged(
      async (resolve) => {
        const target = new OtlpLogTarget({ endpoint: base(), timeoutMs: 2_000, headers: {}, resolve })
        try {
          await target.insert([entry])
        } finally {
          await target.close()
        }
      },
      (err) => expect(err).toMatchObject({ code: 'ERR_CORRIDOR_ADDRESS_REFUSED', kind: 'unspecified' }),
      '/v1/logs',
    )
  })

  it('the OTLP collector of traces', async () => {
    const facts = {
      request_id: 'req-1',
      duration_ms: 1,
      agent: 'billing-bot',
      connector: 'svc',
      action: 'items.list',
      method: 'GET',
      path: '/items',
      status: 200,
      decision: 'allow',
      rule: 'reads',
      outcome: 'forwarded',
      error_code: null,
      upstream_status: 200,
      upstream_ms: 1,
    }
    await judged(
      async (resolve) => {
        const { log, lines: logs } = capturedLog('warn')
        const tracer = new Tracer({
          endpoint: base(),
          headers: {},
          sample: 1,
          followAgentSampling: false,
          alwaysRecord: { outcomes: [], errors: false, slowerThanMs: null },
          scheme: 'http',
          timeoutMs: 2_000,
          log,
          resolve,
        })
        tracer.finish(tracer.start(undefined), facts)
        await tracer.close()
        // An export that fails is counted and logged, never thrown at a request.
        if (tracer.dropped > 0) throw new Error(logs.join(''))
      },
      (err) => expect(String(err)).toContain('(unspecified), an address Corridor never connects to'),
      '/v1/traces',
    )
  })
})
