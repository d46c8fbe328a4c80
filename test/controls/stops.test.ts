/**
 * Operator stops on one Corridor with the embedded defaults (stops kept in a local file): every
 * scope and mode refuses what it covers and nothing else, a stop cuts the requests in flight it
 * covers (a stream included) and cancels the approvals waiting in its scope, a dry run changes
 * nothing, every stop and resume is one audit event, and a restart keeps the stop in force.
 */
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ADMIN_BOT_KEY,
  agentCall,
  APPROVER_KEYS,
  approvalFiles,
  approverCall,
  WRITER_KEY,
} from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash } from '../helpers/standard-policy.ts'

const OPERATOR_KEY = 'cop_test_operator_key_0001'

let upstream: RecordingUpstream
let fx: CorridorFixture

function files(upstreamUrl: string) {
  const base = approvalFiles(upstreamUrl, 'approvals: { wait: 0s }\n')
  return {
    ...base,
    agents: `${base.agents}operators:\n  - { id: oncall, keys: [{ hash: "${hash(OPERATOR_KEY)}" }] }\n`,
    connectors: base.connectors.replace(
      '      - { name: items.list,',
      '      - { name: events.stream, method: GET, path: /events, risk: read }\n      - { name: items.list,',
    ),
    policy: base.policy.replace('match: { actions: items.list }', 'match: { actions: [items.list, events.stream] }'),
  }
}

const operator = (path: string, body?: unknown) => approverCall(fx.corridor.adminUrl, OPERATOR_KEY, path, body)
const stop = (scope: Record<string, string>, extra: Record<string, unknown> = {}) =>
  operator('/stops', { scope, reason: 'incident INC-7', ...extra })
const resume = (id: string) => operator(`/stops/${id}/resume`, { reason: 'fixed' })
const list = (key: string) => agentCall(fx.corridor.agentUrl, key, '/svc/items')
const create = (key: string, qty = 1) => agentCall(fx.corridor.agentUrl, key, '/svc/items', { body: { qty } })
const stopEvents = () =>
  readFileSync(fx.auditFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"type":"stop"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)

