/**
 * Turns a request described in words (a policy test case, or `policy explain` flags) into the
 * same RequestFacts the pipeline builds for live traffic: same canonical path, same routing,
 * same action matching.
 */
import type { PolicyBundle } from '../policy/bundle.ts'
import { NO_QUERY, parseQuery, type DelegatedUser, type RequestFacts } from '../policy/facts.ts'
import { parseRequestTarget } from '../proxy/request-target.ts'
import { routeRequest } from '../proxy/route.ts'

export interface DescribedRequest {
  agent: string
  method: string
  /** Path as the agent sends it, including the connector prefix: /github/repos/acme/app/issues?state=open */
  url: string
  host?: string
  user?: DelegatedUser
  headers?: Record<string, string>
  body?: unknown
  /** ISO time at which to decide; now by default. */
  at?: string
}

export function describedFacts(bundle: PolicyBundle, d: DescribedRequest): RequestFacts {
  const agent = bundle.registry.agents.get(d.agent)
  if (agent === undefined) throw new Error(`unknown agent '${d.agent}'`)
  const target = parseRequestTarget(d.url)
  const { connector, path, segments } = routeRequest(bundle.catalog, d.host, target)
  const method = d.method.toUpperCase()
  const match = connector.routes.match(method, segments)
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(d.headers ?? {})) headers[k.toLowerCase()] = v
  const now = d.at === undefined ? Date.now() : Date.parse(d.at)
  if (Number.isNaN(now)) throw new Error(`'at' is not a valid time: ${d.at}`)
  return {
    agent,
    user: d.user ?? null,
    connector,
    action: match?.value ?? null,
    method,
    path,
    params: match?.params ?? {},
    query: target.query === '' ? NO_QUERY : parseQuery(target.query),
    headers,
    body: d.body,
    now,
  }
}
