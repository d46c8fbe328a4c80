/**
 * The agent's headers as they will be forwarded, and the view of them the policy reads: one
 * list, built once, so that a rule never reads a header the upstream does not get or misses one
 * it does.
 *
 * Removed: hop-by-hop and framing headers (Corridor sets its own), every credential header (the
 * agent's key is a Corridor credential), forwarding information (only Corridor states it),
 * Corridor's own headers, and the connector's `strip_headers`, agent-key and injected headers.
 * `Connection` may name only hop-by-hop headers: naming an end-to-end one would remove it after
 * the policy read it. A header repeated is refused unless its syntax is a list, and a list
 * header given twice reaches the policy as `Repeated` (readable only with a quantifier).
 */
import { CorridorError } from '../shared/errors.ts'
import { Repeated } from './fields.ts'

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and never cross Corridor, either way. */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]

/** Request headers never forwarded from the agent. */
const DROP = new Set([
  ...HOP_BY_HOP_HEADERS,
  // framing Corridor sets itself
  'expect',
  'host',
  'content-length',
  'http2-settings',
  // credentials of any kind: the agent's own is a Corridor credential and must never leave
  'authorization',
  'proxy-authorization',
  'cookie',
  'x-api-key',
  'api-key',
  'apikey',
  'x-auth-token',
  'private-token',
  'x-goog-api-key',
  'ocp-apim-subscription-key',
  'x-authorization',
  'x-access-token',
  'access-token',
  // forwarding information only Corridor may state
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-uri',
  'x-forwarded-server',
  'x-real-ip',
  'x-original-url',
  'x-original-uri',
  'x-rewrite-url',
  'via',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'x-cluster-client-ip',
  // Corridor asks for an identity-encoded response, so that it can read (and scrub) what comes back
  'accept-encoding',
])

/** What `Connection` may name: hop-by-hop headers only. */
const HOP_BY_HOP = new Set([
  'close',
  'keep-alive',
  'te',
  'trailer',
  'trailers',
  'upgrade',
  'proxy-connection',
  'http2-settings',
])

/** Headers whose syntax is a comma-separated list (RFC 9110), so that two lines mean one joined value. */
const LIST_HEADERS = new Set([
  'accept',
  'accept-charset',
  'accept-language',
  'cache-control',
  'pragma',
  'prefer',
  'warning',
  'if-match',
  'if-none-match',
  'link',
  'baggage',
  // W3C Trace Context lets a tracestate list be split over several lines, to be joined as one.
  'tracestate',
  'content-language',
  'allow',
  'vary',
])

/** Headers that must appear once even before anything else is known: a second copy hides a credential or a framing trick. */
const SINGLETONS = new Set([
  'host',
  'authorization',
  'proxy-authorization',
  'content-length',
  'content-type',
  'content-encoding',
  'cookie',
  'transfer-encoding',
  'x-api-key',
  'idempotency-key',
  'x-corridor-intent',
  'x-corridor-task-id',
  'x-corridor-user',
  'x-corridor-approval',
])

export type HeaderView = ReadonlyMap<string, string | Repeated>

export interface CanonicalHeaders {
  /** Flat [name, value, …] (lower-case names) forwarded from the agent, in the agent's order. */
  readonly forwarded: readonly string[]
  /** What rules under `match.headers` read: exactly the forwarded headers. */
  readonly view: HeaderView
}

/** Refuses repeated headers that must be single, and a `Connection` that names an end-to-end header. */
export function assertHeaderShape(rawHeaders: readonly string[], extraSingletons: readonly string[]): void {
  const seen = new Set<string>()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase()
    if (SINGLETONS.has(name) || extraSingletons.includes(name)) {
      if (seen.has(name)) throw new CorridorError('ambiguous_request', `header '${name}' appears more than once`)
      seen.add(name)
    }
    if (name === 'connection') {
      for (const token of (rawHeaders[i + 1] as string).split(',')) {
        const named = token.trim().toLowerCase()
        if (named !== '' && !HOP_BY_HOP.has(named))
          throw new CorridorError(
            'ambiguous_request',
            `Connection may name only hop-by-hop headers, not '${named.slice(0, 64)}'`,
          )
      }
    }
  }
}

export function canonicalHeaders(rawHeaders: readonly string[], alsoDrop: ReadonlySet<string>): CanonicalHeaders {
  const forwarded: string[] = []
  const view = new Map<string, string | Repeated>()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase()
    if (DROP.has(name) || name.startsWith('x-corridor-') || alsoDrop.has(name)) continue
    const value = rawHeaders[i + 1] as string
    forwarded.push(name, value)
    const existing = view.get(name)
    if (existing === undefined) view.set(name, value)
    else if (!LIST_HEADERS.has(name))
      throw new CorridorError('ambiguous_request', `header '${name}' appears more than once`)
    else view.set(name, new Repeated(existing instanceof Repeated ? [...existing.values, value] : [existing, value]))
  }
  return { forwarded, view }
}
