import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { describe, expect, it } from 'vitest'
import { eventually, startCorridorFixture } from '../helpers/corridor-fixture.ts'
import { startDroppingServer } from '../helpers/dropping-server.ts'
import { sampleValue, scrapeMetrics } from '../helpers/prometheus.ts'
import { startRecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, newCanary, standardFiles } from '../helpers/standard-policy.ts'

const auth = { authorization: `Bearer ${AGENT_KEY}` }

describe('fail closed', () => {
  it('refuses to forward anything when the audit trail cannot be written', async () => {
    const upstream = await startRecordingUpstream()
    const canary = newCanary()
    const fx = await startCorridorFixture(
      { ...standardFiles(upstream.url), auditFile: '/dev/full' },
      { SVC_TOKEN: canary },
    )
    try {
      const res = await request(fx.corridor.agentUrl + '/svc/items', { headers: auth })
      expect(res.statusCode).toBe(503)
      expect(((await res.body.json()) as { code: string }).code).toBe('audit_unavailable')
      expect(upstream.received).toHaveLength(0)
      const ready = await request(fx.corridor.adminUrl + '/readyz')
      expect(ready.statusCode).toBe(503)
      await ready.body.dump()
      // The record that could not be written went to the operational log instead, without the secret.
      await eventually(() => expect(fx.logs.join('')).toContain('audit record could not be written'))
      expect(fx.logs.join('')).not.toContain(canary)
      // Alerts see it: the sink down, and every entry it lost counted (the sink's opening entry and this request's record).
      const { samples } = await scrapeMetrics(fx.corridor.adminUrl)
      expect(sampleValue(samples, 'corridor_audit_sink_healthy')).toBe(0)
      expect(sampleValue(samples, 'corridor_audit_write_failures_total')).toBeGreaterThanOrEqual(2)
    } finally {
      await fx.close()
      await upstream.close()
    }
  })

  it('answers 503 without forwarding when the credential source is missing', async () => {
    const upstream = await startRecordingUpstream()
    const fx = await startCorridorFixture(standardFiles(upstream.url), {})
    try {
      const res = await request(fx.corridor.agentUrl + '/svc/items', { headers: auth })
      expect(res.statusCode).toBe(503)
      expect(res.headers['retry-after']).toBe('5')
      const body = (await res.body.json()) as { code: string; request_id: string; detail: string }
      expect(body.code).toBe('credential_unavailable')
      // The agent is not told where the credential lives; the operator log is.
      expect(body.detail).not.toContain('SVC_TOKEN')
      expect(fx.logs.join('')).toContain('env:SVC_TOKEN')
      expect(upstream.received).toHaveLength(0)
      await eventually(() =>
        expect(fx.auditRecords().find((r) => r.request_id === body.request_id)).toMatchObject({
          outcome: 'unavailable',
          decision: 'allow',
        }),
      )
    } finally {
      await fx.close()
      await upstream.close()
    }
  })

  it('answers 502 when the upstream is unreachable', async () => {
    const dropping = await startDroppingServer()
    const fx = await startCorridorFixture(standardFiles(dropping.url), { SVC_TOKEN: newCanary() })
    try {
      const res = await request(fx.corridor.agentUrl + '/svc/items', { headers: auth })
      expect(res.statusCode).toBe(502)
      expect(((await res.body.json()) as { code: string }).code).toBe('upstream_unreachable')
    } finally {
      await fx.close()
      await dropping.close()
    }
  })

  it("relays a stream's headers before its first event, and each event as it comes", async () => {
    const upstream = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.flushHeaders()
      setTimeout(() => res.write('data: first\n\n'), 400)
      setTimeout(() => res.end('data: last\n\n'), 800)
    })
    const fx = await startCorridorFixture(standardFiles(upstream.url), { SVC_TOKEN: newCanary() })
    try {
      const started = performance.now()
      const res = await request(fx.corridor.agentUrl + '/svc/events', { headers: auth })
      const headersAfter = performance.now() - started
      expect(res.statusCode).toBe(200)
      expect(headersAfter).toBeLessThan(300)
      const seen: [string, number][] = []
      for await (const chunk of res.body) seen.push([String(chunk), performance.now() - started])
      expect(seen.map(([c]) => c).join('')).toBe('data: first\n\ndata: last\n\n')
      expect(seen[0]![1]).toBeLessThan(700) // the first event did not wait for the last
    } finally {
      await fx.close()
      await upstream.close()
    }
  })

  it('cancels the upstream request when the agent disconnects, and audits the abort', async () => {
    let upstreamClosed = false
    const upstream = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      res.on('close', () => (upstreamClosed = true))
    })
    const fx = await startCorridorFixture(standardFiles(upstream.url), { SVC_TOKEN: newCanary() })
    try {
      const controller = new AbortController()
      const res = await request(fx.corridor.agentUrl + '/svc/events', { headers: auth, signal: controller.signal })
      const requestId = res.headers['x-corridor-request-id'] as string
      for await (const chunk of res.body) {
        expect(String(chunk)).toContain('first')
        controller.abort()
        break
      }
      await eventually(() => expect(upstreamClosed).toBe(true))
      await eventually(() =>
        expect(fx.auditRecords().find((r) => r.request_id === requestId)).toMatchObject({
          outcome: 'client_aborted',
          upstream_status: 200,
        }),
      )
    } finally {
      await fx.close()
      await upstream.close()
    }
  })
})

describe('hot reload', () => {
  it('applies a valid change, rejects a broken one with positions and keeps the last good policy', async () => {
    const upstream = await startRecordingUpstream()
    const files = standardFiles(upstream.url)
    const fx = await startCorridorFixture(files, { SVC_TOKEN: newCanary() })
    try {
      const first = fx.corridor.policies.status().version
      const get = async () => {
        const res = await request(fx.corridor.agentUrl + '/svc/items/1', { headers: auth })
        await res.body.dump()
        return res.statusCode
      }
      expect(await get()).toBe(200)
      writeFileSync(
        join(fx.dir, 'policy.yaml'),
        files.policy + `  - { id: no-item-1, effect: deny, match: { actions: items.get, params: { id: "1" } } }\n`,
      )
      await eventually(() => expect(fx.corridor.policies.status().version).not.toBe(first), 5_000)
      expect(await get()).toBe(403)
      const good = fx.corridor.policies.status().version

      writeFileSync(
        join(fx.dir, 'policy.yaml'),
        'version: 1\nrules:\n  - id: broken\n    effect: allow\n    match: { actions: [items.get\n',
      )
      await eventually(
        () => expect(fx.corridor.policies.status().lastError?.[0]).toMatch(/policy\.yaml:\d+:\d+: /),
        5_000,
      )
      expect(fx.corridor.policies.status().version).toBe(good)
      expect(await get()).toBe(403)
      // The status names files and lines: unauthenticated callers get none of it.
      const status = await request(fx.corridor.adminUrl + '/policy')
      expect(status.statusCode).toBe(401)
      expect(await status.body.text()).not.toContain(fx.dir)
    } finally {
      await fx.close()
      await upstream.close()
    }
  })
})
