/**
 * Counters in Redis, exact across replicas: each request's counters are checked and taken by one
 * Lua script, on Redis's own clock (TIME), so that no replica's clock can widen a window and no
 * two replicas can both take the last unit. A command that times out may still run when Redis
 * resumes: then a budget stays reserved until its window ends (over-counted, never under) and a
 * concurrency slot until its TTL; the request itself was refused (fail closed).
 */
import type { Logger } from '../shared/logger.ts'
import {
  CountersUnavailable,
  FAILURE_RUN_TTL_MS,
  SLOT_TTL_MS,
  type Counter,
  type CounterResult,
  type CounterStore,
  type Settlement,
} from './counters.ts'
import type { RedisState } from './redis-state.ts'

/**
 * ARGV[1]: the key prefix; ARGV[2]: the request id; ARGV[3]: JSON list of counters
 * [kind, key, max, windowMs, offsetMs, amount, shadow]. Returns JSON [[admitted, used, resetMs, slot], …].
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, member = ARGV[1], ARGV[2]
local counters = cjson.decode(ARGV[3])
local results, refused = {}, false
for i, c in ipairs(counters) do
  local kind, key, max, w, o, amount = c[1], prefix .. c[2], c[3], c[4], c[5], c[6]
  local used, reset, admitted
  if kind == 'concurrency' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used, reset = redis.call('ZCARD', key), 0
    admitted = used + 1 <= max
  elseif kind == 'failures' then
    used, reset = tonumber(redis.call('GET', key) or '0'), 0
    admitted = used < max
  else
    local start = math.floor((now + o) / w) * w - o
    key = key .. '|' .. start
    used, reset = tonumber(redis.call('GET', key) or '0'), start + w - now
    admitted = used + amount <= max
  end
  results[i] = { admitted, used, reset, key }
  if not admitted and not c[7] then refused = true end
end
if not refused then
  for i, c in ipairs(counters) do
    local r, kind = results[i], c[1]
    if kind == 'concurrency' then
      redis.call('ZADD', r[4], now + ${SLOT_TTL_MS}, member)
      redis.call('PEXPIRE', r[4], ${SLOT_TTL_MS})
      r[2] = r[2] + 1
    elseif kind ~= 'failures' then
      r[2] = tonumber(redis.call('INCRBYFLOAT', r[4], c[6]))
      redis.call('PEXPIRE', r[4], r[3] + 60000)
    end
  end
end
return cjson.encode(results)
`

/** ARGV[1]: the upstream status (0: none); ARGV[2]: JSON list of [kind, slot, amount, member]. */
const SETTLE = `
local status = tonumber(ARGV[1])
for _, s in ipairs(cjson.decode(ARGV[2])) do
  local kind, slot = s[1], s[2]
  if kind == 'concurrency' then
    redis.call('ZREM', slot, s[4])
  elseif kind == 'budget' and not (status >= 200 and status < 300) then
    if redis.call('EXISTS', slot) == 1 then redis.call('INCRBYFLOAT', slot, -s[3]) end
  elseif kind == 'failures' and status > 0 then
    if status < 400 then redis.call('DEL', slot)
    else redis.call('INCR', slot); redis.call('PEXPIRE', slot, ${FAILURE_RUN_TTL_MS}) end
  end
end
return 1
`

type Scripted = RedisState['redis'] & {
  corridorTake(prefix: string, member: string, counters: string): Promise<string>
  corridorSettle(status: number, settlements: string): Promise<number>
}

export class RedisCounterStore implements CounterStore {
  readonly #redis: Scripted
  readonly #prefix: string
  readonly #log: Logger

  constructor(state: RedisState, log: Logger) {
    state.redis.defineCommand('corridorTake', { numberOfKeys: 0, lua: TAKE })
    state.redis.defineCommand('corridorSettle', { numberOfKeys: 0, lua: SETTLE })
    this.#redis = state.redis as Scripted
    this.#prefix = `${state.prefix}limit:`
    this.#log = log
  }

  async take(counters: readonly Counter[], requestId: string): Promise<CounterResult[]> {
    const encoded = JSON.stringify(
      counters.map((c) => [c.kind, c.key, c.max, c.windowMs, c.offsetMs, c.amount, c.shadow]),
    )
    let reply: string
    try {
      reply = await this.#redis.corridorTake(this.#prefix, requestId, encoded)
    } catch (err) {
      throw new CountersUnavailable('the limit counters (Redis) did not answer', { cause: err })
    }
    return (JSON.parse(reply) as [boolean, number, number, string][]).map(([admitted, used, resetMs, slot]) => ({
      admitted,
      used,
      resetMs,
      slot,
    }))
  }

  async settle(settlements: readonly Settlement[], upstreamStatus: number | null): Promise<void> {
    if (settlements.length === 0) return
    const encoded = JSON.stringify(settlements.map((s) => [s.kind, s.slot, s.amount, s.member]))
    try {
      await this.#redis.corridorSettle(upstreamStatus ?? 0, encoded)
    } catch (err) {
      // Fails safe: a budget stays reserved until its window ends, a slot until its TTL.
      this.#log.warn(
        { err },
        'limit counters not settled (Redis); reserved budget and slots are kept until they expire',
      )
    }
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}
