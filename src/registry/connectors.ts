/**
 * The connector catalog (connectors.yaml): each system of record Corridor fronts, where it
 * lives, who owns it, until when it is certified, how its credential is obtained and placed,
 * and the actions it declares. The declared actions are the outer bound of what any agent can
 * reach through it.
 */
import { dirname, resolve } from 'node:path'
import { pathText, type YamlReader } from '../config/yaml-reader.ts'
import {
  BATCH_FORMAT_NAMES,
  connectorsFileSchema,
  UPSTREAM_QUIRKS,
  type ConnectorEntry,
  type CredentialEntry,
  type InjectEntry,
  type SecretInputEntry,
  type HoldStatus,
} from './connectors-schema.ts'
import type { CostClass, Risk } from './risk.ts'
import { parseHttpUrl } from '../shared/http-url.ts'
import { IN_CLEAR } from '../shared/in-clear.ts'
import { refusedHostProblem } from '../shared/egress-addresses.ts'
import { httpUrlAt, refuseInClear } from '../config/refuse-in-clear.ts'
import type { ErrorFormat } from '../shared/problem.ts'
import { RouteTrie } from './route-template.ts'

export interface Action {
  readonly name: string
  /** HTTP method and path template; empty for GraphQL operation actions, which no path reaches. */
  readonly method: string
  readonly path: string
  readonly risk: Risk
  /** The declared cost class, or null when the connector declares none. */
  readonly cost: CostClass | null
  readonly description: string
  /** `lease: per_request`: a credential minted for this request alone, after the decision, revoked when it ends. */
  readonly perRequestLease: boolean
  /** A batch endpoint: each sub-request is decided as the action it maps to. */
  readonly batch: BatchSpec | null
  /** A GraphQL endpoint: every root field of every operation is decided as its operation action. */
  readonly graphqlEndpoint: boolean
  /** For a GraphQL operation action: `query.<field>`, `mutation.<field>` or `subscription.<field>`. */
  readonly graphqlField: string | null
}

/** Where a batch body keeps its sub-requests, and what each one's fields are called. */
export interface BatchSpec {
  /** Top-level JSON field holding the list of sub-requests (Graph: requests; Salesforce: compositeRequest). */
  readonly list: string
  readonly method: string
  readonly url: string
  readonly body: string
  readonly headers: string | null
  /** A prefix every sub-request URL carries and that is not part of the connector's paths (Salesforce: /services/data/v60.0). */
  readonly urlPrefix: string
  /** Other fields an element may have (ids, dependencies); anything else is refused. */
  readonly ignore: readonly string[]
}

/** Where a secret input comes from when it is not the connector's credential itself. */
export type SecretInputSpec =
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'file'; readonly path: string; readonly cacheMs: number }
  | {
      readonly kind: 'vault_kv'
      readonly mount: string
      readonly path: string
      readonly version: number | null
      readonly field: string | null
      readonly cacheMs: number
    }

export type CredentialScope = 'connector' | 'agent'

export type CredentialSourceSpec =
  | SecretInputSpec
  | {
      readonly kind: 'vault_dynamic'
      readonly path: string
      readonly method: 'GET' | 'POST'
      readonly params: Readonly<Record<string, unknown>> | null
      readonly field: string | null
      readonly scope: CredentialScope
    }
  | {
      readonly kind: 'vault_token'
      readonly role: string | null
      readonly policies: readonly string[]
      readonly ttl: string
      readonly numUses: number
      readonly scope: CredentialScope
    }
  | { readonly kind: 'vault_identity'; readonly role: string; readonly scope: CredentialScope }
  | {
      readonly kind: 'oauth2'
      readonly tokenUrl: string
      readonly clientId: string
      readonly clientSecret: SecretInputSpec
      readonly scopes: readonly string[]
      readonly audience: string | null
      readonly authMethod: 'basic' | 'post'
    }
  | { readonly kind: 'none' }

/** A value with `{field}` placeholders, split once at load: literal text and field names alternate. */
export type Template = readonly (string | { readonly field: string })[]

