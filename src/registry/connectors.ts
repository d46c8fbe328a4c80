/**
 * The connector catalog (connectors.yaml): each system of record Corridor fronts, where it
 * lives, who owns it, until when it is certified, how its credential is obtained and placed,
 * and the actions it declares. The declared actions are the outer bound of what any agent can
 * reach through it.
 */
import { dirname, resolve } from 'node:path'
import { isMap, type Node } from 'yaml'
import { YamlReader } from '../config/yaml-reader.ts'
import { RISKS, type Risk } from './risk.ts'
import { parseHttpUrl } from '../shared/http-url.ts'
import { RouteTrie } from './route-template.ts'

export interface Action {
  readonly name: string
  /** HTTP method and path template; empty for GraphQL operation actions, which no path reaches. */
  readonly method: string
  readonly path: string
  readonly risk: Risk
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
export type UpstreamQuirk = 'method_override' | 'matrix_params' | 'body_on_get'
export const UPSTREAM_QUIRKS: readonly UpstreamQuirk[] = ['method_override', 'matrix_params', 'body_on_get']

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

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const ID = /^[a-z][a-z0-9-]*$/

export function readConnectorCatalog(reader: YamlReader): ConnectorCatalog {
  const connectors = new Map<string, Connector>()
  const byHost = new Map<string, Connector>()
  const top = reader.map(reader.root, 'connectors file', ['connectors'], ['connectors'])
  reader.list(top.get('connectors'), 'connectors').forEach((node, i) => {
    const connector = readConnector(reader, node, `connectors[${i}]`)
    if (!connector) return
    if (connectors.has(connector.id)) reader.issue(node, `duplicate connector id '${connector.id}'`)
    connectors.set(connector.id, connector)
    for (const host of connector.hosts) {
      if (byHost.has(host)) reader.issue(node, `host '${host}' is routed to two connectors`)
      byHost.set(host, connector)
    }
  })
  return { connectors, byHost }
}

function readConnector(r: YamlReader, node: Node, where: string): Connector | null {
  const f = r.map(
    node,
    where,
    [
      'id',
      'owner',
      'description',
      'upstream',
      'hosts',
      'certified_until',
      'agent_key_header',
      'strip_headers',
      'credential',
      'limits',
      'timeouts',
      'actions',
      'idempotency_header',
      'upstream_ignores',
      'agent_key_fields',
    ],
    ['id', 'owner', 'upstream', 'certified_until', 'actions'],
  )
  const id = r.string(f.get('id'), `${where}.id`)
  if (id && !ID.test(id))
    r.issue(f.get('id'), `${where}.id must be lower-case letters, digits and '-', starting with a letter`)

  const upstreamText = r.string(f.get('upstream'), `${where}.upstream`)
  let origin = ''
  let basePath = ''
  const url = parseHttpUrl(upstreamText)
  if (url === null || url.username || url.password || url.search || url.hash) {
    if (upstreamText)
      r.issue(f.get('upstream'), `${where}.upstream must be an http(s) URL with no credentials, query or fragment`)
  } else {
    origin = url.origin
    basePath = url.pathname.replace(/\/+$/, '')
  }

  const certified = f.has('certified_until') ? r.string(f.get('certified_until'), `${where}.certified_until`) : ''
  const certifiedUntilMs = /^\d{4}-\d{2}-\d{2}$/.test(certified) ? Date.parse(`${certified}T23:59:59.999Z`) : Number.NaN
  if (certified && Number.isNaN(certifiedUntilMs))
    r.issue(f.get('certified_until'), `${where}.certified_until must be a date (YYYY-MM-DD)`)

  const hosts = f.has('hosts')
    ? r.strings(f.get('hosts'), `${where}.hosts`).map((h) => h.toLowerCase().replace(/\.$/, ''))
    : []

  let idempotencyHeader: string | null = null
  if (f.has('idempotency_header')) {
    idempotencyHeader = r.string(f.get('idempotency_header'), `${where}.idempotency_header`).toLowerCase()
    if (!HEADER_NAME.test(idempotencyHeader))
      r.issue(f.get('idempotency_header'), `${where}.idempotency_header is not a valid header name`)
  }
  let agentKeyHeader: string | null = null
  if (f.has('agent_key_header')) {
    agentKeyHeader = r.string(f.get('agent_key_header'), `${where}.agent_key_header`).toLowerCase()
    if (!HEADER_NAME.test(agentKeyHeader))
      r.issue(f.get('agent_key_header'), `${where}.agent_key_header is not a valid header name`)
  }
  const upstreamIgnores = new Set(
    f.has('upstream_ignores') ? r.strings(f.get('upstream_ignores'), `${where}.upstream_ignores`) : [],
  )
  for (const quirk of upstreamIgnores) {
    if (!(UPSTREAM_QUIRKS as readonly string[]).includes(quirk))
      r.issue(
        f.get('upstream_ignores'),
        `${where}.upstream_ignores: unknown '${quirk}' (use ${UPSTREAM_QUIRKS.join(', ')})`,
      )
  }
  const agentKeyFields = new Set(
    f.has('agent_key_fields') ? r.strings(f.get('agent_key_fields'), `${where}.agent_key_fields`) : [],
  )
  const stripHeaders = f.has('strip_headers')
    ? r.strings(f.get('strip_headers'), `${where}.strip_headers`).map((h) => h.toLowerCase())
    : []

  const { credential, injection, refreshOnReject } = f.has('credential')
    ? readCredential(r, f.get('credential'), `${where}.credential`)
    : { credential: { kind: 'none' } as const, injection: { kind: 'none' } as const, refreshOnReject: false }

  let limits = DEFAULT_LIMITS
  if (f.has('limits')) {
    const lf = r.map(f.get('limits'), `${where}.limits`, ['max_body', 'max_json_depth'])
    limits = {
      maxBodyBytes: lf.has('max_body')
        ? r.bytes(lf.get('max_body'), `${where}.limits.max_body`)
        : DEFAULT_LIMITS.maxBodyBytes,
      maxJsonDepth: lf.has('max_json_depth')
        ? r.integer(lf.get('max_json_depth'), `${where}.limits.max_json_depth`, 1, 1_000)
        : DEFAULT_LIMITS.maxJsonDepth,
    }
  }
  let timeouts = DEFAULT_TIMEOUTS
  if (f.has('timeouts')) {
    const tf = r.map(f.get('timeouts'), `${where}.timeouts`, ['connect', 'headers', 'body'])
    timeouts = {
      connectMs: tf.has('connect')
        ? r.duration(tf.get('connect'), `${where}.timeouts.connect`)
        : DEFAULT_TIMEOUTS.connectMs,
      headersMs: tf.has('headers')
        ? r.duration(tf.get('headers'), `${where}.timeouts.headers`)
        : DEFAULT_TIMEOUTS.headersMs,
      bodyMs: tf.has('body') ? r.duration(tf.get('body'), `${where}.timeouts.body`) : DEFAULT_TIMEOUTS.bodyMs,
    }
  }

  const routes = new RouteTrie<Action>()
  const actions: Action[] = []
  const names = new Set<string>()
  r.list(f.get('actions'), `${where}.actions`).forEach((actionNode, k) => {
    const aw = `${where}.actions[${k}]`
    const af = r.map(
      actionNode,
      aw,
      ['name', 'method', 'path', 'risk', 'description', 'lease', 'batch', 'graphql', 'graphql_field'],
      ['name', 'risk'],
    )
    const graphqlField = af.has('graphql_field') ? r.string(af.get('graphql_field'), `${aw}.graphql_field`) : null
    if (graphqlField !== null && !/^(query|mutation|subscription)\.[_A-Za-z][_0-9A-Za-z]*$/.test(graphqlField)) {
      r.issue(
        af.get('graphql_field'),
        `${aw}.graphql_field must look like query.<field>, mutation.<field> or subscription.<field>`,
      )
    }
    if (graphqlField === null && (!af.has('method') || !af.has('path')))
      r.issue(actionNode, `${aw} needs method and path (or graphql_field for a GraphQL operation)`)
    if (graphqlField !== null && (af.has('method') || af.has('path')))
      r.issue(actionNode, `${aw}: a GraphQL operation action has graphql_field instead of method and path`)
    const action: Action = {
      name: r.string(af.get('name'), `${aw}.name`),
      method: graphqlField === null ? r.oneOf(af.get('method'), `${aw}.method`, METHODS) : '',
      path: graphqlField === null ? r.string(af.get('path'), `${aw}.path`) : '',
      risk: r.oneOf(af.get('risk'), `${aw}.risk`, RISKS),
      description: af.has('description') ? r.string(af.get('description'), `${aw}.description`) : '',
      perRequestLease:
        af.has('lease') &&
        r.oneOf(af.get('lease'), `${aw}.lease`, ['per_request', 'shared'] as const) === 'per_request',
      batch: af.has('batch') ? readBatch(r, af.get('batch'), `${aw}.batch`) : null,
      graphqlEndpoint: af.has('graphql') && r.boolean(af.get('graphql'), `${aw}.graphql`),
      graphqlField,
    }
    if (action.batch !== null && action.graphqlEndpoint)
      r.issue(actionNode, `${aw}: an action is a batch or a GraphQL endpoint, not both`)
    if (names.has(action.name)) r.issue(af.get('name'), `${aw}: duplicate action name '${action.name}'`)
    names.add(action.name)
    if (action.path && action.method) {
      const problem = routes.add(action.method, action.path, action)
      if (problem) r.issue(af.get('path'), `${aw}.path: ${problem}`)
    }
    actions.push(action)
  })

  return {
    id,
    owner: r.string(f.get('owner'), `${where}.owner`),
    description: f.has('description') ? r.string(f.get('description'), `${where}.description`) : '',
    origin,
    basePath,
    hosts,
    certifiedUntil: certified,
    certifiedUntilMs,
    agentKeyHeader,
    dropHeaders: new Set([
      ...stripHeaders,
      ...(agentKeyHeader === null ? [] : [agentKeyHeader]),
      ...(injection.kind === 'header' ? [injection.header] : []),
    ]),
    credential,
    refreshOnReject,
    idempotencyHeader,
    injection,
    upstreamIgnores: upstreamIgnores as Set<UpstreamQuirk>,
    agentKeyFields,
    limits,
    timeouts,
    actions,
    routes,
  }
}

const BATCH_FORMATS: Record<string, Omit<BatchSpec, 'urlPrefix'>> = {
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

function readBatch(r: YamlReader, node: Node | undefined, where: string): BatchSpec {
  const f = r.map(node, where, ['format', 'url_prefix'], ['format'])
  const format = r.oneOf(f.get('format'), `${where}.format`, Object.keys(BATCH_FORMATS) as readonly string[])
  const urlPrefix = f.has('url_prefix') ? r.string(f.get('url_prefix'), `${where}.url_prefix`).replace(/\/+$/, '') : ''
  if (urlPrefix !== '' && !urlPrefix.startsWith('/'))
    r.issue(f.get('url_prefix'), `${where}.url_prefix must start with '/'`)
  return { ...(BATCH_FORMATS[format] ?? (BATCH_FORMATS['graph'] as Omit<BatchSpec, 'urlPrefix'>)), urlPrefix }
}

const SOURCES = ['env', 'file', 'vault_kv', 'vault_dynamic', 'vault_token', 'vault_identity', 'oauth2'] as const
const SOURCE_KEYS: Record<(typeof SOURCES)[number], readonly string[]> = {
  env: ['env'],
  file: ['file', 'cache'],
  vault_kv: ['mount', 'path', 'version', 'field', 'cache'],
  vault_dynamic: ['path', 'method', 'params', 'field', 'scope', 'refresh_on_reject'],
  vault_token: ['role', 'policies', 'ttl', 'num_uses', 'scope', 'refresh_on_reject'],
  vault_identity: ['role', 'scope', 'refresh_on_reject'],
  oauth2: ['token_url', 'client_id', 'client_secret', 'scopes', 'audience', 'auth_method', 'refresh_on_reject'],
}
const VAULT_PATH = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.@+=:-]+)*$/

