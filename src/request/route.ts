/**
 * Which connector a request is for: by Host (for SDKs that take only a host name) or by the
 * first path segment (`/<connector>/...`). The upstream is always the connector's configured
 * one; nothing in the request can name another.
 */
import type { Connector, ConnectorCatalog } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import type { RequestTarget } from './target.ts'

export interface Routed {
  readonly connector: Connector
  /** Canonical path relative to the connector. */
  readonly path: string
  readonly segments: readonly string[]
}

export function hostName(host: string | undefined): string {
  if (host === undefined) return ''
  let name = host.toLowerCase()
  if (name.startsWith('[')) name = name.slice(0, name.indexOf(']') + 1)
  else {
    const colon = name.lastIndexOf(':')
    if (colon !== -1) name = name.slice(0, colon)
  }
  return name.endsWith('.') ? name.slice(0, -1) : name
}

export function routeRequest(catalog: ConnectorCatalog, host: string | undefined, target: RequestTarget): Routed {
  const byHost = catalog.byHost.size > 0 ? catalog.byHost.get(hostName(host)) : undefined
  if (byHost !== undefined) return { connector: byHost, path: target.path, segments: target.segments }
  const first = target.segments[0]
  const connector = first === undefined ? undefined : catalog.connectors.get(first)
  if (connector === undefined)
    throw new CorridorError('connector_unknown', 'address a connector as /<connector>/… or through its host name')
  const path = target.path.slice(first!.length + 1)
  return { connector, path: path === '' ? '/' : path, segments: target.segments.slice(1) }
}
