/**
 * A thin, typed Vault HTTP client on undici. Why not node-vault (the design card's choice): its
 * axios transport cannot share Corridor's undici dispatcher or take a per-call AbortSignal, its
 * login and token-create methods overwrite the client's token, its network errors carry
 * X-Vault-Token in `err.config`, and it hides sys/health status codes (sealed and standby are
 * told apart only by status).
 * Corridor needs a dozen endpoints; this client covers exactly those shapes, and every call has a
 * deadline. node-vault is still used by the contract suite as an independent check of the test server.
 *
 * Errors never carry the token: the client builds its own VaultError from the status and the
 * `errors` array of Vault's body, scrubbed of anything token-shaped.
 */
import { readFileSync } from 'node:fs'
import { Pool, type Dispatcher } from 'undici'
import { AddressRefused, checkedLookup, type ResolveAll } from '../../shared/checked-lookup.ts'
import { readLimited } from '../../shared/read-limited.ts'
import { callLogOf, logCall } from '../../shared/trace-context.ts'
import type { Secret } from '../secret.ts'
import { isCertificateFailure } from '../../shared/certificate-failure.ts'

export interface VaultAuthBlock {
  client_token: string
  accessor: string
  policies: string[] | null
  lease_duration: number
  renewable: boolean
  entity_id: string
  num_uses: number
}

/** The envelope every successful Vault API response shares. */
export interface VaultEnvelope {
  request_id: string
  lease_id: string
  renewable: boolean
  lease_duration: number
  data: Record<string, unknown> | null
  warnings: string[] | null
  auth: VaultAuthBlock | null
}

export type VaultErrorKind =
  | 'unreachable'
  | 'timeout'
  | 'sealed'
  | 'permission_denied'
  | 'not_found'
  | 'bad_request'
  | 'rate_limited'
  | 'server_error'
  | 'invalid_response'
  | 'misconfigured'
  | 'certificate_rejected'

/** Stable, audit-safe: vault_sealed, vault_timeout, vault_permission_denied… */
export type VaultErrorCode = `vault_${VaultErrorKind}`

export class VaultError extends Error {
  override name = 'VaultError'
  readonly code: VaultErrorCode
  readonly kind: VaultErrorKind
  readonly status: number | null
  /** For a 404 that carries an envelope (a deleted KV version). */
  readonly envelope: VaultEnvelope | null

  constructor(kind: VaultErrorKind, status: number | null, message: string, envelope: VaultEnvelope | null = null) {
    super(scrub(message))
    this.kind = kind
    this.status = status
    this.envelope = envelope
    this.code = `vault_${kind}`
  }
}

export interface VaultClientOptions {
  readonly address: string
  readonly namespace: string | null
  readonly timeoutMs: number
  readonly caFile: string | null
}

export interface VaultCallOptions {
  readonly token?: Secret | null
  readonly body?: unknown
  readonly signal?: AbortSignal
}

const MAX_BODY = 1024 * 1024
// Anything shaped like a Vault token or accessor in an error message is cut out.
const TOKEN_SHAPED = /\b(?:hv[sbr]|[sb])\.[A-Za-z0-9_-]{8,}/g
function scrub(text: string): string {
  return text.replace(TOKEN_SHAPED, '[REDACTED]')
}

export class VaultClient {
  readonly address: string
  readonly timeoutMs: number
  readonly #pool: Pool
  readonly #namespace: string | null

  /** `resolve`: how Vault's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  constructor(options: VaultClientOptions, resolve?: ResolveAll) {
    const url = new URL(options.address)
    this.address = url.origin
    this.timeoutMs = options.timeoutMs
    this.#namespace = options.namespace
    this.#pool = new Pool(url.origin, {
      connections: 16,
      connect: {
        timeout: options.timeoutMs,
        lookup: checkedLookup(resolve),
        ...(options.caFile === null ? {} : { ca: readFileSync(options.caFile) }),
      },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 4_000,
    })
  }

  /** Resolves with the envelope for 200, null for 204; rejects with VaultError for everything else. */
  async call(
    method: 'GET' | 'POST' | 'LIST',
    path: string,
    options: VaultCallOptions = {},
  ): Promise<VaultEnvelope | null> {
    const log = callLogOf(options.signal)
    if (log === undefined) return this.#call(method, path, options)
    // A call made to issue a traced request's credential: it becomes a span of that request.
    const start = performance.timeOrigin + performance.now()
    let status: number | null = null
    let error: string | null = null
    try {
      const envelope = await this.#call(method, path, options)
      status = envelope === null ? 204 : 200
      return envelope
    } catch (err) {
      status = err instanceof VaultError ? err.status : null
      if (status === null) error = err instanceof VaultError ? err.code : 'vault_unreachable'
      throw err
    } finally {
      logCall(log, {
        system: 'vault',
        origin: this.address,
        // What went on the wire: Vault's LIST is a GET with ?list=true.
        method: method === 'LIST' ? 'GET' : method,
        operation: method,
        path: `/v1/${path}`,
        start,
        end: performance.timeOrigin + performance.now(),
        status,
        error,
      })
    }
  }