function readCredential(
  r: YamlReader,
  node: Node | undefined,
  where: string,
): { credential: CredentialSourceSpec; injection: InjectionSpec; refreshOnReject: boolean } {
  // The source decides which other keys are allowed, so it is read first.
  const sourceNode = isMap(node) ? (node.get('source', true) as Node | undefined) : undefined
  const source = sourceNode === undefined ? 'env' : r.oneOf(sourceNode, `${where}.source`, SOURCES)
  const f = r.map(node, where, ['source', 'inject', ...SOURCE_KEYS[source]], ['source', 'inject'])
  const credential = readSource(r, f, where, source)
  const refreshOnReject =
    f.has('refresh_on_reject') && r.boolean(f.get('refresh_on_reject'), `${where}.refresh_on_reject`)
  return { credential, injection: readInjection(r, f.get('inject'), `${where}.inject`), refreshOnReject }
}

function readSource(
  r: YamlReader,
  f: Map<string, Node>,
  where: string,
  source: (typeof SOURCES)[number],
): CredentialSourceSpec {
  const vaultPath = (key: string): string => {
    const value = r.string(f.get(key), `${where}.${key}`)
    if (value && !VAULT_PATH.test(value))
      r.issue(
        f.get(key),
        `${where}.${key} must be a Vault path: segments of letters, digits and _.-, no leading slash, no '..'`,
      )
    if (value.split('/').some((seg) => seg === '..' || seg === '.'))
      r.issue(f.get(key), `${where}.${key} must not contain '.' or '..' segments`)
    return value
  }
  const scope = (): CredentialScope =>
    f.has('scope') ? r.oneOf(f.get('scope'), `${where}.scope`, ['connector', 'agent'] as const) : 'connector'
  const field = (): string | null => (f.has('field') ? r.string(f.get('field'), `${where}.field`) : null)
  switch (source) {
    case 'env':
      return { kind: 'env', name: r.string(f.get('env'), `${where}.env (the environment variable holding the secret)`) }
    case 'file':
      // Relative to the connectors file, like every path in Corridor's configuration.
      return {
        kind: 'file',
        path: resolve(dirname(r.file), r.string(f.get('file'), `${where}.file (the file holding the secret)`)),
        cacheMs: f.has('cache') ? r.duration(f.get('cache'), `${where}.cache`) : 30_000,
      }
    case 'vault_kv':
      return {
        kind: 'vault_kv',
        mount: vaultPath('mount'),
        path: vaultPath('path'),
        version: f.has('version') ? r.integer(f.get('version'), `${where}.version`, 1, Number.MAX_SAFE_INTEGER) : null,
        field: field(),
        cacheMs: f.has('cache') ? r.duration(f.get('cache'), `${where}.cache`) : 60_000,
      }
    case 'vault_dynamic': {
      const method = f.has('method') ? r.oneOf(f.get('method'), `${where}.method`, ['GET', 'POST'] as const) : 'GET'
      const params = f.has('params') ? (r.value(f.get('params')) as Record<string, unknown>) : null
      if (params !== null && (typeof params !== 'object' || Array.isArray(params)))
        r.issue(f.get('params'), `${where}.params must be a mapping`)
      if (params !== null && method === 'GET')
        r.issue(f.get('params'), `${where}.params are sent only with method: POST`)
      return { kind: 'vault_dynamic', path: vaultPath('path'), method, params, field: field(), scope: scope() }
    }
    case 'vault_token': {
      const ttl = r.duration(f.get('ttl'), `${where}.ttl`)
      return {
        kind: 'vault_token',
        role: f.has('role') ? vaultPath('role') : null,
        policies: r.strings(f.get('policies'), `${where}.policies`),
        ttl: `${Math.max(1, Math.round(ttl / 1000))}s`,
        numUses: f.has('num_uses') ? r.integer(f.get('num_uses'), `${where}.num_uses`, 0, 1_000_000) : 0,
        scope: scope(),
      }
    }
    case 'vault_identity':
      return { kind: 'vault_identity', role: vaultPath('role'), scope: scope() }
    case 'oauth2': {
      const tokenUrl = r.string(f.get('token_url'), `${where}.token_url`)
      if (parseHttpUrl(tokenUrl) === null) r.issue(f.get('token_url'), `${where}.token_url must be an http(s) URL`)
      return {
        kind: 'oauth2',
        tokenUrl,
        clientId: r.string(f.get('client_id'), `${where}.client_id`),
        clientSecret: readSecretInput(r, f.get('client_secret'), `${where}.client_secret`),
        scopes: f.has('scopes') ? r.strings(f.get('scopes'), `${where}.scopes`) : [],
        audience: f.has('audience') ? r.string(f.get('audience'), `${where}.audience`) : null,
        authMethod: f.has('auth_method')
          ? r.oneOf(f.get('auth_method'), `${where}.auth_method`, ['basic', 'post'] as const)
          : 'basic',
      }
    }
  }
}

