/**
 * corridor.yaml: the static configuration read once at start (listeners, files, audit sink,
 * identity issuers, limits). Policy, agents and connectors are separate files that hot-reload.
 * Paths are relative to the directory holding corridor.yaml.
 */
import { parseHttpUrl } from '../shared/http-url.ts'
import { availableParallelism } from 'node:os'
import { dirname, resolve } from 'node:path'
import { isScalar, type Node } from 'yaml'
import { YamlReader } from './yaml-reader.ts'

/** Where a secret Corridor itself needs comes from: an environment variable or a file. */
export type SecretInput = { readonly env: string } | { readonly file: string }

export type VaultAuthConfig =
  | { readonly method: 'token'; readonly token: SecretInput }
  | { readonly method: 'approle'; readonly mount: string; readonly roleId: string; readonly secretId: SecretInput }
  | { readonly method: 'jwt' | 'kubernetes'; readonly mount: string; readonly role: string; readonly jwt: SecretInput }

/** The three files a policy bundle is compiled from. */
export interface BundlePaths {
  readonly agents: string
  readonly connectors: string
  readonly policy: string
}

export interface ListenConfig {
  readonly host: string
  readonly port: number
}

export interface JwtIssuerConfig {
  readonly issuer: string
  readonly audience: string
  readonly algorithms: readonly string[]
  readonly jwksUrl: string | null
  readonly jwksFile: string | null
  readonly clockSkewSec: number
  readonly maxTokenAgeSec: number | null
}

export interface UserTokenConfig extends JwtIssuerConfig {
  readonly header: string
  readonly groupsClaim: string
}

export interface ApproverTokenConfig extends JwtIssuerConfig {
  readonly groupsClaim: string
  /** The claim naming the approver in the audit trail (sub, email…). */
  readonly idClaim: string
}

/** A value given in the file or, for secrets (Redis passwords, webhook URLs), by environment variable name. */
export type ValueSource = { readonly value: string } | { readonly env: string }

export interface ApprovalsConfig {
  /** Absent: the in-memory store (one instance; pending approvals die with the process). */
  readonly redis: { readonly url: ValueSource; readonly keyPrefix: string; readonly timeoutMs: number } | null
  /** How long an agent's connection is held waiting for a decision before it gets 202. */
  readonly waitMs: number
  readonly expiresAfterMs: number
  /** How long a finished approval and its upstream response are kept for the agent to collect. */
  readonly keepResultsMs: number
  readonly maxHeldConnections: number
  readonly maxPending: number
  readonly maxPendingPerAgent: number
  /** Bound on one released request's forward (credential included). */
  readonly executionTimeoutMs: number
  /** Largest upstream response kept for the agent to collect. */
  readonly maxResponseBytes: number
  readonly webhook: { readonly url: ValueSource; readonly timeoutMs: number } | null
}

export const DEFAULT_APPROVALS: ApprovalsConfig = {
  redis: null,
  waitMs: 25_000,
  expiresAfterMs: 3_600_000,
  keepResultsMs: 86_400_000,
  maxHeldConnections: 256,
  maxPending: 50_000,
  maxPendingPerAgent: 1_000,
  executionTimeoutMs: 60_000,
  maxResponseBytes: 1024 * 1024,
  webhook: null,
}

export interface ServerLimits {
  readonly maxHeaders: number
  readonly maxHeaderBytes: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
}

export interface VaultConfig {
  readonly address: string
  readonly namespace: string | null
  /** Bound on each Vault call and on issuing one credential (login included). */
  readonly timeoutMs: number
  readonly caFile: string | null
  readonly auth: VaultAuthConfig
}

export interface ServerConfig {
  readonly listen: ListenConfig
  readonly admin: ListenConfig
  readonly files: BundlePaths
  readonly auditFile: string
  readonly agentJwt: JwtIssuerConfig | null
  readonly userJwt: UserTokenConfig | null
  readonly approverJwt: ApproverTokenConfig | null
  readonly approvals: ApprovalsConfig
  readonly limits: ServerLimits
  readonly watchPolicy: boolean
  /** Processes serving the listeners (1: this process; more: a supervisor and that many workers). */
  readonly workers: number
  readonly vault: VaultConfig | null
  /** Bound on issuing one credential from any source. */
  readonly credentialTimeoutMs: number
}

const ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
  'Ed25519',
] as const

export const DEFAULT_LIMITS: ServerLimits = {
  maxHeaders: 100,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
}

export function loadServerConfig(file: string): ServerConfig {
  const r = YamlReader.fromFile(file)
  const base = dirname(resolve(file))
  const path = (p: string): string => resolve(base, p)
  const top = r.map(
    r.root,
    'corridor config',
    ['listen', 'admin', 'files', 'audit', 'identity', 'limits', 'watch_policy', 'workers', 'vault', 'approvals'],
    ['files', 'audit'],
  )

  const listen = (node: Node | undefined, where: string, fallback: ListenConfig): ListenConfig => {
    if (!node) return fallback
    const f = r.map(node, where, ['host', 'port'])
    return {
      host: f.has('host') ? r.string(f.get('host'), `${where}.host`) : fallback.host,
      port: f.has('port') ? r.integer(f.get('port'), `${where}.port`, 0, 65_535) : fallback.port,
    }
  }

  const files = r.map(top.get('files'), 'files', ['agents', 'connectors', 'policy'], ['agents', 'connectors', 'policy'])
  const audit = r.map(top.get('audit'), 'audit', ['file'], ['file'])

  let agentJwt: JwtIssuerConfig | null = null
  let userJwt: UserTokenConfig | null = null
  let approverJwt: ApproverTokenConfig | null = null
  if (top.has('identity')) {
    const idf = r.map(top.get('identity'), 'identity', ['agent_jwt', 'user_jwt', 'approver_jwt'])
    if (idf.has('approver_jwt')) {
      const node = idf.get('approver_jwt')
      const f = r.map(node, 'identity.approver_jwt', [...ISSUER_KEYS, 'groups_claim', 'id_claim'], ISSUER_REQUIRED)
      approverJwt = {
        ...readIssuer(r, node, f, 'identity.approver_jwt', path),
        groupsClaim: f.has('groups_claim')
          ? r.string(f.get('groups_claim'), 'identity.approver_jwt.groups_claim')
          : 'groups',
        idClaim: f.has('id_claim') ? r.string(f.get('id_claim'), 'identity.approver_jwt.id_claim') : 'sub',
      }
    }
    if (idf.has('agent_jwt')) {
      const node = idf.get('agent_jwt')
      agentJwt = readIssuer(
        r,
        node,
        r.map(node, 'identity.agent_jwt', ISSUER_KEYS, ISSUER_REQUIRED),
        'identity.agent_jwt',
        path,
      )
    }
    if (idf.has('user_jwt')) {
      const node = idf.get('user_jwt')
      const f = r.map(node, 'identity.user_jwt', [...ISSUER_KEYS, 'header', 'groups_claim'], ISSUER_REQUIRED)
      const issuer = readIssuer(r, node, f, 'identity.user_jwt', path)
      userJwt = {
        ...issuer,
        header: f.has('header')
          ? r.string(f.get('header'), 'identity.user_jwt.header').toLowerCase()
          : 'x-corridor-user',
        groupsClaim: f.has('groups_claim')
          ? r.string(f.get('groups_claim'), 'identity.user_jwt.groups_claim')
          : 'groups',
      }
      if (!userJwt.header.startsWith('x-corridor-'))
        r.issue(f.get('header'), `identity.user_jwt.header must start with 'x-corridor-' so that it is never forwarded`)
    }
  }

  let limits = DEFAULT_LIMITS
  if (top.has('limits')) {
    const lf = r.map(top.get('limits'), 'limits', [
      'max_headers',
      'max_header_bytes',
      'headers_timeout',
      'request_timeout',
      'keep_alive_timeout',
    ])
    // Each key: read when present (with its position in any message), the default otherwise.
    const opt = <T>(key: string, read: (node: Node | undefined, where: string) => T, fallback: T): T =>
      lf.has(key) ? read(lf.get(key), `limits.${key}`) : fallback
    const d = DEFAULT_LIMITS
    limits = {
      maxHeaders: opt('max_headers', (n, w) => r.integer(n, w, 1, 10_000), d.maxHeaders),
      maxHeaderBytes: opt('max_header_bytes', (n, w) => r.bytes(n, w), d.maxHeaderBytes),
      headersTimeoutMs: opt('headers_timeout', (n, w) => r.duration(n, w), d.headersTimeoutMs),
      requestTimeoutMs: opt('request_timeout', (n, w) => r.duration(n, w), d.requestTimeoutMs),
      keepAliveTimeoutMs: opt('keep_alive_timeout', (n, w) => r.duration(n, w), d.keepAliveTimeoutMs),
    }
  }

  const vault = top.has('vault') ? readVault(r, top.get('vault'), path) : null
  const config: ServerConfig = {
    listen: listen(top.get('listen'), 'listen', { host: '127.0.0.1', port: 8080 }),
    admin: listen(top.get('admin'), 'admin', { host: '127.0.0.1', port: 8081 }),
    files: {
      agents: path(r.string(files.get('agents'), 'files.agents')),
      connectors: path(r.string(files.get('connectors'), 'files.connectors')),
      policy: path(r.string(files.get('policy'), 'files.policy')),
    },
    auditFile: path(r.string(audit.get('file'), 'audit.file')),
    agentJwt,
    userJwt,
    approverJwt,
    approvals: top.has('approvals') ? readApprovals(r, top.get('approvals')) : DEFAULT_APPROVALS,
    limits,
    watchPolicy: top.has('watch_policy') ? r.boolean(top.get('watch_policy'), 'watch_policy') : true,
    workers: top.has('workers') ? readWorkers(r, top.get('workers')) : 1,
    vault,
    credentialTimeoutMs: vault?.timeoutMs ?? DEFAULT_CREDENTIAL_TIMEOUT_MS,
  }
  const workersProblem = whyWorkersUnsupported(config)
  if (workersProblem !== null) r.issue(top.get('workers'), workersProblem)
  r.assertValid()
  // Read once at start and never changed after: freezing makes an accidental write a TypeError, not a silent drift.
  return deepFreeze(config)
}

