/**
 * One request's spans as OTLP/HTTP JSON, written as text: building objects for JSON.stringify cost
 * more than the rest of tracing. Attribute keys are Corridor's own constants; every value that
 * comes from a request or from configuration is escaped by JSON.stringify. Attributes follow
 * OpenTelemetry's semantic conventions for HTTP spans (the tests check every key against the
 * published registry): a server span with `http.request.method`, `url.scheme`, `url.path` and the
 * action's template as `http.route`; client
 * spans (the upstream call, and each call to Vault or a token endpoint) with `url.full`,
 * `server.address` and `server.port`; the GenAI names `gen_ai.agent.id` for the agent and
 * `gen_ai.tool.name` for the connector action; the rest are `corridor.*`. Span status follows the
 * same conventions: unset on success; an error on a server span only when Corridor answered 5xx or
 * not at all (a denial is the agent's request refused, not Corridor failing), on a client span
 * when the other side answered 4xx, 5xx or not at all. `url.full` carries no query: its values may
 * hold personal data or a credential placed there.
 */
import { clientErrorType, conventionalMethod, serverErrorType, serverOf } from '../shared/http-conventions.ts'
import type { RequestTrace, TraceFacts, TraceLink } from '../shared/trace-context.ts'

/** What an export's body holds around its spans. */
export const EXPORT_PREFIX =
  '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"corridor"}}]},"scopeSpans":[{"scope":{"name":"corridor"},"spans":['
export const EXPORT_SUFFIX = ']}]}]}'

const SERVER = 2
const CLIENT = 3
const INTERNAL = 1

/** The first attribute of a list (every span has one that is never null); `more` adds the others. */
const first = (key: string, value: string): string =>
  `{"key":"${key}","value":{"stringValue":${JSON.stringify(value)}}}`
const more = (key: string, value: string | null): string => (value === null ? '' : `,${first(key, value)}`)
const moreInt = (key: string, value: number | null): string =>
  value === null ? '' : `,{"key":"${key}","value":{"intValue":"${value}"}}`

/**
 * The path alone: a request refused before its target was read records the raw target, query
 * included, in its audit record; a span, sent to a collector outside the trail, never carries one.
 */
function withoutQuery(path: string): string {
  const at = path.indexOf('?')
  return at === -1 ? path : path.slice(0, at)
}

/** The span's first attribute: its HTTP method (one the conventions do not know as `_OTHER`, the method sent beside it). */
function methodAttributes(method: string): string {
  const named = conventionalMethod(method)
  return first('http.request.method', named) + (named === method ? '' : more('http.request.method_original', method))
}

/** A client span's attributes naming where it went: the URL (without its query), address, port and scheme. */
function calledAttributes(origin: string, path: string): string {
  const server = serverOf(origin)
  return (
    more('url.full', origin + path) +
    more('server.address', server.address) +
    moreInt('server.port', server.port) +
    more('url.scheme', server.scheme)
  )
}

/**
 * Epoch milliseconds (with a fraction) as OTLP's decimal nanoseconds, whole seconds and the
 * nanoseconds within them printed apart: both are small integers, which print several times
 * faster than one 19-digit number. A double holds today's epoch in milliseconds to within
 * about 250 ns, finer than the clocks the times come from.
 */
export function nanos(ms: number): string {
  let seconds = Math.floor(ms / 1000)
  let within = Math.round((ms - seconds * 1000) * 1e6)
  if (within >= 1e9) {
    seconds += 1
    within -= 1e9
  }
  const digits = String(within)
  return `${seconds}${'000000000'.slice(digits.length)}${digits}`
}

function span(
  t: RequestTrace,
  spanId: string,
  parentSpanId: string | null,
  name: string,
  kind: number,
  startMs: number,
  endMs: number,
  attributes: string,
  status: string,
  link: TraceLink | null = null,
): string {
  return `{"traceId":"${t.traceId}","spanId":"${spanId}"${parentSpanId === null ? '' : `,"parentSpanId":"${parentSpanId}"`},"name":${JSON.stringify(name)},"kind":${kind},"startTimeUnixNano":"${nanos(startMs)}","endTimeUnixNano":"${nanos(endMs)}","attributes":[${attributes}]${status}${link === null ? '' : `,"links":[{"traceId":"${link.traceId}","spanId":"${link.spanId}","attributes":[${first('corridor.link', 'held request')}]}]`}}`
}

