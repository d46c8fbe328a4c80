/**
 * The Redis store's state transitions, one Lua script each, so that every check and write of a
 * transition happens atomically on the Redis server: two replicas claiming the same approval,
 * or an approval racing its expiry, cannot both succeed. Each mirrors a method of
 * MemoryApprovalStore. Approvals are appended to a JSON array by string splicing because
 * cjson encodes an empty table as {} rather than [].
 *
 * Entry hash fields: doc (the HeldRequest JSON), state, digest, agent, expires_at, required,
 * approvals, rejection, cancel_reason, claim_token, deadline, result.
 */

/**
 * A command the caller gave up on (it timed out while Redis stalled) must not act when Redis
 * resumes: it returns 'late' once the server's clock has passed the caller's deadline, given in
 * the server's time (the store measures the offset between the clocks).
 */
const LATE = `
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then return {'late'} end
`

/** States a repeat of the same request joins (JOINABLE_STATES). */
const JOINABLE = `local function joinable(st) return st == 'pending' or st == 'approved' or st == 'executing' or st == 'executed' or st == 'unknown' end
`

/** KEYS: entry, pending, agentPending, idem, same. ARGV: notAfter, id, doc, digest, expiresAt, required, maxPending, maxPerAgent, idemTtlMs, channel, useIdem, entryPrefix, agent, sameTtlMs */
export const CREATE =
  LATE +
  JOINABLE +
  `
if ARGV[11] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing and redis.call('EXISTS', ARGV[12] .. existing) == 1 then return {'exists', existing} end
end
local same = redis.call('GET', KEYS[5])
if same and joinable(redis.call('HGET', ARGV[12] .. same, 'state')) then return {'exists', same} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then return {'full'} end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return {'agent_full'} end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'state', 'pending', 'digest', ARGV[4], 'agent', ARGV[13], 'expires_at', ARGV[5], 'required', ARGV[6], 'approvals', '[]')
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
if ARGV[11] == '1' then redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[9]) end
redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[14])
redis.call('PUBLISH', ARGV[10], ARGV[2])
return {'created'}
`

/** KEYS: entry, pending, agentPending, approved. ARGV: id, approve(1|0), decisionJson, approverId, digest|'', now, keepMs, channel */
export const DECIDE = `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'not_found'} end
if st ~= 'pending' then return {'not_pending', st} end
local function leave_pending(state)
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if tonumber(ARGV[6]) >= tonumber(redis.call('HGET', KEYS[1], 'expires_at')) then
  leave_pending('expired')
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PUBLISH', ARGV[8], ARGV[1])
  return {'expired'}
end
if ARGV[5] ~= '' and ARGV[5] ~= redis.call('HGET', KEYS[1], 'digest') then return {'digest_mismatch'} end
local raw = redis.call('HGET', KEYS[1], 'approvals')
local given = cjson.decode(raw)
for _, d in ipairs(given) do
  if d.approver == ARGV[4] then return {'already_decided'} end
end
if ARGV[2] == '0' then
  leave_pending('rejected')
  redis.call('HSET', KEYS[1], 'rejection', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PUBLISH', ARGV[8], ARGV[1])
  return {'rejected'}
end
local spliced
if raw == '[]' then spliced = '[' .. ARGV[3] .. ']' else spliced = string.sub(raw, 1, -2) .. ',' .. ARGV[3] .. ']' end
redis.call('HSET', KEYS[1], 'approvals', spliced)
if #given + 1 >= tonumber(redis.call('HGET', KEYS[1], 'required')) then
  leave_pending('approved')
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
  redis.call('PUBLISH', ARGV[8], ARGV[1])
  return {'approved'}
end
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {'recorded'}
`

/** KEYS: entry, approved, executing. ARGV: notAfter, id, token, deadline, channel, retrySafe(1|0) */
export const CLAIM =
  LATE +
  `
if redis.call('HGET', KEYS[1], 'state') ~= 'approved' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'executing', 'claim_token', ARGV[3], 'deadline', ARGV[4], 'retry_safe', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
`

/** KEYS: entry, approved, executing. ARGV: id, token, now, channel */
export const UNCLAIM = `
local st = redis.call('HGET', KEYS[1], 'state')
if (st ~= 'executing' and st ~= 'unknown') or redis.call('HGET', KEYS[1], 'claim_token') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'approved')
redis.call('HDEL', KEYS[1], 'claim_token', 'deadline', 'retry_safe')
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
`

/**
 * KEYS: entry, executing. ARGV: id, token, resultJson, keepMs, channel, samePrefix, retryWindowMs
 * (the same-request key, prefix .. agent .. ':' .. digest, now points repeats at this result).
 */
export const COMPLETE = `
local st = redis.call('HGET', KEYS[1], 'state')
if (st ~= 'executing' and st ~= 'unknown') or redis.call('HGET', KEYS[1], 'claim_token') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'executed', 'result', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local same = ARGV[6] .. redis.call('HGET', KEYS[1], 'agent') .. ':' .. redis.call('HGET', KEYS[1], 'digest')
if tonumber(ARGV[7]) > 0 then redis.call('SET', same, ARGV[1], 'PX', ARGV[7]) else redis.call('DEL', same) end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
`

/** KEYS: entry, pending, agentPending, approved. ARGV: id, reason, keepMs, channel */
export const CANCEL = `
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'pending' and st ~= 'approved' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancel_reason', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
`

/** KEYS: pending. ARGV: now, limit, entryPrefix, agentPendingPrefix, keepMs, channel */
export const EXPIRE_DUE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', key, 'state') == 'pending' then
    redis.call('HSET', key, 'state', 'expired')
    redis.call('ZREM', ARGV[4] .. redis.call('HGET', key, 'agent'), id)
    redis.call('PEXPIRE', key, ARGV[5])
    redis.call('PUBLISH', ARGV[6], id)
    table.insert(out, id)
  end
end
return out
`

/** KEYS: executing, approved. ARGV: now, limit, entryPrefix, keepMs, channel. Returns id, outcome pairs. */
export const ABANDON_STALE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', key, 'state') == 'executing' then
    if redis.call('HGET', key, 'retry_safe') == '1' then
      redis.call('HSET', key, 'state', 'approved')
      redis.call('ZADD', KEYS[2], ARGV[1], id)
      table.insert(out, id)
      table.insert(out, 'retry')
    else
      redis.call('HSET', key, 'state', 'unknown')
      redis.call('PEXPIRE', key, ARGV[4])
      table.insert(out, id)
      table.insert(out, 'unknown')
    end
    redis.call('PUBLISH', ARGV[5], id)
  end
end
return out
`
