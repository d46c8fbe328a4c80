/**
 * Requests inside a request. A batch endpoint (Microsoft Graph `$batch`, Salesforce Composite)
 * carries sub-requests, and a GraphQL endpoint carries operations whose root fields are the
 * actions that run; the upstream runs all of them, so each becomes a part that the policy
 * decides as the action it maps to. Anything Corridor cannot map with certainty is refused:
 * a malformed element, a URL with a scheme, host or the wrong prefix, a batch inside a batch,
 * GraphQL text that does not parse, persisted queries Corridor cannot read, batched GraphQL.
 *
 * GraphQL is decided on the parsed document, never on `operationName`: every operation in the
 * document (the server may run any of them), every root field including those reached through
 * fragments, under its real name (aliases are ignored), with its arguments (variables
 * substituted) as the fields a rule reads under `match.body`.
 */
import {
  Kind,
  parse,
  valueFromASTUntyped,
  type DocumentNode,
  type FragmentDefinitionNode,
  type SelectionSetNode,
} from 'graphql'
import type { Action, BatchSpec, Connector } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { EMPTY_FIELDS, parseFormFields, type FieldTree } from './fields.ts'
import { Repeated } from './fields.ts'
import type { HeaderView } from './headers.ts'
import { parseRequestTarget } from './target.ts'

export interface RequestPart {
  /** Where it sits, for reasons and audit: `requests[2] DELETE /me/messages/1` or `mutation issueDelete`. */
  readonly label: string
  readonly action: Action | null
  readonly method: string
  readonly path: string
  readonly params: Readonly<Record<string, string>>
  readonly query: FieldTree
  readonly headers: HeaderView
  readonly body: unknown
}

const NO_HEADERS: HeaderView = new Map()

/** Most sub-requests a batch or operations a document may carry (Graph allows 20, Salesforce 25). */
const MAX_PARTS = 100

function refuse(message: string): never {
  throw new CorridorError('ambiguous_request', message)
}

export function requestParts(connector: Connector, action: Action, body: unknown): readonly RequestPart[] | null {
  if (action.batch !== null) return batchParts(connector, action.batch, body)
  if (action.graphqlEndpoint) return graphqlParts(connector, body)
  return null
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x)
}

function batchParts(connector: Connector, spec: BatchSpec, body: unknown): RequestPart[] {
  if (!isObject(body)) refuse('a batch request must be a JSON object')
  const list = body[spec.list]
  if (!Array.isArray(list) || list.length === 0) refuse(`a batch request needs a non-empty '${spec.list}' list`)
  if (list.length > MAX_PARTS) refuse(`a batch may carry at most ${MAX_PARTS} requests`)
  const known = new Set([
    spec.method,
    spec.url,
    spec.body,
    ...(spec.headers === null ? [] : [spec.headers]),
    ...spec.ignore,
  ])
  return list.map((element, i): RequestPart => {
    const where = `${spec.list}[${i}]`
    if (!isObject(element)) refuse(`${where} is not an object`)
    for (const key of Object.keys(element))
      if (!known.has(key))
        refuse(
          `${where} has a field Corridor does not know ('${key.slice(0, 32)}'), so it cannot tell what the upstream would run`,
        )
    const method = element[spec.method]
    const url = element[spec.url]
    if (typeof method !== 'string' || typeof url !== 'string')
      refuse(`${where} needs '${spec.method}' and '${spec.url}' as text`)
    const upperMethod = method.toUpperCase()
    let relative = url
    if (spec.urlPrefix !== '') {
      if (!url.startsWith(spec.urlPrefix + '/')) refuse(`${where} URL must start with ${spec.urlPrefix}/`)
      relative = url.slice(spec.urlPrefix.length)
    }
    if (!relative.startsWith('/')) relative = '/' + relative // Graph accepts "me/messages"
    const target = parseRequestTarget(relative)
    const match = connector.routes.match(upperMethod, target.segments)
    if (match && (match.value.batch !== null || match.value.graphqlEndpoint))
      refuse(`${where} is itself a batch or GraphQL request`)
    const headers = new Map<string, string | Repeated>()
    const rawHeaders = spec.headers === null ? undefined : element[spec.headers]
    if (rawHeaders !== undefined) {
      if (!isObject(rawHeaders)) refuse(`${where}.${spec.headers} must be an object`)
      for (const [name, value] of Object.entries(rawHeaders)) {
        if (typeof value !== 'string') refuse(`${where} header '${name.slice(0, 32)}' must be text`)
        const lower = name.toLowerCase()
        if (headers.has(lower)) refuse(`${where} repeats the header '${lower}'`)
        headers.set(lower, value)
      }
    }
    return {
      label: `${where} ${upperMethod} ${target.path}`,
      action: match?.value ?? null,
      method: upperMethod,
      path: target.path,
      params: match?.params ?? {},
      query: target.query === '' ? EMPTY_FIELDS.tree : parseFormFields(target.query, 'query parameter').tree,
      headers,
      body: element[spec.body],
    }
  })
}