export type InjectionSpec =
  | { readonly kind: 'header'; readonly header: string; readonly value: Template }
  | { readonly kind: 'basic'; readonly username: Template; readonly password: Template }
  | { readonly kind: 'query'; readonly param: string; readonly value: Template }
  | { readonly kind: 'none' }

/** Request shapes an upstream framework could reinterpret; a connector may declare its upstream does not. */
export type UpstreamQuirk = (typeof UPSTREAM_QUIRKS)[number]
export { UPSTREAM_QUIRKS }

export interface ConnectorLimits {
  readonly maxBodyBytes: number
  readonly maxJsonDepth: number
}

export interface ConnectorTimeouts {
  readonly connectMs: number
  readonly headersMs: number
  readonly bodyMs: number
}

export interface Connector {
  readonly id: string
  readonly owner: string
  readonly description: string
  /** Upstream origin, e.g. `https://api.github.com`. */
  readonly origin: string
  /** Path prefix of the upstream base URL, '' or e.g. '/v1' (no trailing slash). */
  readonly basePath: string
  readonly hosts: readonly string[]
  /** ISO date (inclusive) after which the connector is refused. */
  readonly certifiedUntil: string
  readonly certifiedUntilMs: number
  /** Extra header the agent's SDK puts its API key in (for example x-api-key). */
  readonly agentKeyHeader: string | null
  /**
   * Every header removed from the agent's request on top of the general list: the agent-key
   * header, `strip_headers`, and the header the credential is injected into (so an agent can
   * never send a second copy of it). Computed once, here, not per request.
   */
  readonly dropHeaders: ReadonlySet<string>
  readonly credential: CredentialSourceSpec
  /** On a 401/403 from the upstream, drop the cached lease so that the next request gets a fresh one. */
  readonly refreshOnReject: boolean
  /**
   * The header in which the upstream honours idempotency keys (Stripe: Idempotency-Key), or null.
   * A released approval carries one (the agent's own, else the approval id), which makes it safe to
   * send again when the replica releasing it died mid-forward.
   */
  readonly idempotencyHeader: string | null
  readonly injection: InjectionSpec
  /** Shapes Corridor otherwise refuses because the upstream might reinterpret them (`upstream_ignores`). */
  readonly upstreamIgnores: ReadonlySet<UpstreamQuirk>
  /**
   * Query or form fields where this connector's SDKs put the API key (Slack: `token`). A field
   * holding exactly the agent's key is removed; anywhere else the key is refused.
   */
  readonly agentKeyFields: ReadonlySet<string>
  /** How refusals are shaped for this API's SDKs. */
  readonly errorFormat: ErrorFormat
  /** The status of the answer to a held call. */
  readonly holdStatus: HoldStatus
  /** Headers (lower-case) this API's SDKs set anew on every attempt, left out of a held request's digest. */
  readonly perAttemptHeaders: ReadonlySet<string>
  readonly limits: ConnectorLimits
  readonly timeouts: ConnectorTimeouts
  readonly actions: readonly Action[]
  readonly routes: RouteTrie<Action>
}

export interface ConnectorCatalog {
  readonly connectors: ReadonlyMap<string, Connector>
  /** Lower-case host name (no port) → connector, for Host-based routing. */
  readonly byHost: ReadonlyMap<string, Connector>
}

export const DEFAULT_LIMITS: ConnectorLimits = { maxBodyBytes: 1024 * 1024, maxJsonDepth: 64 }
export const DEFAULT_TIMEOUTS: ConnectorTimeouts = { connectMs: 5_000, headersMs: 30_000, bodyMs: 30_000 }

type Path = readonly PropertyKey[]