beforeAll(async () => {
  upstream = await startRecordingUpstream((req, res) => {
    if (req.url.startsWith('/base/events')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      const timer = setInterval(() => res.write('data: tick\n\n'), 50)
      res.on('close', () => clearInterval(timer))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  fx = await startCorridorFixture(files(upstream.url), { SVC_TOKEN: 'svc-secret' })
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
})

describe('who may stop', () => {
  it('refuses callers without an operator key, approver and agent keys included', async () => {
    for (const token of [null, APPROVER_KEYS.alice, WRITER_KEY, 'cop_not_registered_0000']) {
      const answer = await approverCall(fx.corridor.adminUrl, token, '/stops', { scope: {}, reason: 'x' })
      expect(answer.status).toBe(401)
      expect(answer.body.code).toBe('operator_unauthenticated')
    }
    expect((await list(WRITER_KEY)).status).toBe(200)
  })

  it('needs a reason, and refuses a scope that names nothing registered', async () => {
    expect((await operator('/stops', { scope: { agent: 'writer' } })).status).toBe(400)
    const typo = await stop({ agent: 'writr' })
    expect(typo.status).toBe(400)
    expect(String(typo.body.detail)).toContain("no agent 'writr'")
    expect((await stop({ action: 'items.create' })).status).toBe(400) // an action needs its connector
    expect((await list(WRITER_KEY)).status).toBe(200)
  })
})

describe('scopes and modes', () => {
  it('an agent stop refuses that agent at once, with who, why and since, and leaves others alone', async () => {
    const before = upstream.received.length
    const ordered = await stop({ agent: 'writer' })
    expect(ordered.status).toBe(201)
    const id = (ordered.body.stop as { id: string }).id
    const refused = await list(WRITER_KEY)
    expect(refused.status).toBe(403)
    expect(refused.body.code).toBe('agent_stopped')
    expect(refused.body.stop).toMatchObject({ id, mode: 'stop', reason: 'incident INC-7', by: 'oncall' })
    expect(String((refused.body.error as { message: string }).message)).toContain('incident INC-7')
    expect((await list(ADMIN_BOT_KEY)).status).toBe(200)
    expect(upstream.received.length).toBe(before + 1) // only the other agent's request
    await eventually(() => {
      const record = fx.auditRecords().find((r) => r.status === 403 && r.error_code === 'agent_stopped')
      expect(record?.reason).toContain('incident INC-7')
    })
    expect((await resume(id)).status).toBe(200)
    expect((await list(WRITER_KEY)).status).toBe(200)
  })

  it('read_only lets reads through and refuses writes', async () => {
    const ordered = await stop({ owner: 'team-a' }, { mode: 'read_only' })
    const id = (ordered.body.stop as { id: string }).id
    expect((await list(WRITER_KEY)).status).toBe(200)
    const write = await create(WRITER_KEY)
    expect(write.status).toBe(403)
    expect(write.body.code).toBe('agent_stopped')
    expect((await create(ADMIN_BOT_KEY)).status).toBe(200) // another team
    await resume(id)
    expect((await create(WRITER_KEY)).status).toBe(200)
  })

  it('a connector turned off for one agent, and a single action turned off for everyone', async () => {
    const off = (await stop({ agent: 'writer', connector: 'svc' })).body.stop as { id: string }
    expect((await list(WRITER_KEY)).status).toBe(403)
    expect((await list(ADMIN_BOT_KEY)).status).toBe(200)
    await resume(off.id)
    const action = (await stop({ connector: 'svc', action: 'items.create' })).body.stop as { id: string }
    expect((await create(ADMIN_BOT_KEY)).status).toBe(403)
    expect((await list(ADMIN_BOT_KEY)).status).toBe(200)
    await resume(action.id)
  })

  it('a global stop refuses every agent; it can expire by itself', async () => {
    const ordered = (await stop({}, { for: '1h' })).body.stop as { id: string; expires_at: string }
    expect(Date.parse(ordered.expires_at) - Date.now()).toBeGreaterThan(3_500_000)
    expect((await list(WRITER_KEY)).status).toBe(403)
    expect((await list(ADMIN_BOT_KEY)).status).toBe(403)
    fx.advanceClock(3_600_001)
    try {
      expect((await list(WRITER_KEY)).status).toBe(200)
      expect((await operator('/stops')).body.stops).toEqual([])
    } finally {
      fx.advanceClock(-3_600_001)
    }
    await resume(ordered.id)
  })
})

describe('what a stop takes back', () => {
  it('cuts a stream in flight and cancels the approvals waiting in its scope; a dry run touches nothing', async () => {
    // A held request of the writer (qty > 10 needs a lead) and one of the other agent.
    const held = await create(WRITER_KEY, 50)
    expect(held.status).toBe(503)
    const heldId = String(held.body.approval_id)
    const otherHeld = await create(ADMIN_BOT_KEY, 60)
    const otherId = String(otherHeld.body.approval_id)
    // A stream the writer is reading.
    const stream = await request(`${fx.corridor.agentUrl}/svc/events`, {
      headers: { authorization: `Bearer ${WRITER_KEY}` },
    })
    expect(stream.statusCode).toBe(200)
    const chunks: string[] = []
    const ended = new Promise<string>((resolve) => {
      stream.body.on('data', (c: Buffer) => chunks.push(c.toString()))
      stream.body.on('error', () => resolve('error'))
      stream.body.on('end', () => resolve('end'))
    })
    await eventually(() => expect(chunks.join('')).toContain('tick'))

    const dry = await stop({ agent: 'writer' }, { dry_run: true })
    expect(dry.status).toBe(200)
    expect(dry.body.would_affect).toMatchObject({ agents: ['writer'], approvals_cancelled: 1, in_flight_cut: 1 })
    expect((await list(WRITER_KEY)).status).toBe(200) // nothing changed
    expect((await approverCall(fx.corridor.adminUrl, APPROVER_KEYS.alice, `/approvals/${heldId}`)).body.state).toBe(
      'pending',
    )

    const ordered = await stop({ agent: 'writer' })
    expect(ordered.body.affected).toMatchObject({ agents: ['writer'], approvals_cancelled: 1, in_flight_cut: 1 })
    expect(await ended).toBe('error')
    const cancelled = await approverCall(fx.corridor.adminUrl, APPROVER_KEYS.alice, `/approvals/${heldId}`)
    expect(cancelled.body.state).toBe('cancelled')
    expect(String(cancelled.body.cancel_reason)).toContain('incident INC-7')
    const other = await approverCall(fx.corridor.adminUrl, APPROVER_KEYS.alice, `/approvals/${otherId}`)
    expect(other.body.state).toBe('pending')
    await eventually(() => {
      const cut = fx.auditRecords().find((r) => r.action === 'events.stream' && r.outcome === 'stopped')
      expect(cut?.error_code).toBe('agent_stopped')
    })

    const events = stopEvents().filter((e) => e.stop_id === (ordered.body.stop as { id: string }).id)
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({
      event: 'stopped',
      by: 'oncall',
      via: 'operator_key',
      channel: 'admin_api',
      reason: 'incident INC-7',
      scope: { agent: 'writer' },
      mode: 'stop',
      prior: [],
      affected: { approvals_cancelled: 1, in_flight_cut: 1 },
    })
    expect((events[0]?.resulting as string[])[0]).toContain('agent:writer stop')
    await resume((ordered.body.stop as { id: string }).id)
    expect(stopEvents().filter((e) => e.event === 'resumed' && e.stop_id === events[0]?.stop_id)).toHaveLength(1)
  })
})

describe('persistence', () => {
  it('a stop survives a restart of Corridor (kept in the local stops file)', async () => {
    const ordered = (await stop({ agent: 'writer' })).body.stop as { id: string }
    const dir = fx.dir
    await fx.close()
    fx = await startCorridorFixture(
      {
        ...files(upstream.url),
        auditFile: `${dir}/audit.log`,
        extraConfig: `approvals: { wait: 0s }\nstate: { stops_file: ${dir}/corridor-stops.json }\n`,
      },
      { SVC_TOKEN: 'svc-secret' },
    )
    expect((await list(WRITER_KEY)).status).toBe(403)
    const stops = (await operator('/stops')).body.stops as { id: string }[]
    expect(stops.map((s) => s.id)).toEqual([ordered.id])
    const ready = await request(`${fx.corridor.adminUrl}/readyz`)
    expect(((await ready.body.json()) as { stops: { id: string }[] }).stops.map((s) => s.id)).toEqual([ordered.id])
    await resume(ordered.id)
    expect((await list(WRITER_KEY)).status).toBe(200)
  })
})