export const MAX_WORKERS = 64

/** `4`, or `auto` for one per CPU this process may use; null when it is neither (config and `--workers` alike). */
export function workerCount(value: unknown): number | null {
  if (value === 'auto') return availableParallelism()
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : null
}

function readWorkers(r: YamlReader, node: Node | undefined): number {
  const n = workerCount(isScalar(node) ? node.value : undefined)
  if (n === null) r.issue(node, `workers must be 'auto' or a whole number from 1 to ${MAX_WORKERS}`)
  return n ?? 1
}

/**
 * Several workers share nothing but the files, the audit file and Redis: a request held on one
 * worker must be visible to the approver's call and the agent's retry on any other, so the
 * in-memory approval store (one per process) is refused rather than half-working.
 */
export function whyWorkersUnsupported(config: Pick<ServerConfig, 'workers' | 'approvals'>): string | null {
  if (config.workers > 1 && config.approvals.redis === null)
    return `workers: ${config.workers} needs approvals.redis: held requests must be visible to every worker`
  return null
}

const ISSUER_KEYS = ['issuer', 'audience', 'algorithms', 'jwks_url', 'jwks_file', 'clock_skew', 'max_token_age']
const ISSUER_REQUIRED = ['issuer', 'audience', 'algorithms']

/** The fields every JWT issuer shares; `f` is the issuer's mapping, already checked for unknown keys. */
function readIssuer(
  r: YamlReader,
  node: Node | undefined,
  f: Map<string, Node>,
  where: string,
  path: (p: string) => string,
): JwtIssuerConfig {
  const algorithms = r.strings(f.get('algorithms'), `${where}.algorithms`)
  for (const alg of algorithms) {
    if (!(ALGORITHMS as readonly string[]).includes(alg))
      r.issue(
        f.get('algorithms'),
        `${where}.algorithms: '${alg}' is not accepted (asymmetric algorithms only: ${ALGORITHMS.join(', ')})`,
      )
  }
  if (f.has('jwks_url') === f.has('jwks_file')) r.issue(node, `${where} needs exactly one of jwks_url or jwks_file`)
  const clockSkewMs = f.has('clock_skew') ? r.duration(f.get('clock_skew'), `${where}.clock_skew`) : 30_000
  if (clockSkewMs > 60_000) r.issue(f.get('clock_skew'), `${where}.clock_skew may be at most 60s`)
  return {
    issuer: r.string(f.get('issuer'), `${where}.issuer`),
    audience: r.string(f.get('audience'), `${where}.audience`),
    algorithms,
    jwksUrl: f.has('jwks_url') ? r.string(f.get('jwks_url'), `${where}.jwks_url`) : null,
    jwksFile: f.has('jwks_file') ? path(r.string(f.get('jwks_file'), `${where}.jwks_file`)) : null,
    clockSkewSec: Math.round(clockSkewMs / 1000),
    maxTokenAgeSec: f.has('max_token_age')
      ? Math.round(r.duration(f.get('max_token_age'), `${where}.max_token_age`) / 1000)
      : null,
  }
}

