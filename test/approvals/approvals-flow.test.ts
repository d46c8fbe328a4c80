/**
 * The approval queue end to end, through real listeners, a real upstream and a real
 * redis-server: hold, 503 with Retry-After, approver API, release once, result collected by retry; separation
 * of duties, two approvers, rejection, expiry, digest binding, idempotency keys, policy change
 * and suspension, Redis outage and restart, two replicas, webhook and canaries.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ADMIN_BOT_KEY,
  agentCall,
  approvalFiles,
  approve,
  approverCall,
  APPROVER_KEYS,
  WRITER_KEY,
} from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { startRedis, type RedisProcess } from '../../testkit/redis-process.ts'
import { newCanary } from '../helpers/standard-policy.ts'

let redis: RedisProcess
let upstream: RecordingUpstream
let fx: CorridorFixture
let webhook: { server: Server; url: string; posts: Record<string, unknown>[] }
const canary = newCanary()

const redisConfig = (url: string, extra = '') =>
  `approvals:\n  redis: { url: "${url}", key_prefix: "flow:" }\n  wait: 1s\n${extra}`

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startRecordingUpstream((req, res) => {
    res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' })
    res.end(JSON.stringify({ created: true, method: req.method, url: req.url, echo: req.body.toString('utf8') }))
  })
  const posts: Record<string, unknown>[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      posts.push(JSON.parse(body) as Record<string, unknown>)
      res.end('ok')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  webhook = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, posts }
  fx = await startCorridorFixture(
    approvalFiles(upstream.url, redisConfig(redis.url, `  webhook: { url_env: HOOK_URL }\n`)),
    { SVC_TOKEN: canary, HOOK_URL: webhook.url },
  )
})

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await new Promise((r) => webhook?.server.close(r))
  await redis?.stop()
})

const agentUrl = () => fx.corridor.agentUrl
const adminUrl = () => fx.corridor.adminUrl
const received = (marker: string) => upstream.received.filter((r) => r.body.toString().includes(marker))

describe('the whole flow', () => {
  it('holds, answers 503 approval_pending, lets an approver release it once, and returns the result to the retry', async () => {
    const order = { qty: 50, note: 'flow-1', card_number: '4111111111111111' }
    const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: order,
      headers: { 'x-corridor-intent': 'restock the warehouse' },
    })
    // 503 + Retry-After: an error to every SDK (never a result), and one most SDKs retry by themselves.
    expect(held.status).toBe(503)
    expect(held.headers['content-type']).toBe('application/problem+json')
    expect(held.headers['x-should-retry']).toBe('true')
    expect(held.body).toMatchObject({
      code: 'approval_pending',
      status: 503,
      state: 'pending',
      approvers: ['leads'],
      required_approvals: 1,
      rule: 'create-big-approval',
      reason: 'big orders need a lead',
    })
    const id = held.body.approval_id as string
    expect(id).toMatch(/^apr_/)
    expect(held.headers['retry-after']).toBe('1')
    expect(held.headers.location).toBe(`/_corridor/approvals/${id}`)
    expect(received('flow-1')).toHaveLength(0)

    // The agent can read its status; another agent cannot see it exists.
    const status = await agentCall(agentUrl(), WRITER_KEY, held.body.status_url as string)
    expect(status.body).toMatchObject({ approval_id: id, state: 'pending', action: 'items.create' })
    expect((await agentCall(agentUrl(), ADMIN_BOT_KEY, held.body.status_url as string)).status).toBe(404)
    // Without a credential, an existing id and an unknown one answer alike: nobody can probe for ids.
    const anonymous = async (path: string) => {
      const res = await fetch(agentUrl() + path)
      return { status: res.status, code: ((await res.json()) as { code: string }).code }
    }
    expect(await anonymous(held.body.status_url as string)).toEqual({ status: 401, code: 'identity_missing' })
    expect(await anonymous('/_corridor/approvals/apr_does-not-exist')).toEqual({
      status: 401,
      code: 'identity_missing',
    })

    // The approver sees what will be sent, and approves exactly that.
    const list = await approverCall(adminUrl(), APPROVER_KEYS.alice, '/approvals')
    expect((list.body.approvals as { id: string }[]).map((a) => a.id)).toContain(id)
    const shown = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}`)
    expect(shown.body).toMatchObject({
      agent: 'writer',
      owner: 'team-a',
      action: 'items.create',
      intent: 'restock the warehouse',
      body: JSON.stringify(order),
      method: 'POST',
      target: '/svc/items',
    })
    expect((shown.body.headers as string[]).join('\n')).not.toMatch(/authorization|cor_test/i)
    const approved = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/approve`, {
      reason: 'stock is low',
      digest: shown.body.digest,
    })
    expect(approved.status).toBe(200)

    await eventually(() => expect(received('flow-1')).toHaveLength(1), 3_000)
    const sent = received('flow-1')[0]!
    expect(sent.body.toString()).toBe(JSON.stringify(order))
    expect(sent.headers.authorization).toBe(`Bearer ${canary}`)
    expect(sent.url).toBe('/base/items')

    // Retry: the upstream's response, as often as asked; the upstream still saw one request.
    for (let i = 0; i < 2; i++) {
      const result = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
        body: order,
        headers: { 'x-corridor-approval': id },
      })
      expect(result.status).toBe(201)
      expect(result.headers['x-upstream']).toBe('yes')
      expect(result.headers['x-corridor-approval']).toBe(id)
      expect(result.body.echo).toBe(JSON.stringify(order))
    }
    expect(received('flow-1')).toHaveLength(1)

    // One audit record for the forward, carrying approver, reason and time; the hold and retries have their own.
    await eventually(() => {
      const records = fx.auditRecords().filter((r) => r.approval?.id === id)
      const forwarded = records.filter((r) => r.outcome === 'forwarded')
      expect(forwarded).toHaveLength(1)
      expect(forwarded[0]!.approval?.approved_by).toEqual([
        { approver: 'alice', at: expect.any(String), reason: 'stock is low' },
      ])
      expect(forwarded[0]).toMatchObject({
        agent: 'writer',
        action: 'items.create',
        upstream_status: 201,
        credential: { reference: 'env:SVC_TOKEN' },
        intent: 'restock the warehouse',
      })
      expect(records.filter((r) => r.outcome === 'held')).toHaveLength(1)
      expect(records.filter((r) => r.outcome === 'released')).toHaveLength(2)
    })
    const events = readFileSync(fx.auditFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"type":"approval"') && l.includes(id))
      .map((l) => JSON.parse(l) as { event: string; by: string | null })
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['held', 'approved', 'executed']))
    expect(events.find((e) => e.event === 'approved')?.by).toBe('alice')

    // The webhook told people, with a readable summary and masked sensitive fields.
    await eventually(() =>
      expect(
        webhook.posts.filter((p) => (p.corridor as { approval_id: string }).approval_id === id).length,
      ).toBeGreaterThanOrEqual(3),
    )
    const heldPost = webhook.posts.find(
      (p) =>
        (p.corridor as { approval_id: string; event: string }).approval_id === id &&
        (p.corridor as { event: string }).event === 'held',
    )!
    expect(heldPost.text).toContain('writer')
    expect(heldPost.text).toContain('svc.items.create')
    expect(heldPost.text).toContain('restock the warehouse')
    expect(heldPost.text).toContain('qty=50')
    expect(heldPost.text).toContain('card_number=•••')
    expect(JSON.stringify(webhook.posts)).not.toContain('4111111111111111')
  })

  it('answers the waiting connection itself when the decision arrives in time', async () => {
    const waiting = agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 20, note: 'flow-2' },
      headers: { 'x-corridor-intent': 'flow-2' },
    })
    let id: string | undefined
    await eventually(async () => {
      const list = await approverCall(adminUrl(), APPROVER_KEYS.bob, '/approvals?limit=500')
      const found = (list.body.approvals as { id: string; intent: string }[]).find((a) => a.intent === 'flow-2')
      expect(found).toBeDefined()
      id = found!.id
    }, 900)
    const decided = await approve(adminUrl(), 'bob', id!)
    expect(decided.status).toBe(200)
    const answer = await waiting
    expect(answer.status).toBe(201)
    expect(answer.body.echo).toContain('flow-2')
    expect(received('flow-2')).toHaveLength(1)
  })
})

describe('who may decide', () => {
  it('refuses unauthenticated callers, agent keys, owners of the agent and approvers outside the rule groups', async () => {
    const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 30, note: 'sod' } })
    const id = held.body.approval_id as string
    expect((await approverCall(adminUrl(), null, `/approvals/${id}`)).status).toBe(401)
    expect((await approverCall(adminUrl(), WRITER_KEY, `/approvals/${id}`)).body.code).toBe('approver_unauthenticated')
    expect((await approverCall(adminUrl(), 'cap_unknown', '/approvals')).status).toBe(401)
    const owner = await approverCall(adminUrl(), APPROVER_KEYS.carol, `/approvals/${id}/approve`, { reason: 'mine' })
    expect(owner.status).toBe(403)
    expect(owner.body.code).toBe('approver_not_eligible')
    expect(owner.body.detail).toContain('team-a')
    expect(fx.logs.join('')).toContain('approvals API refused a caller')
    expect(
      (await approverCall(adminUrl(), APPROVER_KEYS.dave, `/approvals/${id}/approve`, { reason: 'not my group' }))
        .status,
    ).toBe(404)
    expect(
      ((await approverCall(adminUrl(), APPROVER_KEYS.dave, '/approvals')).body.approvals as unknown[]).length,
    ).toBe(0)
    const noReason = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/approve`, { reason: '  ' })
    expect(noReason.status).toBe(400)
    expect((await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}`)).body.state).toBe('pending')
    expect(received('"note":"sod"')).toHaveLength(0)
  })

  it('needs two distinct approvers for a privileged action', async () => {
    const held = await agentCall(agentUrl(), ADMIN_BOT_KEY, '/svc/items/77', { method: 'DELETE' })
    expect(held.body).toMatchObject({ code: 'approval_pending', required_approvals: 2 })
    const id = held.body.approval_id as string
    expect((await approve(adminUrl(), 'alice', id)).body).toMatchObject({ state: 'pending', approvals: '1/2' })
    const again = await approve(adminUrl(), 'alice', id)
    expect(again.status).toBe(409)
    expect(again.body.code).toBe('approval_conflict')
    // One approval of two: a sweep finds nothing approved to release.
    await fx.corridor.approvals.sweepNow()
    expect(upstream.received.filter((r) => r.url === '/base/items/77')).toHaveLength(0)
    expect((await approve(adminUrl(), 'bob', id)).status).toBe(200)
    const result = await agentCall(agentUrl(), ADMIN_BOT_KEY, '/svc/items/77', {
      method: 'DELETE',
      headers: { 'x-corridor-approval': id },
    })
    expect(result.status).toBe(201)
    expect(upstream.received.filter((r) => r.url === '/base/items/77')).toHaveLength(1)
    await eventually(() => {
      const record = fx.auditRecords().find((r) => r.approval?.id === id && r.outcome === 'forwarded')
      expect(record?.approval?.approved_by.map((a) => a.approver)).toEqual(['alice', 'bob'])
    })
  })
})

describe('what ends an approval without running it', () => {
  it('rejection: the agent gets 403 with the approver and reason; nothing is sent', async () => {
    const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 40, note: 'reject-me' } })
    const id = held.body.approval_id as string
    const rejected = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/reject`, {
      reason: 'quantity looks like a typo',
    })
    expect(rejected.body.state).toBe('rejected')
    const retry = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 40, note: 'reject-me' },
      headers: { 'x-corridor-approval': id },
    })
    expect(retry.status).toBe(403)
    expect(retry.body).toMatchObject({
      code: 'approval_rejected',
      rejected_by: 'alice',
      reason: 'quantity looks like a typo',
    })
    expect((await approve(adminUrl(), 'bob', id)).status).toBe(409)
    expect(received('reject-me')).toHaveLength(0)
  })

  it('a different body or URL under the same approval id, or a reused Idempotency-Key, is refused', async () => {
    const first = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 60, note: 'digest' },
      headers: { 'idempotency-key': 'idem-1' },
    })
    const id = first.body.approval_id as string
    const changed = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 600, note: 'digest' },
      headers: { 'x-corridor-approval': id },
    })
    expect(changed.status).toBe(409)
    expect(changed.body.code).toBe('approval_mismatch')
    const again = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 60, note: 'digest' },
      headers: { 'idempotency-key': 'idem-1' },
    })
    expect(again.body.approval_id).toBe(id)
    const reused = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 61, note: 'digest' },
      headers: { 'idempotency-key': 'idem-1' },
    })
    expect(reused.status).toBe(409)
    const wrongDigest = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/approve`, {
      reason: 'ok',
      digest: 'sha256:' + 'a'.repeat(64),
    })
    expect(wrongDigest.status).toBe(409)
    expect(wrongDigest.body.detail).toContain('digest')
    await approve(adminUrl(), 'alice', id)
    const result = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 60, note: 'digest' },
      headers: { 'idempotency-key': 'idem-1' },
    })
    expect(result.status).toBe(201)
    expect(received('"note":"digest"')).toHaveLength(1)
    expect(received('"note":"digest"')[0]!.body.toString()).toBe('{"qty":60,"note":"digest"}')
  })

  it('a policy change that no longer permits it, or a suspended agent, cancels pending approvals', async () => {
    const a = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 70, note: 'policy-change' } })
    const b = await agentCall(agentUrl(), ADMIN_BOT_KEY, '/svc/items/88', { method: 'DELETE' })
    const policyFile = join(fx.dir, 'policy.yaml')
    const agentsFile = join(fx.dir, 'agents.yaml')
    const originalPolicy = readFileSync(policyFile, 'utf8')
    const originalAgents = readFileSync(agentsFile, 'utf8')
    try {
      writeFileSync(
        policyFile,
        originalPolicy.replace(
          '  - id: create-big-approval\n    effect: require_approval\n    approvers: [leads]\n',
          '  - id: create-big-approval\n    effect: deny\n',
        ),
      )
      writeFileSync(
        agentsFile,
        originalAgents.replace('tier: privileged\n', 'tier: privileged\n    status: suspended\n'),
      )
      expect(fx.corridor.policies.reload()).toBe(true)
      await eventually(async () => {
        expect(
          (await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${a.body.approval_id as string}`)).body
            .state,
        ).toBe('cancelled')
        expect(
          (await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${b.body.approval_id as string}`)).body
            .state,
        ).toBe('cancelled')
      })
      const retry = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
        body: { qty: 70, note: 'policy-change' },
        headers: { 'x-corridor-approval': a.body.approval_id as string },
      })
      expect(retry.status).toBe(403)
      expect(retry.body.code).toBe('approval_cancelled')
      expect(retry.body.reason).toMatch(/denies it/)
      expect(
        (await approverCall(adminUrl(), APPROVER_KEYS.bob, `/approvals/${b.body.approval_id as string}`)).body
          .cancel_reason,
      ).toMatch(/suspended/)
      const suspended = await agentCall(agentUrl(), ADMIN_BOT_KEY, '/svc/items/88', {
        method: 'DELETE',
        headers: { 'x-corridor-approval': b.body.approval_id as string },
      })
      expect(suspended.body.code).toBe('agent_suspended')
    } finally {
      writeFileSync(policyFile, originalPolicy)
      writeFileSync(agentsFile, originalAgents)
      fx.corridor.policies.reload()
    }
    expect(received('policy-change')).toHaveLength(0)
  })
})

describe('a policy that now allows it outright', () => {
  it('cancels the held copy, so that the agent resending it runs it exactly once', async () => {
    const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 80, note: 'now-allowed' },
      headers: { 'idempotency-key': 'k-allow' },
    })
    const id = held.body.approval_id as string
    const policyFile = join(fx.dir, 'policy.yaml')
    const original = readFileSync(policyFile, 'utf8')
    try {
      writeFileSync(
        policyFile,
        original.replace('qty: { lte: 10 }', 'qty: { lte: 100 }').replace('qty: { gt: 10 }', 'qty: { gt: 100 }'),
      )
      expect(fx.corridor.policies.reload()).toBe(true)
      await eventually(async () =>
        expect((await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}`)).body.cancel_reason).toMatch(
          /allows it without approval/,
        ),
      )
      const resent = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
        body: { qty: 80, note: 'now-allowed' },
        headers: { 'idempotency-key': 'k-allow' },
      })
      expect(resent.status).toBe(201)
      expect((await approve(adminUrl(), 'alice', id)).status).toBe(409)
      await fx.corridor.approvals.sweepNow() // a sweep re-releases nothing cancelled
      expect(received('now-allowed')).toHaveLength(1)
    } finally {
      writeFileSync(policyFile, original)
      fx.corridor.policies.reload()
    }
  })
})

describe('expiry', () => {
  it('an undecided approval expires: the agent gets a distinct 403 and a late approval is refused', async () => {
    const short = await startCorridorFixture(
      approvalFiles(upstream.url, redisConfig(redis.url, '  expires_after: 1s\n').replace('wait: 1s', 'wait: 0s')),
      { SVC_TOKEN: canary },
    )
    try {
      const held = await agentCall(short.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 90, note: 'expire-me' },
      })
      const id = held.body.approval_id as string
      // Past its expiry on Corridor's clock, then one sweep: no sleeping for either.
      short.advanceClock(2_000)
      await short.corridor.approvals.sweepNow()
      const retry = await agentCall(short.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 90, note: 'expire-me' },
        headers: { 'x-corridor-approval': id },
      })
      expect(retry.status).toBe(403)
      expect(retry.body.code).toBe('approval_expired')
      expect((await approve(short.corridor.adminUrl, 'alice', id)).status).toBe(409)
      expect(received('expire-me')).toHaveLength(0)
    } finally {
      await short.close()
    }
  })
})

describe('Redis and replicas', () => {
  it('two replicas on one Redis: held on A, approved on B, collected on B, executed once', async () => {
    const b = await startCorridorFixture(approvalFiles(upstream.url, redisConfig(redis.url)), { SVC_TOKEN: canary })
    try {
      const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 15, note: 'two-replicas' } })
      const id = held.body.approval_id as string
      expect((await approve(b.corridor.adminUrl, 'alice', id)).status).toBe(200)
      const result = await agentCall(b.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 15, note: 'two-replicas' },
        headers: { 'x-corridor-approval': id },
      })
      expect(result.status).toBe(201)
      const fromA = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
        body: { qty: 15, note: 'two-replicas' },
        headers: { 'x-corridor-approval': id },
      })
      expect(fromA.status).toBe(201)
      // Both replicas sweep: neither releases again what has run.
      await Promise.all([fx.corridor.approvals.sweepNow(), b.corridor.approvals.sweepNow()])
      expect(received('two-replicas')).toHaveLength(1)
    } finally {
      await b.close()
    }
  })

  it('Redis down: holds and decisions fail closed with 503 in under a second, other requests still flow; pending approvals survive the restart', async () => {
    const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 25, note: 'survivor' } })
    const id = held.body.approval_id as string
    await redis.kill()
    try {
      const started = performance.now()
      const refused = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 26, note: 'while-down' } })
      const elapsed = performance.now() - started
      expect(refused.status).toBe(503)
      expect(refused.body.code).toBe('approval_unavailable')
      expect(elapsed).toBeLessThan(1_000)
      const decision = await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/approve`, {
        reason: 'now',
      })
      expect(decision.status).toBe(503)
      expect(
        (await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 2, note: 'allowed-during-outage' } }))
          .status,
      ).toBe(201)
      const ready = await approverCall(adminUrl(), null, '/readyz')
      expect(ready.body).toMatchObject({ ready: true, checks: { approval_queue: false } })
    } finally {
      await redis.start()
    }
    await eventually(
      async () =>
        expect((await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}`)).body.state).toBe('pending'),
      5_000,
    )
    expect((await approve(adminUrl(), 'alice', id)).status).toBe(200)
    const result = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', {
      body: { qty: 25, note: 'survivor' },
      headers: { 'x-corridor-approval': id },
    })
    expect(result.status).toBe(201)
    expect(received('survivor')).toHaveLength(1)
    expect(received('while-down')).toHaveLength(0)
  })

  it('caps held connections with a clear 503, queueing nothing', async () => {
    const capped = await startCorridorFixture(
      approvalFiles(
        upstream.url,
        redisConfig(redis.url, '  max_held_connections: 1\n').replace('wait: 1s', 'wait: 2s'),
      ),
      { SVC_TOKEN: canary },
    )
    try {
      const first = agentCall(capped.corridor.agentUrl, WRITER_KEY, '/svc/items', { body: { qty: 31, note: 'cap-1' } })
      await new Promise((r) => setTimeout(r, 300))
      const second = await agentCall(capped.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 32, note: 'cap-2' },
      })
      expect(second.status).toBe(503)
      expect(second.body.code).toBe('approval_capacity')
      expect((await first).body.code).toBe('approval_pending')
      const listed = await approverCall(capped.corridor.adminUrl, APPROVER_KEYS.alice, '/approvals?limit=500')
      expect((listed.body.approvals as { request: string }[]).length).toBeGreaterThan(0)
    } finally {
      await capped.close()
    }
  })

  it('keeps no agent key and no upstream credential in Redis, the logs or the audit trail', async () => {
    const client = new Redis(redis.url)
    try {
      const keys = await client.keys('*')
      let dump = ''
      for (const key of keys) {
        const type = await client.type(key)
        if (type === 'string') dump += await client.get(key)
        if (type !== 'hash') continue
        const fields = await client.hgetall(key)
        dump += JSON.stringify(fields)
        // Bodies are stored base64: search them decoded too.
        if (fields.doc)
          dump += Buffer.from(
            (JSON.parse(fields.doc) as { request: { bodyBase64: string } }).request.bodyBase64,
            'base64',
          ).toString()
      }
      expect(dump).toContain('flow-1') // the held requests are there…
      for (const secret of [canary, WRITER_KEY, ADMIN_BOT_KEY, ...Object.values(APPROVER_KEYS)]) {
        expect(dump).not.toContain(secret) // …without any credential
        expect(fx.allOutput()).not.toContain(secret)
      }
      expect(JSON.stringify(webhook.posts)).not.toContain(canary)
    } finally {
      client.disconnect()
    }
  })
})

describe('without Redis', () => {
  it('answers calls still waiting with their approval id when Corridor stops, instead of cutting them off', async () => {
    const stopping = await startCorridorFixture(approvalFiles(upstream.url, 'approvals: { wait: 20s }\n'), {
      SVC_TOKEN: canary,
    })
    const waiting = agentCall(stopping.corridor.agentUrl, WRITER_KEY, '/svc/items', {
      body: { qty: 35, note: 'shutdown' },
    })
    await eventually(() => expect(stopping.corridor.approvals.heldConnections).toBe(1))
    const started = performance.now()
    await stopping.close()
    const answer = await waiting
    expect(answer.status).toBe(503)
    expect(answer.body.code).toBe('approval_pending')
    expect(answer.body.approval_id).toMatch(/^apr_/)
    expect(performance.now() - started).toBeLessThan(3_000)
  })

  it('holds nothing and takes no decision while the audit trail cannot be written', async () => {
    const blind = await startCorridorFixture(
      { ...approvalFiles(upstream.url, 'approvals: { wait: 0s }\n'), auditFile: '/dev/full' },
      { SVC_TOKEN: canary },
    )
    try {
      const refused = await agentCall(blind.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 34, note: 'unaudited' },
      })
      expect(refused.status).toBe(503)
      expect(refused.body.code).toBe('audit_unavailable')
      expect(await blind.corridor.approvals.list('pending', 0, 10)).toEqual([])
      const decision = await approverCall(blind.corridor.adminUrl, APPROVER_KEYS.alice, '/approvals/apr_any/approve', {
        reason: 'unaudited',
      })
      expect(decision.status).toBe(503)
      expect(decision.body.code).toBe('audit_unavailable')
    } finally {
      await blind.close()
    }
  })

  it('uses the in-memory queue for one instance, and says loudly that approvals die with the process', async () => {
    const mem = await startCorridorFixture(approvalFiles(upstream.url, 'approvals: { wait: 0s }\n'), {
      SVC_TOKEN: canary,
    })
    try {
      expect(mem.logs.join('')).toContain('APPROVALS ARE IN MEMORY')
      const held = await agentCall(mem.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 33, note: 'in-memory' },
      })
      const id = held.body.approval_id as string
      expect((await approve(mem.corridor.adminUrl, 'alice', id)).status).toBe(200)
      await eventually(() => expect(received('in-memory')).toHaveLength(1))
      const result = await agentCall(mem.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 33, note: 'in-memory' },
        headers: { 'x-corridor-approval': id },
      })
      expect(result.status).toBe(201)
    } finally {
      await mem.close()
    }
  })
})

describe('what an approver can learn of queues that are not theirs', () => {
  it('pages over the approvals they may see: neither the page nor `more` counts anyone else’s', async () => {
    const ids: string[] = []
    for (const note of ['queue-1', 'queue-2', 'queue-3']) {
      const held = await agentCall(agentUrl(), WRITER_KEY, '/svc/items', { body: { qty: 70, note } })
      expect(held.body.code).toBe('approval_pending')
      ids.push(held.body.approval_id as string)
    }
    try {
      // dave approves for finance, which no rule here names: he sees nothing, and nothing says there is more.
      const dave = await approverCall(adminUrl(), APPROVER_KEYS.dave, '/approvals?limit=1')
      expect(dave.status).toBe(200)
      expect(dave.body).toMatchObject({ approvals: [], more: false })
      const alice = await approverCall(adminUrl(), APPROVER_KEYS.alice, '/approvals?limit=1')
      expect(alice.body).toMatchObject({ more: true })
      expect(alice.body.approvals).toHaveLength(1)
    } finally {
      for (const id of ids)
        await approverCall(adminUrl(), APPROVER_KEYS.alice, `/approvals/${id}/reject`, { reason: 'test over' })
    }
  })
})
