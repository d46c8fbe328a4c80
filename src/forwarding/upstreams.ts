/**
 * Forwarding with undici: one Pool per connector, the response streamed to the agent chunk by
 * chunk with backpressure (server-sent events arrive as produced), explicit connect/header/body
 * timeouts, no redirects followed (the 3xx goes back to the agent unchanged), no retries, and
 * the upstream request aborted as soon as the agent goes away.
 */
import type { ServerResponse } from 'node:http'
import { buildConnector, Pool, type Dispatcher } from 'undici'
import type { MaskStream, SecretMask } from '../request/secret-mask.ts'
import { isJson, MAX_REWRITE_BYTES, type FollowUps } from './follow-ups.ts'
import type { Connector, ConnectorCatalog } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { ClientAbortedError } from '../shared/client-aborted.ts'
import { agentResponseHeaders } from './response-headers.ts'
import { isCertificateFailure } from '../shared/certificate-failure.ts'
import { AddressRefused, checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import { OwnListeners } from './own-listeners.ts'
import { hostAddress } from '../shared/egress-addresses.ts'

export interface UpstreamRequest {
  readonly method: string
  /** Path and query, built from the connector's base path and the canonical request path only. */
  readonly path: string
  readonly headers: string[]
  readonly body: Buffer | null
}

export interface BufferedResponse {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  /** Null when the body exceeded the limit. */
  readonly body: Buffer | null
  readonly bytes: number
}

export interface ForwardProgress {
  status: number
  bytesOut: number
}

/**
 * Told what has been relayed, as it happens: the agent's response may close (and its audit
 * record be written) before the forward promise settles.
 */
export type ForwardObserver = (progress: ForwardProgress) => void

export class Upstreams {
  #pools = new Map<string, { key: string; pool: Pool }>()
  readonly #resolve: ResolveAll | undefined
  /** Corridor's own listeners, once bound: no upstream connection goes to them. */
  readonly ownListeners = new OwnListeners()

  /**
   * `resolve`: how upstream hosts are resolved (the system's resolver unless a test stands in for
   * DNS); whatever resolves them, every answer is judged before a connection is made.
   */
  constructor(resolve?: ResolveAll) {
    this.#resolve = resolve
  }

  /** Creates pools for new connectors, replaces those whose origin or timeouts changed. */
  sync(catalog: ConnectorCatalog): void {
    const next = new Map<string, { key: string; pool: Pool }>()
    for (const c of catalog.connectors.values()) {
      const key = JSON.stringify([c.origin, c.timeouts])
      const existing = this.#pools.get(c.id)
      if (existing !== undefined && existing.key === key) {
        next.set(c.id, existing)
        continue
      }
      next.set(c.id, {
        key,
        pool: new Pool(c.origin, {
          connections: 256,
          pipelining: 1,
          connect: this.#connector(c),
          headersTimeout: c.timeouts.headersMs,
          bodyTimeout: c.timeouts.bodyMs,
          maxHeaderSize: 64 * 1024,
          keepAliveTimeout: 4_000,
        }),
      })
    }
    for (const [id, old] of this.#pools) if (next.get(id) !== old) void old.pool.close()
    this.#pools = next
  }

  /**
   * How a connector's pool connects: a host that is a name is judged by what it resolves to, in the
   * connection's own lookup; one written as an address (which no lookup sees) is judged here.
   * Either is refused when it leads back to Corridor's own listener on the connector's port.
   */
  #connector(c: Connector): buildConnector.connector {
    const url = new URL(c.origin)
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
    const isCorridor = (address: string): boolean => this.ownListeners.reaches(address, port)
    const connect = buildConnector({ timeout: c.timeouts.connectMs, lookup: checkedLookup(this.#resolve, isCorridor) })
    const literal = hostAddress(url.hostname)
    if (literal === null) return connect
    return (options, callback) => {
      if (isCorridor(literal)) return callback(new AddressRefused(url.hostname, literal, 'corridor_itself'), null)
      connect(options, callback)
    }
  }

  /** Resolves when the response has been relayed; rejects with a CorridorError (upstream_*) or ClientAbortedError. */
  forward(
    connector: Connector,
    request: UpstreamRequest,
    mask: SecretMask | null,
    res: ServerResponse,
    requestId: string,
    progress: ForwardObserver,
    followUps: FollowUps | null = null,
  ): Promise<void> {
    const entry = this.#pools.get(connector.id)
    if (entry === undefined)
      return Promise.reject(new CorridorError('upstream_unreachable', `no upstream pool for '${connector.id}'`))
    return new Promise((resolve, reject) => {
      entry.pool.dispatch(
        {
          method: request.method as Dispatcher.HttpMethod,
          path: request.path,
          headers: request.headers,
          body: request.body,
        },
        new ForwardHandler(res, requestId, mask, followUps, progress, resolve, reject),
      )
    })
  }

  /**
   * Forwards and buffers the whole response (for released approvals, whose result is kept for
   * the agent to collect). A response over `maxBytes` is cut off: the request ran, its body is lost.
   */
  async call(
    connector: Connector,
    request: UpstreamRequest,
    mask: SecretMask | null,
    timeoutMs: number,
    maxBytes: number,
  ): Promise<BufferedResponse> {
    const entry = this.#pools.get(connector.id)
    if (entry === undefined) throw new CorridorError('upstream_unreachable', `no upstream pool for '${connector.id}'`)
    let response: Dispatcher.ResponseData
    try {
      response = await entry.pool.request({
        method: request.method as Dispatcher.HttpMethod,
        path: request.path,
        headers: request.headers,
        body: request.body,
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      throw mapUpstreamError(err as Error)
    }
    const unreadable = unmaskable(mask, response.headers)
    if (unreadable !== null) {
      response.body.destroy()
      throw unreadable
    }
    const chunks: Buffer[] = []
    let size = 0
    let tooLarge = false
    try {
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length
        if (size > maxBytes) {
          tooLarge = true
          response.body.destroy()
          break
        }
        chunks.push(chunk as Buffer)
      }
    } catch (err) {
      throw mapUpstreamError(err as Error)
    }
    const body = tooLarge ? null : Buffer.concat(chunks)
    if (mask === null) return { status: response.statusCode, headers: response.headers, body, bytes: size }
    return {
      status: response.statusCode,
      headers: mask.headers(response.headers),
      body: body === null ? null : mask.buffer(body),
      bytes: size,
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((e) => e.pool.close()))
    this.#pools.clear()
  }
}

class ForwardHandler implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  readonly #requestId: string
  readonly #progress: ForwardObserver
  readonly #resolve: () => void
  readonly #reject: (e: unknown) => void
  readonly #mask: SecretMask | null
  readonly #followUps: FollowUps | null
  #masking: MaskStream | null = null
  /** A JSON response held back to have its follow-up URLs rewritten: its headers and the body so far. */
  #held: { headers: Record<string, string | string[] | undefined>; chunks: Buffer[]; size: number } | null = null
  #status = 0
  #bytesOut = 0
  #settled = false
  #onClose: (() => void) | null = null

  constructor(
    res: ServerResponse,
    requestId: string,
    mask: SecretMask | null,
    followUps: FollowUps | null,
    progress: ForwardObserver,
    resolve: () => void,
    reject: (e: unknown) => void,
  ) {
    this.#res = res
    this.#mask = mask
    this.#followUps = followUps
    this.#requestId = requestId
    this.#progress = progress
    this.#resolve = resolve
    this.#reject = reject
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#res.destroyed) {
      controller.abort(new ClientAbortedError())
      return
    }
    this.#onClose = () => {
      if (!this.#res.writableFinished) controller.abort(new ClientAbortedError())
    }
    this.#res.once('close', this.#onClose)
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) return // 1xx informational responses are not relayed
    const unreadable = unmaskable(this.#mask, headers)
    if (unreadable !== null) {
      controller.abort(unreadable)
      return
    }
    this.#status = statusCode
    this.#progress({ status: statusCode, bytesOut: 0 })
    const mask = this.#mask
    if (mask !== null && !mask.empty) this.#masking = mask.stream()
    const length = Number(headers['content-length'] ?? 0)
    if (this.#followUps !== null && isJson(headers['content-type']) && length <= MAX_REWRITE_BYTES) {
      // Held until complete: its follow-up URLs are rewritten, and its length with them.
      this.#held = { headers, chunks: [], size: 0 }
      return
    }
    this.#res.writeHead(statusCode, agentResponseHeaders(headers, this.#requestId, mask, this.#followUps))
    // Headers go out with the first body chunk when it arrived with them (one write instead of two);
    // a stream whose first event is not here yet (server-sent events) gets them at the next turn.
    setImmediate(() => {
      if (this.#bytesOut === 0 && !this.#settled && !this.#res.destroyed) this.#res.flushHeaders()
    })
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytesOut += chunk.length
    const out = this.#masking === null ? chunk : this.#masking.push(chunk)
    const held = this.#held
    if (held !== null) {
      held.chunks.push(out)
      held.size += out.length
      if (held.size <= MAX_REWRITE_BYTES) return
      // Too large to rewrite: relayed as it comes from here on.
      this.#held = null
      this.#res.writeHead(
        this.#status,
        agentResponseHeaders(held.headers, this.#requestId, this.#mask, this.#followUps),
      )
      if (!this.#res.write(Buffer.concat(held.chunks))) {
        controller.pause()
        this.#res.once('drain', () => controller.resume())
      }
      return
    }
    if (out.length > 0 && !this.#res.write(out)) {
      controller.pause()
      this.#res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(): void {
    this.#progress({ status: this.#status, bytesOut: this.#bytesOut })
    // Trailers are not relayed: they could carry what the body was masked of.
    const rest = this.#masking?.end()
    const held = this.#held
    if (held !== null && this.#followUps !== null) {
      this.#held = null
      if (rest !== undefined) held.chunks.push(rest)
      const body = this.#followUps.json(Buffer.concat(held.chunks))
      const headers = agentResponseHeaders(held.headers, this.#requestId, this.#mask, this.#followUps)
      headers['content-length'] = String(body.length)
      delete headers['transfer-encoding']
      this.#res.writeHead(this.#status, headers)
      this.#res.end(body)
    } else if (rest !== undefined && rest.length > 0) this.#res.end(rest)
    else this.#res.end()
    this.#settle(null)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#settle(error)
  }

  #settle(error: Error | null): void {
    if (this.#settled) return
    this.#settled = true
    this.#progress({ status: this.#status, bytesOut: this.#bytesOut })
    if (this.#onClose) this.#res.off('close', this.#onClose)
    if (error === null) this.#resolve()
    else this.#reject(mapUpstreamError(error))
  }
}

/**
 * A response Corridor cannot read cannot be masked: Corridor asks for identity encoding, and an
 * upstream that compresses anyway is refused rather than relayed unchecked.
 */
function unmaskable(
  mask: SecretMask | null,
  headers: Record<string, string | string[] | undefined>,
): CorridorError | null {
  if (mask === null || mask.empty) return null
  const encoding = headers['content-encoding']
  if (encoding === undefined || (typeof encoding === 'string' && encoding.trim().toLowerCase() === 'identity'))
    return null
  return new CorridorError(
    'upstream_bad_response',
    'the upstream sent an encoded (compressed) response, which Corridor cannot check for the credential',
  )
}

/** Upstream failures are 502 or 504, never 500 (reply-from maps resets to 500; that hides the culprit). */
function mapUpstreamError(error: Error): CorridorError | ClientAbortedError {
  if (error instanceof ClientAbortedError || error instanceof CorridorError) return error
  if (error instanceof AddressRefused)
    return new CorridorError(
      'upstream_address_refused',
      error.kind === 'corridor_itself'
        ? "the upstream's host leads back to Corridor's own listener (corridor_itself), a loop; nothing was sent"
        : `the upstream's host resolved to an address Corridor never connects to (${error.kind}); nothing was sent`,
      { cause: error },
    )
  const code = (error as { code?: string }).code
  if (error.name === 'TimeoutError')
    return new CorridorError('upstream_timeout', 'the upstream did not answer in time', { cause: error })
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new CorridorError('upstream_timeout', 'the upstream did not answer in time', { cause: error })
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return new CorridorError('upstream_unreachable', 'the upstream could not be reached or dropped the connection', {
        cause: error,
      })
    default:
      if (isCertificateFailure(error))
        return new CorridorError(
          'upstream_certificate_rejected',
          "the upstream's TLS certificate did not verify; nothing was sent to it",
          { cause: error },
        )
      return new CorridorError('upstream_bad_response', 'the upstream sent a response Corridor cannot relay', {
        cause: error,
      })
  }
}