const ERROR = ',"status":{"code":2}'

/** A failed span's status, with the error type as its message. */
const errorStatus = (errorType: string): string => `,"status":{"code":2,"message":${JSON.stringify(errorType)}}`

/** How many spans `requestSpans` writes for a request, counted without writing them. */
export function requestSpanCount(t: RequestTrace): number {
  const credential = t.calls !== null && t.credential !== null ? 1 + t.calls.length : 0
  return 1 + credential + (t.upstream === null ? 0 : 1)
}

/**
 * The spans of a request that has ended, comma-separated (`requestSpanCount` says how many): the
 * server span (or a release's root span), the credential span with the calls under it when issuing
 * took any, and the upstream call. `scheme` is the agent listener's; `spanId` makes the ids of the spans only an
 * export names.
 */
export function requestSpans(
  t: RequestTrace,
  facts: TraceFacts,
  scheme: 'http' | 'https',
  spanId: () => string,
): string {
  const errorType = serverErrorType(facts.status, facts.error_code)
  let json = span(
    t,
    t.serverSpanId,
    t.parentSpanId,
    `${t.link === null ? '' : 'release '}${facts.method} ${facts.connector ?? 'corridor'}${facts.action === null ? '' : ` ${facts.action}`}`,
    t.link === null ? SERVER : INTERNAL,
    t.start,
    t.start + facts.duration_ms,
    methodAttributes(facts.method) +
      more('url.scheme', scheme) +
      more('url.path', withoutQuery(facts.path)) +
      more('http.route', t.route) +
      moreInt('http.response.status_code', facts.status === 0 ? null : facts.status) +
      more('corridor.decision', facts.decision) +
      more('corridor.rule', facts.rule) +
      more('corridor.outcome', facts.outcome) +
      more('corridor.error_code', facts.error_code) +
      more('corridor.request_id', facts.request_id) +
      more('gen_ai.agent.id', facts.agent) +
      more('corridor.connector', facts.connector) +
      more('gen_ai.tool.name', facts.action) +
      more('corridor.credential.source', t.credential?.source ?? null) +
      more('error.type', errorType),
    errorType === null ? '' : errorStatus(errorType),
    t.link,
  )
  // A credential the cache had is an attribute of the server span; one that took calls to its
  // source is a span of its own, the calls under it.
  const credential = t.calls !== null ? t.credential : null
  if (credential !== null) {
    const credentialSpanId = spanId()
    json += `,${span(t, credentialSpanId, t.serverSpanId, `credential ${credential.source}`, INTERNAL, credential.start, credential.end, first('corridor.credential.source', credential.source), '')}`
    for (const call of t.calls ?? []) {
      const callError = clientErrorType(call.status, call.error ?? '_OTHER')
      json += `,${span(
        t,
        spanId(),
        credentialSpanId,
        `${call.system} ${call.operation} ${call.path}`,
        CLIENT,
        call.start,
        call.end,
        methodAttributes(call.method) +
          calledAttributes(call.origin, call.path) +
          moreInt('http.response.status_code', call.status) +
          more('error.type', callError),
        callError === null ? '' : ERROR,
      )}`
    }
  }
  const upstream = t.upstream
  if (upstream !== null) {
    // Not answered (a timeout, a reset, the agent gone): named by Corridor's error code when it has one.
    const upstreamError = clientErrorType(facts.upstream_status, facts.error_code ?? '_OTHER')
    json += `,${span(
      t,
      t.clientSpanId,
      t.serverSpanId,
      `${facts.method} upstream ${facts.connector ?? ''}`,
      CLIENT,
      upstream.start,
      upstream.start + (facts.upstream_ms ?? 0),
      methodAttributes(facts.method) +
        calledAttributes(upstream.origin, upstream.path) +
        moreInt('http.response.status_code', facts.upstream_status) +
        more('error.type', upstreamError),
      upstreamError === null ? '' : ERROR,
    )}`
  }
  return json
}
