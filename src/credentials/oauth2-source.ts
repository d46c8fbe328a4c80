/**
 * OAuth2 client credentials (RFC 6749 §4.4) as a short-lived source: the access token is fetched
 * from the token endpoint, cached until its safety margin before `expires_in`, and shared by
 * concurrent requests. The client secret itself comes from another source (env, file, Vault KV),
 * asked afresh at each token request so that rotation needs no restart. The token endpoint's
 * body is never logged: it holds the token.
 */
import { Agent, request } from 'undici'
import type { Lease, LeaseProvider } from './lease-cache.ts'
import { AddressRefused, checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import { readLimited } from '../shared/read-limited.ts'
import { callLogOf, logCall } from '../shared/trace-context.ts'
import { Secret } from './secret.ts'
import { isValidFieldValue, type CredentialSource } from './source.ts'
import { isCertificateFailure } from '../shared/certificate-failure.ts'

export interface OAuth2Spec {
  readonly tokenUrl: string
  readonly clientId: string
  readonly scopes: readonly string[]
  readonly audience: string | null
  /** client_secret_basic (Authorization header) or client_secret_post (form fields). */
  readonly authMethod: 'basic' | 'post'
  readonly timeoutMs: number
}

/** Stable, audit-safe reasons a token could not be obtained. */
export type OAuth2ErrorCode =
  | 'oauth2_client_secret_missing'
  | 'oauth2_invalid_response'
  | 'oauth2_timeout'
  | 'oauth2_unreachable'
  | 'oauth2_certificate_rejected'
  | 'oauth2_refused'

export class OAuth2Error extends Error {
  override name = 'OAuth2Error'
  readonly code: OAuth2ErrorCode

  constructor(code: OAuth2ErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

const DEFAULT_EXPIRES_SEC = 300
const MAX_BODY = 64 * 1024

export class OAuth2Provider implements LeaseProvider {
  readonly #spec: OAuth2Spec
  readonly #clientSecret: CredentialSource
  readonly #now: () => number
  readonly #dispatcher: Agent

  /** `resolve`: how the token endpoint's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  constructor(spec: OAuth2Spec, clientSecret: CredentialSource, now: () => number, resolve?: ResolveAll) {
    this.#spec = spec
    this.#clientSecret = clientSecret
    this.#now = now
    this.#dispatcher = new Agent({
      connect: { timeout: spec.timeoutMs, lookup: checkedLookup(resolve) },
      headersTimeout: spec.timeoutMs,
      bodyTimeout: spec.timeoutMs,
      keepAliveTimeout: 4_000,
    })
  }

  async obtain(scope: string, signal: AbortSignal): Promise<Lease> {
    const { tokenUrl, clientId, scopes, audience, authMethod } = this.#spec
    const secretCredential = await this.#clientSecret.issue({
      agentId: scope,
      perRequest: false,
      timeoutMs: this.#spec.timeoutMs,
    })
    const clientSecret = secretCredential.fields.get('secret')
    if (clientSecret === undefined)
      throw new OAuth2Error('oauth2_client_secret_missing', 'the client secret source has no primary field')
    const form = new URLSearchParams({ grant_type: 'client_credentials' })
    if (scopes.length > 0) form.set('scope', scopes.join(' '))
    if (audience !== null) form.set('audience', audience)
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    }
    if (authMethod === 'basic') {
      // RFC 6749 §2.3.1: each part form-encoded before Base64.
      headers.authorization =
        'Basic ' +
        Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret.reveal())}`).toString('base64')
    } else {
      form.set('client_id', clientId)
      form.set('client_secret', clientSecret.reveal())
    }
    let status: number | null = null
    let failure: OAuth2ErrorCode | null = null
    let text: string
    const started = performance.timeOrigin + performance.now()
    try {
      // undici's request() never follows redirects: a 3xx is a refusal here.
      const response = await request(tokenUrl, {
        method: 'POST',
        headers,
        body: form.toString(),
        signal,
        dispatcher: this.#dispatcher,
      })
      status = response.statusCode
      text = await readLimited(
        response.body,
        MAX_BODY,
        () => new OAuth2Error('oauth2_invalid_response', 'token endpoint response too large'),
      )
    } catch (err) {
      const failed = err instanceof OAuth2Error ? err : transportFailure(err, signal)
      failure = failed.code
      throw failed
    } finally {
      // A span of the traced request this token is fetched for (the token endpoint's path, never the form).
      const log = callLogOf(signal)
      if (log !== undefined) {
        const { origin, pathname } = new URL(tokenUrl)
        logCall(log, {
          system: 'oauth2',
          origin,
          method: 'POST',
          operation: 'POST',
          path: pathname,
          start: started,
          end: performance.timeOrigin + performance.now(),
          status,
          error: status !== null ? null : failure,
        })
      }
    }
    let body: Record<string, unknown> = {}
    try {
      body = JSON.parse(text) as Record<string, unknown>
    } catch {
      // fall through with an empty body
    }
    if (status !== 200) {
      // RFC 6749 §5.2: `error` is a registered code, safe to report; the description is not echoed.
      const error = typeof body.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(body.error) ? body.error : 'unknown'
      throw new OAuth2Error('oauth2_refused', `the token endpoint answered ${status} (${error})`)
    }
    const accessToken = body.access_token
    if (typeof accessToken !== 'string' || accessToken === '' || !isValidFieldValue(accessToken))
      throw new OAuth2Error('oauth2_invalid_response', 'the token endpoint answered without a usable access_token')
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_SEC
    const obtainedAt = this.#now()
    const token = new Secret(accessToken)
    return {
      credential: {
        fields: new Map([
          ['secret', token],
          ['access_token', token],
        ]),
        reference: `oauth2:${new URL(tokenUrl).host}/${clientId}`,
        leaseId: null,
      },
      obtainedAt,
      expiresAt: obtainedAt + expiresIn * 1000,
      renewable: false,
    }
  }
}

/** Why the token endpoint gave no answer: too slow, a certificate that did not verify, or no connection. */
function transportFailure(err: unknown, signal: AbortSignal): OAuth2Error {
  if (signal.aborted) return new OAuth2Error('oauth2_timeout', 'the token endpoint did not answer in time')
  const code = (err as { code?: unknown }).code
  if (err instanceof AddressRefused)
    return new OAuth2Error(
      'oauth2_unreachable',
      `the token endpoint's host resolved to an address Corridor never connects to (${err.kind}); nothing was sent`,
    )
  if (isCertificateFailure(err))
    return new OAuth2Error(
      'oauth2_certificate_rejected',
      `the token endpoint's TLS certificate did not verify (${String(code)}); nothing was sent`,
    )
  return new OAuth2Error(
    'oauth2_unreachable',
    `the token endpoint is unreachable (${typeof code === 'string' ? code : 'connection failed'})`,
  )
}
