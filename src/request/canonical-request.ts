/**
 * The canonical request: what the policy decides on and, byte for byte, what is forwarded, held
 * for approval and explained. Live traffic, `policy test` / `policy explain` and the approval
 * re-check all build it here, from the same functions, so there is no second reading of a
 * request for an attacker to play against the first.
 *
 * Built in two steps because identity comes between them: `routeTarget` (path, connector, query)
 * before the agent is known, `canonicalRequest` (headers, body, refusals) once the body is read.
 * Besides the shapes the field, header and body modules refuse, a request is refused when an
 * upstream framework could reinterpret it, unless the connector declares it does not:
 *  - `_method` in the query or body (Rails, Laravel, Symfony turn a POST into that method);
 *  - matrix parameters (`/users/admin;jsessionid=1`: Java servers strip them, then route);
 *  - a body on GET, HEAD, DELETE or OPTIONS (some frameworks merge it into the parameters);
 * and when the agent's own key appears anywhere it would be forwarded (agent_key_misplaced),
 * after removing it from the connector's declared key fields (Slack's `token`).
 */
import type { Action, Connector, ConnectorCatalog } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { parseBody, type ParsedBody } from './body.ts'
import { EMPTY_FIELDS, parseFormFields, serializePairs, type FormFields } from './fields.ts'
import { canonicalHeaders, type HeaderView } from './headers.ts'
import { requestParts, type RequestPart } from './parts.ts'
import { routeRequest } from './route.ts'
import { needlesFor } from './secret-needles.ts'
import type { RequestTarget } from './target.ts'

export interface RoutedTarget {
  readonly method: string
  /** The canonical path as the agent addressed it (with the connector prefix when routed by path). */
  readonly targetPath: string
  readonly connector: Connector
  /** The declared action the method and path map to; null when none (outside the connector's scope). */
  readonly action: Action | null
  readonly params: Readonly<Record<string, string>>
  /** Canonical path relative to the connector. */
  readonly path: string
  readonly segments: readonly string[]
  readonly query: FormFields
}

export interface CanonicalRequest extends RoutedTarget {
  /** The upstream request path: the connector's base path and the canonical path. */
  readonly upstreamPath: string
  /** The query as forwarded (strictly re-encoded, without '?'), before any credential is placed. */
  readonly queryString: string
  /** Flat [name, value, …] agent headers that are forwarded (lower-case names), before framing and the credential are added. */
  readonly headers: readonly string[]
  readonly headerView: HeaderView
  /** JSON value or form field tree the policy reads under `match.body`; undefined when there is none. */
  readonly bodyFields: unknown
  /** The bytes forwarded (a form is re-serialised). */
  readonly body: Buffer
  /** Sub-requests of a batch or GraphQL endpoint, each decided as its own action; null for other actions. */
  readonly parts: readonly RequestPart[] | null
}

const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override']
const METHOD_OVERRIDE_FIELD = '_method'
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

export function routeTarget(
  catalog: ConnectorCatalog,
  host: string | undefined,
  method: string,
  target: RequestTarget,
): RoutedTarget {
  const routed = routeRequest(catalog, host, target)
  const match = routed.connector.routes.match(method, routed.segments)
  const query = target.query === '' ? EMPTY_FIELDS : parseFormFields(target.query, 'query parameter')
  return {
    method,
    targetPath: target.path,
    ...routed,
    action: match?.value ?? null,
    params: match?.params ?? {},
    query,
  }
}

/**
 * The declared action's path template as the agent addresses it (with the connector prefix when
 * routed by path), e.g. `/github/repos/{owner}/{repo}/issues`: the request's route, low in
 * cardinality whatever the path's values. Null without an action or a path template (GraphQL).
 */
export function routeTemplate(target: RoutedTarget): string | null {
  if (target.action === null || target.action.path === '') return null
  return (target.targetPath === target.path ? '' : `/${target.connector.id}`) + target.action.path
}

export interface RequestParts {
  readonly target: RoutedTarget
  /** Flat [name, value, …] as received (Node's rawHeaders). */
  readonly rawHeaders: readonly string[]
  readonly body: Buffer
  /** The agent credential it presented, once identified: it must not be forwarded anywhere. */
  readonly agentKey: string | null
  /** Whether a rule reads the body (a body Corridor cannot read is then refused). */
  readonly readsBody: boolean
}

