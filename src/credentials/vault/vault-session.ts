/**
 * Corridor's own identity in Vault: a token given to it, or one it logs in for (AppRole, JWT,
 * Kubernetes). The token is renewed in the background before it expires, a login is repeated
 * when the token has expired or Vault says it is no longer valid, and concurrent callers share
 * one login. The token lives in a Secret and is sent to Vault only.
 */
import { readFileSync } from 'node:fs'
import type { SecretInput, VaultAuthConfig } from '../../config/server-config.ts'
import type { Logger } from '../../shared/logger.ts'
import { renewalPoint, safetyMarginMs } from '../lease-cache.ts'
import { Secret } from '../secret.ts'
import { VaultError, type VaultAuthBlock, type VaultClient, type VaultEnvelope } from './vault-client.ts'

/** Where a secret input (token, secret_id, JWT) is read from: re-read at every login, so rotation works. */

interface TokenState {
  readonly token: Secret
  readonly obtainedAt: number
  /** null: the token does not expire (root or periodic without TTL). */
  readonly expiresAt: number | null
  readonly renewable: boolean
}

export class VaultSession {
  readonly #client: VaultClient
  readonly #auth: VaultAuthConfig
  readonly #env: Readonly<Record<string, string | undefined>>
  readonly #log: Logger
  readonly #now: () => number
  #state: TokenState | null = null
  #pending: Promise<TokenState> | null = null
  #renewing = false
  #closed = false

  constructor(
    client: VaultClient,
    auth: VaultAuthConfig,
    env: Readonly<Record<string, string | undefined>>,
    log: Logger,
    now: () => number = Date.now,
  ) {
    this.#client = client
    this.#auth = auth
    this.#env = env
    this.#log = log
    this.#now = now
  }

  get client(): VaultClient {
    return this.#client
  }

  /**
   * Calls Vault with Corridor's token. A 403 with a login-based token triggers one fresh login
   * and one retry (the token may have been revoked behind Corridor's back); never more.
   */
  async call(
    method: 'GET' | 'POST' | 'LIST',
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<VaultEnvelope | null> {
    const state = await this.#token(signal)
    try {
      return await this.#client.call(method, path, { token: state.token, body, signal })
    } catch (err) {
      if (!(err instanceof VaultError) || err.kind !== 'permission_denied' || this.#auth.method === 'token') throw err
      if (this.#state === state) this.#state = null
      const fresh = await this.#token(signal)
      return this.#client.call(method, path, { token: fresh.token, body, signal })
    }
  }

  /** Revokes a token Corridor logged in for (a given token belongs to whoever gave it). */
  async close(): Promise<void> {
    this.#closed = true
    const state = this.#state
    this.#state = null
    if (state === null || this.#auth.method === 'token') return
    try {
      await this.#client.call('POST', 'auth/token/revoke-self', { token: state.token })
    } catch (err) {
      this.#log.warn({ err }, 'could not revoke Corridor’s Vault token at shutdown; it expires on its own')
    }
  }

  async #token(signal: AbortSignal): Promise<TokenState> {
    if (this.#closed) throw new VaultError('unreachable', null, 'the Vault session is closed')
    const now = this.#now()
    const state = this.#state
    if (
      state !== null &&
      (state.expiresAt === null ||
        now < state.expiresAt - safetyMarginMs({ obtainedAt: state.obtainedAt, expiresAt: state.expiresAt }))
    ) {
      if (
        state.renewable &&
        state.expiresAt !== null &&
        !this.#renewing &&
        now >= renewalPoint({ obtainedAt: state.obtainedAt, expiresAt: state.expiresAt })
      ) {
        this.#renewInBackground(state)
      }
      return state
    }
    this.#pending ??= this.#establish(signal).finally(() => {
      this.#pending = null
    })
    return this.#pending
  }

  async #establish(signal: AbortSignal): Promise<TokenState> {
    const auth = this.#auth
    let state: TokenState
    const previous = this.#state
    if (
      auth.method === 'token' &&
      previous !== null &&
      previous.renewable &&
      previous.expiresAt !== null &&
      this.#now() < previous.expiresAt
    ) {
      // A given token inside its margin and still valid: renew it now (there is no login to fall back on).
      const envelope = await this.#client.call('POST', 'auth/token/renew-self', {
        token: previous.token,
        body: {},
        signal,
      })
      state = { ...this.#fromAuth(envelope?.auth ?? null), token: previous.token }
    } else if (auth.method === 'token') {
      // A given token: learn its TTL so that it is renewed in time; 403 here means it is not valid.
      const token = new Secret(this.#read(auth.token, 'token'))
      const envelope = await this.#client.call('GET', 'auth/token/lookup-self', { token, signal })
      const data = envelope?.data ?? {}
      const ttl = typeof data.ttl === 'number' ? data.ttl : 0
      const obtainedAt = this.#now()
      // Root and other non-expiring tokens: ttl 0 and no expire_time.
      state = {
        token,
        obtainedAt,
        expiresAt: ttl === 0 && data.expire_time === null ? null : obtainedAt + ttl * 1000,
        renewable: data.renewable === true,
      }
    } else {
      const path = `auth/${auth.mount}/login`
      const body =
        auth.method === 'approle'
          ? { role_id: auth.roleId, secret_id: this.#read(auth.secretId, 'secret_id') }
          : { role: auth.role, jwt: this.#read(auth.jwt, 'jwt') }
      const envelope = await this.#client.call('POST', path, { body, signal })
      state = this.#fromAuth(envelope?.auth ?? null)
      this.#log.info(
        { method: auth.method, mount: auth.mount, ttlSec: envelope?.auth?.lease_duration },
        'logged in to Vault',
      )
    }
    this.#state = state
    return state
  }

  #renewInBackground(state: TokenState): void {
    this.#renewing = true
    this.#client
      .call('POST', 'auth/token/renew-self', {
        token: state.token,
        body: {},
        signal: AbortSignal.timeout(this.#client.timeoutMs),
      })
      .then((envelope) => {
        if (this.#state === state) this.#state = { ...this.#fromAuth(envelope?.auth ?? null), token: state.token }
      })
      .catch((err: unknown) => {
        // Not fatal: a login-based session logs in again at the margin; a given token fails closed when it expires.
        this.#log.warn({ err }, 'renewing Corridor’s Vault token failed')
        if (this.#state === state) this.#state = { ...state, renewable: false }
      })
      .finally(() => {
        this.#renewing = false
      })
  }

  #fromAuth(auth: VaultAuthBlock | null): TokenState {
    if (auth === null || typeof auth.client_token !== 'string' || auth.client_token === '') {
      throw new VaultError('invalid_response', null, 'Vault login answered without an auth block')
    }
    const obtainedAt = this.#now()
    return {
      token: new Secret(auth.client_token),
      obtainedAt,
      expiresAt: auth.lease_duration > 0 ? obtainedAt + auth.lease_duration * 1000 : null,
      renewable: auth.renewable,
    }
  }

  #read(input: SecretInput, what: string): string {
    let value: string | undefined
    if ('env' in input) value = this.#env[input.env]
    else {
      try {
        value = readFileSync(input.file, 'utf8')
      } catch (err) {
        throw new VaultError(
          'misconfigured',
          null,
          `cannot read the Vault ${what} file (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        )
      }
    }
    value = value?.trim()
    if (value === undefined || value === '')
      throw new VaultError(
        'misconfigured',
        null,
        `the Vault ${what} is not set (${'env' in input ? `env ${input.env}` : `file ${input.file}`})`,
      )
    return value
  }
}
