/**
 * A Vault-API-compatible test server: the endpoints Corridor uses, with the envelopes, error
 * bodies, status codes, token use counts, lease semantics and quirks as Vault's HTTP API
 * documentation gives them. It is configured through its JS API (mounts, roles,
 * policies) and carries fault switches (sealed, slow, blackhole, reset, 500) for the fault tests.
 *
 * It is deliberately strict where Vault is strict (unknown token → 403, wrong method → 405,
 * missing secret → 404 {"errors":[]}) so that a client passing here passes against Vault; the
 * contract suite runs the same tests against a real Vault to keep it honest.
 */
import { generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import {
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  createLocalJWKSet,
  type JSONWebKeySet,
  type CryptoKey,
} from 'jose'

type Capability = 'read' | 'create' | 'update' | 'delete' | 'list' | 'sudo'
export type VaultPolicy = Record<string, readonly Capability[]>

interface Token {
  id: string
  accessor: string
  policies: string[]
  ttlSec: number
  /** null for root and other non-expiring tokens. */
  expiresAt: number | null
  maxExpiresAt: number | null
  renewable: boolean
  numUses: number
  /** Created with a use limit: such tokens cannot create children. */
  limited: boolean
  entityId: string
  orphan: boolean
  parent: string | null
  path: string
  displayName: string
  meta: Record<string, string> | null
  issuedAt: number
  children: Set<string>
}

interface Lease {
  id: string
  path: string
  issuedAt: number
  expiresAt: number
  maxExpiresAt: number
  renewable: boolean
  lastRenewal: number | null
  /** The token that created it: revoking the token revokes its leases. */
  token: string
  /** What the credential is, so a test upstream can ask whether it is still live. */
  credential: string
}

interface DynamicRole {
  ttlSec: number
  maxTtlSec: number
  renewable: boolean
  kind: 'database' | 'aws_sts'
}

interface KvVersion {
  data: Record<string, unknown>
  createdTime: string
  deletionTime: string
  destroyed: boolean
}

export interface Faults {
  sealed: boolean
  /** Added before every answer (health included). */
  delayMs: number
  /** Accept and never answer. */
  blackhole: boolean
  /** Destroy the socket instead of answering. */
  reset: boolean
  /** Answer this status with a Vault error body, for every non-health request. */
  status: number | null
}

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
function base62(n: number): string {
  const bytes = randomBytes(n)
  let out = ''
  for (const b of bytes) out += BASE62[b % 62]
  return out
}
const multierror = (...errors: string[]): string =>
  `${errors.length} error${errors.length === 1 ? '' : 's'} occurred:\n${errors.map((e) => `\t* ${e}\n`).join('')}\n`

class VaultHttpError extends Error {
  readonly status: number
  readonly errors: string[]

  constructor(status: number, errors: string[]) {
    super(errors.join('; ') || `status ${status}`)
    this.status = status
    this.errors = errors
  }
}
const permissionDenied = (): VaultHttpError => new VaultHttpError(403, [multierror('permission denied')])
const invalidToken = (): VaultHttpError => new VaultHttpError(403, [multierror('permission denied', 'invalid token')])
const unsupportedPath = (): VaultHttpError => new VaultHttpError(404, [multierror('unsupported path')])
const badRequest = (message: string): VaultHttpError => new VaultHttpError(400, [message])

interface Envelope {
  lease_id?: string
  renewable?: boolean
  lease_duration?: number
  data?: unknown
  warnings?: string[] | null
  auth?: unknown
  mount_type?: string
}

interface Reply {
  status: number
  body?: unknown
  /** Plain JSON with no envelope (OIDC well-known endpoints, health). */
  raw?: boolean
}

/** One version of a transit key. */
interface TransitKeyVersion {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  readonly created: string
}

export class VaultTestServer {
  readonly rootToken = `hvs.${base62(24)}`
  readonly faults: Faults = { sealed: false, delayMs: 0, blackhole: false, reset: false, status: null }
  /** Requests received per `METHOD path` (without /v1/ and query), for the benchmark and tests. */
  readonly calls = new Map<string, number>()
  readonly #tokens = new Map<string, Token>()
  readonly #accessors = new Map<string, string>()
  readonly #leases = new Map<string, Lease>()
  readonly #policies = new Map<string, VaultPolicy>()
  readonly #kv = new Map<string, Map<string, KvVersion[]>>()
  readonly #dynamic = new Map<string, Map<string, DynamicRole>>()
  /** Transit mounts → key name → its versions (ed25519 only: what Corridor signs with). */
  readonly #transit = new Map<string, Map<string, TransitKeyVersion[]>>()
  readonly #approles = new Map<
    string,
    { roleId: string; secretIds: Set<string>; policies: string[]; tokenTtlSec: number; tokenMaxTtlSec: number }
  >()
  readonly #jwtMounts = new Map<
    string,
    { jwks: JSONWebKeySet; roles: Map<string, { policies: string[]; ttlSec: number; audience: string }> }
  >()
  readonly #tokenRoles = new Map<string, { allowedPolicies: string[]; orphan: boolean }>()
  readonly #oidcRoles = new Map<string, { clientId: string; ttlSec: number }>()
  #oidcKey: { privateKey: CryptoKey; jwks: JSONWebKeySet; kid: string } | null = null
  #server: Server | null = null
  #port = 0
  readonly #sockets = new Set<Socket>()
  /** A certificate and key (PEM) to serve HTTPS with, as a production Vault does; null: plain HTTP. */
  readonly #tls: { readonly cert: Buffer; readonly key: Buffer } | null

  constructor(options: { tls?: { cert: Buffer; key: Buffer } } = {}) {
    this.#tls = options.tls ?? null
    this.#tokens.set(this.rootToken, {
      id: this.rootToken,
      accessor: base62(24),
      policies: ['root'],
      ttlSec: 0,
      expiresAt: null,
      maxExpiresAt: null,
      renewable: false,
      numUses: 0,
      limited: false,
      entityId: '',
      orphan: true,
      parent: null,
      path: 'auth/token/root',
      displayName: 'root',
      meta: null,
      issuedAt: Date.now(),
      children: new Set(),
    })
  }

  get address(): string {
    return `${this.#tls === null ? 'http' : 'https'}://127.0.0.1:${this.#port}`
  }

  /** Listens on `port` (0 = ephemeral); restarting on the same port simulates Vault coming back. */
  async start(port = this.#port): Promise<string> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.#handle(req, res)
    const server = this.#tls === null ? createServer(handler) : createHttpsServer(this.#tls, handler)
    server.keepAliveTimeout = 5_000
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    this.#server = server
    this.#port = (server.address() as AddressInfo).port
    return this.address
  }

  /** Stops listening and drops every connection (Vault killed). State survives, as in a real Vault's storage. */
  async stop(): Promise<void> {
    const server = this.#server
    this.#server = null
    if (server === null) return
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  // ---- configuration (what an operator would do with the CLI) -------------------------------

  setPolicy(name: string, policy: VaultPolicy): void {
    this.#policies.set(name, policy)
  }

  kvPut(mount: string, path: string, data: Record<string, unknown>): number {
    const store = this.#kv.get(mount) ?? new Map<string, KvVersion[]>()
    this.#kv.set(mount, store)
    const versions = store.get(path) ?? []
    versions.push({ data, createdTime: new Date().toISOString(), deletionTime: '', destroyed: false })
    store.set(path, versions)
    return versions.length
  }

  kvDeleteLatest(mount: string, path: string): void {
    const latest = this.#kv.get(mount)?.get(path)?.at(-1)
    if (latest) latest.deletionTime = new Date().toISOString()
  }

  enableKv(mount: string): void {
    if (!this.#kv.has(mount)) this.#kv.set(mount, new Map())
  }

  /** `vault secrets enable -path=<mount> transit`. */
  enableTransit(mount = 'transit'): void {
    if (!this.#transit.has(mount)) this.#transit.set(mount, new Map())
  }

  /** `vault write <mount>/keys/<name> type=ed25519`, or `.../rotate` when it exists: a new version. Returns it. */
  transitKey(mount: string, name: string): number {
    this.enableTransit(mount)
    const keys = this.#transit.get(mount) as Map<string, TransitKeyVersion[]>
    const versions = keys.get(name) ?? []
    versions.push({ ...generateKeyPairSync('ed25519'), created: new Date().toISOString() })
    keys.set(name, versions)
    return versions.length
  }

  addDynamicRole(mount: string, role: string, spec: DynamicRole): void {
    const roles = this.#dynamic.get(mount) ?? new Map<string, DynamicRole>()
    roles.set(role, spec)
    this.#dynamic.set(mount, roles)
  }

  addAppRole(
    name: string,
    policies: string[],
    tokenTtlSec: number,
    tokenMaxTtlSec = tokenTtlSec * 10,
  ): { roleId: string; secretId: string } {
    const roleId = randomUUID()
    const secretId = randomUUID()
    this.#approles.set(name, { roleId, secretIds: new Set([secretId]), policies, tokenTtlSec, tokenMaxTtlSec })
    return { roleId, secretId }
  }

  /** auth/token/roles/<name>: lets a token create tokens with policies it does not hold itself. */
  addTokenRole(name: string, spec: { allowedPolicies: string[]; orphan?: boolean }): void {
    this.#tokenRoles.set(name, { allowedPolicies: spec.allowedPolicies, orphan: spec.orphan ?? false })
  }

  addJwtRole(
    mount: string,
    jwks: JSONWebKeySet,
    role: string,
    spec: { policies: string[]; ttlSec: number; audience: string },
  ): void {
    const m = this.#jwtMounts.get(mount) ?? { jwks, roles: new Map() }
    m.roles.set(role, spec)
    this.#jwtMounts.set(mount, m)
  }

  async addOidcRole(role: string, ttlSec: number): Promise<{ clientId: string }> {
    if (this.#oidcKey === null) {
      const { privateKey, publicKey } = await generateKeyPair('RS256')
      const kid = randomUUID()
      const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
      this.#oidcKey = { privateKey, jwks: { keys: [jwk] }, kid }
    }
    const clientId = base62(26)
    this.#oidcRoles.set(role, { clientId, ttlSec })
    return { clientId }
  }

  /** A token as an operator would mint it for Corridor (root-created, with an entity). */
  createToken(opts: {
    policies: string[]
    ttlSec: number
    renewable?: boolean
    numUses?: number
    maxTtlSec?: number
  }): string {
    return this.#mintToken({
      policies: opts.policies,
      ttlSec: opts.ttlSec,
      maxTtlSec: opts.maxTtlSec ?? opts.ttlSec * 10,
      renewable: opts.renewable ?? true,
      numUses: opts.numUses ?? 0,
      entityId: randomUUID(),
      parent: this.rootToken,
      path: 'auth/token/create',
      displayName: 'token',
      meta: null,
    }).id
  }

  /** Revokes every token issued by a login path (e.g. auth/approle/login): Corridor's token gone behind its back. */
  revokeTokensFrom(loginPath: string): number {
    const ids = [...this.#tokens.values()].filter((t) => t.path === loginPath).map((t) => t.id)
    for (const id of ids) this.#revokeToken(id)
    return ids.length
  }

  revokeToken(token: string): void {
    this.#revokeToken(token)
  }

  /** Revokes a lease behind the client's back. */
  revokeLease(leaseId: string): void {
    this.#leases.delete(leaseId)
  }

  /** Whether a credential Vault issued (a dynamic password, a minted token) is still live: the test upstream's check. */
  isLive(credential: string): boolean {
    const now = Date.now()
    for (const lease of this.#leases.values()) if (lease.credential === credential) return lease.expiresAt > now
    const token = this.#tokens.get(credential)
    if (token !== undefined) return this.#tokenValid(token, now)
    return false
  }

  liveLeases(prefix = ''): Lease[] {
    const now = Date.now()
    return [...this.#leases.values()].filter((l) => l.path.startsWith(prefix) && l.expiresAt > now)
  }

  tokenCount(): number {
    return this.#tokens.size
  }

  callCount(prefix = ''): number {
    let n = 0
    for (const [key, count] of this.calls) if (key.split(' ')[1]?.startsWith(prefix)) n += count
    return n
  }

  oidcJwks(): JSONWebKeySet {
    return this.#oidcKey?.jwks ?? { keys: [] }
  }

  // ---- HTTP -------------------------------------------------------------------------------

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (this.faults.blackhole) return
      if (this.faults.reset) {
        req.socket.destroy()
        return
      }
      const answer = async (): Promise<void> => {
        let reply: Reply
        try {
          reply = await this.#route(req, Buffer.concat(chunks))
        } catch (err) {
          reply =
            err instanceof VaultHttpError
              ? { status: err.status, body: { errors: err.errors }, raw: true }
              : { status: 500, body: { errors: [String(err)] }, raw: true }
        }
        if (res.destroyed) return
        res.setHeader('cache-control', 'no-store')
        if (reply.body === undefined) {
          // 204 still carries the JSON content type.
          res.writeHead(reply.status, { 'content-type': 'application/json' }).end()
          return
        }
        const body = JSON.stringify(reply.body)
        res
          .writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
          .end(body)
      }
      if (this.faults.delayMs > 0) setTimeout(() => void answer(), this.faults.delayMs)
      else void answer()
    })
  }

  async #route(req: IncomingMessage, rawBody: Buffer): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://vault')
    if (!url.pathname.startsWith('/v1/')) throw unsupportedPath()
    const path = url.pathname.slice(4)
    let method = req.method ?? 'GET'
    if (method === 'PUT') method = 'POST'
    if (method === 'GET' && url.searchParams.get('list') === 'true') method = 'LIST'
    this.calls.set(`${method} ${path}`, (this.calls.get(`${method} ${path}`) ?? 0) + 1)
    if (!['GET', 'POST', 'DELETE', 'LIST', 'HEAD'].includes(method)) throw new VaultHttpError(405, [])

    if (path === 'sys/health') return this.#health(method)
    if (this.faults.sealed && path !== 'sys/seal-status') throw new VaultHttpError(503, ['Vault is sealed'])
    if (this.faults.status !== null) throw new VaultHttpError(this.faults.status, ['internal error'])
    if (path === 'sys/seal-status')
      return {
        status: 200,
        body: { type: 'shamir', initialized: true, sealed: this.faults.sealed, t: 1, n: 1, progress: 0 },
        raw: true,
      }

    let body: Record<string, unknown> = {}
    if (rawBody.length > 0) {
      try {
        body = JSON.parse(rawBody.toString('utf8')) as Record<string, unknown>
      } catch {
        throw badRequest('failed to parse JSON input: invalid character')
      }
    }

    // Unauthenticated endpoints.
    if (path === 'identity/oidc/.well-known/keys' && method === 'GET')
      return { status: 200, body: this.oidcJwks(), raw: true }
    if (path === 'identity/oidc/.well-known/openid-configuration' && method === 'GET') {
      return {
        status: 200,
        body: {
          issuer: `${this.address}/v1/identity/oidc`,
          jwks_uri: `${this.address}/v1/identity/oidc/.well-known/keys`,
          id_token_signing_alg_values_supported: ['RS256'],
        },
        raw: true,
      }
    }
    if (path === 'auth/approle/login' && method === 'POST') return this.#approleLogin(body)
    const loginMatch = /^auth\/([^/]+)\/login$/.exec(path)
    if (loginMatch && method === 'POST' && this.#jwtMounts.has(loginMatch[1] as string))
      return this.#jwtLogin(loginMatch[1] as string, body)

    const token = this.#authenticate(req)
    // The use is counted before the request is handled (lookup-self shows it); at zero the token is revoked after it.
    const last = this.#use(token)
    try {
      // ACLs are checked before routing: without the capability, even a path that does not exist is 403.
      if (
        !this.#allowed(
          token,
          path,
          method === 'GET' ? 'read' : method === 'LIST' ? 'list' : method === 'DELETE' ? 'delete' : 'update',
        ) &&
        !(method === 'POST' && this.#allowed(token, path, 'create'))
      ) {
        throw permissionDenied()
      }
      return await this.#authenticated(token, method, path, url, body)
    } finally {
      if (last) this.#revokeToken(token.id)
    }
  }

  #health(method: string): Reply {
    const status = this.faults.sealed ? 503 : 200
    const body = {
      initialized: true,
      sealed: this.faults.sealed,
      standby: false,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(Date.now() / 1000),
      version: '1.17.0+corridor-test',
      ...(this.faults.sealed
        ? {}
        : { cluster_name: 'vault-cluster-test', cluster_id: 'd1e5c3b4-0000-4000-8000-000000000000' }),
    }
    return method === 'HEAD' ? { status } : { status, body, raw: true }
  }

  #authenticate(req: IncomingMessage): Token {
    // X-Vault-Token wins over Authorization: Bearer.
    const header = req.headers['x-vault-token']
    let id = typeof header === 'string' ? header : undefined
    if (id === undefined) {
      const auth = req.headers.authorization
      if (typeof auth === 'string' && auth.startsWith('Bearer ')) id = auth.slice(7)
    }
    if (id === undefined || id === '') throw permissionDenied()
    const token = this.#tokens.get(id)
    if (token === undefined || !this.#tokenValid(token, Date.now())) throw invalidToken()
    return token
  }

  #tokenValid(token: Token, now: number): boolean {
    return token.expiresAt === null || token.expiresAt > now
  }

  /** Every request made with a limited-use token uses one up; true when this was the last use. */
  #use(token: Token): boolean {
    if (!token.limited) return false
    token.numUses -= 1
    return token.numUses <= 0
  }

  #allowed(token: Token, path: string, capability: Capability): boolean {
    if (token.policies.includes('root')) return true
    for (const name of token.policies) {
      const policy = this.#policies.get(name)
      if (policy === undefined) continue
      for (const [pattern, caps] of Object.entries(policy)) {
        if (pathMatches(pattern, path) && caps.includes(capability)) return true
      }
    }
    // Every token may look itself up, renew and revoke itself (the `default` policy).
    return ['auth/token/lookup-self', 'auth/token/renew-self', 'auth/token/revoke-self'].includes(path)
  }

  async #authenticated(
    token: Token,
    method: string,
    path: string,
    url: URL,
    body: Record<string, unknown>,
  ): Promise<Reply> {
    const need = (capability: Capability): void => {
      if (!this.#allowed(token, path, capability)) throw permissionDenied()
    }
    const capabilityFor =
      method === 'GET' ? 'read' : method === 'LIST' ? 'list' : method === 'DELETE' ? 'delete' : 'update'

    switch (path) {
      case 'auth/token/lookup-self':
        if (method !== 'GET') throw new VaultHttpError(405, [])
        return this.#envelope({ data: this.#lookup(token) })
      case 'auth/token/renew-self':
        if (method !== 'POST') throw new VaultHttpError(405, [])
        return this.#renewSelf(token, body)
      case 'auth/token/revoke-self':
        if (method !== 'POST') throw new VaultHttpError(405, [])
        this.#revokeToken(token.id)
        return { status: 204 }
      case 'auth/token/create':
      case 'auth/token/create-orphan':
        if (method !== 'POST') throw new VaultHttpError(405, [])
        need('update')
        return this.#createToken(token, body, path.endsWith('orphan'))
      case 'auth/token/revoke-accessor': {
        if (method !== 'POST') throw new VaultHttpError(405, [])
        need('update')
        const id = this.#accessors.get(String(body.accessor ?? ''))
        if (id !== undefined) this.#revokeToken(id)
        return { status: 204 }
      }
      case 'sys/leases/renew':
        need('update')
        return this.#renewLease(body)
      case 'sys/leases/revoke':
        need('update')
        // Idempotent: unknown or already revoked lease ids also get 204.
        this.#leases.delete(String(body.lease_id ?? ''))
        return { status: 204 }
      case 'sys/leases/lookup': {
        need('update')
        const lease = this.#leases.get(String(body.lease_id ?? ''))
        if (lease === undefined) throw badRequest('invalid lease')
        const now = Date.now()
        return this.#envelope({
          data: {
            id: lease.id,
            issue_time: new Date(lease.issuedAt).toISOString(),
            expire_time: new Date(lease.expiresAt).toISOString(),
            last_renewal: lease.lastRenewal === null ? null : new Date(lease.lastRenewal).toISOString(),
            renewable: lease.renewable,
            ttl: Math.max(0, Math.round((lease.expiresAt - now) / 1000)),
            path: lease.path,
          },
        })
      }
    }

    const roleCreate = /^auth\/token\/create\/([^/]+)$/.exec(path)
    if (roleCreate) {
      if (method !== 'POST') throw new VaultHttpError(405, [])
      const role = this.#tokenRoles.get(roleCreate[1] as string)
      if (role === undefined) throw badRequest('unknown role')
      return this.#createToken(token, body, role.orphan, role)
    }

    const oidc = /^identity\/oidc\/token\/([^/]+)$/.exec(path)
    if (oidc) {
      if (method !== 'GET') throw new VaultHttpError(405, [])
      need('read')
      return this.#identityToken(token, oidc[1] as string)
    }

    const [mount, kind, ...rest] = path.split('/')
    const subPath = rest.join('/')
    if (mount !== undefined && this.#transit.has(mount) && (kind === 'keys' || kind === 'sign') && rest.length >= 1) {
      need(capabilityFor)
      return this.#transitCall(mount, kind, rest, method, body)
    }
    if (mount !== undefined && this.#kv.has(mount) && kind === 'data' && subPath !== '') {
      need(method === 'POST' ? (this.#kv.get(mount)?.has(subPath) ? 'update' : 'create') : capabilityFor)
      return this.#kvData(mount, subPath, method, url, body)
    }
    if (mount !== undefined && this.#dynamic.has(mount) && (kind === 'creds' || kind === 'sts') && rest.length === 1) {
      need(capabilityFor)
      if (method !== 'GET' && method !== 'POST') throw new VaultHttpError(405, [])
      const role = this.#dynamic.get(mount)?.get(rest[0] as string)
      if (role === undefined) throw badRequest(`unknown role: ${rest[0]}`)
      return this.#issueLease(token, path, role, body)
    }
    throw unsupportedPath()
  }

  /** The transit engine's key and sign endpoints, for ed25519 keys. */
  #transitCall(mount: string, kind: string, rest: string[], method: string, body: Record<string, unknown>): Reply {
    const keys = this.#transit.get(mount) as Map<string, TransitKeyVersion[]>
    const name = rest[0] as string
    if (kind === 'keys' && rest.length === 2 && rest[1] === 'rotate') {
      if (method !== 'POST') throw new VaultHttpError(405, [])
      if (!keys.has(name)) throw badRequest('key not found')
      this.transitKey(mount, name)
      return { status: 204, body: null }
    }
    if (rest.length !== 1) throw unsupportedPath()
    if (kind === 'keys' && method === 'POST') {
      if ((body['type'] ?? 'aes256-gcm96') !== 'ed25519') throw badRequest('this test server makes ed25519 keys only')
      if (!keys.has(name)) this.transitKey(mount, name)
      return { status: 204, body: null }
    }
    const versions = keys.get(name)
    if (kind === 'keys' && method === 'GET') {
      if (versions === undefined) throw new VaultHttpError(404, [])
      return this.#envelope({
        data: {
          name,
          type: 'ed25519',
          latest_version: versions.length,
          min_decryption_version: 1,
          min_encryption_version: 0,
          deletion_allowed: false,
          derived: false,
          exportable: false,
          allow_plaintext_backup: false,
          supports_encryption: false,
          supports_decryption: false,
          supports_derivation: true,
          supports_signing: true,
          keys: Object.fromEntries(
            versions.map((v, i) => [
              String(i + 1),
              {
                creation_time: v.created,
                name: 'ed25519',
                public_key: Buffer.from(
                  (v.publicKey.export({ format: 'jwk' }) as { x: string }).x,
                  'base64url',
                ).toString('base64'),
              },
            ]),
          ),
        },
      })
    }
    if (kind === 'sign' && method === 'POST') {
      if (versions === undefined) throw badRequest('signing key not found')
      const input = body['input']
      if (typeof input !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(input))
        throw badRequest('missing input to process')
      const version = typeof body['key_version'] === 'number' ? body['key_version'] : versions.length
      const key = versions[version - 1]
      if (key === undefined) throw badRequest('invalid key version')
      const signature = sign(null, Buffer.from(input, 'base64'), key.privateKey).toString('base64')
      return this.#envelope({ data: { signature: `vault:v${version}:${signature}`, key_version: version } })
    }
    throw new VaultHttpError(405, [])
  }

  #envelope(e: Envelope, status = 200): Reply {
    // All nine keys, in Vault's order, always present.
    return {
      status,
      body: {
        request_id: randomUUID(),
        lease_id: e.lease_id ?? '',
        renewable: e.renewable ?? false,
        lease_duration: e.lease_duration ?? 0,
        data: e.data ?? null,
        wrap_info: null,
        warnings: e.warnings ?? null,
        auth: e.auth ?? null,
        mount_type: e.mount_type ?? '',
      },
    }
  }

  #mintToken(spec: {
    policies: string[]
    ttlSec: number
    maxTtlSec: number
    renewable: boolean
    numUses: number
    entityId: string
    parent: string | null
    path: string
    displayName: string
    meta: Record<string, string> | null
  }): Token {
    const now = Date.now()
    const token: Token = {
      id: `hvs.${base62(24)}`,
      accessor: base62(24),
      policies: spec.policies,
      ttlSec: spec.ttlSec,
      expiresAt: spec.ttlSec === 0 ? null : now + spec.ttlSec * 1000,
      maxExpiresAt: spec.maxTtlSec === 0 ? null : now + spec.maxTtlSec * 1000,
      renewable: spec.renewable,
      numUses: spec.numUses,
      limited: spec.numUses > 0,
      entityId: spec.entityId,
      orphan: spec.parent === null,
      parent: spec.parent,
      path: spec.path,
      displayName: spec.displayName,
      meta: spec.meta,
      issuedAt: now,
      children: new Set(),
    }
    this.#tokens.set(token.id, token)
    this.#accessors.set(token.accessor, token.id)
    if (spec.parent !== null) this.#tokens.get(spec.parent)?.children.add(token.id)
    return token
  }

  #authBlock(token: Token): Record<string, unknown> {
    return {
      client_token: token.id,
      accessor: token.accessor,
      policies: token.policies,
      token_policies: token.policies,
      metadata: token.meta,
      lease_duration: token.expiresAt === null ? 0 : Math.round((token.expiresAt - Date.now()) / 1000),
      renewable: token.renewable,
      entity_id: token.entityId,
      token_type: 'service',
      orphan: token.orphan,
      mfa_requirement: null,
      num_uses: token.numUses,
    }
  }

  #lookup(token: Token): Record<string, unknown> {
    const now = Date.now()
    const base: Record<string, unknown> = {
      accessor: token.accessor,
      creation_time: Math.floor(token.issuedAt / 1000),
      creation_ttl: token.ttlSec,
      display_name: token.displayName,
      entity_id: token.entityId,
      expire_time: token.expiresAt === null ? null : new Date(token.expiresAt).toISOString(),
      explicit_max_ttl: 0,
      id: token.id,
      meta: token.meta,
      num_uses: token.numUses,
      orphan: token.orphan,
      path: token.path,
      policies: token.policies,
      ttl: token.expiresAt === null ? 0 : Math.max(0, Math.round((token.expiresAt - now) / 1000)),
      type: 'service',
    }
    // Root tokens have neither `renewable` nor `issue_time`.
    if (token.expiresAt !== null) {
      base.renewable = token.renewable
      base.issue_time = new Date(token.issuedAt).toISOString()
    }
    return base
  }

  #renewSelf(token: Token, body: Record<string, unknown>): Reply {
    if (!token.renewable || token.expiresAt === null) throw badRequest('lease is not renewable')
    const now = Date.now()
    const increment = body.increment === undefined ? token.ttlSec : parseDurationSec(body.increment)
    let expiresAt = now + increment * 1000
    const warnings: string[] = []
    if (token.maxExpiresAt !== null && expiresAt > token.maxExpiresAt) {
      expiresAt = token.maxExpiresAt
      warnings.push('TTL of "' + increment + 's" exceeded the effective max_ttl; TTL value is capped accordingly')
    }
    token.expiresAt = expiresAt
    return this.#envelope({ auth: this.#authBlock(token), warnings: warnings.length ? warnings : null })
  }

  #createToken(
    parent: Token,
    body: Record<string, unknown>,
    orphan: boolean,
    role?: { allowedPolicies: string[] },
  ): Reply {
    if (parent.limited) throw badRequest('restricted use token cannot generate child tokens')
    const requested = Array.isArray(body.policies)
      ? body.policies.map(String)
      : (role?.allowedPolicies ?? parent.policies.filter((p) => p !== 'root'))
    const policies = body.no_default_policy === true ? requested : [...new Set(['default', ...requested])]
    if (role !== undefined) {
      const notAllowed = requested.filter((p) => !role.allowedPolicies.includes(p))
      if (notAllowed.length > 0)
        throw badRequest(`token policies (${notAllowed.join(', ')}) must be subset of the role's allowed policies`)
    } else if (!parent.policies.includes('root') && !requested.every((p) => parent.policies.includes(p)))
      throw badRequest('child policies must be subset of parent')
    const ttlSec = body.ttl === undefined ? parent.ttlSec || 2_764_800 : parseDurationSec(body.ttl)
    const token = this.#mintToken({
      policies,
      ttlSec,
      maxTtlSec: body.explicit_max_ttl === undefined ? ttlSec * 10 : parseDurationSec(body.explicit_max_ttl),
      renewable: body.renewable !== false,
      numUses: typeof body.num_uses === 'number' ? body.num_uses : 0,
      entityId: parent.entityId,
      parent: orphan || body.no_parent === true ? null : parent.id,
      path: 'auth/token/create',
      displayName: typeof body.display_name === 'string' ? `token-${body.display_name}` : 'token',
      meta: (body.meta as Record<string, string> | undefined) ?? null,
    })
    const unknown = policies.filter((p) => p !== 'default' && p !== 'root' && !this.#policies.has(p))
    return this.#envelope({
      auth: this.#authBlock(token),
      warnings: unknown.length ? unknown.map((p) => `policy "${p}" does not exist`) : null,
    })
  }

  #revokeToken(id: string): void {
    const token = this.#tokens.get(id)
    if (token === undefined) return
    this.#tokens.delete(id)
    this.#accessors.delete(token.accessor)
    for (const child of token.children) this.#revokeToken(child)
    for (const [leaseId, lease] of this.#leases) if (lease.token === id) this.#leases.delete(leaseId)
  }

  #approleLogin(body: Record<string, unknown>): Reply {
    if (typeof body.role_id !== 'string' || body.role_id === '') throw badRequest('missing role_id')
    for (const [name, role] of this.#approles) {
      if (role.roleId !== body.role_id) continue
      if (typeof body.secret_id !== 'string' || !role.secretIds.has(body.secret_id)) break
      const token = this.#mintToken({
        policies: ['default', ...role.policies],
        ttlSec: role.tokenTtlSec,
        maxTtlSec: role.tokenMaxTtlSec,
        renewable: true,
        numUses: 0,
        entityId: randomUUID(),
        parent: null,
        path: 'auth/approle/login',
        displayName: 'approle',
        meta: { role_name: name },
      })
      return this.#envelope({ auth: this.#authBlock(token) })
    }
    throw badRequest('invalid role or secret ID')
  }

  async #jwtLogin(mountName: string, body: Record<string, unknown>): Promise<Reply> {
    const mount = this.#jwtMounts.get(mountName)
    if (mount === undefined) throw unsupportedPath()
    if (typeof body.role !== 'string' || body.role === '') throw badRequest('missing role')
    const roleName = body.role
    const role = mount.roles.get(roleName)
    if (role === undefined) throw badRequest(`role "${roleName}" could not be found`)
    if (typeof body.jwt !== 'string' || body.jwt === '') throw badRequest('missing token')
    let sub: string
    try {
      const { payload } = await jwtVerify(body.jwt, createLocalJWKSet(mount.jwks), { audience: role.audience })
      sub = String(payload.sub ?? '')
    } catch (err) {
      throw badRequest(`error validating token: ${(err as Error).message}`)
    }
    const token = this.#mintToken({
      policies: ['default', ...role.policies],
      ttlSec: role.ttlSec,
      maxTtlSec: role.ttlSec * 10,
      renewable: true,
      numUses: 0,
      entityId: randomUUID(),
      parent: null,
      path: `auth/${mountName}/login`,
      displayName: `${mountName}-${sub}`,
      meta: { role: roleName },
    })
    return this.#envelope({ auth: this.#authBlock(token) })
  }

  #kvData(mount: string, path: string, method: string, url: URL, body: Record<string, unknown>): Reply {
    const store = this.#kv.get(mount) as Map<string, KvVersion[]>
    if (method === 'POST') {
      if (typeof body.data !== 'object' || body.data === null) throw badRequest('no data provided')
      const versions = store.get(path) ?? []
      const cas = (body.options as { cas?: number } | undefined)?.cas
      if (cas !== undefined && cas !== versions.length)
        throw badRequest('check-and-set parameter did not match the current version')
      const version = this.kvPut(mount, path, body.data as Record<string, unknown>)
      const v = store.get(path)?.[version - 1] as KvVersion
      return this.#envelope({
        data: { created_time: v.createdTime, custom_metadata: null, deletion_time: '', destroyed: false, version },
        mount_type: 'kv',
      })
    }
    if (method === 'DELETE') {
      this.kvDeleteLatest(mount, path)
      return { status: 204 }
    }
    if (method !== 'GET') throw new VaultHttpError(405, [])
    const versions = store.get(path)
    const requested = url.searchParams.get('version')
    const number = requested === null || requested === '0' ? (versions?.length ?? 0) : Number(requested)
    const v = versions?.[number - 1]
    if (v === undefined) throw new VaultHttpError(404, [])
    const metadata = {
      created_time: v.createdTime,
      custom_metadata: null,
      deletion_time: v.deletionTime,
      destroyed: v.destroyed,
      version: number,
    }
    // A deleted or destroyed version: 404 with a full success envelope, not an error body.
    if (v.deletionTime !== '' || v.destroyed)
      return this.#envelope({ data: { data: null, metadata }, mount_type: 'kv' }, 404)
    return this.#envelope({ data: { data: v.data, metadata }, mount_type: 'kv' })
  }

  #issueLease(token: Token, path: string, role: DynamicRole, body: Record<string, unknown>): Reply {
    const now = Date.now()
    const ttlSec = body.ttl === undefined ? role.ttlSec : Math.min(parseDurationSec(body.ttl), role.maxTtlSec)
    const lease: Lease = {
      id: `${path}/${base62(24)}`,
      path,
      issuedAt: now,
      expiresAt: now + ttlSec * 1000,
      maxExpiresAt: now + role.maxTtlSec * 1000,
      renewable: role.renewable,
      lastRenewal: null,
      token: token.id,
      credential: '',
    }
    let data: Record<string, unknown>
    if (role.kind === 'database') {
      const password = `A1a-${base62(20)}`
      data = { username: `v-token-${path.split('/').at(-1)}-${base62(20)}-${Math.floor(now / 1000)}`, password }
      lease.credential = password
    } else {
      const secretKey = base62(40)
      data = {
        access_key: `ASIA${base62(16).toUpperCase()}`,
        secret_key: secretKey,
        security_token: base62(120),
        ttl: ttlSec,
      }
      lease.credential = secretKey
    }
    this.#leases.set(lease.id, lease)
    return this.#envelope({
      lease_id: lease.id,
      renewable: lease.renewable,
      lease_duration: ttlSec,
      data,
      mount_type: role.kind === 'database' ? 'database' : 'aws',
    })
  }

  #renewLease(body: Record<string, unknown>): Reply {
    const id = String(body.lease_id ?? '')
    if (id === '') throw badRequest('lease_id must be specified')
    if (id.startsWith('auth/')) throw badRequest('tokens cannot be renewed through this endpoint')
    const lease = this.#leases.get(id)
    if (lease === undefined) throw badRequest('lease not found')
    const now = Date.now()
    if (lease.expiresAt <= now) throw badRequest('lease expired')
    if (!lease.renewable) throw badRequest('lease is not renewable')
    const increment =
      body.increment === undefined
        ? Math.round((lease.expiresAt - lease.issuedAt) / 1000)
        : parseDurationSec(body.increment)
    let expiresAt = now + increment * 1000
    const warnings: string[] = []
    if (expiresAt > lease.maxExpiresAt) {
      expiresAt = lease.maxExpiresAt
      warnings.push('TTL of "' + increment + 's" exceeded the effective max_ttl; TTL value is capped accordingly')
    }
    lease.expiresAt = expiresAt
    lease.lastRenewal = now
    // Database renewals answer data: null.
    return this.#envelope({
      lease_id: lease.id,
      renewable: true,
      lease_duration: Math.round((expiresAt - now) / 1000),
      data: null,
      warnings: warnings.length ? warnings : null,
    })
  }

  async #identityToken(token: Token, roleName: string): Promise<Reply> {
    const role = this.#oidcRoles.get(roleName)
    const key = this.#oidcKey
    if (role === undefined || key === null) throw badRequest(`role "${roleName}" not found`)
    if (token.entityId === '') throw badRequest("no entity associated with the request's token")
    const jwt = await new SignJWT({ namespace: 'root' })
      .setProtectedHeader({ alg: 'RS256', kid: key.kid })
      .setIssuer(`${this.address}/v1/identity/oidc`)
      .setSubject(token.entityId)
      .setAudience(role.clientId)
      .setIssuedAt()
      .setExpirationTime(`${role.ttlSec}s`)
      .sign(key.privateKey)
    return this.#envelope({ data: { client_id: role.clientId, token: jwt, ttl: role.ttlSec } })
  }
}

function parseDurationSec(value: unknown): number {
  if (typeof value === 'number') return value
  const m = /^(\d+)(s|m|h)?$/.exec(String(value))
  if (!m) throw badRequest(`invalid duration: ${String(value)}`)
  const n = Number(m[1])
  return m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : n
}

/** Vault ACL path matching: exact, trailing `*` as a prefix glob, `+` as one segment. */
function pathMatches(pattern: string, path: string): boolean {
  const glob = pattern.endsWith('*')
  const p = glob ? pattern.slice(0, -1) : pattern
  const pSegs = p.split('/')
  const segs = path.split('/')
  for (let i = 0; i < pSegs.length; i++) {
    const ps = pSegs[i] as string
    const s = segs[i]
    if (s === undefined) return glob && i === pSegs.length - 1 && ps === ''
    if (i === pSegs.length - 1 && glob) return s.startsWith(ps)
    if (ps !== '+' && ps !== s) return false
  }
  return glob || segs.length === pSegs.length
}
