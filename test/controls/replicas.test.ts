/**
 * Runtime controls across three Corridor replicas sharing one real redis-server (append-only
 * file on) and a Vault test server:
 *   - 1,000 concurrent refunds of random amounts against a 10,000-cent daily budget: the sum the
 *     upstream received is at most 10,000, and every refusal names the budget;
 *   - 300 concurrent requests against a 100-per-hour rate limit: exactly 100 reach the upstream;
 *   - the identical-request guard refuses the 6th repeat on whichever replica receives it;
 *   - a stop of one agent under steady traffic on every replica, while it streams, waits for an
 *     approval and holds Vault leases: the last request admitted comes within 1 s of the stop
 *     call, nothing of that agent reaches the upstream after, its stream is cut, its approval
 *     cancelled, its Vault credentials revoked (another agent's stay live), one audit event;
 *     resume restores it; the stop survives a Redis restart and a replica restart;
 *   - Redis killed: budgeted actions answer 503 limits_unavailable at once, unlimited reads go on.
 */
import { readFileSync } from 'node:fs'
import { Pool, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedis, type RedisProcess } from '../../testkit/redis-process.ts'
import { APPROVER_KEYS, approverCall } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash } from '../helpers/standard-policy.ts'
import { startVaultForCorridor, vaultConfigYaml, type VaultSetup } from '../helpers/vault-fixture.ts'

const BOT_KEY = 'cor_test_billing_bot_0001'
const OTHER_KEY = 'cor_test_other_bot_0002'
const OPERATOR_KEY = 'cop_test_operator_key_0001'
const BUDGET = 10_000

let redis: RedisProcess
let vault: VaultSetup
let upstream: RecordingUpstream
/** When each request reached the upstream, and for which agent (the body says who). */
const arrivals: { at: number; who: string; credential: string; amount: number }[] = []
/** Vault tokens Corridor minted for each agent, as the upstream received them. */
const minted: { who: string; token: string }[] = []
const replicas: CorridorFixture[] = []
const pools = new Map<string, Pool>()

function files(upstreamUrl: string) {
  return {
    agents: `agents:
  - { id: billing-bot, owner: payments, tier: bounded-write, connectors: [billing, events, records], api_keys: [{ hash: "${hash(BOT_KEY)}" }] }
  - { id: other-bot, owner: support, tier: bounded-write, connectors: [billing, events, records], api_keys: [{ hash: "${hash(OTHER_KEY)}" }] }
approvers:
  - { id: alice, groups: [leads], keys: [{ hash: "${hash(APPROVER_KEYS.alice)}" }] }
operators:
  - { id: oncall, keys: [{ hash: "${hash(OPERATOR_KEY)}" }] }
`,
    connectors: `connectors:
  - id: billing
    owner: payments
    upstream: ${upstreamUrl}/billing
    certified_until: 2099-12-31
    credential:
      source: vault_dynamic
      path: database/creds/app
      scope: agent
      inject: { basic: { username: "{username}", password: "{password}" } }
    timeouts: { connect: 1s, headers: 2s, body: 5s }
    actions:
      - { name: balance.get, method: GET, path: /balance, risk: read }
      - { name: refunds.create, method: POST, path: /refunds, risk: write }
      - { name: pings.create, method: POST, path: /pings, risk: write }
      - { name: notes.create, method: POST, path: /notes, risk: write }
      - { name: payouts.create, method: POST, path: /payouts, risk: write }
  - id: records
    owner: payments
    upstream: ${upstreamUrl}/records
    certified_until: 2099-12-31
    credential:
      source: vault_token
      role: corridor-minted
      policies: [records-read]
      ttl: 300s
      scope: agent
      inject: { header: x-vault-token }
    actions:
      - { name: records.get, method: GET, path: /r, risk: read }
  - id: events
    owner: payments
    upstream: ${upstreamUrl}/events
    certified_until: 2099-12-31
    actions:
      - { name: events.stream, method: GET, path: /stream, risk: read }
`,
    policy: `version: 1
rules:
  - { id: reads, effect: allow, match: { actions: [balance.get, events.stream, records.get] } }
  - { id: writes, effect: allow, match: { actions: [refunds.create, pings.create, notes.create] } }
  - { id: payouts, effect: require_approval, approvers: [leads], match: { actions: payouts.create } }
limits:
  - id: refund-budget
    match: { actions: refunds.create }
    budget: { sum: amount, max: ${BUDGET}, window: 1d }
    timezone: Europe/Paris
  - id: ping-rate
    match: { actions: pings.create }
    rate: 100/1h
  - id: same-note
    match: { actions: notes.create }
    identical: { max: 5, within: 10m }
`,
  }
}