/** Reads connectors.yaml; problems are recorded on the reader. */
export function readConnectorCatalog(reader: YamlReader): ConnectorCatalog {
  const connectors = new Map<string, Connector>()
  const byHost = new Map<string, Connector>()
  const file = reader.parse(connectorsFileSchema, 'connectors file')
  const entries = file
    ? file.connectors.map((c, i) => [c, i] as const)
    : reader.wellFormedEntries(['connectors'], connectorsFileSchema.shape.connectors.element)
  for (const [entry, i] of entries) {
    const at: Path = ['connectors', i]
    const connector = readConnector(reader, entry, at)
    if (connectors.has(connector.id)) reader.issueAt(at, `duplicate connector id '${connector.id}'`)
    connectors.set(connector.id, connector)
    for (const host of connector.hosts) {
      if (byHost.has(host)) reader.issueAt(at, `host '${host}' is routed to two connectors`)
      byHost.set(host, connector)
    }
  }
  return { connectors, byHost }
}

function readConnector(r: YamlReader, f: ConnectorEntry, at: Path): Connector {
  const where = `connectors[${String(at[1])}]`
  let origin = ''
  let basePath = ''
  const url = parseHttpUrl(f.upstream)
  if (url === null || url.username || url.password || url.search || url.hash) {
    r.issueAt([...at, 'upstream'], `${where}.upstream must be an http(s) URL with no credentials, query or fragment`)
  } else {
    origin = url.origin
    basePath = url.pathname.replace(/\/+$/, '')
    const refused = refusedHostProblem(`${where}.upstream`, url)
    if (refused !== null) r.issueAt([...at, 'upstream'], refused)
  }
  const certifiedUntilMs = Date.parse(`${f.certified_until}T23:59:59.999Z`)
  if (Number.isNaN(certifiedUntilMs))
    r.issueAt([...at, 'certified_until'], `${where}.certified_until must be a date (YYYY-MM-DD)`)

  const agentKeyHeader = f.agent_key_header?.toLowerCase() ?? null
  const { credential, injection, refreshOnReject } = f.credential
    ? readCredential(r, f.credential, [...at, 'credential'], f.plaintext_beyond_loopback === true)
    : { credential: { kind: 'none' } as const, injection: { kind: 'none' } as const, refreshOnReject: false }
  // A credential goes over TLS or stays on this machine, unless the connector says otherwise; one
  // without a credential sends nothing secret, since the agent's own key is always stripped.
  if (credential.kind !== 'none' && url !== null && f.plaintext_beyond_loopback !== true)
    refuseInClear(r, [...at, 'upstream'], url, IN_CLEAR.upstream)

  const routes = new RouteTrie<Action>()
  const actions: Action[] = []
  const names = new Set<string>()
  f.actions.forEach((a, k) => {
    const aat: Path = [...at, 'actions', k]
    const aw = `${where}.actions[${k}]`
    const graphqlField = a.graphql_field ?? null
    if (graphqlField === null && (a.method === undefined || a.path === undefined))
      r.issueAt(aat, `${aw} needs method and path (or graphql_field for a GraphQL operation)`)
    if (graphqlField !== null && (a.method !== undefined || a.path !== undefined))
      r.issueAt(aat, `${aw}: a GraphQL operation action has graphql_field instead of method and path`)
    const action: Action = {
      name: a.name,
      method: graphqlField === null ? (a.method ?? '') : '',
      path: graphqlField === null ? (a.path ?? '') : '',
      risk: a.risk,
      cost: a.cost ?? null,
      description: a.description ?? '',
      perRequestLease: a.lease === 'per_request',
      batch: a.batch ? readBatch(r, a.batch, [...aat, 'batch']) : null,
      graphqlEndpoint: a.graphql ?? false,
      graphqlField,
    }
    if (action.batch !== null && action.graphqlEndpoint)
      r.issueAt(aat, `${aw}: an action is a batch or a GraphQL endpoint, not both`)
    if (names.has(action.name)) r.issueAt([...aat, 'name'], `${aw}: duplicate action name '${action.name}'`)
    names.add(action.name)
    if (action.path && action.method) {
      const problem = routes.add(action.method, action.path, action)
      if (problem) r.issueAt([...aat, 'path'], `${aw}.path: ${problem}`)
    }
    actions.push(action)
  })

  return {
    id: f.id,
    owner: f.owner,
    description: f.description ?? '',
    origin,
    basePath,
    hosts: (f.hosts ?? []).map((h) => h.toLowerCase().replace(/\.$/, '')),
    certifiedUntil: f.certified_until,
    certifiedUntilMs,
    agentKeyHeader,
    dropHeaders: new Set([
      ...(f.strip_headers ?? []).map((h) => h.toLowerCase()),
      ...(agentKeyHeader === null ? [] : [agentKeyHeader]),
      ...(injection.kind === 'header' ? [injection.header] : []),
    ]),
    credential,
    refreshOnReject,
    idempotencyHeader: f.idempotency_header?.toLowerCase() ?? null,
    injection,
    upstreamIgnores: new Set(f.upstream_ignores ?? []),
    agentKeyFields: new Set(f.agent_key_fields ?? []),
    holdStatus: f.hold_status ?? 503,
    errorFormat: f.error_format ?? 'problem',
    perAttemptHeaders: new Set((f.per_attempt_headers ?? []).map((h) => h.toLowerCase())),
    limits: {
      maxBodyBytes: f.limits?.max_body ?? DEFAULT_LIMITS.maxBodyBytes,
      maxJsonDepth: f.limits?.max_json_depth ?? DEFAULT_LIMITS.maxJsonDepth,
    },
    timeouts: {
      connectMs: f.timeouts?.connect ?? DEFAULT_TIMEOUTS.connectMs,
      headersMs: f.timeouts?.headers ?? DEFAULT_TIMEOUTS.headersMs,
      bodyMs: f.timeouts?.body ?? DEFAULT_TIMEOUTS.bodyMs,
    },
    actions,
    routes,
  }
}