function graphqlParts(connector: Connector, body: unknown): RequestPart[] {
  if (Array.isArray(body)) refuse('batched GraphQL (a list of operations) is refused; send one document per request')
  if (!isObject(body)) refuse('a GraphQL request must be a JSON object')
  const text = body['query']
  if (typeof text !== 'string') refuse('a GraphQL request needs its query text (persisted queries cannot be decided)')
  const variables = body['variables'] ?? {}
  if (!isObject(variables)) refuse("GraphQL 'variables' must be an object")
  let document: DocumentNode
  try {
    document = parse(text, { noLocation: true, maxTokens: 10_000 })
  } catch (err) {
    throw new CorridorError(
      'bad_request',
      `the GraphQL document does not parse: ${(err as Error).message.slice(0, 200)}`,
    )
  }
  const fragments = new Map<string, FragmentDefinitionNode>()
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d)
  const byField = new Map<string, Action>()
  for (const a of connector.actions) if (a.graphqlField !== null) byField.set(a.graphqlField, a)
  const parts: RequestPart[] = []
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) continue
    if (definition.kind !== Kind.OPERATION_DEFINITION) refuse('the GraphQL document holds type-system definitions')
    const type = definition.operation
    for (const field of rootFields(definition.selectionSet, fragments, new Set())) {
      if (field.name === '__typename') continue
      const name = `${type}.${field.name}`
      parts.push({
        label: `${type} ${field.name}`,
        action: byField.get(name) ?? null,
        method: 'POST',
        path: name,
        params: {},
        query: EMPTY_FIELDS.tree,
        headers: NO_HEADERS,
        body: field.args(variables),
      })
      if (parts.length > MAX_PARTS) refuse(`a GraphQL document may select at most ${MAX_PARTS} root fields`)
    }
  }
  if (parts.length === 0) refuse('the GraphQL document selects nothing')
  return parts
}

interface RootField {
  readonly name: string
  readonly args: (variables: Record<string, unknown>) => Record<string, unknown>
}

/** Root fields of a selection set, through fragment spreads and inline fragments (directives such as @skip are ignored: the field may run). */
function rootFields(
  set: SelectionSetNode,
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  seen: Set<string>,
): RootField[] {
  const out: RootField[] = []
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) {
      const args = selection.arguments ?? []
      out.push({
        name: selection.name.value,
        args: (variables) => {
          const values = Object.create(null) as Record<string, unknown>
          for (const arg of args) values[arg.name.value] = valueFromASTUntyped(arg.value, variables)
          return values
        },
      })
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      out.push(...rootFields(selection.selectionSet, fragments, seen))
    } else {
      const name = selection.name.value
      const fragment = fragments.get(name)
      if (fragment === undefined)
        throw new CorridorError(
          'bad_request',
          `the GraphQL document spreads an unknown fragment '${name.slice(0, 64)}'`,
        )
      if (seen.has(name)) continue
      out.push(...rootFields(fragment.selectionSet, fragments, new Set([...seen, name])))
    }
  }
  return out
}
