/**
 * Policy limits on one Corridor with the embedded defaults (counters in the process): a rate
 * limit admits exactly its quota and says so in RateLimit headers, a budget sums the body field
 * it names and gives back what the upstream did not do, a budget over its maximum can hold for
 * approval instead, loop guards stop identical requests and runs of failures, a concurrency cap
 * counts requests in flight, and shadow limits count without refusing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_BOT_KEY, agentCall, approvalFiles, approve, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
/** Amounts the upstream refuses with 402 (so the budget must give them back). */
const REFUSED_QTY = 7
let slowRelease: (() => void) | null = null
function releaseSlow(): void {
  slowRelease?.()
  slowRelease = null
}

const LIMITS = `limits:
  - id: list-rate
    match: { actions: items.list }
    rate: [5/1m, 1000/1d]
  - id: create-budget
    match: { actions: items.create }
    budget: { sum: qty, max: 20, window: 1d }
    timezone: Europe/Paris
    on_exceed: require_approval
    approvers: [leads]
  - id: same-delete
    match: { actions: items.delete }
    identical: { max: 2, within: 10m }
  - id: failing-gets
    match: { actions: items.get }
    failures: { max: 3 }
  - id: one-slow-at-a-time
    match: { actions: slow.get }
    concurrency: 1
  - id: shadow-list
    match: { actions: items.list }
    per: []
    rate: 1/1h
    mode: shadow
`

beforeAll(async () => {
  upstream = await startRecordingUpstream((req, res) => {
    if (req.url.startsWith('/base/items/') && req.method === 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' })
      return void res.end('{"error":"no such item"}')
    }
    if (req.url.startsWith('/base/slow')) {
      slowRelease = () => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"slow":true}')
      }
      return
    }
    const qty = req.body.length > 0 ? (JSON.parse(req.body.toString()) as { qty?: number }).qty : undefined
    res.writeHead(qty === REFUSED_QTY ? 402 : 200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const base = approvalFiles(upstream.url, 'approvals: { wait: 0s }\n')
  fx = await startCorridorFixture(
    {
      ...base,
      connectors: base.connectors.replace(
        '      - { name: items.list,',
        '      - { name: items.get, method: GET, path: "/items/{id}", risk: read }\n      - { name: slow.get, method: GET, path: /slow, risk: read }\n      - { name: items.list,',
      ),
      policy: `${base.policy
        .replace('match: { actions: items.list }', 'match: { actions: [items.list, items.get, slow.get] }')
        .replace(/ {2}- id: create-big-approval[\s\S]*?body: \{ qty: \{ gt: 10 \} \} \}\n/, '')
        .replace('body: { qty: { lte: 10 } }', 'body: { qty: { lte: 100 } }')
        .replace(
          / {2}- id: delete-approval[\s\S]*$/,
          '  - { id: delete-all, effect: allow, match: { actions: items.delete } }\n',
        )}${LIMITS}`,
    },
    { SVC_TOKEN: 'svc-secret' },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
})

const list = (key: string) => agentCall(fx.corridor.agentUrl, key, '/svc/items')
const create = (qty: unknown, key = WRITER_KEY) => agentCall(fx.corridor.agentUrl, key, '/svc/items', { body: { qty } })

describe('rate limits', () => {
  it('admit exactly the quota per agent, with RateLimit headers, then 429 with Retry-After naming the limit', async () => {
    const answers = []
    for (let i = 0; i < 7; i++) answers.push(await list(WRITER_KEY))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429, 429])
    expect(answers[0]?.headers['ratelimit-policy']).toBe('"list-rate-1m";q=5;w=60, "list-rate-1d";q=1000;w=86400')
    expect(answers[4]?.headers.ratelimit).toMatch(/^"list-rate-1m";r=0;t=\d+, "list-rate-1d";r=995;t=\d+$/)
    const refused = answers[5] as (typeof answers)[number]
    expect(refused.body.code).toBe('rate_limited')
    expect(refused.body.limit).toMatchObject({ limit: 'list-rate', window: '1m', max: 5, remaining: 0 })
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60)
    // Per agent: the other agent has its own counter.
    expect((await list(ADMIN_BOT_KEY)).status).toBe(200)
    // The window passes: room again.
    fx.advanceClock(60_000)
    expect((await list(WRITER_KEY)).status).toBe(200)
  })

  it('a shadow limit is counted and recorded, never enforced', async () => {
    await eventually(() => {
      const records = fx.auditRecords().filter((r) => r.action === 'items.list' && r.status === 200)
      const shadow = records.flatMap((r) => r.limits).filter((l) => l.limit === 'shadow-list')
      expect(shadow.some((l) => l.exceeded && l.shadow)).toBe(true)
    })
  })
})