const BATCH_FORMATS: Record<(typeof BATCH_FORMAT_NAMES)[number], Omit<BatchSpec, 'urlPrefix'>> = {
  // Microsoft Graph JSON batching
  graph: {
    list: 'requests',
    method: 'method',
    url: 'url',
    body: 'body',
    headers: 'headers',
    ignore: ['id', 'dependsOn'],
  },
  // Salesforce Composite
  salesforce_composite: {
    list: 'compositeRequest',
    method: 'method',
    url: 'url',
    body: 'body',
    headers: 'httpHeaders',
    ignore: ['referenceId'],
  },
}

type BatchEntry = NonNullable<ConnectorEntry['actions'][number]['batch']>

function readBatch(r: YamlReader, f: BatchEntry, at: Path): BatchSpec {
  const urlPrefix = (f.url_prefix ?? '').replace(/\/+$/, '')
  if (urlPrefix !== '' && !urlPrefix.startsWith('/'))
    r.issueAt([...at, 'url_prefix'], `${pathText('', at)}.url_prefix must start with '/'`)
  return { ...BATCH_FORMATS[f.format], urlPrefix }
}

function readCredential(
  r: YamlReader,
  f: CredentialEntry,
  at: Path,
  plaintextAllowed: boolean,
): { credential: CredentialSourceSpec; injection: InjectionSpec; refreshOnReject: boolean } {
  const refreshOnReject = 'refresh_on_reject' in f && f.refresh_on_reject === true
  return {
    credential: readSource(r, f, at, plaintextAllowed),
    injection: readInjection(r, f.inject, [...at, 'inject']),
    refreshOnReject,
  }
}