  async #call(method: 'GET' | 'POST' | 'LIST', path: string, options: VaultCallOptions): Promise<VaultEnvelope | null> {
    const headers: Record<string, string> = { 'x-vault-request': 'true', accept: 'application/json' }
    if (options.token) headers['x-vault-token'] = options.token.reveal()
    if (this.#namespace !== null) headers['x-vault-namespace'] = this.#namespace
    let body: string | null = null
    if (options.body !== undefined) {
      body = JSON.stringify(options.body)
      headers['content-type'] = 'application/json'
    }
    const deadline = AbortSignal.timeout(this.timeoutMs)
    const signal = options.signal === undefined ? deadline : AbortSignal.any([deadline, options.signal])
    let response: Dispatcher.ResponseData
    try {
      response = await this.#pool.request({
        method: method === 'LIST' ? 'GET' : method,
        path: `/v1/${path}${method === 'LIST' ? '?list=true' : ''}`,
        headers,
        body,
        signal,
      })
    } catch (err) {
      throw transportError(err, signal)
    }
    let text: string
    try {
      text = await readLimited(
        response.body,
        MAX_BODY,
        () => new VaultError('invalid_response', null, 'Vault response too large'),
      )
    } catch (err) {
      throw transportError(err, signal)
    }
    const status = response.statusCode
    if (status === 204) return null
    const parsed = parseJson(text)
    if (status === 200) {
      if (!isEnvelope(parsed))
        throw new VaultError(
          'invalid_response',
          status,
          `Vault answered ${path} with a body that is not a Vault envelope`,
        )
      return parsed
    }
    const errors = isErrorBody(parsed) ? parsed.errors.map(String).join('; ').replace(/\s+/g, ' ').trim() : ''
    const message = `Vault answered ${status} for ${method} ${path}${errors ? `: ${errors}` : ''}`
    throw new VaultError(kindFor(status), status, message, status === 404 && isEnvelope(parsed) ? parsed : null)
  }

  async close(): Promise<void> {
    await this.#pool.close()
  }
}

function kindFor(status: number): VaultErrorKind {
  if (status === 403) return 'permission_denied'
  if (status === 404) return 'not_found'
  if (status === 503) return 'sealed'
  if (status === 429) return 'rate_limited'
  if (status >= 400 && status < 500) return 'bad_request'
  return 'server_error'
}

function transportError(err: unknown, signal: AbortSignal): VaultError {
  if (err instanceof VaultError) return err
  const code = (err as { code?: unknown }).code
  if (
    signal.aborted ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  ) {
    return new VaultError('timeout', null, 'Vault did not answer in time')
  }
  if (err instanceof AddressRefused)
    return new VaultError(
      'unreachable',
      null,
      `Vault's host resolved to an address Corridor never connects to (${err.kind}); nothing was sent`,
    )
  if (isCertificateFailure(err))
    return new VaultError(
      'certificate_rejected',
      null,
      `Vault's TLS certificate did not verify (${String(code)}): trust its CA with vault.ca_file; nothing was sent`,
    )
  return new VaultError(
    'unreachable',
    null,
    `Vault is unreachable (${typeof code === 'string' ? code : 'connection failed'})`,
  )
}

function parseJson(text: string): unknown {
  if (text === '') return null
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

function isEnvelope(value: unknown): value is VaultEnvelope {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return (
    typeof v.lease_duration === 'number' &&
    'data' in v &&
    'auth' in v &&
    (v.data === null || typeof v.data === 'object')
  )
}

function isErrorBody(value: unknown): value is { errors: unknown[] } {
  return typeof value === 'object' && value !== null && Array.isArray((value as { errors?: unknown }).errors)
}
