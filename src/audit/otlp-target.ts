/**
 * Ships audit entries to an OpenTelemetry collector as OTLP logs (HTTP, JSON encoding, POST
 * /v1/logs), for SIEMs that take their feed from a collector. Each log record's body is the line
 * exactly as Corridor wrote it, so the chain fields travel with it and `corridor audit verify`
 * runs on the collector's copy; stream, sequence, hash and the entry's type are attributes too.
 */
import { Agent, request } from 'undici'
import { checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import type { ShippedEntry, ShipTarget } from './shipper.ts'

export interface OtlpOptions {
  /** The collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318 */
  readonly endpoint: string
  readonly timeoutMs: number
  /** Extra headers (an API key for a hosted collector). */
  readonly headers: Readonly<Record<string, string>>
  /** How the collector's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  readonly resolve?: ResolveAll
}

const str = (key: string, value: string) => ({ key, value: { stringValue: value } })

export class OtlpLogTarget implements ShipTarget {
  readonly name = 'otlp'
  readonly #url: string
  readonly #o: OtlpOptions
  readonly #dispatcher: Agent

  constructor(options: OtlpOptions) {
    this.#o = options
    this.#url = new URL('/v1/logs', options.endpoint).toString()
    this.#dispatcher = new Agent({ connect: { timeout: options.timeoutMs, lookup: checkedLookup(options.resolve) } })
  }

  async insert(entries: readonly ShippedEntry[]): Promise<number> {
    if (entries.length === 0) return 0
    const body = {
      resourceLogs: [
        {
          resource: { attributes: [str('service.name', 'corridor')] },
          scopeLogs: [
            {
              scope: { name: 'corridor.audit' },
              logRecords: entries.map((e) => ({
                timeUnixNano: String(BigInt(Date.parse(e.time ?? '') || 0) * 1_000_000n),
                severityNumber: 9,
                severityText: 'INFO',
                body: { stringValue: e.line },
                attributes: [
                  str('corridor.audit.stream', e.stream),
                  { key: 'corridor.audit.seq', value: { intValue: String(e.seq) } },
                  str('corridor.audit.type', e.type),
                  ...(e.requestId === null ? [] : [str('corridor.request_id', e.requestId)]),
                  ...(e.agent === null ? [] : [str('gen_ai.agent.id', e.agent)]),
                ],
              })),
            },
          ],
        },
      ],
    }
    const res = await request(this.#url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.#o.headers },
      body: JSON.stringify(body),
      headersTimeout: this.#o.timeoutMs,
      bodyTimeout: this.#o.timeoutMs,
      dispatcher: this.#dispatcher,
    })
    await res.body.dump()
    // OTLP/HTTP: 2xx is accepted; anything else (429, 503 included) is sent again later.
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the collector answered ${res.statusCode}`)
    return entries.length
  }

  close(): Promise<void> {
    return this.#dispatcher.close()
  }
}
