/**
 * Verifies JWTs with jose under a strict profile: pinned asymmetric algorithms, required
 * exp/iat/iss/aud/sub, bounded clock skew, keys from a JWKS (never raw bytes, which would let
 * an HS256 token signed with the public key through: jose accepts that algorithm confusion when
 * the key is given as PEM bytes and the algorithms are not pinned).
 *
 * Verified tokens are cached until they expire: an ES256 verify costs ~220 µs, which alone
 * would cap a core at ~4,500 requests/s.
 */
import { readFileSync } from 'node:fs'
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'
import { Agent, fetch, type RequestInit as UndiciRequestInit } from 'undici'
import type { JwtIssuerConfig } from '../config/server-config.ts'
import { checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import { CorridorError, type ErrorCode } from '../shared/errors.ts'

const CACHE_LIMIT = 10_000

export class JwtVerifier {
  readonly #config: JwtIssuerConfig
  readonly #keys: JWTVerifyGetKey
  readonly #cache = new Map<string, { payload: JWTPayload; expiresAtMs: number }>()
  readonly #invalidCode: ErrorCode

  /** `resolve`: how the key set's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  constructor(config: JwtIssuerConfig, invalidCode: ErrorCode = 'identity_invalid', resolve?: ResolveAll) {
    this.#config = config
    this.#invalidCode = invalidCode
    if (config.jwksUrl !== null) {
      this.#keys = createRemoteJWKSet(new URL(config.jwksUrl), {
        timeoutDuration: 5_000,
        cooldownDuration: 30_000,
        cacheMaxAge: 600_000,
        [customFetch]: keySetFetcher(new Agent({ connect: { lookup: checkedLookup(resolve) } })),
      })
    } else {
      this.#keys = createLocalJWKSet(JSON.parse(readFileSync(config.jwksFile as string, 'utf8')))
    }
  }

  async verify(token: string, nowMs: number = Date.now()): Promise<JWTPayload> {
    const cached = this.#cache.get(token)
    if (cached !== undefined) {
      this.#cache.delete(token)
      if (cached.expiresAtMs > nowMs) {
        // Least recently used goes first: a busy agent's token stays while one-off tokens age out.
        this.#cache.set(token, cached)
        return cached.payload
      }
    }
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, this.#keys, {
        algorithms: [...this.#config.algorithms],
        issuer: this.#config.issuer,
        audience: this.#config.audience,
        requiredClaims: ['exp', 'iat', 'iss', 'aud', 'sub'],
        clockTolerance: this.#config.clockSkewSec,
        currentDate: new Date(nowMs),
        ...(this.#config.maxTokenAgeSec !== null ? { maxTokenAge: this.#config.maxTokenAgeSec } : {}),
      }))
    } catch (err) {
      if (keySetUnreachable(err)) {
        throw new CorridorError('identity_unavailable', 'the key set that verifies this token could not be fetched', {
          cause: err,
        })
      }
      // jose reports key-type mismatches as plain TypeErrors: every failure is a rejection, never a 500.
      const code = err instanceof errors.JOSEError ? err.code : 'ERR_INVALID_TOKEN'
      throw new CorridorError(this.#invalidCode, `token rejected (${code})`, { cause: err })
    }
    if (this.#cache.size >= CACHE_LIMIT) {
      const oldest = this.#cache.keys().next().value
      if (oldest !== undefined) this.#cache.delete(oldest)
    }
    // Cached no longer than the token is acceptable: its exp, and its maximum age when one is set.
    const maxAge = this.#config.maxTokenAgeSec
    const expiresAtMs = Math.min(
      (payload.exp as number) * 1000,
      maxAge === null ? Infinity : ((payload.iat as number) + maxAge) * 1000,
    )
    this.#cache.set(token, { payload, expiresAtMs })
    return payload
  }
}

/** The identity provider answered its key set's URL with something other than 200. */
class KeySetNotServed extends Error {
  override name = 'KeySetNotServed'
}

/**
 * Fetches the key set as jose would, but names an answer other than 200 (an identity provider
 * down behind its load balancer, a key set moved) for what it is: jose's own error for it is a
 * generic one, which would blame the token.
 */
function keySetFetcher(dispatcher: Agent): (url: string, init: RequestInit) => Promise<Response> {
  return async (url, init) => {
    // undici's own fetch, for a dispatcher whose connections judge where the host resolves.
    const response = await fetch(url, { ...(init as UndiciRequestInit), dispatcher })
    if (response.status === 200) return response as unknown as Response
    await response.body?.cancel()
    throw new KeySetNotServed(`the key set's URL answered ${response.status}`)
  }
}

/**
 * The remote key set could not be fetched (a timeout, an answer other than 200, or fetch failing
 * with a network error code as its cause): the token was not judged, so this is unavailability,
 * not a rejection.
 */
function keySetUnreachable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof KeySetNotServed) return true
  if (err instanceof errors.JOSEError || !(err instanceof TypeError)) return false
  const cause: unknown = err.cause
  return typeof cause === 'object' && cause !== null && typeof (cause as { code?: unknown }).code === 'string'
}
