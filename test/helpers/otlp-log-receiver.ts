/**
 * An OpenTelemetry collector's OTLP/HTTP logs endpoint on loopback, as the audit export reaches
 * it: every log record it took, with its attributes and the request's headers. It can refuse the
 * first exports (503), as a collector that is starting or overloaded does, and refuse again later.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ReceivedLog {
  /** The body: an audit line as written. */
  readonly line: string
  /** Attribute values by key (strings and integers as text). */
  readonly attributes: Readonly<Record<string, string | undefined>>
  readonly headers: IncomingHttpHeaders
}

export interface OtlpLogReceiver {
  readonly url: string
  /** Every record taken, in arrival order (an export sent again appears again). */
  readonly records: ReceivedLog[]
  /** Exports refused so far. */
  readonly refused: () => number
  /** Refuses every export from now on (true) or takes them again (false). */
  refuseAll(refusing: boolean): void
  close(): Promise<void>
}

interface LogRecordJson {
  body: { stringValue: string }
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[]
}

export async function startOtlpLogReceiver(options: { refuseFirst?: number } = {}): Promise<OtlpLogReceiver> {
  const records: ReceivedLog[] = []
  let refused = 0
  let refusing = false
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (refusing || refused < (options.refuseFirst ?? 0)) {
        refused++
        res.writeHead(503)
        return void res.end()
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceLogs: { scopeLogs: { logRecords: LogRecordJson[] }[] }[]
      }
      for (const r of body.resourceLogs[0]?.scopeLogs[0]?.logRecords ?? [])
        records.push({
          line: r.body.stringValue,
          attributes: Object.fromEntries(r.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue])),
          headers: req.headers,
        })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    records,
    refused: () => refused,
    refuseAll: (on) => {
      refusing = on
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}
