/**
 * The request and upstream duration histograms carry the attributes OpenTelemetry's HTTP metrics
 * require, as Prometheus labels: the scheme, the method (`_OTHER` for one the conventions do not
 * know), the upstream's address and port, and `error_type` only where the conventions call the
 * request failed (a server answer of 5xx or none, a client call answered 4xx or 5xx).
 */
import { expect, it } from 'vitest'
import { newAuditRecord, type AuditRecord } from '../../src/audit/record.ts'
import { Metrics } from '../../src/telemetry/metrics.ts'
import { parseMetrics, type Sample } from '../helpers/prometheus.ts'

const origins: Record<string, string> = { db: 'http://[::1]:5433', api: 'https://api.example' }

function observed(records: AuditRecord[]): Promise<Sample[]> {
  const m = new Metrics(
    {
      stops: () => [],
      auditHealthy: () => true,
      auditWriteFailures: () => 0,
      approvalsPending: () => Promise.resolve(0),
      tracesDropped: () => null,
      shippingLagBytes: () => new Map(),
    },
    { scheme: 'https', upstreamOrigin: (connector) => origins[connector] ?? null, credentialSource: () => null },
  )
  for (const r of records) m.observe(r)
  return m.text().then(({ body }) => parseMetrics(body).samples)
}

function record(over: Partial<AuditRecord>): AuditRecord {
  return { ...newAuditRecord('req', Date.now(), 'GET', '/x'), duration_ms: 3, ...over }
}

const countLabels = (samples: Sample[], name: string) =>
  samples.filter(([n]) => n === `${name}_count`).map(([, labels]) => labels)

it('labels request durations with scheme, method and, on a 5xx or no answer only, the error type', async () => {
  const samples = await observed([
    record({ connector: 'db', status: 200, outcome: 'forwarded' }),
    record({ connector: 'db', status: 403, error_code: 'policy_denied', outcome: 'denied' }),
    record({ connector: 'db', status: 503, error_code: 'credential_unavailable', outcome: 'unavailable' }),
    record({ method: 'PROPFIND', connector: 'db', status: 200, outcome: 'forwarded' }),
  ])
  const labels = countLabels(samples, 'http_server_request_duration_seconds')
  expect(labels.map((l) => [l.url_scheme, l.http_request_method, l.http_response_status_code, l.error_type])).toEqual([
    ['https', 'GET', '200', ''],
    ['https', 'GET', '403', ''],
    ['https', 'GET', '503', 'credential_unavailable'],
    ['https', '_OTHER', '200', ''],
  ])
})

it("labels upstream durations with the connector's address and port, and a 4xx or 5xx answer as an error type", async () => {
  const samples = await observed([
    record({ connector: 'db', status: 200, upstream_status: 200, upstream_ms: 1, outcome: 'forwarded' }),
    record({ connector: 'api', status: 404, upstream_status: 404, upstream_ms: 1, outcome: 'forwarded' }),
    // A connector the policy in force no longer has (reloaded meanwhile): counted, its address absent.
    record({ connector: 'gone', status: 200, upstream_status: 200, upstream_ms: 1, outcome: 'forwarded' }),
  ])
  const labels = countLabels(samples, 'http_client_request_duration_seconds')
  expect(labels.map((l) => [l.server_address, l.server_port, l.http_response_status_code, l.error_type])).toEqual([
    ['::1', '5433', '200', ''],
    ['api.example', '443', '404', '404'],
    ['', '', '200', ''],
  ])
})