const DEFAULT_CREDENTIAL_TIMEOUT_MS = 2_500
const KUBERNETES_SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'

function readVault(r: YamlReader, node: Node | undefined, path: (p: string) => string): VaultConfig {
  const f = r.map(node, 'vault', ['address', 'namespace', 'timeout', 'ca_file', 'auth'], ['address', 'auth'])
  const address = r.string(f.get('address'), 'vault.address')
  if (parseHttpUrl(address) === null)
    r.issue(f.get('address'), 'vault.address must be an http(s) URL, e.g. https://vault.internal:8200')
  const timeoutMs = f.has('timeout') ? r.duration(f.get('timeout'), 'vault.timeout') : DEFAULT_CREDENTIAL_TIMEOUT_MS
  if (timeoutMs < 100 || timeoutMs > 30_000) r.issue(f.get('timeout'), 'vault.timeout must be between 100ms and 30s')

  const af = r.map(
    f.get('auth'),
    'vault.auth',
    [
      'method',
      'mount',
      'token_env',
      'token_file',
      'role_id',
      'secret_id_env',
      'secret_id_file',
      'role',
      'jwt_env',
      'jwt_file',
    ],
    ['method'],
  )
  const method = r.oneOf(af.get('method'), 'vault.auth.method', ['token', 'approle', 'jwt', 'kubernetes'] as const)
  const input = (name: string, fallbackFile?: string): SecretInput => {
    const env = af.has(`${name}_env`)
    const file = af.has(`${name}_file`)
    if (env && file) r.issue(af.get(`${name}_file`), `vault.auth: give ${name}_env or ${name}_file, not both`)
    if (env) return { env: r.string(af.get(`${name}_env`), `vault.auth.${name}_env`) }
    if (file) return { file: path(r.string(af.get(`${name}_file`), `vault.auth.${name}_file`)) }
    if (fallbackFile !== undefined) return { file: fallbackFile }
    r.issue(af.get('method') ?? node, `vault.auth with method ${method} needs ${name}_env or ${name}_file`)
    return { env: '' }
  }
  const allowedFor: Record<typeof method, string[]> = {
    token: ['method', 'token_env', 'token_file'],
    approle: ['method', 'mount', 'role_id', 'secret_id_env', 'secret_id_file'],
    jwt: ['method', 'mount', 'role', 'jwt_env', 'jwt_file'],
    kubernetes: ['method', 'mount', 'role', 'jwt_env', 'jwt_file'],
  }
  for (const key of af.keys())
    if (!allowedFor[method].includes(key)) r.issue(af.get(key), `vault.auth.${key} does not apply to method ${method}`)
  const mount = af.has('mount') ? r.string(af.get('mount'), 'vault.auth.mount') : method
  let auth: VaultAuthConfig
  switch (method) {
    case 'token':
      auth = { method, token: input('token') }
      break
    case 'approle':
      auth = { method, mount, roleId: r.string(af.get('role_id'), 'vault.auth.role_id'), secretId: input('secret_id') }
      break
    default:
      auth = {
        method,
        mount,
        role: r.string(af.get('role'), 'vault.auth.role'),
        jwt: input('jwt', method === 'kubernetes' ? KUBERNETES_SA_TOKEN : undefined),
      }
  }
  return {
    address,
    namespace: f.has('namespace') ? r.string(f.get('namespace'), 'vault.namespace') : null,
    timeoutMs,
    caFile: f.has('ca_file') ? path(r.string(f.get('ca_file'), 'vault.ca_file')) : null,
    auth,
  }
}

