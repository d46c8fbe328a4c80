/**
 * Spans as they wait for export: written as OTLP JSON when the request ends (every value escaped,
 * timestamps in nanoseconds), held in two fixed buffers that never grow, and handed over as one
 * valid export body at a time.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { RequestTrace, TraceFacts, UpstreamCall } from '../../src/shared/trace-context.ts'
import { SpanBuffer } from '../../src/telemetry/span-buffer.ts'
import { EXPORT_PREFIX, EXPORT_SUFFIX, nanos, requestSpanCount, requestSpans } from '../../src/telemetry/span-json.ts'
import { semconvProblems } from '../helpers/semconv.ts'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[]
  status?: { code: number; message?: string }
}

const trace = (over: Partial<RequestTrace> = {}): RequestTrace => ({
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  parentSpanId: null,
  serverSpanId: '00f067aa0ba902b7',
  clientSpanId: '1111111111111111',
  flags: '01',
  sampled: true,
  gathering: true,
  route: null,
  start: 1_796_065_351_293.125,
  link: null,
  credential: null,
  calls: null,
  upstream: null,
  ...over,
})

/** An upstream call that started at 1_796_065_351_294 ms. */
const upstreamCall = (over: Partial<UpstreamCall> = {}): UpstreamCall => ({
  start: 1_796_065_351_294,
  origin: 'http://127.0.0.1:8080',
  path: '/rows/1',
  ...over,
})

const facts = (over: Partial<TraceFacts> = {}): TraceFacts => ({
  request_id: 'req_1',
  duration_ms: 2.5,
  agent: 'writer',
  connector: 'db',
  action: 'rows.get',
  method: 'GET',
  path: '/rows/1',
  status: 200,
  decision: 'allow',
  rule: 'reads',
  outcome: 'forwarded',
  error_code: null,
  upstream_status: 200,
  upstream_ms: 1.25,
  ...over,
})

/** A call to Vault made while the credential was issued, its status left to each test. */
const vaultCall = {
  system: 'vault',
  origin: 'https://vault.internal:8200',
  method: 'GET',
  operation: 'GET',
  path: '/v1/database/creds/app',
  start: 1_796_065_351_293.6,
  end: 1_796_065_351_293.9,
  error: null,
}

const ids = () => {
  let n = 0
  return () => (n++).toString(16).padStart(16, '0')
}

describe('nanos', () => {
  it('prints epoch milliseconds as nanoseconds, within the precision the double holds', () => {
    fc.assert(
      fc.property(fc.double({ min: 1_000_000_000_000, max: 4_000_000_000_000, noNaN: true }), (ms) => {
        const printed = nanos(ms)
        expect(printed).toMatch(/^[1-9][0-9]{18}$/)
        // Math.round(ms * 1e6) is itself a double, within 512 ns of the exact figure at these magnitudes.
        expect(Math.abs(Number(BigInt(printed) - BigInt(Math.round(ms * 1e6))))).toBeLessThanOrEqual(1_024)
      }),
      { numRuns: 20_000 },
    )
  })

  it('carries a fraction that rounds up to a whole second into the seconds', () => {
    expect(nanos(1_796_065_351_999.9999999)).toBe('1796065352000000000')
    expect(nanos(1_796_065_352_000)).toBe('1796065352000000000')
    expect(nanos(1_796_065_352_000.0009765625)).toBe('1796065352000000977')
  })
})