export function canonicalRequest(parts: RequestParts): CanonicalRequest {
  const { connector } = parts.target
  const ignores = connector.upstreamIgnores
  const method = parts.target.method
  for (let i = 0; i < parts.rawHeaders.length; i += 2) {
    if (METHOD_OVERRIDE_HEADERS.includes((parts.rawHeaders[i] as string).toLowerCase())) {
      throw new CorridorError(
        'ambiguous_request',
        `'${(parts.rawHeaders[i] as string).toLowerCase()}' is refused: send the real method`,
      )
    }
  }
  if (!ignores.has('matrix_params') && parts.target.segments.some((s) => s.includes(';') || s.includes('%3B'))) {
    throw new CorridorError(
      'invalid_path',
      "';' in a path segment is refused: some servers strip it as a matrix parameter and route what remains",
    )
  }
  if (parts.body.length > 0 && NO_BODY_METHODS.has(method) && !ignores.has('body_on_get')) {
    throw new CorridorError(
      'ambiguous_request',
      `a body on ${method} is refused: some frameworks merge it into the request parameters`,
    )
  }

  const headers = canonicalHeaders(parts.rawHeaders, connector.dropHeaders)
  const contentType = headers.view.get('content-type')
  let query = parts.target.query
  let body: ParsedBody = parseBody(
    typeof contentType === 'string' ? contentType : undefined,
    parts.body,
    connector.limits.maxJsonDepth,
    parts.readsBody,
  )

  if (!ignores.has('method_override')) {
    if (hasTopLevel(query.tree, METHOD_OVERRIDE_FIELD) || hasTopLevel(body.fields, METHOD_OVERRIDE_FIELD)) {
      throw new CorridorError(
        'ambiguous_request',
        `'${METHOD_OVERRIDE_FIELD}' is refused: some frameworks take it as the request method`,
      )
    }
  }

  if (parts.agentKey !== null) {
    if (connector.agentKeyFields.size > 0) {
      query = withoutKeyFields(query, connector.agentKeyFields, parts.agentKey)
      if (body.form !== null) {
        const form = withoutKeyFields(body.form, connector.agentKeyFields, parts.agentKey)
        if (form !== body.form)
          body = { ...body, fields: form.tree, form, bytes: Buffer.from(serializePairs(form.pairs)) }
      }
    }
    assertKeyAbsent(parts.agentKey, parts.target.path, serializePairs(query.pairs), headers.forwarded, body.bytes)
  }

  const action = parts.target.action
  let inner: readonly RequestPart[] | null = null
  if (action !== null && (action.batch !== null || action.graphqlEndpoint)) {
    if (body.kind !== 'json')
      throw new CorridorError(
        'unsupported_media_type',
        `'${action.name}' carries requests inside its body; send it as JSON`,
      )
    inner = requestParts(connector, action, body.fields)
  }

  return {
    ...parts.target,
    parts: inner,
    query,
    upstreamPath: connector.basePath + parts.target.path,
    queryString: serializePairs(query.pairs),
    headers: headers.forwarded,
    headerView: headers.view,
    bodyFields: body.fields,
    body: body.bytes,
  }
}

function hasTopLevel(fields: unknown, name: string): boolean {
  return fields !== null && typeof fields === 'object' && !Array.isArray(fields) && Object.hasOwn(fields, name)
}

/** Removes declared key fields that carry exactly the agent's key (Slack SDKs send `token` in the form). */
function withoutKeyFields(fields: FormFields, names: ReadonlySet<string>, key: string): FormFields {
  if (!fields.pairs.some(([name, value]) => names.has(name) && value === key)) return fields
  const pairs = fields.pairs.filter(([name, value]) => !(names.has(name) && value === key))
  return parseFormFields(serializePairs(pairs), 'field')
}

function assertKeyAbsent(key: string, path: string, query: string, headers: readonly string[], body: Buffer): void {
  const needles = needlesFor(key)
  if (needles.bytes.length === 0) return
  let where: string | null = null
  if (needles.inText(path) || (path.includes('%') && needles.inText(decodeSafe(path)))) where = 'the path'
  else if (needles.inText(query) || (query.includes('%') && needles.inText(decodeSafe(query)))) where = 'the query'
  else {
    for (let i = 1; i < headers.length; i += 2) {
      if (needles.inText(headers[i] as string)) {
        where = `the header '${headers[i - 1] as string}'`
        break
      }
    }
    if (where === null && body.length > 0 && needles.inBytes(body)) where = 'the body'
  }
  if (where !== null) {
    throw new CorridorError(
      'agent_key_misplaced',
      `your Corridor credential appears in ${where}; send it only as the API key (Authorization or the connector's key header)`,
    )
  }
}

function decodeSafe(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
