/**
 * The two counter stores follow the same rules: the in-process one (embedded defaults) and the
 * Redis one (Lua on a real redis-server). Every case runs against both.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryCounterStore, type Counter, type CounterStore } from '../../src/controls/counters.ts'
import { RedisCounterStore } from '../../src/controls/redis-counters.ts'
import { RedisState } from '../../src/controls/redis-state.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { startRedis, type RedisProcess } from '../../testkit/redis-process.ts'

let redis: RedisProcess
let state: RedisState

beforeAll(async () => {
  redis = await startRedis()
  state = new RedisState({ url: redis.url, keyPrefix: 'contract:', timeoutMs: 500 }, createLogger('silent'))
  expect(await state.connected(5_000)).toBe(true)
})
afterAll(async () => {
  await state?.close()
  await redis?.stop()
})

const stores: [string, () => CounterStore][] = [
  ['memory', () => new MemoryCounterStore(Date.now)],
  ['redis', () => new RedisCounterStore(state, createLogger('silent'))],
]

describe.each(stores)('%s counters', (_name, make) => {
  const store = (): CounterStore => make()
  const counter = (over: Partial<Counter>): Counter => ({
    kind: 'budget',
    key: `k-${randomUUID()}`,
    max: 10,
    windowMs: 3_600_000,
    offsetMs: 0,
    amount: 4,
    shadow: false,
    ...over,
  })

  it('take every counter or none', async () => {
    const s = store()
    const budget = counter({})
    const rate = counter({ kind: 'rate', max: 2, amount: 1 })
    expect((await s.take([budget, rate], 'a')).map((r) => [r.admitted, r.used])).toEqual([
      [true, 4],
      [true, 1],
    ])
    expect((await s.take([budget, rate], 'b')).map((r) => r.used)).toEqual([8, 2])
    expect((await s.take([budget, rate], 'c')).map((r) => r.admitted)).toEqual([false, false])
    // The rate refused it, so the budget was not taken either: 2 still fit.
    expect((await s.take([{ ...budget, amount: 2 }], 'd'))[0]).toMatchObject({ admitted: true, used: 10 })
    const [r] = await s.take([{ ...budget, amount: 1 }], 'e')
    expect(r?.admitted).toBe(false)
    expect(r?.resetMs).toBeGreaterThan(0)
    expect(r?.resetMs).toBeLessThanOrEqual(3_600_000)
  })

  it('a budget is given back unless the upstream answered 2xx', async () => {
    const s = store()
    const budget = counter({ max: 5, amount: 5 })
    const [first] = await s.take([budget], 'a')
    await s.settle([{ kind: 'budget', slot: first?.slot as string, amount: 5, member: 'a' }], 502)
    const [second] = await s.take([budget], 'b')
    expect(second?.admitted).toBe(true)
    await s.settle([{ kind: 'budget', slot: second?.slot as string, amount: 5, member: 'b' }], null)
    const [third] = await s.take([budget], 'c')
    expect(third?.admitted).toBe(true)
    await s.settle([{ kind: 'budget', slot: third?.slot as string, amount: 5, member: 'c' }], 201)
    expect((await s.take([{ ...budget, amount: 1 }], 'd'))[0]?.admitted).toBe(false)
  })

  it('shadow counters count without refusing; fractional amounts add up', async () => {
    const s = store()
    const shadow = counter({ kind: 'rate', max: 1, amount: 1, shadow: true })
    await s.take([shadow], 'a')
    expect((await s.take([shadow], 'b'))[0]).toMatchObject({ admitted: false, used: 2 })
    const money = counter({ max: 1, amount: 0.25 })
    for (const id of ['a', 'b', 'c', 'd']) expect((await s.take([money], id))[0]?.admitted).toBe(true)
    expect((await s.take([money], 'e'))[0]).toMatchObject({ admitted: false, used: 1 })
  })

  it('concurrency slots are held per request and returned', async () => {
    const s = store()
    const slot = counter({ kind: 'concurrency', max: 2, windowMs: 0, amount: 1 })
    expect((await s.take([slot], 'x'))[0]?.admitted).toBe(true)
    expect((await s.take([slot], 'y'))[0]?.admitted).toBe(true)
    const [full] = await s.take([slot], 'z')
    expect(full).toMatchObject({ admitted: false, used: 2 })
    await s.settle([{ kind: 'concurrency', slot: full?.slot as string, amount: 1, member: 'x' }], 200)
    expect((await s.take([slot], 'z'))[0]?.admitted).toBe(true)
  })

  it('a run of failures grows with 4xx/5xx, ends with a success, and ignores unanswered requests', async () => {
    const s = store()
    const run = counter({ kind: 'failures', max: 2, windowMs: 0, amount: 1 })
    const [r] = await s.take([run], 'a')
    const fail = (status: number | null) =>
      s.settle([{ kind: 'failures', slot: r?.slot as string, amount: 1, member: '' }], status)
    await fail(500)
    await fail(null)
    expect((await s.take([run], 'b'))[0]).toMatchObject({ admitted: true, used: 1 })
    await fail(404)
    expect((await s.take([run], 'c'))[0]).toMatchObject({ admitted: false, used: 2 })
    await fail(302)
    expect((await s.take([run], 'd'))[0]).toMatchObject({ admitted: true, used: 0 })
  })
})
