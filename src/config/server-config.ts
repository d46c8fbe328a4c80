/**
 * corridor.yaml: the static configuration read once at start (listeners, files, audit sink,
 * identity issuers, limits). Policy, agents and connectors are separate files that hot-reload.
 * Paths are relative to the directory holding corridor.yaml.
 */
import { refusedHostProblem } from '../shared/egress-addresses.ts'
import { IN_CLEAR, inClearRefusal, isLoopbackHost } from '../shared/in-clear.ts'
import { httpUrlAt } from './refuse-in-clear.ts'
import { readPostgresUrl } from './postgres-url.ts'
import { availableParallelism } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { ConfigError, YamlReader } from './yaml-reader.ts'
import { corridorFileSchema, type CorridorFile, type IssuerFields } from './corridor-schema.ts'
import type { RequestOutcome } from '../shared/outcomes.ts'

/** Which requests traces record whatever their sampling decision, chosen when each ends. */
export interface AlwaysRecord {
  /** Those that end so. */
  readonly outcomes: readonly RequestOutcome[]
  /** Those answered 5xx or not at all (their server span's error status). */
  readonly errors: boolean
  /** Those taking at least this long (ms); null: none. */
  readonly slowerThanMs: number | null
}

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

export interface ServerTlsConfig {
  readonly certFile: string
  readonly keyFile: string
}

export interface AgentListenConfig extends ListenConfig {
  /** HTTPS for the agent listener; null: plain HTTP. */
  readonly tls: ServerTlsConfig | null
}

export interface AdminListenConfig extends ListenConfig {
  /** HTTPS for the admin listener; null: plain HTTP (loopback only, unless overridden). */
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string | null } | null
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
  /** Members of these groups are operators too (may stop and resume agents). */
  readonly operatorGroups: readonly string[]
  /** Members of these groups are auditors too (may read the audit trail on the admin API). */
  readonly auditorGroups: readonly string[]
}

/** A URL given in the file or, for secrets (Redis passwords, webhook URLs), by environment variable name. */
export type ValueSource = ({ readonly value: string } | { readonly env: string }) & {
  /** The setting (`approvals.redis`), named in messages. */
  readonly setting: string
  readonly kind: UrlKind
  /** The file allows plain HTTP, Redis or PostgreSQL beyond loopback here (`plaintext_beyond_loopback: true`). */
  readonly plaintextAllowed: boolean
}

type UrlKind = 'redis' | 'webhook' | 'postgres'

/**
 * What each kind of URL must be, as the client that uses it reads it, and what using it in clear
 * beyond loopback would give away. ioredis takes `host:port` without a scheme as plain Redis, so
 * a Redis URL must name its scheme. node-postgres decides TLS from parameters (`sslmode`) rather
 * than the scheme: its URL is judged by the driver's own reading (postgres-url.ts).
 */
const URL_KINDS: Readonly<
  Record<
    UrlKind,
    {
      readonly schemes: readonly string[]
      readonly expected: string
      readonly inClear: string
      /** Its client judges what the host resolves to (shared/checked-lookup.ts); a host written as an address is judged here. */
      readonly judgesAddresses?: true
    }
  >
> = {
  redis: { schemes: ['redis:', 'rediss:'], expected: 'a redis:// or rediss:// URL', inClear: IN_CLEAR.redis },
  webhook: {
    schemes: ['http:', 'https:'],
    expected: 'an http(s) URL',
    inClear: IN_CLEAR.webhook,
    judgesAddresses: true,
  },
  postgres: {
    schemes: ['postgres:', 'postgresql:', 'socket:'],
    expected: 'a postgres:// or postgresql:// URL (or socket: for a Unix socket)',
    inClear: IN_CLEAR.postgres,
  },
}

/**
 * Why the URL a source resolved to may not be used, or null: not the kind of URL its client
 * reads, or one in clear beyond loopback that its setting does not allow. A URL in the
 * file is refused as it is read; one from the environment, when Corridor starts. The URL itself
 * is never repeated: it may hold a password.
 */