/** `plaintextAllowed`: the connector allows plain HTTP beyond loopback (for its OAuth2 token endpoint). */
function readSource(r: YamlReader, f: CredentialEntry, at: Path, plaintextAllowed: boolean): CredentialSourceSpec {
  // Relative to the connectors file, like every path in Corridor's configuration.
  const local = (p: string): string => resolve(dirname(r.file), p)
  switch (f.source) {
    case 'env':
      return { kind: 'env', name: f.env }
    case 'file':
      return { kind: 'file', path: local(f.file), cacheMs: f.cache ?? 30_000 }
    case 'vault_kv':
      return {
        kind: 'vault_kv',
        mount: f.mount,
        path: f.path,
        version: f.version ?? null,
        field: f.field ?? null,
        cacheMs: f.cache ?? 60_000,
      }
    case 'vault_dynamic': {
      const method = f.method ?? 'GET'
      if (f.params !== undefined && method === 'GET')
        r.issueAt([...at, 'params'], `${pathText('', at)}.params are sent only with method: POST`)
      return {
        kind: 'vault_dynamic',
        path: f.path,
        method,
        params: f.params ?? null,
        field: f.field ?? null,
        scope: f.scope ?? 'connector',
      }
    }
    case 'vault_token':
      return {
        kind: 'vault_token',
        role: f.role ?? null,
        policies: f.policies,
        ttl: `${Math.max(1, Math.round(f.ttl / 1000))}s`,
        numUses: f.num_uses ?? 0,
        scope: f.scope ?? 'connector',
      }
    case 'vault_identity':
      return { kind: 'vault_identity', role: f.role, scope: f.scope ?? 'connector' }
    case 'oauth2':
      // The client secret goes there, and the token comes back: the connector's mapping may allow it in clear.
      httpUrlAt(r, [...at, 'token_url'], f.token_url, {
        inClear: plaintextAllowed ? null : IN_CLEAR.tokenUrl,
        allowAt: at.slice(0, -1),
      })
      return {
        kind: 'oauth2',
        tokenUrl: f.token_url,
        clientId: f.client_id,
        clientSecret: readSecretInput(r, f.client_secret, [...at, 'client_secret'], local),
        scopes: f.scopes ?? [],
        audience: f.audience ?? null,
        authMethod: f.auth_method ?? 'basic',
      }
  }
}

/** `{ env: NAME }`, `{ file: path }` or `{ vault_kv: { mount, path, field } }`. */
function readSecretInput(r: YamlReader, f: SecretInputEntry, at: Path, local: (p: string) => string): SecretInputSpec {
  const given = [f.env, f.file, f.vault_kv].filter((v) => v !== undefined).length
  if (given !== 1) r.issueAt(at, `${pathText('', at)} needs exactly one of: env, file, vault_kv`)
  if (f.file !== undefined) return { kind: 'file', path: local(f.file), cacheMs: 30_000 }
  if (f.vault_kv !== undefined) {
    const kv = f.vault_kv
    return {
      kind: 'vault_kv',
      mount: kv.mount,
      path: kv.path,
      version: kv.version ?? null,
      field: kv.field,
      cacheMs: kv.cache ?? 60_000,
    }
  }
  return { kind: 'env', name: f.env ?? '' }
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g

/** Splits `Bearer {secret}` into ['Bearer ', {field: 'secret'}]. */
export function parseTemplate(text: string): Template {
  const parts: (string | { field: string })[] = []
  let last = 0
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push(text.slice(last, m.index))
    parts.push({ field: m[1] as string })
    last = m.index + m[0].length
  }
  if (last < text.length) parts.push(text.slice(last))
  return parts
}

const hasField = (t: Template): boolean => t.some((p) => typeof p !== 'string')

function readInjection(r: YamlReader, f: InjectEntry, at: Path): InjectionSpec {
  const placements = [f.header, f.basic, f.query].filter((v) => v !== undefined).length
  if (f.format !== undefined && f.header === undefined && f.query === undefined)
    r.issueAt([...at, 'format'], `${pathText('', at)}.format applies only to header and query injection`)
  const format = (): Template => {
    const template = parseTemplate(f.format ?? '{secret}')
    if (!hasField(template))
      r.issueAt([...at, 'format'], `${pathText('', at)}.format must contain a field placeholder such as '{secret}'`)
    return template
  }
  if (placements !== 1) {
    r.issueAt(at, `${pathText('', at)} needs exactly one of: header, basic, query`)
    return { kind: 'none' }
  }
  if (f.header !== undefined) return { kind: 'header', header: f.header.toLowerCase(), value: format() }
  if (f.basic !== undefined) {
    const username = parseTemplate(f.basic.username)
    const password = parseTemplate(f.basic.password)
    if (!hasField(username) && !hasField(password))
      r.issueAt(
        [...at, 'basic'],
        `${pathText('', at)}.basic: username or password must contain a field such as '{secret}'`,
      )
    return { kind: 'basic', username, password }
  }
  return { kind: 'query', param: f.query ?? '', value: format() }
}