async function startReplica(dir?: string): Promise<CorridorFixture> {
  return startCorridorFixture(
    {
      ...files(upstream.url),
      ...(dir === undefined ? {} : { auditFile: `${dir}/audit.log` }),
      extraConfig: `${vaultConfigYaml(vault)}approvals:\n  redis: { url: "${redis.url}", key_prefix: "replicas:approvals:" }\n  wait: 0s\nstate:\n  redis: { url: "${redis.url}", key_prefix: "replicas:state:" }\n  stale_after: 3s\n`,
    },
    { CORRIDOR_SECRET_ID: vault.secretId },
  )
}

function pool(url: string): Pool {
  let p = pools.get(url)
  if (p === undefined) pools.set(url, (p = new Pool(url, { connections: 32 })))
  return p
}

async function call(
  replica: number,
  key: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = (replicas[replica] as CorridorFixture).corridor.agentUrl
  const res = await pool(url).request({
    method: body === undefined ? 'GET' : 'POST',
    path,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body),
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
}

const operator = (replica: number, path: string, body?: unknown) =>
  approverCall((replicas[replica] as CorridorFixture).corridor.adminUrl, OPERATOR_KEY, path, body)

beforeAll(async () => {
  redis = await startRedis()
  vault = await startVaultForCorridor({ dbTtlSec: 300 })
  upstream = await startRecordingUpstream((req, res) => {
    if (req.url.startsWith('/events/stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      const timer = setInterval(() => res.write('data: tick\n\n'), 50)
      res.on('close', () => clearInterval(timer))
      return
    }
    if (req.url.startsWith('/records/')) {
      minted.push({
        who: new URL(req.url, 'http://x').searchParams.get('who') ?? '',
        token: String(req.headers['x-vault-token']),
      })
      res.writeHead(200, { 'content-type': 'application/json' })
      return void res.end('{"ok":true}')
    }
    const auth = String(req.headers.authorization ?? '')
    const password = auth.startsWith('Basic ')
      ? Buffer.from(auth.slice(6), 'base64').toString().split(':').slice(1).join(':')
      : ''
    const body = req.body.length > 0 ? (JSON.parse(req.body.toString()) as { who?: string; amount?: number }) : {}
    arrivals.push({ at: Date.now(), who: body.who ?? 'reader', credential: password, amount: body.amount ?? 0 })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  for (let i = 0; i < 3; i++) replicas.push(await startReplica())
}, 30_000)

afterAll(async () => {
  for (const p of pools.values()) await p.close()
  for (const r of replicas) await r.close()
  await upstream?.close()
  await vault?.vault.stop()
  await redis?.stop()
})

describe('limits counted across replicas', () => {
  it('1,000 concurrent refunds never take the budget over 10,000 cents; every refusal names it', async () => {
    const amounts = Array.from({ length: 1_000 }, (_, i) => 1 + ((i * 7919) % 100))
    const before = arrivals.length
    const answers = await Promise.all(
      amounts.map((amount, i) => call(i % 3, BOT_KEY, '/billing/refunds', { who: 'billing-bot', amount })),
    )
    // What the upstream did, by its own log.
    const received = arrivals.slice(before).reduce((sum, a) => sum + a.amount, 0)
    expect(received).toBeLessThanOrEqual(BUDGET)
    expect(received).toBeGreaterThan(BUDGET - 200) // the budget was used, not refused wholesale
    const admitted = answers.reduce((sum, a, i) => sum + (a.status === 200 ? (amounts[i] as number) : 0), 0)
    expect(admitted).toBe(received)
    const refused = answers.filter((a) => a.status !== 200)
    expect(refused.length).toBeGreaterThan(0)
    for (const r of refused) {
      expect(r.status).toBe(403)
      expect(r.body.code).toBe('budget_exceeded')
      expect(r.body.limit).toMatchObject({ limit: 'refund-budget', max: BUDGET })
    }
  })

  it('a 100-per-hour rate limit lets exactly 100 of 300 concurrent requests through', async () => {
    const before = arrivals.length
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) => call(i % 3, BOT_KEY, '/billing/pings', { who: 'billing-bot', i })),
    )
    expect(answers.filter((a) => a.status === 200)).toHaveLength(100)
    expect(arrivals.length - before).toBe(100)
    for (const a of answers.filter((x) => x.status !== 200)) expect(a.body.code).toBe('rate_limited')
  })

  it('the 6th identical request is refused as a loop on whichever replica receives it', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 7; i++) {
      const a = await call(i % 3, BOT_KEY, '/billing/notes', { who: 'billing-bot', note: 'same' })
      statuses.push(a.status)
      if (i >= 5) expect(a.body.code).toBe('loop_detected')
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 403, 403])
    expect((await call(2, BOT_KEY, '/billing/notes', { who: 'billing-bot', note: 'another' })).status).toBe(200)
  })
})

