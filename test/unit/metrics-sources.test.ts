/**
 * The figures /metrics reads from elsewhere at scrape time: absent while their source has none
 * (no stale or made-up zero), counters typed as counters, as a Prometheus parser reads them.
 */
import { expect, it } from 'vitest'
import { Metrics, type MetricSources } from '../../src/telemetry/metrics.ts'
import { hasSample, parseMetrics, sampleValue } from '../helpers/prometheus.ts'

function metricsWith(state: {
  pending: number | null
  dropped: number | null
  failures: number
  lag: ReadonlyMap<string, number>
}): Metrics {
  const sources: MetricSources = {
    stops: () => [],
    auditHealthy: () => state.failures === 0,
    auditWriteFailures: () => state.failures,
    approvalsPending: () => Promise.resolve(state.pending),
    tracesDropped: () => state.dropped,
    shippingLagBytes: () => state.lag,
  }
  return new Metrics(sources, { scheme: 'http', upstreamOrigin: () => null, credentialSource: () => null })
}

const scrape = async (m: Metrics) => parseMetrics((await m.text()).body)

it('a source that stops answering leaves no figure behind, and one that answers again shows its own', async () => {
  const state = { pending: 3 as number | null, dropped: null, failures: 0, lag: new Map<string, number>() }
  const m = metricsWith(state)
  expect(sampleValue((await scrape(m)).samples, 'corridor_approvals_pending')).toBe(3)
  state.pending = null
  expect(hasSample((await scrape(m)).samples, 'corridor_approvals_pending')).toBe(false)
  state.pending = 0
  const back = await scrape(m)
  expect(hasSample(back.samples, 'corridor_approvals_pending')).toBe(true)
  expect(sampleValue(back.samples, 'corridor_approvals_pending')).toBe(0)
})

it('features that are off show nothing; counts kept elsewhere are counters with their totals', async () => {
  const state = { pending: 0, dropped: null as number | null, failures: 0, lag: new Map<string, number>() }
  const m = metricsWith(state)
  const off = await scrape(m)
  expect(hasSample(off.samples, 'corridor_trace_spans_dropped_total')).toBe(false)
  expect(hasSample(off.samples, 'corridor_audit_shipping_lag_bytes')).toBe(false)
  expect(sampleValue(off.samples, 'corridor_audit_write_failures_total')).toBe(0)
  expect(sampleValue(off.samples, 'corridor_audit_sink_healthy')).toBe(1)

  Object.assign(state, {
    dropped: 7,
    failures: 2,
    lag: new Map([
      ['postgres', 4096],
      ['otlp', 512],
    ]),
  })
  const on = await scrape(m)
  expect(sampleValue(on.samples, 'corridor_trace_spans_dropped_total')).toBe(7)
  expect(sampleValue(on.samples, 'corridor_audit_write_failures_total')).toBe(2)
  expect(sampleValue(on.samples, 'corridor_audit_sink_healthy')).toBe(0)
  expect(sampleValue(on.samples, 'corridor_audit_shipping_lag_bytes', { target: 'postgres' })).toBe(4096)
  expect(sampleValue(on.samples, 'corridor_audit_shipping_lag_bytes', { target: 'otlp' })).toBe(512)
  expect(on.types).toMatchObject({
    corridor_trace_spans_dropped: 'counter',
    corridor_audit_write_failures: 'counter',
    corridor_audit_sink_healthy: 'gauge',
    corridor_approvals_pending: 'gauge',
    corridor_audit_shipping_lag_bytes: 'gauge',
  })
})
