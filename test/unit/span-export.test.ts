/**
 * Spans as they wait for export: written as OTLP JSON when the request ends (every value escaped,
 * timestamps in nanoseconds), held in two fixed buffers that never grow, and handed over as one
 * valid export body at a time.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { RequestTrace, TraceFacts } from '../../src/shared/trace-context.ts'
import { SpanBuffer } from '../../src/telemetry/span-buffer.ts'
import { EXPORT_PREFIX, EXPORT_SUFFIX, nanos, requestSpans } from '../../src/telemetry/span-json.ts'

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
  start: 1_796_065_351_293.125,
  link: null,
  credential: null,
  calls: [],
  upstreamStart: null,
  upstreamOrigin: null,
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
        const { json, count } = requestSpans(
          trace({ upstreamStart: 1_796_065_351_294 }),
          facts({ path, rule, agent, error_code: null }),
          ids(),
        )
        const spans = JSON.parse(`[${json}]`) as OtlpSpan[]
        expect(spans).toHaveLength(count)
        const server = spans[0] as OtlpSpan
        const attr = (key: string) => server.attributes.find((a) => a.key === key)?.value.stringValue
        expect(attr('url.path')).toBe(path)
        expect(attr('corridor.rule')).toBe(rule)
        expect(attr('gen_ai.agent.id')).toBe(agent)
      }),
      { numRuns: 1_000 },
    )
  })

  it("names the upstream the call went to: its address, port and scheme, as the connector's origin gives them", () => {
    const client = (upstreamOrigin: string) => {
      const spans = JSON.parse(
        `[${requestSpans(trace({ upstreamStart: 1_796_065_351_294, upstreamOrigin }), facts(), ids()).json}]`,
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

  it('marks a failure with error.type and an error status, on the span that failed, and a success with neither', () => {
    const spansOf = (over: Partial<TraceFacts>) =>
      JSON.parse(
        `[${requestSpans(trace({ upstreamStart: 1_796_065_351_294 }), facts(over), ids()).json}]`,
      ) as OtlpSpan[]
    const errorType = (span: OtlpSpan | undefined) =>
      span?.attributes.find((a) => a.key === 'error.type')?.value.stringValue
    const [okServer, okUpstream] = spansOf({})
    expect([errorType(okServer), errorType(okUpstream)]).toEqual([undefined, undefined])
    expect([okServer?.status, okUpstream?.status]).toEqual([{ code: 1 }, undefined])
    // No answer from the upstream: the type is Corridor's error code.
    const [timedOut, noAnswer] = spansOf({ status: 504, error_code: 'upstream_timeout', upstream_status: null })
    expect([errorType(timedOut), errorType(noAnswer)]).toEqual(['upstream_timeout', 'upstream_timeout'])
    expect(noAnswer?.status).toEqual({ code: 2 })
    // The upstream's own 4xx is its answer, passed on: not a failure of either span.
    const [notFound, upstream404] = spansOf({ status: 404, upstream_status: 404 })
    expect([errorType(notFound), errorType(upstream404), upstream404?.status]).toEqual([
      undefined,
      undefined,
      undefined,
    ])
  })

  it('writes the server span, the credential span with its calls, and the upstream call, joined by their ids', () => {
    const t = trace({
      parentSpanId: 'aaaaaaaaaaaaaaaa',
      upstreamStart: 1_796_065_351_294.5,
      credential: { start: 1_796_065_351_293.5, end: 1_796_065_351_294, source: 'vault_dynamic' },
      calls: [
        {
          system: 'vault',
          method: 'GET',
          path: 'database/creds/app',
          start: 1_796_065_351_293.6,
          end: 1_796_065_351_293.9,
          status: 200,
        },
        {
          system: 'vault',
          method: 'GET',
          path: 'database/creds/app',
          start: 1_796_065_351_293.6,
          end: 1_796_065_351_293.9,
          status: 503,
        },
      ],
    })
    const { json, count } = requestSpans(
      t,
      facts({ status: 502, error_code: 'upstream_bad_response', upstream_status: 503 }),
      ids(),
    )
    const [server, credential, ok, failed, upstream] = JSON.parse(`[${json}]`) as OtlpSpan[]
    expect(count).toBe(5)
    const attr = (span: OtlpSpan | undefined, key: string) =>
      span?.attributes.find((a) => a.key === key)?.value.stringValue
    // The conventions' names: the agent, the connector action as the tool, the failure's type.
    expect(attr(server, 'gen_ai.agent.id')).toBe('writer')
    expect(attr(server, 'gen_ai.tool.name')).toBe('rows.get')
    expect(attr(server, 'error.type')).toBe('upstream_bad_response')
    expect(attr(upstream, 'error.type')).toBe('503')
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
    expect(ok).toMatchObject({ parentSpanId: credential?.spanId, name: 'vault GET database/creds/app' })
    expect(ok?.status).toBeUndefined()
    expect(failed?.status).toEqual({ code: 2 })
    expect(upstream).toMatchObject({
      spanId: t.clientSpanId,
      parentSpanId: t.serverSpanId,
      startTimeUnixNano: '1796065351294500000',
    })
    expect(new Set([server, credential, ok, failed, upstream].map((s) => s?.spanId)).size).toBe(5)
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
