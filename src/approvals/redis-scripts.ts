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

/** KEYS: entry, pending, agentPending, idem. ARGV: id, doc, digest, expiresAt, required, maxPending, maxPerAgent, idemTtlMs, channel, useIdem, entryPrefix, agent */
export const CREATE = `
if ARGV[10] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing and redis.call('EXISTS', ARGV[11] .. existing) == 1 then return {'exists', existing} end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {'full'} end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then return {'agent_full'} end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'state', 'pending', 'digest', ARGV[3], 'agent', ARGV[12], 'expires_at', ARGV[4], 'required', ARGV[5], 'approvals', '[]')
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[10] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[8]) end
redis.call('PUBLISH', ARGV[9], ARGV[1])
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

/** KEYS: entry, approved, executing. ARGV: id, token, deadline, channel, retrySafe(1|0) */
export const CLAIM = `
if redis.call('HGET', KEYS[1], 'state') ~= 'approved' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'executing', 'claim_token', ARGV[2], 'deadline', ARGV[3], 'retry_safe', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
`

/** KEYS: entry, executing. ARGV: id, token, resultJson, keepMs, channel */
export const COMPLETE = `
local st = redis.call('HGET', KEYS[1], 'state')
if (st ~= 'executing' and st ~= 'unknown') or redis.call('HGET', KEYS[1], 'claim_token') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'executed', 'result', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
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
