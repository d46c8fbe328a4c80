/**
 * Turns a request described in words (a policy test case, `policy explain` flags, or a request
 * held for approval) into the same RequestFacts the pipeline builds for live traffic: the same
 * canonical request (request/), the same routing and action matching, the same body parsing.
 */
import { canonicalRequest, routeTarget } from '../request/canonical-request.ts'
import { parseRequestTarget } from '../request/target.ts'
import type { PolicyBundle } from './bundle.ts'
import { bucketFor } from './compile.ts'
import { requestFacts, type DelegatedUser, type RequestFacts } from './facts.ts'

export interface DescribedRequest {
  agent: string
  method: string
  /** Path as the agent sends it, including the connector prefix: /github/repos/acme/app/issues?state=open */
  url: string
  host?: string
  user?: DelegatedUser
  headers?: Record<string, string> | readonly (readonly [string, string])[]
  /** A parsed body (sent as JSON unless the headers name another type), or the exact bytes. */
  body?: unknown
  /** ISO time at which to decide; now by default. */
  at?: string
}

export function describedFacts(bundle: PolicyBundle, d: DescribedRequest): RequestFacts {
  const agent = bundle.registry.agents.get(d.agent)
  if (agent === undefined) throw new Error(`unknown agent '${d.agent}'`)
  const now = d.at === undefined ? Date.now() : Date.parse(d.at)
  if (Number.isNaN(now)) throw new Error(`'at' is not a valid time: ${d.at}`)
  const method = d.method.toUpperCase()
  const target = routeTarget(bundle.catalog, d.host, method, parseRequestTarget(d.url))
  const rawHeaders: string[] = []
  for (const [name, value] of Array.isArray(d.headers) ? d.headers : Object.entries(d.headers ?? {}))
    rawHeaders.push(name, value)
  let body: Buffer = Buffer.alloc(0)
  if (Buffer.isBuffer(d.body)) body = d.body
  else if (typeof d.body === 'string') body = Buffer.from(d.body)
  else if (d.body !== undefined) {
    body = Buffer.from(JSON.stringify(d.body))
    if (!rawHeaders.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-type'))
      rawHeaders.push('content-type', 'application/json')
  }
  const action = target.action
  const request = canonicalRequest({
    target,
    rawHeaders,
    body,
    agentKey: null,
    readsBody: action !== null && bucketFor(bundle.policy, target.connector.id, action.name).readsBody,
  })
  return requestFacts(request, agent, d.user ?? null, now)
}