/** `{ env: NAME }`, `{ file: path }` or `{ vault_kv: { mount, path, field } }`. */
function readSecretInput(r: YamlReader, node: Node | undefined, where: string): SecretInputSpec {
  const f = r.map(node, where, ['env', 'file', 'vault_kv'])
  if (f.size !== 1) r.issue(node, `${where} needs exactly one of: env, file, vault_kv`)
  if (f.has('file'))
    return { kind: 'file', path: resolve(dirname(r.file), r.string(f.get('file'), `${where}.file`)), cacheMs: 30_000 }
  if (f.has('vault_kv')) {
    const kf = r.map(
      f.get('vault_kv'),
      `${where}.vault_kv`,
      ['mount', 'path', 'version', 'field', 'cache'],
      ['mount', 'path', 'field'],
    )
    return {
      kind: 'vault_kv',
      mount: r.string(kf.get('mount'), `${where}.vault_kv.mount`),
      path: r.string(kf.get('path'), `${where}.vault_kv.path`),
      version: kf.has('version')
        ? r.integer(kf.get('version'), `${where}.vault_kv.version`, 1, Number.MAX_SAFE_INTEGER)
        : null,
      field: r.string(kf.get('field'), `${where}.vault_kv.field`),
      cacheMs: kf.has('cache') ? r.duration(kf.get('cache'), `${where}.vault_kv.cache`) : 60_000,
    }
  }
  return { kind: 'env', name: r.string(f.get('env'), `${where}.env`) }
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

function readInjection(r: YamlReader, node: Node | undefined, where: string): InjectionSpec {
  const inf = r.map(node, where, ['header', 'format', 'basic', 'query'])
  const placements = ['header', 'basic', 'query'].filter((k) => inf.has(k))
  if (inf.has('format') && !inf.has('header') && !inf.has('query'))
    r.issue(inf.get('format'), `${where}.format applies only to header and query injection`)
  const format = (): Template => {
    const text = inf.has('format') ? r.string(inf.get('format'), `${where}.format`) : '{secret}'
    const template = parseTemplate(text)
    if (!hasField(template))
      r.issue(inf.get('format'), `${where}.format must contain a field placeholder such as '{secret}'`)
    return template
  }
  if (placements.length !== 1) {
    r.issue(node, `${where} needs exactly one of: header, basic, query`)
    return { kind: 'none' }
  }
  if (inf.has('header')) {
    const header = r.string(inf.get('header'), `${where}.header`).toLowerCase()
    if (!HEADER_NAME.test(header)) r.issue(inf.get('header'), `${where}.header is not a valid header name`)
    return { kind: 'header', header, value: format() }
  }
  if (inf.has('basic')) {
    const bf = r.map(inf.get('basic'), `${where}.basic`, ['username', 'password'], ['username', 'password'])
    const username = parseTemplate(String(r.value(bf.get('username')) ?? ''))
    const password = parseTemplate(String(r.value(bf.get('password')) ?? ''))
    if (!hasField(username) && !hasField(password))
      r.issue(inf.get('basic'), `${where}.basic: username or password must contain a field such as '{secret}'`)
    return { kind: 'basic', username, password }
  }
  return { kind: 'query', param: r.string(inf.get('query'), `${where}.query`), value: format() }
}
