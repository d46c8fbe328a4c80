/**
 * The approval store contract, run against the in-memory store and against a real redis-server
 * (two store instances on one Redis stand for two replicas). Both must make the same
 * transitions, atomically.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requestDigest, type HeldRequest } from '../../src/approvals/approval.ts'
import type { ApprovalStore, StoreLimits } from '../../src/approvals/approval-store.ts'
import { MemoryApprovalStore } from '../../src/approvals/memory-store.ts'
import { RedisApprovalStore } from '../../src/approvals/redis-store.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { startRedis, type RedisProcess } from '../../testkit/redis-process.ts'
import { capturedLog } from '../helpers/captured-log.ts'

const limits: StoreLimits = { maxPending: 5, maxPendingPerAgent: 3, keepMs: 60_000, retryWindowMs: 60_000 }
const silent = createLogger('silent')

function held(overrides: Partial<HeldRequest> = {}): HeldRequest {
  const request = {
    method: 'POST',
    target: '/billing/v1/refunds',
    host: null,
    upstreamPath: '/v1/refunds',
    query: '',
    headers: [['content-type', 'application/json']] as const,
    // Every held request differs (a repeat of the same one joins its approval; that is tested on its own).
    bodyBase64: Buffer.from(`{"amount":9000,"order":"${randomUUID()}"}`).toString('base64'),
  }
  const now = Date.now()
  return {
    id: 'apr_' + randomUUID(),
    heldRequestId: randomUUID(),
    digest: requestDigest('billing', request),
    request,
    agent: 'billing-bot',
    owner: 'finance-team',
    tier: 'transactional',
    user: null,
    userGroups: null,
    intent: 'refund order 1',
    taskId: null,
    connector: 'billing',
    action: 'refunds.create',
    risk: 'transactional',
    rule: 'billing-refund-large',
    reason: 'refunds above 50.00 need a finance approver',
    policyVersion: 'v1',
    approverGroups: ['finance-approvers'],
    required: 1,
    perRequestLease: false,
    createdAt: now,
    expiresAt: now + 60_000,
    ...overrides,
  }
}

const by = (approver: string) => ({
  approver,
  groups: ['finance-approvers'],
  reason: 'checked the order',
  at: Date.now(),
})

let redis: RedisProcess
const stores: ApprovalStore[] = []

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()))
  await redis.stop()
})

const kinds: [string, () => ApprovalStore][] = [
  ['memory', () => new MemoryApprovalStore(limits)],
  [
    'redis',
    () =>
      new RedisApprovalStore(
        { url: redis.url, keyPrefix: `t${randomUUID().slice(0, 8)}:`, timeoutMs: 1_000, withoutPersistence: 'warn' },
        limits,
        silent,
      ),
  ],
]

describe.each(kinds)('%s approval store', (_name, make) => {
  let store: ApprovalStore
  beforeAll(async () => {
    store = make()
    stores.push(store)
    await waitUntilReady(store)
  })

  it('keeps the held request exactly and dedupes by idempotency key per agent', async () => {
    const h = held()
    expect(await store.create(h, 'key-1')).toEqual({ kind: 'created' })
    const got = await store.get(h.id)
    expect(got?.held).toEqual(h)
    expect(got?.state).toBe('pending')
    expect(await store.create(held(), 'key-1')).toEqual({ kind: 'exists', id: h.id })
    // The same key from another agent is another request.
    const other = held({ agent: 'support-bot' })
    expect(await store.create(other, 'key-1')).toEqual({ kind: 'created' })
    expect(await store.get('apr_missing')).toBeNull()
    await store.cancel(h.id, 'test cleanup', Date.now())
    await store.cancel(other.id, 'test cleanup', Date.now())
  })

  it('caps pending approvals per agent and in total', async () => {
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const h = held({ agent: 'flooder' })
      expect((await store.create(h, null)).kind).toBe('created')
      ids.push(h.id)
    }
    expect((await store.create(held({ agent: 'flooder' }), null)).kind).toBe('agent_full')
    for (let i = 0; i < 2; i++) {
      const h = held({ agent: `other-${i}` })
      expect((await store.create(h, null)).kind).toBe('created')
      ids.push(h.id)
    }
    expect((await store.create(held({ agent: 'someone-else' }), null)).kind).toBe('full')
    for (const id of ids) expect(await store.cancel(id, 'cleanup', Date.now())).toBe(true)
    expect((await store.create(held({ agent: 'flooder' }), null)).kind).toBe('created')
  })

  it('needs distinct approvers when two are required, and approves once', async () => {
    const h = held({ required: 2 })
    await store.create(h, null)
    expect(await store.decide(h.id, { approve: true, by: by('alice'), digest: h.digest }, Date.now())).toEqual({
      kind: 'recorded',
    })
    expect(await store.decide(h.id, { approve: true, by: by('alice'), digest: h.digest }, Date.now())).toEqual({
      kind: 'already_decided',
    })
    expect((await store.get(h.id))?.state).toBe('pending')
    expect(await store.decide(h.id, { approve: true, by: by('bob'), digest: null }, Date.now())).toEqual({
      kind: 'approved',
    })
    const a = await store.get(h.id)
    expect(a?.state).toBe('approved')
    expect(a?.approvals.map((d) => d.approver)).toEqual(['alice', 'bob'])
    expect(await store.decide(h.id, { approve: true, by: by('carol'), digest: null }, Date.now())).toEqual({
      kind: 'not_pending',
      state: 'approved',
    })
    expect((await store.list('approved', 0, 100)).some((x) => x.held.id === h.id)).toBe(true)
    expect((await store.list('pending', 0, 100)).some((x) => x.held.id === h.id)).toBe(false)
  })

  it('refuses an approval for a different digest and records a rejection with its reason', async () => {
    const h = held()
    await store.create(h, null)
    expect(
      await store.decide(h.id, { approve: true, by: by('alice'), digest: 'sha256:' + '0'.repeat(64) }, Date.now()),
    ).toEqual({ kind: 'digest_mismatch' })
    expect(
      await store.decide(
        h.id,
        { approve: false, by: { ...by('alice'), reason: 'amount looks wrong' }, digest: h.digest },
        Date.now(),
      ),
    ).toEqual({ kind: 'rejected' })
    const a = await store.get(h.id)
    expect(a?.state).toBe('rejected')
    expect(a?.rejection?.reason).toBe('amount looks wrong')
    expect(await store.claim(h.id, 'tok', Date.now() + 1000, false)).toBe(false)
  })

  it('expires pending approvals: a late approval is refused and the sweep finds the rest', async () => {
    const now = Date.now()
    const late = held({ expiresAt: now - 1 })
    const swept = held({ expiresAt: now - 1 })
    await store.create(late, null)
    await store.create(swept, null)
    expect(await store.decide(late.id, { approve: true, by: by('alice'), digest: null }, now)).toEqual({
      kind: 'expired',
    })
    expect(await store.expireDue(now, 100)).toContain(swept.id)
    expect((await store.get(swept.id))?.state).toBe('expired')
    expect(await store.expireDue(now, 100)).not.toContain(swept.id)
  })

  it('lets exactly one of many concurrent claimers execute an approval', async () => {
    const h = held()
    await store.create(h, null)
    await store.decide(h.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    const replicas = [store, ...(store instanceof RedisApprovalStore ? [kinds[1]?.[1]() as ApprovalStore] : [])]
    for (const r of replicas) if (r !== store) stores.push(r)
    await Promise.all(replicas.map(waitUntilReady))
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (replicas[i % replicas.length] as ApprovalStore).claim(h.id, `token-${i}`, Date.now() + 60_000, false),
      ),
    )
    expect(claims.filter(Boolean)).toHaveLength(1)
    const winner = `token-${claims.indexOf(true)}`
    const result = {
      status: 201,
      headers: { 'content-type': 'application/json' },
      bodyBase64: Buffer.from('{"id":"re_1"}').toString('base64'),
      errorCode: null,
      executedRequestId: 'r1',
      completedAt: Date.now(),
    }
    expect(await store.complete(h.id, 'not-the-winner', result)).toBe(false)
    expect(await store.complete(h.id, winner, result)).toBe(true)
    const a = await store.get(h.id)
    expect(a?.state).toBe('executed')
    expect(a?.result).toEqual(result)
    expect(await store.cancel(h.id, 'too late', Date.now())).toBe(false)
  })

  it('marks an execution whose claimer vanished as unknown, and still accepts its late result', async () => {
    const h = held()
    await store.create(h, null)
    await store.decide(h.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    expect(await store.claim(h.id, 'tok', Date.now() - 1, false)).toBe(true)
    expect(await store.abandonStale(Date.now(), 100)).toContainEqual({ id: h.id, outcome: 'unknown' })
    expect((await store.get(h.id))?.state).toBe('unknown')
    expect(await store.claim(h.id, 'again', Date.now() + 1000, false)).toBe(false)
    const result = {
      status: 200,
      headers: {},
      bodyBase64: '',
      errorCode: null,
      executedRequestId: 'r2',
      completedAt: Date.now(),
    }
    expect(await store.complete(h.id, 'tok', result)).toBe(true)
    expect((await store.get(h.id))?.state).toBe('executed')
  })

  it('returns a retry-safe claim whose claimer vanished to approved, for another release; the old claimer cannot complete it', async () => {
    const h = held()
    await store.create(h, null)
    await store.decide(h.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    expect(await store.claim(h.id, 'first', Date.now() - 1, true)).toBe(true)
    expect(await store.abandonStale(Date.now(), 100)).toContainEqual({ id: h.id, outcome: 'retry' })
    expect((await store.get(h.id))?.state).toBe('approved')
    expect(await store.claim(h.id, 'second', Date.now() + 60_000, true)).toBe(true)
    const result = {
      status: 200,
      headers: {},
      bodyBase64: '',
      errorCode: null,
      executedRequestId: 'r3',
      completedAt: Date.now(),
    }
    expect(await store.complete(h.id, 'first', result)).toBe(false)
    expect(await store.complete(h.id, 'second', result)).toBe(true)
    expect((await store.get(h.id))?.state).toBe('executed')
  })

  it('joins a repeat of the same request to its open approval, and after it ran gives the repeat its result', async () => {
    const first = held()
    expect(await store.create(first, null)).toEqual({ kind: 'created' })
    // Same agent, same request (another id, as every attempt gets): the open approval, never a second one.
    const repeat = { ...first, id: 'apr_' + randomUUID(), heldRequestId: randomUUID() }
    expect(await store.create(repeat, null)).toEqual({ kind: 'exists', id: first.id })
    // Another agent sending the same bytes has its own approval.
    const otherAgent = { ...repeat, id: 'apr_' + randomUUID(), agent: 'other-bot' }
    expect(await store.create(otherAgent, null)).toEqual({ kind: 'created' })
    await store.decide(first.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    expect(await store.create({ ...repeat, id: 'apr_' + randomUUID() }, null)).toEqual({ kind: 'exists', id: first.id })
    expect(await store.claim(first.id, 'tok', Date.now() + 60_000, false)).toBe(true)
    const result = {
      status: 201,
      headers: {},
      bodyBase64: '',
      errorCode: null,
      executedRequestId: 'r',
      completedAt: Date.now(),
    }
    expect(await store.complete(first.id, 'tok', result)).toBe(true)
    expect(await store.create({ ...repeat, id: 'apr_' + randomUUID() }, null)).toEqual({ kind: 'exists', id: first.id })
    // A rejected request may be asked for again: that is a new approval.
    const refused = held()
    await store.create(refused, null)
    await store.decide(refused.id, { approve: false, by: by('alice'), digest: null }, Date.now())
    expect(await store.create({ ...refused, id: 'apr_' + randomUUID() }, null)).toEqual({ kind: 'created' })
  })

  it('gives a claim back only to its holder, from executing or from unknown', async () => {
    const h = held()
    await store.create(h, null)
    await store.decide(h.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    expect(await store.claim(h.id, 'mine', Date.now() + 60_000, false)).toBe(true)
    expect(await store.unclaim(h.id, 'theirs')).toBe(false)
    expect(await store.unclaim(h.id, 'mine')).toBe(true)
    expect((await store.get(h.id))?.state).toBe('approved')
    expect((await store.list('approved', 0, 100)).map((a) => a.held.id)).toContain(h.id)
    // The sweep called a claim unknown (its deadline passed); its holder knows it sent nothing.
    expect(await store.claim(h.id, 'again', Date.now() - 1, false)).toBe(true)
    expect(await store.abandonStale(Date.now(), 100)).toEqual(
      expect.arrayContaining([{ id: h.id, outcome: 'unknown' }]),
    )
    expect(await store.unclaim(h.id, 'again')).toBe(true)
    expect((await store.get(h.id))?.state).toBe('approved')
    expect(await store.claim(h.id, 'last', Date.now() + 60_000, false)).toBe(true)
  })

  it('counts each live state as listing it finds, through every change of state', async () => {
    // A store of its own: the total cap counts what the other tests left pending.
    const store = make()
    stores.push(store)
    await waitUntilReady(store)
    const states = ['pending', 'approved', 'executing'] as const
    const counts = async () => {
      const out: number[] = []
      for (const state of states) {
        const count = await store.count(state)
        expect(count).toBe((await store.list(state, 0, 10_000)).length)
        out.push(count)
      }
      return out
    }
    expect(await counts()).toEqual([0, 0, 0])
    const now = Date.now()
    const [run, cancelled, expiring] = [
      held({ agent: 'count-a' }),
      held({ agent: 'count-b' }),
      held({ agent: 'count-c', expiresAt: now - 1 }),
    ]
    for (const h of [run, cancelled, expiring]) expect(await store.create(h, null)).toEqual({ kind: 'created' })
    expect(await counts()).toEqual([3, 0, 0])
    await store.decide(run.id, { approve: true, by: by('alice'), digest: null }, now)
    expect(await counts()).toEqual([2, 1, 0])
    expect(await store.claim(run.id, 'tok', now + 60_000, false)).toBe(true)
    expect(await counts()).toEqual([2, 0, 1])
    const result = {
      status: 200,
      headers: {},
      bodyBase64: '',
      errorCode: null,
      executedRequestId: 'r1',
      completedAt: now,
    }
    expect(await store.complete(run.id, 'tok', result)).toBe(true)
    expect(await store.cancel(cancelled.id, 'cleanup', now)).toBe(true)
    expect(await counts()).toEqual([1, 0, 0])
    expect(await store.expireDue(now, 100)).toContain(expiring.id)
    expect(await counts()).toEqual([0, 0, 0])
  })

  it('cancels pending and approved approvals but not executing ones, and reports every change', async () => {
    const changed: string[] = []
    store.onChange((id) => changed.push(id))
    const pending = held()
    const approved = held()
    const executing = held()
    for (const h of [pending, approved, executing]) await store.create(h, null)
    for (const h of [approved, executing])
      await store.decide(h.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    await store.claim(executing.id, 'tok', Date.now() + 60_000, false)
    expect(await store.cancel(pending.id, 'policy changed', Date.now())).toBe(true)
    expect(await store.cancel(approved.id, 'agent suspended', Date.now())).toBe(true)
    expect(await store.cancel(executing.id, 'too late', Date.now())).toBe(false)
    expect((await store.get(pending.id))?.cancelReason).toBe('policy changed')
    await expect
      .poll(() => changed.includes(pending.id) && changed.includes(approved.id), { timeout: 2_000 })
      .toBe(true)
  })
})

describe('redis approval store durability', () => {
  it('keeps pending and approved approvals across a Redis SIGKILL (AOF, fsync always), and fails fast while Redis is down', async () => {
    const store = new RedisApprovalStore(
      { url: redis.url, keyPrefix: 'durable:', timeoutMs: 500, withoutPersistence: 'warn' },
      limits,
      silent,
    )
    stores.push(store)
    await waitUntilReady(store)
    const pending = held()
    const approved = held()
    await store.create(pending, null)
    await store.create(approved, null)
    await store.decide(approved.id, { approve: true, by: by('alice'), digest: null }, Date.now())
    await redis.kill()
    const started = performance.now()
    await expect(store.get(pending.id)).rejects.toThrow(/approval store unavailable/)
    await expect(store.create(held(), null)).rejects.toThrow(/approval store unavailable/)
    expect(performance.now() - started).toBeLessThan(1_000)
    await redis.start()
    await waitUntilReady(store)
    expect((await store.get(pending.id))?.state).toBe('pending')
    expect((await store.get(approved.id))?.state).toBe('approved')
    expect((await store.get(approved.id))?.held).toEqual(approved)
  })
})

describe('what survives a Redis restart', () => {
  it('reads the persistence Redis runs with; without an append-only file it warns, or refuses holds when told to', async () => {
    const durable = new RedisApprovalStore(
      { url: redis.url, keyPrefix: `p${randomUUID().slice(0, 8)}:`, timeoutMs: 1_000, withoutPersistence: 'refuse' },
      limits,
      silent,
    )
    stores.push(durable)
    await waitUntilReady(durable)
    expect(durable.persistence).toBe('always')
    expect((await durable.create(held(), null)).kind).toBe('created')

    const volatile = await startRedis({ appendonly: false })
    try {
      const { log, lines: warned } = capturedLog('warn')
      const warn = new RedisApprovalStore(
        { url: volatile.url, keyPrefix: 'w:', timeoutMs: 1_000, withoutPersistence: 'warn' },
        limits,
        log,
      )
      const refuse = new RedisApprovalStore(
        { url: volatile.url, keyPrefix: 'r:', timeoutMs: 1_000, withoutPersistence: 'refuse' },
        limits,
        silent,
      )
      stores.push(warn, refuse)
      await waitUntilReady(warn)
      await waitUntilReady(refuse)
      expect(warn.persistence).toBe('none')
      expect(warned.join('')).toContain('APPROVALS ARE NOT DURABLE')
      expect((await warn.create(held(), null)).kind).toBe('created')
      const h = held()
      await expect(refuse.create(h, null)).rejects.toThrow(/appendonly no/)
      expect(await refuse.get(h.id)).toBeNull()
    } finally {
      await volatile.stop()
    }
  })
})

describe('redis approval store under a stalled Redis (SIGSTOP)', () => {
  it('a create or a claim the caller gave up on does nothing when Redis resumes; an unclaim sent after it runs after it', async () => {
    const store = new RedisApprovalStore(
      { url: redis.url, keyPrefix: `stall${randomUUID().slice(0, 8)}:`, timeoutMs: 200, withoutPersistence: 'warn' },
      limits,
      silent,
    )
    stores.push(store)
    await waitUntilReady(store)
    const approved = held()
    await store.create(approved, null)
    await store.decide(approved.id, { approve: true, by: by('alice'), digest: null }, Date.now())

    const phantom = held()
    redis.pause()
    try {
      await expect(store.create(phantom, null)).rejects.toThrow(/approval store unavailable/)
      await expect(store.claim(approved.id, 'gave-up', Date.now() + 60_000, false)).rejects.toThrow(
        /approval store unavailable/,
      )
      // What a releasing replica does after a claim times out: take it back (queued behind the claim).
      const unclaim = store.unclaim(approved.id, 'gave-up').catch(() => false)
      await new Promise((r) => setTimeout(r, 400)) // past every deadline the caller gave
      redis.resume()
      await unclaim
    } finally {
      redis.resume()
    }
    await waitUntilReady(store)
    // The commands ran at resume, found their deadline passed and did nothing.
    expect(await store.get(phantom.id)).toBeNull()
    expect((await store.list('pending', 0, 100)).map((a) => a.held.id)).not.toContain(phantom.id)
    const after = await store.get(approved.id)
    expect(after?.state).toBe('approved')
    expect(await store.claim(approved.id, 'next', Date.now() + 60_000, false)).toBe(true)
  })
})

async function waitUntilReady(store: ApprovalStore): Promise<void> {
  const deadline = Date.now() + 5_000
  for (;;) {
    try {
      await store.ping()
      return
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