describe('requestSpans', () => {
  it('writes every value escaped: quotes, backslashes, control characters and non-ASCII come back as they were', () => {
    // Any UTF-16 text, lone surrogates included (JSON.stringify escapes them), plus JSON's own syntax.
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 24 }),
      fc.constantFrom('"', '\\', '{"key":', '\u2028', '😀'),
    )
    fc.assert(
      fc.property(text, text, text, (path, rule, agent) => {
        const json = requestSpans(
          trace({ upstream: upstreamCall() }),
          facts({ path, rule, agent, error_code: null }),
          'http',
          ids(),
        )
        const spans = JSON.parse(`[${json}]`) as OtlpSpan[]
        expect(spans).toHaveLength(2)
        const server = spans[0] as OtlpSpan
        const attr = (key: string) => server.attributes.find((a) => a.key === key)?.value.stringValue
        // The path alone: anything from a '?' on is a query, which no span carries.
        expect(attr('url.path')).toBe(path.split('?')[0])
        expect(attr('corridor.rule')).toBe(rule)
        expect(attr('gen_ai.agent.id')).toBe(agent)
      }),
      { numRuns: 1_000 },
    )
  })

  it("names the upstream the call went to: its address, port and scheme, as the connector's origin gives them", () => {
    const client = (origin: string) => {
      const spans = JSON.parse(
        `[${requestSpans(trace({ upstream: upstreamCall({ origin }) }), facts(), 'https', ids())}]`,
      ) as OtlpSpan[]
      const upstream = spans.find((s) => s.spanId === '1111111111111111')
      return ['server.address', 'server.port', 'url.scheme'].map((key) => {
        const value = upstream?.attributes.find((a) => a.key === key)?.value
        return value?.stringValue ?? value?.intValue
      })
    }
    expect(client('https://api.github.com')).toEqual(['api.github.com', '443', 'https'])
    expect(client('http://127.0.0.1:8080')).toEqual(['127.0.0.1', '8080', 'http'])
    expect(client('http://[::1]')).toEqual(['::1', '80', 'http'])
    expect(client('https://api.github.com')).toEqual(['api.github.com', '443', 'https'])
  })

  it('marks a failure as the HTTP conventions do: a server span when Corridor answered 5xx or not at all, a client span on 4xx too', () => {
    const spansOf = (over: Partial<TraceFacts>) =>
      JSON.parse(`[${requestSpans(trace({ upstream: upstreamCall() }), facts(over), 'http', ids())}]`) as OtlpSpan[]
    const errorType = (span: OtlpSpan | undefined) =>
      span?.attributes.find((a) => a.key === 'error.type')?.value.stringValue
    // Success: no error type, and the status left unset on both.
    const [okServer, okUpstream] = spansOf({})
    expect([errorType(okServer), errorType(okUpstream)]).toEqual([undefined, undefined])
    expect([okServer?.status, okUpstream?.status]).toEqual([undefined, undefined])
    // No answer from the upstream: the type is Corridor's error code, on both.
    const [timedOut, noAnswer] = spansOf({ status: 504, error_code: 'upstream_timeout', upstream_status: null })
    expect([errorType(timedOut), errorType(noAnswer)]).toEqual(['upstream_timeout', 'upstream_timeout'])
    expect([timedOut?.status, noAnswer?.status]).toEqual([{ code: 2, message: 'upstream_timeout' }, { code: 2 }])
    // The agent left before the upstream answered: the call failed, with no code of Corridor's to name it.
    const [, abandoned] = spansOf({ status: 0, outcome: 'client_aborted', upstream_status: null })
    expect([errorType(abandoned), abandoned?.status]).toEqual(['_OTHER', { code: 2 }])
    // The upstream's 404, passed on: the call failed; Corridor's answer did not.
    const [notFound, upstream404] = spansOf({ status: 404, upstream_status: 404 })
    expect([errorType(notFound), notFound?.status]).toEqual([undefined, undefined])
    expect([errorType(upstream404), upstream404?.status]).toEqual(['404', { code: 2 }])
    // A denial is the agent's request refused (4xx), not Corridor failing: its code stays a corridor.* attribute.
    const [denied] = spansOf({ status: 403, error_code: 'policy_denied', decision: 'deny', upstream_status: null })
    expect([errorType(denied), denied?.status]).toEqual([undefined, undefined])
    expect(denied?.attributes.find((a) => a.key === 'corridor.error_code')?.value.stringValue).toBe('policy_denied')
  })

  it('leaves out the query of a request refused before its target was read, whose audit path is the raw target', () => {
    const [server] = JSON.parse(
      `[${requestSpans(trace(), facts({ path: '/nowhere/x?api_key=canary-7d1e&q=1', status: 404, connector: null, action: null }), 'http', ids())}]`,
    ) as OtlpSpan[]
    expect(server?.attributes.find((a) => a.key === 'url.path')?.value.stringValue).toBe('/nowhere/x')
    expect(JSON.stringify(server)).not.toContain('canary-7d1e')
  })

  it('gives a method the conventions do not know as _OTHER, the method sent kept beside it', () => {
    const [server] = JSON.parse(
      `[${requestSpans(trace(), facts({ method: 'PROPFIND' }), 'http', ids())}]`,
    ) as OtlpSpan[]
    const attr = (key: string) => server?.attributes.find((a) => a.key === key)?.value.stringValue
    expect([attr('http.request.method'), attr('http.request.method_original')]).toEqual(['_OTHER', 'PROPFIND'])
  })

  it('counts the spans it would write without writing them, whatever the request called', () => {
    const call = { ...vaultCall, status: 200 }
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.option(fc.nat({ max: 4 })), (upstream, credential, calls) => {
        const t = trace({
          upstream: upstream ? upstreamCall() : null,
          credential: credential ? { start: 1, end: 2, source: 'vault_dynamic' } : null,
          calls: calls === null ? null : Array.from({ length: calls }, () => call),
        })
        expect(JSON.parse(`[${requestSpans(t, facts(), 'http', ids())}]`)).toHaveLength(requestSpanCount(t))
      }),
    )
  })

  it('writes the server span, the credential span with its calls, and the upstream call, joined by their ids', () => {
    const t = trace({
      parentSpanId: 'aaaaaaaaaaaaaaaa',
      route: '/db/rows/{id}',
      upstream: upstreamCall({ start: 1_796_065_351_294.5, path: '/api/rows/1' }),
      credential: { start: 1_796_065_351_293.5, end: 1_796_065_351_294, source: 'vault_dynamic' },
      calls: [
        { ...vaultCall, status: 200 },
        { ...vaultCall, status: 503 },
        { ...vaultCall, method: 'GET', operation: 'LIST', status: null, error: 'vault_timeout' },
      ],
    })
    const json = requestSpans(
      t,
      facts({ status: 502, error_code: 'upstream_bad_response', upstream_status: 503 }),
      'https',
      ids(),
    )
    const spans = JSON.parse(`[${json}]`) as OtlpSpan[]
    expect(spans).toHaveLength(6)
    expect(requestSpanCount(t)).toBe(6)
    const [server, credential, ok, failed, timedOut, upstream] = spans
    const attr = (span: OtlpSpan | undefined, key: string) => {
      const value = span?.attributes.find((a) => a.key === key)?.value
      return value?.stringValue ?? value?.intValue
    }
    // The conventions' names: the agent, the connector action as the tool, the failure's type.
    expect(attr(server, 'gen_ai.agent.id')).toBe('writer')
    expect(attr(server, 'gen_ai.tool.name')).toBe('rows.get')
    expect(attr(server, 'url.scheme')).toBe('https')
    expect(attr(server, 'http.route')).toBe('/db/rows/{id}')
    expect(attr(server, 'error.type')).toBe('upstream_bad_response')
    expect(attr(upstream, 'error.type')).toBe('503')
    expect(attr(upstream, 'url.full')).toBe('http://127.0.0.1:8080/api/rows/1')
    expect(upstream?.status).toEqual({ code: 2 })
    expect(server).toMatchObject({
      spanId: t.serverSpanId,
      parentSpanId: 'aaaaaaaaaaaaaaaa',
      name: 'GET db rows.get',
      startTimeUnixNano: '1796065351293125000',
      endTimeUnixNano: '1796065351295625000',
      status: { code: 2, message: 'upstream_bad_response' },
    })
    expect(credential).toMatchObject({ parentSpanId: t.serverSpanId, name: 'credential vault_dynamic' })
    expect(ok).toMatchObject({ parentSpanId: credential?.spanId, name: 'vault GET /v1/database/creds/app' })
    // A call to Vault is an HTTP client span: where it went, as the upstream call says it.
    expect(['url.full', 'server.address', 'server.port', 'http.response.status_code'].map((k) => attr(ok, k))).toEqual([
      'https://vault.internal:8200/v1/database/creds/app',
      'vault.internal',
      '8200',
      '200',
    ])
    expect(ok?.status).toBeUndefined()
    expect([failed?.status, attr(failed, 'error.type')]).toEqual([{ code: 2 }, '503'])
    // Vault's LIST goes as a GET: the span is named for the operation, its method is what was sent.
    expect([timedOut?.name, attr(timedOut, 'http.request.method'), attr(timedOut, 'error.type')]).toEqual([
      'vault LIST /v1/database/creds/app',
      'GET',
      'vault_timeout',
    ])
    expect(upstream).toMatchObject({
      spanId: t.clientSpanId,
      parentSpanId: t.serverSpanId,
      startTimeUnixNano: '1796065351294500000',
    })
    expect(new Set([server, credential, ok, failed, timedOut, upstream].map((s) => s?.spanId)).size).toBe(6)
  })

  it("every span, whatever the request's outcome, uses only the registry's attributes as its conventions require", () => {
    const call = fc.record({
      system: fc.constantFrom('vault', 'oauth2'),
      origin: fc.constantFrom('https://vault.internal:8200', 'http://127.0.0.1:8200', 'https://idp.example'),
      method: fc.constantFrom('GET', 'POST'),
      operation: fc.constantFrom('GET', 'POST', 'LIST'),
      path: fc.constantFrom('/v1/auth/approle/login', '/oauth/token'),
      start: fc.constant(1_796_065_351_293.6),
      end: fc.constant(1_796_065_351_293.9),
      status: fc.option(fc.constantFrom(200, 204, 400, 403, 500, 503)),
      error: fc.option(fc.constantFrom('vault_timeout', 'oauth2_unreachable')),
    })
    const status = fc.constantFrom(0, 200, 202, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504)
    fc.assert(
      fc.property(
        fc.record({
          method: fc.constantFrom('GET', 'POST', 'DELETE', 'PATCH', 'PROPFIND', 'MKCOL', 'QUERY'),
          status,
          upstream_status: fc.option(status.filter((s) => s !== 0)),
          error_code: fc.option(
            fc.constantFrom('policy_denied', 'upstream_timeout', 'client_aborted', 'audit_unavailable'),
          ),
          action: fc.option(fc.constant('rows.get')),
          connector: fc.option(fc.constant('db')),
        }),
        fc.array(call, { maxLength: 3 }),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom<'http' | 'https'>('http', 'https'),
        (over, calls, forwarded, release, scheme) => {
          const t = trace({
            calls,
            credential: { start: 1_796_065_351_293.5, end: 1_796_065_351_294, source: 'vault_dynamic' },
            link: release ? { traceId: 'b'.repeat(32), spanId: 'c'.repeat(16), sampled: true } : null,
            route: forwarded ? '/db/rows/{id}' : null,
            upstream: forwarded ? upstreamCall({ origin: 'https://api.example:8443' }) : null,
          })
          const spans = JSON.parse(`[${requestSpans(t, facts(over), scheme, ids())}]`) as (OtlpSpan & {
            kind: number
          })[]
          expect(spans.flatMap((span) => semconvProblems(span, 'corridor.'))).toEqual([])
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('the registry check itself refuses unknown, deprecated and missing attributes and an undefined method', () => {
    const span = (kind: number, attributes: [string, string][], failed = false) => ({
      name: 'probe',
      kind,
      attributes: attributes.map(([key, stringValue]) => ({ key, value: { stringValue } })),
      ...(failed ? { status: { code: 2 } } : {}),
    })
    const server: [string, string][] = [
      ['http.request.method', 'GET'],
      ['url.scheme', 'http'],
      ['url.path', '/'],
    ]
    expect(semconvProblems(span(2, server), 'corridor.')).toEqual([])
    expect(semconvProblems(span(2, [...server, ['rpc.system', 'vault']]), 'corridor.')).toEqual([
      'span "probe": rpc.system is deprecated',
    ])
    expect(semconvProblems(span(2, [...server, ['corridor.anything', 'x'], ['http.verb', 'x']]), 'corridor.')).toEqual([
      'span "probe": http.verb is not in the registry',
    ])
    expect(
      semconvProblems(
        span(
          2,
          [
            ['http.request.method', 'PROPFIND'],
            ['url.scheme', 'http'],
          ],
          true,
        ),
        'corridor.',
      ),
    ).toEqual([
      'span "probe": http.request.method = PROPFIND is not one of its defined values',
      'span "probe": url.path is required of this kind of span and missing',
      'span "probe": failed without error.type',
    ])
    expect(semconvProblems(span(3, [['http.request.method', 'GET']]), 'corridor.')).toHaveLength(3)
  })
})

describe('SpanBuffer', () => {
  const body = (b: Buffer) =>
    JSON.parse(b.toString('utf8')) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] }
  const spansIn = (b: Buffer) => body(b).resourceSpans[0]?.scopeSpans[0]?.spans ?? []

  it('hands over exactly the spans appended, as one valid export body, and fills the other buffer meanwhile', () => {
    const buffer = new SpanBuffer(4_096)
    expect(buffer.take()).toBeNull()
    expect(buffer.append('{"n":1}', 1)).toBe(true)
    expect(buffer.append('{"n":2},{"n":3}', 2)).toBe(true)
    const first = buffer.take()
    expect(first?.spans).toBe(3)
    expect(first?.body.toString()).toBe(`${EXPORT_PREFIX}{"n":1},{"n":2},{"n":3}${EXPORT_SUFFIX}`)
    // While that batch is out, spans still go in, and nothing more can be taken.
    expect(buffer.append('{"n":4}', 1)).toBe(true)
    expect(buffer.take()).toBeNull()
    buffer.giveBack(first as NonNullable<typeof first>, true)
    expect(() => buffer.giveBack(first as NonNullable<typeof first>, true)).toThrow(/given back/)
    const second = buffer.take()
    expect(spansIn(second?.body as Buffer)).toEqual([{ n: 4 }])
    buffer.giveBack(second as NonNullable<typeof second>, false)
    expect(buffer.append('{"n":5}', 1)).toBe(true)
    expect(spansIn(buffer.take()?.body as Buffer)).toEqual([{ n: 5 }])
  })

  it('once it has refused spans it refuses all, even those that would fit, until it is taken', () => {
    const buffer = new SpanBuffer(EXPORT_PREFIX.length + EXPORT_SUFFIX.length + 32)
    expect(buffer.append('{"n":1}', 1)).toBe(true)
    expect(buffer.full).toBe(false)
    expect(buffer.append(`{"text":"${'x'.repeat(40)}"}`, 1)).toBe(false)
    expect(buffer.full).toBe(true)
    expect(buffer.append('{"n":2}', 1)).toBe(false)
    const batch = buffer.take()
    expect(spansIn(batch?.body as Buffer)).toEqual([{ n: 1 }])
    // The spare buffer fills next, from empty.
    expect(buffer.full).toBe(false)
    expect(buffer.append('{"n":3}', 1)).toBe(true)
  })

  it('never grows: what does not fit is refused whole, and every body taken stays valid JSON', () => {
    const piece = fc.constantFrom('a', 'é', '€', '😀', '"', '\\')
    fc.assert(
      fc.property(
        fc.integer({ min: 64, max: 2_000 }),
        fc.array(fc.array(piece, { maxLength: 120 }), { minLength: 1, maxLength: 200 }),
        (room, texts) => {
          const capacity = EXPORT_PREFIX.length + EXPORT_SUFFIX.length + room
          const buffer = new SpanBuffer(capacity)
          const accepted: string[] = []
          for (const pieces of texts) {
            const text = pieces.join('')
            if (buffer.append(JSON.stringify({ text }), 1)) accepted.push(text)
          }
          const batch = buffer.take()
          expect(batch === null ? 0 : batch.body.length).toBeLessThanOrEqual(capacity)
          expect(batch === null ? [] : spansIn(batch.body).map((s) => (s as { text: string }).text)).toEqual(accepted)
        },
      ),
      { numRuns: 300 },
    )
  })
})
