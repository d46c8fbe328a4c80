/** The pure parts of runtime controls: which stop applies to a request, and the in-process counters' rules. */
import { describe, expect, it } from 'vitest'
import { MemoryCounterStore, windowStart, type Counter } from '../../src/controls/counters.ts'
import { overlaps, scopeText, stopFor, type Stop, type StopSubject } from '../../src/controls/stop.ts'
import { zoneOffsetMs } from '../../src/policy/limits.ts'

const subject: StopSubject = {
  agent: 'bot',
  owner: 'team',
  connector: 'billing',
  action: 'refunds.create',
  risk: 'write',
  user: 'u1',
}
const stop = (
  id: string,
  scope: Stop['scope'],
  mode: Stop['mode'] = 'stop',
  expiresAt: number | null = null,
): Stop => ({
  id,
  scope,
  mode,
  reason: 'r',
  by: 'op',
  via: 'operator_key',
  since: 0,
  expiresAt,
})

describe('which stop applies', () => {
  it('every field of a scope must match; an empty scope is global', () => {
    expect(stopFor([stop('a', { agent: 'other' })], subject, 1)).toBeNull()
    expect(stopFor([stop('a', { agent: 'bot', connector: 'crm' })], subject, 1)).toBeNull()
    expect(stopFor([stop('a', { agent: 'bot', connector: 'billing' })], subject, 1)?.id).toBe('a')
    expect(stopFor([stop('g', {})], subject, 1)?.id).toBe('g')
    expect(stopFor([stop('u', { user: 'u2' })], subject, 1)).toBeNull()
    expect(stopFor([stop('u', { user: 'u1' })], { ...subject, user: null }, 1)).toBeNull()
  })

  it('read_only refuses all but declared reads; a full stop wins over it; expired stops are gone', () => {
    const ro = stop('ro', { owner: 'team' }, 'read_only')
    expect(stopFor([ro], subject, 1)?.id).toBe('ro')
    expect(stopFor([ro], { ...subject, risk: 'read' }, 1)).toBeNull()
    expect(stopFor([ro], { ...subject, risk: null, action: null }, 1)?.id).toBe('ro')
    expect(stopFor([ro, stop('full', { agent: 'bot' })], { ...subject, risk: 'read' }, 1)?.id).toBe('full')
    expect(stopFor([stop('old', {}, 'stop', 10)], subject, 10)).toBeNull()
    expect(stopFor([stop('old', {}, 'stop', 10)], subject, 9)?.id).toBe('old')
  })

  it('describes and compares scopes', () => {
    expect(scopeText({})).toBe('global')
    expect(scopeText({ connector: 'billing', agent: 'bot' })).toBe('agent:bot connector:billing')
    expect(overlaps({ agent: 'bot' }, { connector: 'billing' })).toBe(true)
    expect(overlaps({ agent: 'bot' }, { agent: 'other' })).toBe(false)
  })
})

describe('windows', () => {
  it('day windows start at midnight in the time zone, DST included', () => {
    // 2026-03-29 is the spring-forward day in Paris: UTC+1 before 01:00 UTC, UTC+2 after.
    const at = Date.UTC(2026, 2, 29, 12)
    const offset = zoneOffsetMs('Europe/Paris', at)
    expect(offset).toBe(2 * 3_600_000)
    expect(new Date(windowStart(at, 86_400_000, offset)).toISOString()).toBe('2026-03-28T22:00:00.000Z')
    expect(zoneOffsetMs('UTC', at)).toBe(0)
    expect(windowStart(65_000, 60_000, 0)).toBe(60_000)
  })
})

describe('in-process counters', () => {
  const counter = (over: Partial<Counter>): Counter => ({
    kind: 'budget',
    key: 'k',
    max: 10,
    windowMs: 60_000,
    offsetMs: 0,
    amount: 4,
    shadow: false,
    ...over,
  })

  it('take every counter or none, give a budget back unless the upstream did it', async () => {
    let now = 1_000
    const store = new MemoryCounterStore(() => now)
    const both = [counter({}), counter({ kind: 'rate', key: 'r', max: 2, amount: 1 })]
    expect((await store.take(both, 'a')).map((r) => r.admitted)).toEqual([true, true])
    expect((await store.take(both, 'b')).map((r) => r.used)).toEqual([8, 2])
    const third = await store.take(both, 'c')
    expect(third.map((r) => r.admitted)).toEqual([false, false])
    // Refused by the rate: the budget was not taken either.
    expect((await store.take([counter({ amount: 2 })], 'd'))[0]?.used).toBe(10)
    const slot = (await store.take([counter({ amount: 0 })], 'e'))[0]?.slot as string
    await store.settle([{ kind: 'budget', slot, amount: 4, member: 'b' }], 502)
    expect((await store.take([counter({ amount: 4 })], 'f'))[0]).toMatchObject({ admitted: true, used: 10 })
    await store.settle([{ kind: 'budget', slot, amount: 4, member: 'f' }], 201)
    expect((await store.take([counter({ amount: 1 })], 'g'))[0]?.admitted).toBe(false)
    now += 60_000
    expect((await store.take([counter({ amount: 1 })], 'h'))[0]).toMatchObject({ admitted: true, used: 1 })
  })

  it('shadow counters count without refusing; concurrency slots and failure runs settle', async () => {
    const store = new MemoryCounterStore(() => 5)
    const shadow = counter({ kind: 'rate', max: 1, amount: 1, shadow: true })
    await store.take([shadow], 'a')
    expect((await store.take([shadow], 'b'))[0]).toMatchObject({ admitted: false, used: 2 })
    const slot = counter({ kind: 'concurrency', key: 'c', max: 1, windowMs: 0, amount: 1 })
    expect((await store.take([slot], 'x'))[0]?.admitted).toBe(true)
    expect((await store.take([slot], 'y'))[0]?.admitted).toBe(false)
    await store.settle([{ kind: 'concurrency', slot: 'c', amount: 1, member: 'x' }], null)
    expect((await store.take([slot], 'y'))[0]?.admitted).toBe(true)
    const run = counter({ kind: 'failures', key: 'f', max: 2, windowMs: 0, amount: 1 })
    await store.settle([{ kind: 'failures', slot: 'f', amount: 1, member: '' }], 500)
    await store.settle([{ kind: 'failures', slot: 'f', amount: 1, member: '' }], 404)
    expect((await store.take([run], 'z'))[0]?.admitted).toBe(false)
    await store.settle([{ kind: 'failures', slot: 'f', amount: 1, member: '' }], 200)
    expect((await store.take([run], 'z'))[0]?.admitted).toBe(true)
  })
})