describe('a stop across replicas', () => {
  it('takes effect everywhere within a second, cuts the stream, cancels the approval and revokes the Vault credentials', async () => {
    // Live leases on every replica, for both agents.
    for (let i = 0; i < 3; i++) {
      expect((await call(i, BOT_KEY, '/billing/balance')).status).toBe(200)
      expect((await call(i, OTHER_KEY, '/billing/balance')).status).toBe(200)
    }
    // And a Vault token minted for each agent on each replica.
    for (let i = 0; i < 3; i++) {
      expect((await call(i, BOT_KEY, '/records/r?who=billing-bot')).status).toBe(200)
      expect((await call(i, OTHER_KEY, '/records/r?who=other-bot')).status).toBe(200)
    }
    const tokensOf = (who: string) => new Set(minted.filter((m) => m.who === who).map((m) => m.token))
    expect(tokensOf('billing-bot').size).toBe(3)
    for (const t of tokensOf('billing-bot')) expect(vault.vault.isLive(t)).toBe(true)
    const credentialsOf = (who: string) =>
      new Set(arrivals.filter((a) => a.who === who && a.credential !== '').map((a) => a.credential))
    // GETs carry no body: the bot's leases are the ones it used for its writes; the other agent's, its own.
    for (let i = 0; i < 3; i++) {
      await call(i, BOT_KEY, '/billing/notes', { who: 'billing-bot', note: `lease ${i}` })
      await call(i, OTHER_KEY, '/billing/notes', { who: 'other-bot', note: `lease ${i}` })
    }
    const botCredentials = credentialsOf('billing-bot')
    const otherCredentials = credentialsOf('other-bot')
    expect(botCredentials.size).toBe(3) // one lease per replica (scope: agent)
    for (const c of botCredentials) expect(vault.vault.isLive(c)).toBe(true)

    // A held payout, and a stream, of the agent about to be stopped.
    const held = await call(1, BOT_KEY, '/billing/payouts', { who: 'billing-bot', amount: 5 })
    expect(held.status).toBe(503)
    const approvalId = String(held.body.approval_id)
    const stream = await request(`${(replicas[2] as CorridorFixture).corridor.agentUrl}/events/stream`, {
      headers: { authorization: `Bearer ${BOT_KEY}` },
    })
    const streamEnd = new Promise<string>((resolve) => {
      stream.body.on('data', () => {})
      stream.body.on('error', () => resolve('cut'))
      stream.body.on('end', () => resolve('ended'))
    })

    // Steady traffic of the agent on every replica.
    const sent: { at: number; status: number; code: unknown }[] = []
    let running = true
    const loops = [0, 1, 2].map(async (replica) => {
      let n = 0
      while (running) {
        const at = Date.now()
        // A request the upstream is already answering when the stop arrives is cut off (status 0).
        const a = await call(replica, BOT_KEY, '/billing/notes', {
          who: 'billing-bot',
          note: `steady ${replica} ${n++}`,
        }).catch(() => ({ status: 0, body: { code: 'cut' } as Record<string, unknown> }))
        sent.push({ at, status: a.status, code: a.body.code })
        await new Promise((r) => setTimeout(r, 5))
      }
    })
    await new Promise((r) => setTimeout(r, 300))
    const stoppedAt = Date.now()
    const ordered = await operator(0, '/stops', { scope: { agent: 'billing-bot' }, reason: 'runaway refunds' })
    expect(ordered.status).toBe(201)
    await new Promise((r) => setTimeout(r, 1_500))
    running = false
    await Promise.all(loops)

    // The last of its requests to reach the upstream came within 1 s of the stop call; none after.
    const lastAdmitted = Math.max(...arrivals.filter((a) => a.who === 'billing-bot').map((a) => a.at))
    expect(lastAdmitted - stoppedAt).toBeLessThanOrEqual(1_000)
    // Every request sent a second after the stop was refused as stopped, on every replica.
    const late = sent.filter((s) => s.at > stoppedAt + 1_000)
    expect(late.length).toBeGreaterThan(10)
    for (const s of late) expect([s.status, s.code]).toEqual([403, 'agent_stopped'])
    expect(await streamEnd).toBe('cut')
    const approval = await approverCall(
      (replicas[2] as CorridorFixture).corridor.adminUrl,
      APPROVER_KEYS.alice,
      `/approvals/${approvalId}`,
    )
    expect(approval.body.state).toBe('cancelled')
    await eventually(() => {
      for (const c of botCredentials) expect(vault.vault.isLive(c)).toBe(false)
      for (const t of tokensOf('billing-bot')) expect(vault.vault.isLive(t)).toBe(false)
    }, 5_000)
    for (const c of otherCredentials) expect(vault.vault.isLive(c)).toBe(true)
    for (const t of tokensOf('billing-bot')) expect(vault.vault.isLive(t)).toBe(false)
    for (const t of tokensOf('other-bot')) expect(vault.vault.isLive(t)).toBe(true)
    expect((await call(1, OTHER_KEY, '/billing/balance')).status).toBe(200)
    const events = replicas.flatMap((r) =>
      readFileSync(r.auditFile, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{"type":"stop"')),
    )
    expect(events).toHaveLength(1)

    // Resume: service again on every replica without a restart, with fresh credentials.
    const id = (ordered.body.stop as { id: string }).id
    expect((await operator(2, `/stops/${id}/resume`, { reason: 'refund bug fixed' })).status).toBe(200)
    await eventually(async () => {
      for (let i = 0; i < 3; i++) expect((await call(i, BOT_KEY, '/billing/balance')).status).toBe(200)
    }, 2_000)
  }, 30_000)

  it('survives a restart of Redis and of a replica', async () => {
    const ordered = await operator(1, '/stops', {
      scope: { owner: 'payments' },
      mode: 'read_only',
      reason: 'audit week',
    })
    expect(ordered.status).toBe(201)
    await redis.kill()
    await redis.start()
    const dir = (replicas[0] as CorridorFixture).dir
    await (replicas[0] as CorridorFixture).close()
    replicas[0] = await startReplica(dir)
    await eventually(async () => {
      for (let i = 0; i < 3; i++) {
        const write = await call(i, BOT_KEY, '/billing/notes', {
          who: 'billing-bot',
          note: `after restart ${Date.now()}`,
        })
        expect(write.body.code).toBe('agent_stopped')
      }
    }, 5_000)
    expect((await call(0, BOT_KEY, '/billing/balance')).status).toBe(200) // read_only: reads pass
    expect((await call(0, OTHER_KEY, '/billing/notes', { who: 'other-bot', note: 'other team' })).status).toBe(200)
    await operator(0, `/stops/${(ordered.body.stop as { id: string }).id}/resume`, { reason: 'done' })
  }, 30_000)
})

describe('Redis gone', () => {
  it('budgeted actions fail closed at once; unlimited reads go on; writes stop once the stops are stale', async () => {
    await redis.kill()
    try {
      const started = Date.now()
      const budgeted = await call(1, OTHER_KEY, '/billing/refunds', { who: 'other-bot', amount: 1 })
      expect(budgeted.status).toBe(503)
      expect(budgeted.body.code).toBe('limits_unavailable')
      expect(Date.now() - started).toBeLessThan(2_000)
      expect((await call(1, OTHER_KEY, '/billing/balance')).status).toBe(200)
      // Stops can no longer be read: past state.stale_after (3 s) writes are refused, reads still served.
      await eventually(async () => {
        const write = await call(2, OTHER_KEY, '/billing/notes', { who: 'other-bot', note: `stale ${Date.now()}` })
        expect(write.body.code).toBe('stops_unavailable')
      }, 6_000)
      expect((await call(2, OTHER_KEY, '/billing/balance')).status).toBe(200)
    } finally {
      await redis.start()
    }
    await eventually(async () => {
      expect((await call(1, OTHER_KEY, '/billing/refunds', { who: 'other-bot', amount: 1 })).status).toBe(200)
    }, 5_000)
  }, 30_000)
})
