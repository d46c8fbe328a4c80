/**
 * The connector catalog (connectors.yaml): each system of record Corridor fronts, where it
 * lives, who owns it, until when it is certified, how its credential is obtained and placed,
 * and the actions it declares. The declared actions are the outer bound of what any agent can
 * reach through it.
 */
import { dirname, resolve } from 'node:path'
import type { Node } from 'yaml'
import { YamlReader } from '../config/yaml-reader.ts'
import { RISKS, type Risk } from './risk.ts'
import { RouteTrie } from './route-template.ts'

export interface Action {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly risk: Risk
  readonly description: string
}

export type CredentialSourceSpec =
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'file'; readonly path: string; readonly cacheMs: number }
  | { readonly kind: 'none' }

export type InjectionSpec =
  | { readonly kind: 'header'; readonly header: string; readonly prefix: string; readonly suffix: string }
  | { readonly kind: 'basic'; readonly username: string | null; readonly password: string | null }
  | { readonly kind: 'query'; readonly param: string }
  | { readonly kind: 'none' }

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
  readonly injection: InjectionSpec
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
  const f = r.map(node, where, ['id', 'owner', 'description', 'upstream', 'hosts', 'certified_until', 'agent_key_header', 'strip_headers', 'credential', 'limits', 'timeouts', 'actions'], ['id', 'owner', 'upstream', 'certified_until', 'actions'])
  const id = r.string(f.get('id'), `${where}.id`)
  if (id && !ID.test(id)) r.issue(f.get('id'), `${where}.id must be lower-case letters, digits and '-', starting with a letter`)

  const upstreamText = r.string(f.get('upstream'), `${where}.upstream`)
  let origin = ''
  let basePath = ''
  try {
    const url = new URL(upstreamText)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme')
    if (url.username || url.password || url.search || url.hash) throw new Error('extras')
    origin = url.origin
    basePath = url.pathname.replace(/\/+$/, '')
  } catch {
    if (upstreamText) r.issue(f.get('upstream'), `${where}.upstream must be an http(s) URL with no credentials, query or fragment`)
  }

  const certified = f.has('certified_until') ? r.string(f.get('certified_until'), `${where}.certified_until`) : ''
  const certifiedUntilMs = /^\d{4}-\d{2}-\d{2}$/.test(certified) ? Date.parse(`${certified}T23:59:59.999Z`) : Number.NaN
  if (certified && Number.isNaN(certifiedUntilMs)) r.issue(f.get('certified_until'), `${where}.certified_until must be a date (YYYY-MM-DD)`)

  const hosts = f.has('hosts') ? r.strings(f.get('hosts'), `${where}.hosts`).map((h) => h.toLowerCase().replace(/\.$/, '')) : []

  let agentKeyHeader: string | null = null
  if (f.has('agent_key_header')) {
    agentKeyHeader = r.string(f.get('agent_key_header'), `${where}.agent_key_header`).toLowerCase()
    if (!HEADER_NAME.test(agentKeyHeader)) r.issue(f.get('agent_key_header'), `${where}.agent_key_header is not a valid header name`)
  }
  const stripHeaders = f.has('strip_headers') ? r.strings(f.get('strip_headers'), `${where}.strip_headers`).map((h) => h.toLowerCase()) : []

  const { credential, injection } = f.has('credential')
    ? readCredential(r, f.get('credential'), `${where}.credential`)
    : { credential: { kind: 'none' } as const, injection: { kind: 'none' } as const }

  let limits = DEFAULT_LIMITS
  if (f.has('limits')) {
    const lf = r.map(f.get('limits'), `${where}.limits`, ['max_body', 'max_json_depth'])
    limits = {
      maxBodyBytes: lf.has('max_body') ? r.bytes(lf.get('max_body'), `${where}.limits.max_body`) : DEFAULT_LIMITS.maxBodyBytes,
      maxJsonDepth: lf.has('max_json_depth') ? r.number(lf.get('max_json_depth'), `${where}.limits.max_json_depth`) : DEFAULT_LIMITS.maxJsonDepth,
    }
  }
  let timeouts = DEFAULT_TIMEOUTS
  if (f.has('timeouts')) {
    const tf = r.map(f.get('timeouts'), `${where}.timeouts`, ['connect', 'headers', 'body'])
    timeouts = {
      connectMs: tf.has('connect') ? r.duration(tf.get('connect'), `${where}.timeouts.connect`) : DEFAULT_TIMEOUTS.connectMs,
      headersMs: tf.has('headers') ? r.duration(tf.get('headers'), `${where}.timeouts.headers`) : DEFAULT_TIMEOUTS.headersMs,
      bodyMs: tf.has('body') ? r.duration(tf.get('body'), `${where}.timeouts.body`) : DEFAULT_TIMEOUTS.bodyMs,
    }
  }

  const routes = new RouteTrie<Action>()
  const actions: Action[] = []
  const names = new Set<string>()
  r.list(f.get('actions'), `${where}.actions`).forEach((actionNode, k) => {
    const aw = `${where}.actions[${k}]`
    const af = r.map(actionNode, aw, ['name', 'method', 'path', 'risk', 'description'], ['name', 'method', 'path', 'risk'])
    const action: Action = {
      name: r.string(af.get('name'), `${aw}.name`),
      method: r.oneOf(af.get('method'), `${aw}.method`, METHODS),
      path: r.string(af.get('path'), `${aw}.path`),
      risk: r.oneOf(af.get('risk'), `${aw}.risk`, RISKS),
      description: af.has('description') ? r.string(af.get('description'), `${aw}.description`) : '',
    }
    if (names.has(action.name)) r.issue(af.get('name'), `${aw}: duplicate action name '${action.name}'`)
    names.add(action.name)
    if (action.path) {
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
    dropHeaders: new Set([...stripHeaders, ...(agentKeyHeader === null ? [] : [agentKeyHeader]), ...(injection.kind === 'header' ? [injection.header] : [])]),
    credential,
    injection,
    limits,
    timeouts,
    actions,
    routes,
  }
}

function readCredential(r: YamlReader, node: Node | undefined, where: string): { credential: CredentialSourceSpec; injection: InjectionSpec } {
  const f = r.map(node, where, ['source', 'env', 'file', 'cache', 'inject'], ['source', 'inject'])
  const source = r.oneOf(f.get('source'), `${where}.source`, ['env', 'file'] as const)
  const cacheMs = f.has('cache') ? r.duration(f.get('cache'), `${where}.cache`) : 30_000
  let credential: CredentialSourceSpec
  if (source === 'env') {
    // The environment is read once, at start; `cache` applies to sources that are re-read.
    if (f.has('cache')) r.issue(f.get('cache'), `${where}.cache applies only to file sources`)
    credential = { kind: 'env', name: r.string(f.get('env'), `${where}.env (the environment variable holding the secret)`) }
  } else {
    // Relative to the connectors file, like every path in Corridor's configuration.
    credential = { kind: 'file', path: resolve(dirname(r.file), r.string(f.get('file'), `${where}.file (the file holding the secret)`)), cacheMs }
  }

  const inf = r.map(f.get('inject'), `${where}.inject`, ['header', 'format', 'basic', 'query'])
  let injection: InjectionSpec = { kind: 'none' }
  const placements = ['header', 'basic', 'query'].filter((k) => inf.has(k))
  if (placements.length !== 1) {
    r.issue(f.get('inject'), `${where}.inject needs exactly one of: header, basic, query`)
  } else if (inf.has('header')) {
    const header = r.string(inf.get('header'), `${where}.inject.header`).toLowerCase()
    if (!HEADER_NAME.test(header)) r.issue(inf.get('header'), `${where}.inject.header is not a valid header name`)
    const format = inf.has('format') ? r.string(inf.get('format'), `${where}.inject.format`) : '{secret}'
    const parts = format.split('{secret}')
    if (parts.length !== 2) r.issue(inf.get('format'), `${where}.inject.format must contain '{secret}' exactly once`)
    injection = { kind: 'header', header, prefix: parts[0] ?? '', suffix: parts[1] ?? '' }
  } else if (inf.has('basic')) {
    const bf = r.map(inf.get('basic'), `${where}.inject.basic`, ['username', 'password'], ['username', 'password'])
    const username = r.value(bf.get('username'))
    const password = r.value(bf.get('password'))
    const asField = (v: unknown): string | null => (v === '{secret}' ? null : String(v ?? ''))
    if (username !== '{secret}' && password !== '{secret}') r.issue(inf.get('basic'), `${where}.inject.basic: username or password must be '{secret}'`)
    injection = { kind: 'basic', username: asField(username), password: asField(password) }
  } else {
    injection = { kind: 'query', param: r.string(inf.get('query'), `${where}.inject.query`) }
  }
  if (inf.has('format') && !inf.has('header')) r.issue(inf.get('format'), `${where}.inject.format applies only to header injection`)
  return { credential, injection }
}
