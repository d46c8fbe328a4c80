/**
 * One request's spans as OTLP/HTTP JSON, written as text: building objects for JSON.stringify cost
 * more than the rest of tracing. Attribute keys are Corridor's own constants; every value that
 * comes from a request or from configuration is escaped by JSON.stringify. Where OpenTelemetry's
 * semantic conventions name an attribute, the spans use that name (`http.*`, `url.*`, the
 * upstream's `server.address` and `server.port`, `error.type`, and from the GenAI conventions
 * `gen_ai.agent.id` for the agent and `gen_ai.tool.name` for the connector action); the rest are
 * `corridor.*`.
 */
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

/** Each upstream origin's server.address, server.port and url.scheme attributes, written once. */
const originAttributes = new Map<string, string>()
/** Origins come from configuration; this only bounds what many policy reloads could leave behind. */
const MAX_ORIGINS = 1_000

function upstreamAttributes(origin: string | null): string {
  if (origin === null) return ''
  let text = originAttributes.get(origin)
  if (text === undefined) {
    const url = new URL(origin)
    const scheme = url.protocol.slice(0, -1)
    text =
      // An IPv6 address without the brackets the URL needs around it.
      more('server.address', url.hostname.replace(/^\[(.*)\]$/, '$1')) +
      moreInt('server.port', url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port)) +
      more('url.scheme', scheme)
    if (originAttributes.size >= MAX_ORIGINS) originAttributes.clear()
    originAttributes.set(origin, text)
  }
  return text
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

const OK = ',"status":{"code":1}'
const ERROR = ',"status":{"code":2}'

/**
 * The spans of a request that has ended, comma-separated, and how many: the server span (or a
 * release's root span), the credential span with the calls under it when issuing took any, and
 * the upstream call. `spanId` makes the ids of the spans only an export names.
 */
export function requestSpans(
  t: RequestTrace,
  facts: TraceFacts,
  spanId: () => string,
): { readonly json: string; readonly count: number } {
  const failed = facts.error_code !== null || (facts.status >= 500 && facts.status !== 0)
  const errorType = failed ? (facts.error_code ?? String(facts.status)) : null
  // The upstream call failed when it answered 5xx or not at all (a timeout, a reset).
  const upstreamFailed = facts.upstream_status === null ? facts.error_code !== null : facts.upstream_status >= 500
  let json = span(
    t,
    t.serverSpanId,
    t.parentSpanId,
    `${t.link === null ? '' : 'release '}${facts.method} ${facts.connector ?? 'corridor'}${facts.action === null ? '' : ` ${facts.action}`}`,
    t.link === null ? SERVER : INTERNAL,
    t.start,
    t.start + facts.duration_ms,
    first('http.request.method', facts.method) +
      more('url.path', facts.path) +
      moreInt('http.response.status_code', facts.status) +
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
    errorType === null ? OK : `,"status":{"code":2,"message":${JSON.stringify(errorType)}}`,
    t.link,
  )
  let count = 1
  // A credential the cache had is an attribute of the server span; one that took calls to its
  // source is a span of its own, the calls under it.
  const credential = t.calls !== null && t.calls.length > 0 ? t.credential : null
  if (credential !== null) {
    const credentialSpanId = spanId()
    json += `,${span(t, credentialSpanId, t.serverSpanId, `credential ${credential.source}`, INTERNAL, credential.start, credential.end, first('corridor.credential.source', credential.source), '')}`
    count++
    for (const call of t.calls ?? []) {
      json += `,${span(
        t,
        spanId(),
        credentialSpanId,
        `${call.system} ${call.method} ${call.path}`,
        CLIENT,
        call.start,
        call.end,
        first('rpc.system', call.system) +
          more('http.request.method', call.method) +
          more('url.path', call.path) +
          moreInt('http.response.status_code', call.status),
        call.status !== null && call.status < 400 ? '' : ERROR,
      )}`
      count++
    }
  }
  if (t.upstreamStart !== null) {
    json += `,${span(
      t,
      t.clientSpanId,
      t.serverSpanId,
      `${facts.method} upstream ${facts.connector ?? ''}`,
      CLIENT,
      t.upstreamStart,
      t.upstreamStart + (facts.upstream_ms ?? 0),
      first('http.request.method', facts.method) +
        moreInt('http.response.status_code', facts.upstream_status) +
        upstreamAttributes(t.upstreamOrigin) +
        more(
          'error.type',
          !upstreamFailed ? null : facts.upstream_status === null ? facts.error_code : String(facts.upstream_status),
        ),
      upstreamFailed ? ERROR : '',
    )}`
    count++
  }
  return { json, count }
}