export function urlProblem(source: ValueSource, url: string): string | null {
  const kind = URL_KINDS[source.kind]
  const setting = 'env' in source ? `${source.setting}.url_env (${source.env})` : `${source.setting}.url`
  if (!URL.canParse(url) || !kind.schemes.includes(new URL(url).protocol)) return `${setting} must be ${kind.expected}`
  if (kind.judgesAddresses === true) {
    const refused = refusedHostProblem(setting, new URL(url))
    if (refused !== null) return refused
  }
  if (source.plaintextAllowed) return null
  if (source.kind !== 'postgres') return inClearRefusal(setting, new URL(url), kind.inClear, source.setting)
  const reading = readPostgresUrl(url)
  if ('unreadable' in reading) return `${setting}: ${reading.unreadable}`
  return reading.inClear
    ? `${setting} reaches PostgreSQL beyond loopback without TLS that checks its certificate: ${kind.inClear}; add sslmode=verify-full (with sslrootcert for a private CA), or set ${source.setting}.plaintext_beyond_loopback: true`
    : null
}

/** The URL a setting gives (null when it is not configured); throws when it is unset or may not be used. */
export function resolveUrl(source: ValueSource, env: Readonly<Record<string, string | undefined>>): string
export function resolveUrl(
  source: ValueSource | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string | null
export function resolveUrl(
  source: ValueSource | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string | null {
  if (source === undefined) return null
  let value: string
  if ('value' in source) value = source.value
  else {
    const given = env[source.env]
    if (given === undefined || given === '')
      throw new Error(`${source.setting}.url_env names ${source.env}, which is not set`)
    value = given
  }
  const problem = urlProblem(source, value)
  if (problem !== null) throw new Error(problem)
  return value
}

export interface ApprovalsConfig {
  /** Absent: the in-memory store (one instance; pending approvals die with the process). */
  readonly redis: {
    readonly url: ValueSource
    readonly keyPrefix: string
    readonly timeoutMs: number
    /** When Redis keeps no append-only file: warn loudly, or refuse holds. */
    readonly withoutPersistence: 'warn' | 'refuse'
  } | null
  /** How long an agent's connection is held waiting for a decision before it gets 202. */
  readonly waitMs: number
  readonly expiresAfterMs: number
  /** How long a finished approval and its upstream response are kept for the agent to collect. */
  readonly keepResultsMs: number
  /** How long after it ran a repeat of the same held request (same agent, same digest) gets its result, not a new hold. */
  readonly retryWindowMs: number
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
  retryWindowMs: 600_000,
  maxHeldConnections: 256,
  maxPending: 50_000,
  maxPendingPerAgent: 1_000,
  executionTimeoutMs: 60_000,
  maxResponseBytes: 1024 * 1024,
  webhook: null,
}

/** When the live audit file is rotated and how long rotated files are kept. */
export interface RotationPolicy {
  /** Rotate when the live file reaches this many bytes (null: no size limit). */
  readonly maxBytes: number | null
  /** Rotate when the live file is this old (null: no age limit). */
  readonly maxAgeMs: number | null
  /** Delete rotated files older than this (null: keep them). */
  readonly retainMs: number | null
}

export interface AuditOtlpConfig {
  readonly endpoint: string
  readonly headersEnv: string | null
  readonly pollMs: number
  readonly timeoutMs: number
}

export interface AuditPostgresConfig {
  readonly url: ValueSource
  readonly table: string
  readonly batch: number
  readonly pollMs: number
  readonly timeoutMs: number
}

/** Runtime controls: where operator stops and limit counters are kept. */
export interface StateConfig {
  /** Shared by replicas; null: stops in `stopsFile`, counters in the process. */
  readonly redis: { readonly url: ValueSource; readonly keyPrefix: string; readonly timeoutMs: number } | null
  readonly stopsFile: string
  readonly staleAfterMs: number
}

export interface ServerLimits {
  readonly maxHeaders: number
  readonly maxHeaderBytes: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  /** Agent-listener connections at once: in total, and from one client address. */
  readonly maxConnections: number
  readonly maxConnectionsPerClient: number
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
  readonly listen: AgentListenConfig
  readonly admin: AdminListenConfig
  readonly files: BundlePaths
  readonly auditFile: string
  /** Ed25519 private key (PEM file) signing the audit checkpoints; null: checkpoints unsigned. */
  readonly auditSigningKeyFile: string | null
  /** Checkpoints signed by a key in Vault's transit engine (mount, key name). */
  readonly auditSigningTransit: { readonly mount: string; readonly key: string } | null
  /** A checkpoint every this many entries as well as every minute; null: every minute only. */
  readonly auditCheckpointEntries: number | null
  /** An OpenTelemetry collector the audit trail is shipped to as OTLP logs; null: none. */
  readonly auditOtlp: AuditOtlpConfig | null
  /** When the live audit file is rotated, and how long rotated files are kept; null: never rotated. */
  readonly auditRotation: RotationPolicy | null
  /** Where the audit trail is shipped for queries across replicas; null: the local file only. */
  readonly auditPostgres: AuditPostgresConfig | null
  readonly agentJwt: JwtIssuerConfig | null
  readonly userJwt: UserTokenConfig | null
  readonly approverJwt: ApproverTokenConfig | null
  readonly approvals: ApprovalsConfig
  readonly state: StateConfig
  /** Prometheus metrics at /metrics on the admin listener. */
  readonly metrics: boolean
  /** OpenTelemetry traces exported to this collector; null: off. */
  readonly traces: {
    readonly endpoint: string
    /** The environment variable holding the export's extra headers (a collector's API key). */
    readonly headersEnv: string | null
    readonly timeoutMs: number
    readonly sample: number
    /** False: an agent's sampled flag is not followed, the ratio decides. */
    readonly followAgentSampling: boolean
    readonly alwaysRecord: AlwaysRecord
  } | null
  readonly limits: ServerLimits
  readonly watchPolicy: boolean
  /** Processes serving the listeners (1: this process; more: a supervisor and that many workers). */
  readonly workers: number
  readonly vault: VaultConfig | null
  /** Bound on issuing one credential from any source. */
  readonly credentialTimeoutMs: number
  readonly shutdown: ShutdownConfig
}

export interface ShutdownConfig {
  /** How long requests and approval releases in flight get to finish after SIGTERM. */
  readonly graceMs: number
  /** How long readiness fails before the listener stops accepting. */
  readonly delayMs: number
}

export const DEFAULT_SHUTDOWN: ShutdownConfig = { graceMs: 20_000, delayMs: 0 }

export const DEFAULT_LIMITS: ServerLimits = {
  maxHeaders: 100,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 8_192,
  maxConnectionsPerClient: 512,
}

/**
 * The shortest `audit.retain` accepted for a trail kept nowhere else, unless `audit.retain_floor`
 * says otherwise: record-keeping rules ask for months (the EU AI Act, at least six), and one edit
 * to a short retention would otherwise delete the only evidence.
 */
const DEFAULT_RETAIN_FLOOR_MS = 180 * 86_400_000

const days = (ms: number): string => (ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${ms / 1000}s`)

export function loadServerConfig(file: string): ServerConfig {
  const r = YamlReader.fromFile(file)
  const f = r.parse(corridorFileSchema, 'corridor config')
  if (f === null) throw new ConfigError(r.issues)
  const base = dirname(resolve(file))
  const path = (p: string): string => resolve(base, p)

  const listen = (given: { host?: string | undefined; port?: number | undefined } | undefined, port: number) => ({
    host: given?.host ?? '127.0.0.1',
    port: given?.port ?? port,
  })
  const id = f.identity
  const userHeader = (id?.user_jwt?.header ?? 'x-corridor-user').toLowerCase()
  if (id?.user_jwt && !userHeader.startsWith('x-corridor-'))
    r.issueAt(
      ['identity', 'user_jwt', 'header'],
      `identity.user_jwt.header must start with 'x-corridor-' so that it is never forwarded`,
    )
  const d = DEFAULT_LIMITS
  const vault = f.vault ? readVault(r, f.vault, path) : null
  if (f.audit.signing_transit !== undefined && f.audit.signing_key_file !== undefined)
    r.issueAt(['audit', 'signing_transit'], 'audit: give signing_key_file or signing_transit, not both')
  if (f.audit.signing_transit !== undefined && f.vault === undefined)
    r.issueAt(['audit', 'signing_transit'], 'audit.signing_transit signs through Vault: configure vault:')
  // With a shipper, retention deletes only what is copied elsewhere; without one, the only copy.
  const retainFloorMs = f.audit.retain_floor ?? DEFAULT_RETAIN_FLOOR_MS
  const onlyCopy = f.audit.postgres === undefined && f.audit.otlp === undefined
  if (onlyCopy && f.audit.retain !== undefined && f.audit.retain < retainFloorMs)
    r.issueAt(
      ['audit', 'retain'],
      `audit.retain would delete the only copy of the audit trail (nothing ships it to postgres or otlp) sooner than audit.retain_floor (${days(retainFloorMs)}); ship it, or lower retain_floor where no record-keeping rule applies`,
    )
  if (f.audit.otlp !== undefined) checkOtlpEndpoint(r, ['audit', 'otlp'], f.audit.otlp)
  if (f.telemetry?.traces !== undefined) checkOtlpEndpoint(r, ['telemetry', 'traces'], f.telemetry.traces)
  const approvals = f.approvals ? readApprovals(r, f.approvals) : DEFAULT_APPROVALS
  const config: ServerConfig = {
    listen: {
      ...listen(f.listen, 8080),
      tls: f.listen?.tls ? { certFile: path(f.listen.tls.cert_file), keyFile: path(f.listen.tls.key_file) } : null,
    },
    admin: readAdmin(r, f.admin, path),
    files: { agents: path(f.files.agents), connectors: path(f.files.connectors), policy: path(f.files.policy) },
    auditFile: path(f.audit.file),
    auditSigningKeyFile: f.audit.signing_key_file === undefined ? null : path(f.audit.signing_key_file),
    auditSigningTransit:
      f.audit.signing_transit === undefined
        ? null
        : { mount: f.audit.signing_transit.mount ?? 'transit', key: f.audit.signing_transit.key },
    auditCheckpointEntries: f.audit.checkpoint_entries ?? null,
    auditPostgres: readAuditPostgres(r, f.audit.postgres),
    auditOtlp:
      f.audit.otlp === undefined
        ? null
        : {
            endpoint: f.audit.otlp.endpoint,
            headersEnv: f.audit.otlp.headers_env ?? null,
            pollMs: f.audit.otlp.poll ?? 200,
            timeoutMs: f.audit.otlp.timeout ?? 5_000,
          },
    auditRotation:
      f.audit.rotate === undefined && f.audit.retain === undefined
        ? null
        : {
            maxBytes: f.audit.rotate?.max_bytes ?? null,
            maxAgeMs: f.audit.rotate?.max_age ?? null,
            retainMs: f.audit.retain ?? null,
          },
    agentJwt: id?.agent_jwt ? readIssuer(r, id.agent_jwt, 'agent_jwt', path) : null,
    userJwt: id?.user_jwt
      ? {
          ...readIssuer(r, id.user_jwt, 'user_jwt', path),
          header: userHeader,
          groupsClaim: id.user_jwt.groups_claim ?? 'groups',
        }
      : null,
    approverJwt: id?.approver_jwt
      ? {
          ...readIssuer(r, id.approver_jwt, 'approver_jwt', path),
          groupsClaim: id.approver_jwt.groups_claim ?? 'groups',
          idClaim: id.approver_jwt.id_claim ?? 'sub',
          operatorGroups: id.approver_jwt.operator_groups ?? [],
          auditorGroups: id.approver_jwt.auditor_groups ?? [],
        }
      : null,
    approvals,
    state: readState(r, f.state, approvals, path(f.audit.file), path),
    metrics: f.telemetry?.metrics ?? true,
    traces: f.telemetry?.traces
      ? {
          endpoint: f.telemetry.traces.endpoint,
          headersEnv: f.telemetry.traces.headers_env ?? null,
          timeoutMs: f.telemetry.traces.timeout ?? 5_000,
          sample: f.telemetry.traces.sample ?? 1,
          followAgentSampling: f.telemetry.traces.follow_agent_sampling ?? true,
          alwaysRecord: {
            // Off unless asked for: while any rule is set, every request gathers what its spans need.
            outcomes: f.telemetry.traces.always_record?.outcomes ?? [],
            errors: f.telemetry.traces.always_record?.errors ?? false,
            slowerThanMs: f.telemetry.traces.always_record?.slower_than ?? null,
          },
        }
      : null,
    limits: {
      maxHeaders: f.limits?.max_headers ?? d.maxHeaders,
      maxHeaderBytes: f.limits?.max_header_bytes ?? d.maxHeaderBytes,
      headersTimeoutMs: f.limits?.headers_timeout ?? d.headersTimeoutMs,
      requestTimeoutMs: f.limits?.request_timeout ?? d.requestTimeoutMs,
      keepAliveTimeoutMs: f.limits?.keep_alive_timeout ?? d.keepAliveTimeoutMs,
      maxConnections: f.limits?.max_connections ?? d.maxConnections,
      maxConnectionsPerClient: f.limits?.max_connections_per_client ?? d.maxConnectionsPerClient,
    },
    watchPolicy: f.watch_policy ?? true,
    workers: f.workers === undefined ? 1 : (workerCount(f.workers) ?? 1),
    vault,
    credentialTimeoutMs: vault?.timeoutMs ?? DEFAULT_CREDENTIAL_TIMEOUT_MS,
    shutdown: {
      graceMs: f.shutdown?.grace ?? DEFAULT_SHUTDOWN.graceMs,
      delayMs: f.shutdown?.delay ?? DEFAULT_SHUTDOWN.delayMs,
    },
  }
  const stopWithin = config.shutdown.graceMs + config.shutdown.delayMs
  if (stopWithin > 120_000)
    r.issueAt(['shutdown'], `shutdown.grace plus shutdown.delay may be at most 2m (orchestrators kill long before)`)
  const workersProblem = whyWorkersUnsupported(config)
  if (workersProblem !== null) r.issueAt(['workers'], workersProblem)
  r.assertValid()
  // Read once at start and never changed after: freezing makes an accidental write a TypeError, not a silent drift.
  return deepFreeze(config)
}

function readAdmin(r: YamlReader, f: CorridorFile['admin'], path: (p: string) => string): AdminListenConfig {
  const host = f?.host ?? '127.0.0.1'
  const tls = f?.tls
    ? {
        certFile: path(f.tls.cert_file),
        keyFile: path(f.tls.key_file),
        clientCaFile: f.tls.client_ca_file === undefined ? null : path(f.tls.client_ca_file),
      }
    : null
  // Approver keys and decisions cross this listener: beyond loopback they are not sent in clear by default.
  if (tls === null && !isLoopbackHost(host) && f?.plaintext_beyond_loopback !== true)
    r.issueAt(
      ['admin', 'host'],
      `admin.host ${host} is reachable beyond this machine: give admin.tls (cert_file, key_file), or set admin.plaintext_beyond_loopback: true to accept approver keys in clear`,
    )
  return { host, port: f?.port ?? 8081, tls }
}

export const MAX_WORKERS = 64

/** `4`, or `auto` for one per CPU this process may use; null when it is neither (config and `--workers` alike). */
export function workerCount(value: unknown): number | null {
  if (value === 'auto') return availableParallelism()
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : null
}

/**
 * Several workers share nothing but their configuration files and Redis (each writes an audit
 * trail of its own): a request held on one worker must be visible to the approver's call and the
 * agent's retry on any other, so the in-memory approval store (one per process) is refused rather
 * than half-working.
 */
export function whyWorkersUnsupported(config: Pick<ServerConfig, 'workers' | 'approvals'>): string | null {
  if (config.workers <= 1) return null
  if (config.approvals.redis === null)
    return `workers: ${config.workers} needs approvals.redis: held requests must be visible to every worker`
  return null
}

/** The fields every JWT issuer shares. */
function readIssuer(
  r: YamlReader,
  f: IssuerFields,
  name: 'agent_jwt' | 'user_jwt' | 'approver_jwt',
  path: (p: string) => string,
): JwtIssuerConfig {
  const where = `identity.${name}`
  if ((f.jwks_url === undefined) === (f.jwks_file === undefined))
    r.issueAt(['identity', name], `${where} needs exactly one of jwks_url or jwks_file`)
  if (f.jwks_url !== undefined)
    httpUrlAt(r, ['identity', name, 'jwks_url'], f.jwks_url, {
      inClear: f.plaintext_beyond_loopback === true ? null : IN_CLEAR.jwks,
    })
  const clockSkewMs = f.clock_skew ?? 30_000
  if (clockSkewMs > 60_000) r.issueAt(['identity', name, 'clock_skew'], `${where}.clock_skew may be at most 60s`)
  return {
    issuer: f.issuer,
    audience: f.audience,
    algorithms: f.algorithms,
    jwksUrl: f.jwks_url ?? null,
    jwksFile: f.jwks_file === undefined ? null : path(f.jwks_file),
    clockSkewSec: Math.round(clockSkewMs / 1000),
    maxTokenAgeSec: f.max_token_age === undefined ? null : Math.round(f.max_token_age / 1000),
  }
}

const DEFAULT_CREDENTIAL_TIMEOUT_MS = 2_500
const KUBERNETES_SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'

type VaultFile = NonNullable<CorridorFile['vault']>

function readVault(r: YamlReader, f: VaultFile, path: (p: string) => string): VaultConfig {
  const inClear = f.plaintext_beyond_loopback === true ? null : IN_CLEAR.vault
  httpUrlAt(r, ['vault', 'address'], f.address, { inClear, hint: ', e.g. https://vault.internal:8200' })
  const timeoutMs = f.timeout ?? DEFAULT_CREDENTIAL_TIMEOUT_MS
  if (timeoutMs < 100 || timeoutMs > 30_000)
    r.issueAt(['vault', 'timeout'], 'vault.timeout must be between 100ms and 30s')
  const a = f.auth
  const given = a as Partial<Record<string, string>>
  const input = (name: string, fallbackFile?: string): SecretInput => {
    const env = given[`${name}_env`]
    const file = given[`${name}_file`]
    if (env !== undefined && file !== undefined)
      r.issueAt(['vault', 'auth', `${name}_file`], `vault.auth: give ${name}_env or ${name}_file, not both`)
    if (env !== undefined) return { env }
    if (file !== undefined) return { file: path(file) }
    if (fallbackFile !== undefined) return { file: fallbackFile }
    r.issueAt(['vault', 'auth', 'method'], `vault.auth with method ${a.method} needs ${name}_env or ${name}_file`)
    return { env: '' }
  }
  let auth: VaultAuthConfig
  switch (a.method) {
    case 'token':
      auth = { method: a.method, token: input('token') }
      break
    case 'approle':
      auth = { method: a.method, mount: a.mount ?? a.method, roleId: a.role_id, secretId: input('secret_id') }
      break
    case 'jwt':
    case 'kubernetes':
      auth = {
        method: a.method,
        mount: a.mount ?? a.method,
        role: a.role,
        jwt: input('jwt', a.method === 'kubernetes' ? KUBERNETES_SA_TOKEN : undefined),
      }
  }
  return {
    address: f.address,
    namespace: f.namespace ?? null,
    timeoutMs,
    caFile: f.ca_file === undefined ? null : path(f.ca_file),
    auth,
  }
}

function readAuditPostgres(r: YamlReader, f: CorridorFile['audit']['postgres']): AuditPostgresConfig | null {
  if (f === undefined) return null
  return {
    url: valueSourceAt(r, ['audit', 'postgres'], f, 'postgres'),
    table: f.table ?? 'corridor_audit',
    batch: f.batch ?? 500,
    pollMs: f.poll ?? 200,
    timeoutMs: f.timeout ?? 5_000,
  }
}

/** `url` or `url_env` (exactly one): the value itself, or the environment variable that holds it. */
function valueSourceAt(
  r: YamlReader,
  at: readonly string[],
  g: { url?: string | undefined; url_env?: string | undefined; plaintext_beyond_loopback?: boolean | undefined },
  kind: UrlKind,
): ValueSource {
  if ((g.url === undefined) === (g.url_env === undefined))
    r.issueAt(at, `${at.join('.')} needs exactly one of url or url_env`)
  const checked = { setting: at.join('.'), kind, plaintextAllowed: g.plaintext_beyond_loopback === true }
  if (g.url_env !== undefined) return { env: g.url_env, ...checked }
  const source = { value: g.url ?? '', ...checked }
  const problem = urlProblem(source, source.value)
  if (problem !== null) r.issueAt([...at, 'url'], problem)
  return source
}

/** An OTLP export's endpoint: an http(s) URL, and its extra headers (an API key) go over TLS or stay on this machine. */
function checkOtlpEndpoint(
  r: YamlReader,
  at: readonly string[],
  f: { endpoint: string; headers_env?: string | undefined; plaintext_beyond_loopback?: boolean | undefined },
): void {
  const sendsKey = f.headers_env !== undefined && f.plaintext_beyond_loopback !== true
  httpUrlAt(r, [...at, 'endpoint'], f.endpoint, { inClear: sendsKey ? IN_CLEAR.otlp : null })
}

/** A Redis command bound: between 50 ms and 1 s, so that an outage fails requests fast. */
function redisTimeoutAt(r: YamlReader, at: readonly string[], given: number | undefined): number {
  const timeoutMs = given ?? 500
  if (timeoutMs < 50 || timeoutMs > 1_000)
    r.issueAt(
      [...at, 'timeout'],
      `${at.join('.')}.timeout must be between 50ms and 1s (a Redis outage must fail requests fast)`,
    )
  return timeoutMs
}

/** Stops and counters live in `state.redis`, else in the approvals' Redis (own prefix), else in the process and a file. */
function readState(
  r: YamlReader,
  f: CorridorFile['state'],
  approvals: ApprovalsConfig,
  auditFile: string,
  path: (p: string) => string,
): StateConfig {
  let redis: StateConfig['redis'] = null
  if (f?.redis) {
    redis = {
      url: valueSourceAt(r, ['state', 'redis'], f.redis, 'redis'),
      keyPrefix: f.redis.key_prefix ?? 'corridor:state:',
      timeoutMs: redisTimeoutAt(r, ['state', 'redis'], f.redis.timeout),
    }
  } else if (approvals.redis !== null)
    redis = { url: approvals.redis.url, keyPrefix: 'corridor:state:', timeoutMs: approvals.redis.timeoutMs }
  const staleAfterMs = f?.stale_after ?? 5_000
  if (staleAfterMs < 1_000 || staleAfterMs > 300_000)
    r.issueAt(['state', 'stale_after'], 'state.stale_after must be between 1s and 5m')
  return {
    redis,
    stopsFile: f?.stops_file === undefined ? join(dirname(auditFile), 'corridor-stops.json') : path(f.stops_file),
    staleAfterMs,
  }
}

type ApprovalsFile = NonNullable<CorridorFile['approvals']>

function readApprovals(r: YamlReader, f: ApprovalsFile): ApprovalsConfig {
  const d = DEFAULT_APPROVALS
  let redis: ApprovalsConfig['redis'] = null
  if (f.redis) {
    redis = {
      url: valueSourceAt(r, ['approvals', 'redis'], f.redis, 'redis'),
      keyPrefix: f.redis.key_prefix ?? 'corridor:approvals:',
      timeoutMs: redisTimeoutAt(r, ['approvals', 'redis'], f.redis.timeout),
      withoutPersistence: f.redis.without_persistence ?? 'warn',
    }
  }
  const config: ApprovalsConfig = {
    redis,
    waitMs: f.wait ?? d.waitMs,
    expiresAfterMs: f.expires_after ?? d.expiresAfterMs,
    keepResultsMs: f.keep_results ?? d.keepResultsMs,
    retryWindowMs: f.retry_window ?? d.retryWindowMs,
    maxHeldConnections: f.max_held_connections ?? d.maxHeldConnections,
    maxPending: f.max_pending ?? d.maxPending,
    maxPendingPerAgent: f.max_pending_per_agent ?? d.maxPendingPerAgent,
    executionTimeoutMs: f.execution_timeout ?? d.executionTimeoutMs,
    maxResponseBytes: f.max_response_bytes ?? d.maxResponseBytes,
    webhook: f.webhook
      ? {
          url: valueSourceAt(r, ['approvals', 'webhook'], f.webhook, 'webhook'),
          timeoutMs: f.webhook.timeout ?? 3_000,
        }
      : null,
  }
  if (config.waitMs > 55_000)
    r.issueAt(
      ['approvals', 'wait'],
      'approvals.wait may be at most 55s (clients and load balancers give up around 60s)',
    )
  if (config.keepResultsMs < 60_000)
    r.issueAt(
      ['approvals', 'keep_results'],
      'approvals.keep_results must be at least 1m, or agents cannot collect results',
    )
  return config
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