describe('budgets', () => {
  it('sum the body field, give back what the upstream refused, and hold for approval past the maximum', async () => {
    expect((await create(8)).status).toBe(200) // 8 of 20
    expect((await create(REFUSED_QTY)).status).toBe(402) // reserved, then given back
    expect((await create(12)).status).toBe(200) // 20 of 20
    const over = await create(1)
    expect(over.status).toBe(503)
    expect(over.body.code).toBe('approval_pending')
    const id = String(over.body.approval_id)
    const shown = await agentCall(fx.corridor.adminUrl, 'cap_test_alice_key_0001', `/approvals/${id}`)
    expect(shown.body.rule).toBe('limit:create-budget')
    expect(String(shown.body.reason)).toContain('20 of 20 used this 1d window, 0 remaining, this request 1')
    expect((await approve(fx.corridor.adminUrl, 'alice', id)).status).toBe(200)
    await eventually(() => expect(upstream.received.filter((r) => r.body.toString() === '{"qty":1}')).toHaveLength(1))
  })

  it('refuse a request whose amount cannot be read, and charge the largest reading of an ambiguous one', async () => {
    // (The rule allows them: it reads qty as a number at most 100; a negative amount cannot be charged.)
    for (const qty of [-3, '-5', ' -1']) {
      const refused = await create(qty, ADMIN_BOT_KEY)
      expect(refused.status).toBe(403)
      expect(refused.body.code).toBe('policy_denied')
      expect(String(refused.body.detail)).toContain("budget 'create-budget' sums body.qty")
    }
    // 19.9 is 19 to integer parsers and 19.9 to float ones: the budget is charged 19.9, the upstream could do either.
    expect((await create(19.9, ADMIN_BOT_KEY)).status).toBe(200)
    await eventually(() => {
      const r = fx
        .auditRecords()
        .find((x) => x.agent === 'admin-bot' && x.status === 200 && x.action === 'items.create')
      expect(r?.limits[0]).toMatchObject({ limit: 'create-budget', used: 19.9, remaining: 0.10000000000000142 })
    })
  })
})

describe('loop guards and concurrency', () => {
  it('the same request more than max times in the window is refused as a loop', async () => {
    const del = () => agentCall(fx.corridor.agentUrl, ADMIN_BOT_KEY, '/svc/items/42', { method: 'DELETE' })
    expect((await del()).status).toBe(200)
    expect((await del()).status).toBe(200)
    const third = await del()
    expect(third.status).toBe(403)
    expect(third.body.code).toBe('loop_detected')
    expect(third.body.limit).toMatchObject({ limit: 'same-delete', max: 2 })
    // A different request is not the same loop.
    expect((await agentCall(fx.corridor.agentUrl, ADMIN_BOT_KEY, '/svc/items/43', { method: 'DELETE' })).status).toBe(
      200,
    )
  })

  it('a run of upstream failures stops the action until one succeeds', async () => {
    const get = () => agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items/missing')
    for (let i = 0; i < 3; i++) expect((await get()).status).toBe(404)
    await eventually(async () => expect((await get()).body.code).toBe('loop_detected'))
    // Other agents keep their own run.
    expect((await agentCall(fx.corridor.agentUrl, ADMIN_BOT_KEY, '/svc/items/missing')).status).toBe(404)
  })

  it('a concurrency cap counts requests in flight and frees the slot when they end', async () => {
    const first = agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/slow')
    await eventually(() => expect(slowRelease).not.toBeNull())
    const second = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/slow')
    expect(second.status).toBe(429)
    expect(second.body.code).toBe('rate_limited')
    releaseSlow()
    expect((await first).status).toBe(200)
    const third = agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/slow')
    await eventually(() => expect(slowRelease).not.toBeNull())
    releaseSlow()
    expect((await third).status).toBe(200)
  })
})