function readApprovals(r: YamlReader, node: Node | undefined): ApprovalsConfig {
  const f = r.map(node, 'approvals', [
    'redis',
    'wait',
    'expires_after',
    'keep_results',
    'max_held_connections',
    'max_pending',
    'max_pending_per_agent',
    'execution_timeout',
    'max_response_bytes',
    'webhook',
  ])
  const d = DEFAULT_APPROVALS
  const duration = (key: string, fallback: number): number =>
    f.has(key) ? r.duration(f.get(key), `approvals.${key}`) : fallback
  const count = (key: string, fallback: number): number => {
    if (!f.has(key)) return fallback
    return r.integer(f.get(key), `approvals.${key}`, 1, Number.MAX_SAFE_INTEGER)
  }
  const valueSource = (where: string, g: Map<string, Node>): ValueSource => {
    if (g.has('url') === g.has('url_env'))
      r.issue(g.get('url') ?? g.get('url_env'), `${where} needs exactly one of url or url_env`)
    return g.has('url_env')
      ? { env: r.string(g.get('url_env'), `${where}.url_env`) }
      : { value: r.string(g.get('url'), `${where}.url`) }
  }
  let redis: ApprovalsConfig['redis'] = null
  if (f.has('redis')) {
    const g = r.map(f.get('redis'), 'approvals.redis', ['url', 'url_env', 'key_prefix', 'timeout'])
    const timeoutMs = g.has('timeout') ? r.duration(g.get('timeout'), 'approvals.redis.timeout') : 500
    if (timeoutMs < 50 || timeoutMs > 1_000)
      r.issue(
        g.get('timeout'),
        'approvals.redis.timeout must be between 50ms and 1s (a Redis outage must fail requests fast)',
      )
    redis = {
      url: valueSource('approvals.redis', g),
      keyPrefix: g.has('key_prefix')
        ? r.string(g.get('key_prefix'), 'approvals.redis.key_prefix')
        : 'corridor:approvals:',
      timeoutMs,
    }
  }
  let webhook: ApprovalsConfig['webhook'] = null
  if (f.has('webhook')) {
    const g = r.map(f.get('webhook'), 'approvals.webhook', ['url', 'url_env', 'timeout'])
    webhook = {
      url: valueSource('approvals.webhook', g),
      timeoutMs: g.has('timeout') ? r.duration(g.get('timeout'), 'approvals.webhook.timeout') : 3_000,
    }
  }
  const config: ApprovalsConfig = {
    redis,
    waitMs: duration('wait', d.waitMs),
    expiresAfterMs: duration('expires_after', d.expiresAfterMs),
    keepResultsMs: duration('keep_results', d.keepResultsMs),
    maxHeldConnections: count('max_held_connections', d.maxHeldConnections),
    maxPending: count('max_pending', d.maxPending),
    maxPendingPerAgent: count('max_pending_per_agent', d.maxPendingPerAgent),
    executionTimeoutMs: duration('execution_timeout', d.executionTimeoutMs),
    maxResponseBytes: f.has('max_response_bytes')
      ? r.bytes(f.get('max_response_bytes'), 'approvals.max_response_bytes')
      : d.maxResponseBytes,
    webhook,
  }
  if (config.waitMs > 55_000)
    r.issue(f.get('wait'), 'approvals.wait may be at most 55s (clients and load balancers give up around 60s)')
  if (config.keepResultsMs < 60_000)
    r.issue(f.get('keep_results'), 'approvals.keep_results must be at least 1m, or agents cannot collect results')
  return config
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
