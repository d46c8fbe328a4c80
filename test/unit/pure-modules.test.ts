/**
 * The pure modules on their own, with generated inputs where the input space is large: the
 * quantifiers of policy conditions against a reference reading, who may decide a held request,
 * credential injection (and that every secret placed is masked), and the lease cache's timing
 * driven by a clock the test moves.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { HeldRequest } from '../../src/approvals/approval.ts'
import { approvalsRequired, mayView, whyIneligible, type ApproverIdentity } from '../../src/approvals/eligibility.ts'
import { injectCredential } from '../../src/credentials/inject.ts'
import { LeaseCache, renewalPoint, safetyMarginMs, type Lease } from '../../src/credentials/lease-cache.ts'
import { Secret } from '../../src/credentials/secret.ts'
import type { IssuedCredential } from '../../src/credentials/source.ts'
import { compileCondition, type CompiledCondition } from '../../src/policy/conditions.ts'
import { FollowUps } from '../../src/forwarding/follow-ups.ts'
import { parseTemplate, type Connector, type ConnectorCatalog } from '../../src/registry/connectors.ts'
import { createLogger } from '../../src/shared/logger.ts'

const compiled = (spec: unknown, denies = false): CompiledCondition => {
  const c = compileCondition(spec, { field: 'body.items.*.qty', many: true, denies })
  if (typeof c === 'string') throw new Error(c)
  return c
}

describe('condition quantifiers, against a reference reading', () => {
  const lists = fc.array(fc.integer({ min: -1_000, max: 1_000 }), { maxLength: 12 })
  const bound = fc.integer({ min: -1_000, max: 1_000 })

  it('any, all and count agree with Array.some, Array.every and length', () => {
    fc.assert(
      fc.property(lists, bound, fc.boolean(), (values, limit, denies) => {
        const read = { many: true as const, values }
        expect(compiled({ any: { gt: limit } }, denies).test(read)).toBe(values.some((v) => v > limit))
        // `all` over nothing holds only in deny rules: nothing was checked, so nothing is allowed.
        expect(compiled({ all: { lte: limit } }, denies).test(read)).toBe(
          values.length === 0 ? denies : values.every((v) => v <= limit),
        )
        expect(compiled({ count: { gte: 3 } }, denies).test(read)).toBe(values.length >= 3)
      }),
    )
  })

  it('a scalar condition on a path that reads many values is refused when compiled', () => {
    expect(compileCondition({ lte: 5 }, { field: 'body.items.*.qty', many: true, denies: false })).toMatch(
      /say how with any, all or count/,
    )
  })

  it('an element that is an object or list refuses the request instead of being skipped', () => {
    fc.assert(
      fc.property(lists, fc.nat({ max: 12 }), (values, at) => {
        const mixed: unknown[] = [...values]
        mixed.splice(Math.min(at, mixed.length), 0, { qty: 1 })
        expect(() => compiled({ any: { gt: 0 } }).test({ many: true, values: mixed })).toThrow(/refused/)
      }),
    )
  })
})

const held = (overrides: Partial<HeldRequest> = {}): HeldRequest =>
  ({
    agent: 'billing-bot',
    owner: 'finance-team',
    user: null,
    approverGroups: ['finance-approvers'],
    ...overrides,
  }) as HeldRequest
const approver = (id: string, groups: string[]): ApproverIdentity => ({ id, groups, via: 'approver_key' })

describe('who may decide a held request', () => {
  it('a member of a named group who neither owns the agent nor is the delegated user', () => {
    expect(whyIneligible(approver('dana', ['finance-approvers']), held())).toBeNull()
    expect(whyIneligible(approver('eve', ['support']), held())).toMatch(/only members of finance-approvers/)
    expect(mayView(approver('eve', ['support']), held())).toBe(false)
    expect(whyIneligible(approver('finance-team', ['finance-approvers']), held())).toMatch(/owners may not decide/)
    expect(whyIneligible(approver('dana', ['finance-approvers', 'finance-team']), held())).toMatch(/owners may not/)
    expect(whyIneligible(approver('dana', ['finance-approvers']), held({ user: 'dana' }))).toMatch(/on your behalf/)
  })

  it('privileged actions need at least two approvals, whatever the rule says', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom('read', 'write', 'transactional', 'privileged'),
        (n, risk) => {
          const required = approvalsRequired(n, risk)
          expect(required).toBe(risk === 'privileged' ? Math.max(2, n) : n)
        },
      ),
    )
  })
})

const credential = (fields: Record<string, string>): IssuedCredential => ({
  fields: new Map(Object.entries(fields).map(([k, v]) => [k, new Secret(v)])),
  reference: 'test:credential',
  leaseId: null,
})

describe('credential injection', () => {
  const secretText = fc.string({ minLength: 8, maxLength: 40 }).filter((s) => /^[\x21-\x7e]+$/.test(s))

  it('places the credential where the template says, and masks every secret it placed in what comes back', () => {
    fc.assert(
      fc.property(secretText, secretText, (username, password) => {
        const cred = credential({ username, password })
        const out = { headers: ['accept', 'application/json'], query: 'a=1' }
        const mask = injectCredential(
          { kind: 'basic', username: parseTemplate('{username}'), password: parseTemplate('{password}') },
          cred,
          out,
        )
        const placed = Buffer.from(`${username}:${password}`).toString('base64')
        expect(out.headers).toEqual(['accept', 'application/json', 'authorization', `Basic ${placed}`])
        const echoed = `user ${username} pass ${password} header Basic ${placed}`
        const masked = mask.text(echoed)
        for (const secret of [username, password, placed]) expect(masked).not.toContain(secret)
      }),
    )
  })

  it('a query credential is appended strictly encoded; a header one keeps its format', () => {
    const out = { headers: [] as string[], query: 'x=2' }
    injectCredential(
      { kind: 'query', param: 'api_key', value: parseTemplate('{secret}') },
      credential({ secret: 'a b&c' }),
      out,
    )
    expect(out.query).toBe('x=2&api_key=a%20b%26c')
    const headerOut = { headers: [] as string[], query: '' }
    injectCredential(
      { kind: 'header', header: 'authorization', value: parseTemplate('Bearer {secret}') },
      credential({ secret: 'tok-123456' }),
      headerOut,
    )
    expect(headerOut.headers).toEqual(['authorization', 'Bearer tok-123456'])
  })
})

describe('the lease cache, on a clock the test moves', () => {
  const log = createLogger('silent')

  function provider(lifeMs: number, clock: { now: number }) {
    const calls = { obtain: 0, renew: 0, revoke: 0 }
    let serial = 0
    const lease = (): Lease => ({
      credential: {
        fields: new Map([['secret', new Secret(`s-${++serial}`)]]),
        reference: 'vault:test',
        leaseId: `l-${serial}`,
      },
      obtainedAt: clock.now,
      expiresAt: clock.now + lifeMs,
      renewable: true,
    })
    return {
      calls,
      obtain: async () => {
        calls.obtain++
        await new Promise((r) => setImmediate(r))
        return lease()
      },
      renew: async (old: Lease) => {
        calls.renew++
        return { ...old, obtainedAt: clock.now, expiresAt: clock.now + lifeMs }
      },
      revoke: async () => {
        calls.revoke++
      },
    }
  }

  it('shares one obtain among concurrent callers, renews at half-life in the background, replaces inside the margin', async () => {
    const clock = { now: 1_000_000 }
    const p = provider(60_000, clock)
    const cache = new LeaseCache(p, { now: () => clock.now, log, timeoutMs: 1_000 })
    const first = await Promise.all(Array.from({ length: 10 }, () => cache.get('svc', 1_000)))
    expect(p.calls.obtain).toBe(1)
    expect(new Set(first.map((l) => l.credential.leaseId)).size).toBe(1)

    clock.now += 29_000 // before half-life: the cached lease, nothing else
    await cache.get('svc', 1_000)
    expect(p.calls).toMatchObject({ obtain: 1, renew: 0 })

    clock.now += 2_000 // past half-life: still served, renewed in the background
    const served = await cache.get('svc', 1_000)
    expect(served.credential.leaseId).toBe('l-1')
    await new Promise((r) => setImmediate(r))
    expect(p.calls.renew).toBe(1)

    clock.now += 60_000 // far past the renewed lease's margin: a new one is obtained
    expect((await cache.get('svc', 1_000)).credential.leaseId).toBe('l-2')
    expect(p.calls.obtain).toBe(2)
  })

  it('revokes a lease whose scope a stop took back while Vault was issuing it, and keeps the next', async () => {
    const clock = { now: 1_000_000 }
    const p = provider(60_000, clock)
    const waiting: (() => void)[] = []
    const release = (): void => {
      for (const resolve of waiting.splice(0)) resolve()
    }
    const slow = {
      ...p,
      obtain: async () => {
        await new Promise<void>((r) => waiting.push(r))
        return p.obtain()
      },
    }
    const cache = new LeaseCache(slow, { now: () => clock.now, log, timeoutMs: 1_000 })
    const issuing = cache.get('agent:billing-bot', 1_000)
    const uncached = cache.obtainUncached('agent:billing-bot', 1_000)
    const other = cache.get('agent:support-bot', 1_000)
    await new Promise((r) => setImmediate(r))
    // The stop lands while all three are with Vault: two were for the stopped agent.
    expect(await cache.revokeWhere((scope) => scope === 'agent:billing-bot')).toBe(0)
    expect(waiting).toHaveLength(3)
    release()
    const [stopped, stoppedUncached, untouched] = await Promise.allSettled([issuing, uncached, other])
    expect(stopped).toMatchObject({
      status: 'rejected',
      reason: expect.objectContaining({ message: expect.stringContaining('taken back by a stop') }),
    })
    expect(stoppedUncached).toMatchObject({ status: 'rejected' })
    expect(untouched).toMatchObject({ status: 'fulfilled' })
    expect(p.calls.revoke).toBe(2)
    // After the stop, the scope is issued again as usual (the resume is the operator's, not the cache's).
    const after = cache.get('agent:billing-bot', 1_000)
    await new Promise((r) => setImmediate(r))
    release()
    expect((await after).credential.leaseId).toMatch(/^l-\d+$/)
    expect(p.calls.revoke).toBe(2)
  })

  it('replays a failure for the backoff, then asks again', async () => {
    const clock = { now: 5_000 }
    let calls = 0
    const cache = new LeaseCache(
      {
        obtain: () => {
          calls++
          return Promise.reject(new Error('vault sealed'))
        },
      },
      { now: () => clock.now, log, timeoutMs: 1_000, failureBackoffMs: 1_000 },
    )
    await expect(cache.get('svc', 1_000)).rejects.toThrow('vault sealed')
    await expect(cache.get('svc', 1_000)).rejects.toThrow('vault sealed')
    expect(calls).toBe(1)
    clock.now += 1_001
    await expect(cache.get('svc', 1_000)).rejects.toThrow('vault sealed')
    expect(calls).toBe(2)
  })

  it('keeps a margin before expiry that leaves renewal at half-life first, for any lease length', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1_000, max: 30 * 86_400_000 }), (start, life) => {
        const lease = { obtainedAt: start, expiresAt: start + life }
        const margin = safetyMarginMs(lease)
        expect(margin).toBeGreaterThan(0)
        expect(margin).toBeLessThanOrEqual(life / 3)
        expect(renewalPoint(lease)).toBeLessThan(lease.expiresAt - margin)
      }),
    )
  })
})

describe('follow-up URL rewriting', () => {
  const connector = (id: string, origin: string, basePath: string) => ({ id, origin, basePath }) as unknown as Connector
  const catalog = {
    connectors: new Map([
      ['api', connector('api', 'https://api.example.com', '/v1')],
      ['api10', connector('api10', 'https://api.example.com', '/v10')],
    ]),
    byHost: new Map(),
  } as unknown as ConnectorCatalog
  const rewrite = () => new FollowUps(catalog, 'https://corridor.test')

  it('maps a URL to the connector whose base path it is under, on a path boundary', () => {
    expect(rewrite().url('https://api.example.com/v1/items?page=2')).toBe('https://corridor.test/api/items?page=2')
    expect(rewrite().url('https://api.example.com/v10/items')).toBe('https://corridor.test/api10/items')
    expect(rewrite().url('https://api.example.com/v1')).toBe('https://corridor.test/api/')
    expect(rewrite().url('https://api.example.com/v2/items')).toBeNull()
    expect(rewrite().url('https://api.example.com.evil.test/v1/items')).toBeNull()
    expect(
      rewrite().header('link', '<https://api.example.com/v1/a?p=2>; rel="next", <https://x.test/b>; rel="help"'),
    ).toBe('<https://corridor.test/api/a?p=2>; rel="next", <https://x.test/b>; rel="help"')
  })

  it('leaves bodies it has nothing to rewrite byte for byte, and anything that is not JSON alone', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        const body = Buffer.from(text)
        const out = rewrite().json(body)
        if (!text.includes('https://api.example.com/v1')) expect(out).toBe(body)
      }),
    )
    const notJson = Buffer.from('https://api.example.com/v1/x is not json')
    expect(rewrite().json(notJson)).toBe(notJson)
  })
})
