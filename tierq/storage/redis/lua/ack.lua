-- KEYS: ready, delayed, lease, body, meta, owned(owner), acked(owner), generation
-- ARGV: owner, wake channel, the generation the owner knows ('' = any), then per ack: id,
--   token, kind, run_at, run_at hex
-- A generation that is not the stored one (Redis lost its data since the owner last looked)
-- fails the call (TIERQ_GENERATION) without a change: refusing the acks would drop reports
-- of tasks the owner still holds; it reclaims their leases first (engine/repair.py), then
-- acks again. (The generation key lies outside the queue's hash tag: one Redis, not Cluster.)
--   kind 't' terminal: the lease ends but body and meta stay (stored attempt = token), and
--     the id goes to the owner's acked hash (id -> token) until confirm.lua: if the owner
--     dies before its record write lands, rescue.lua runs the task again, not losing it.
--   kind 's' scheduled: delayed until run_at, stored attempt = token.
--   kind 'q' queued: ready now, stored attempt = token (the attempt was started).
--   kind 'd' deferred: delayed until run_at, stored attempt = token - 1 (the attempt never
--     started: a circuit breaker held the task back, so no attempt is spent).
--   run_at hex '' keeps the member's run_at (and so its place in the ready order).
-- An ack is applied only when the lease is exactly "<owner>|<token>": a stale token (the
-- lease was rescued and re-claimed) or a foreign owner changes nothing. Returns refused ids.
local owner = ARGV[1]
if ARGV[3] ~= '' and redis.call('GET', KEYS[8]) ~= ARGV[3] then
  return redis.error_reply('TIERQ_GENERATION the dispatch tier lost its data')
end
local ids = {}
for i = 4, #ARGV, 5 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return {} end
local leases = hmget_all(KEYS[3], ids)
local refused, settled, acked, metas, ready, delayed = {}, {}, {}, {}, {}, {}
for k = 1, #ids do
  local i = 4 + (k - 1) * 5
  local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if leases[k] ~= owner .. '|' .. token then
    refused[#refused + 1] = id
  else
    settled[#settled + 1] = id
    local meta = redis.call('HGET', KEYS[5], id)
    local _, member = split_meta(meta)
    if ARGV[i + 4] ~= '' then
      member = string.sub(member, 1, 16) .. ARGV[i + 4] .. id
    end
    metas[#metas + 1] = id
    if kind == 'd' then
      metas[#metas + 1] = tostring(tonumber(token) - 1) .. '|' .. member
    else
      metas[#metas + 1] = token .. '|' .. member
    end
    if kind == 't' then
      acked[#acked + 1] = id
      acked[#acked + 1] = token
    elseif kind == 's' or kind == 'd' then
      delayed[#delayed + 1] = ARGV[i + 3]
      delayed[#delayed + 1] = member
    else
      ready[#ready + 1] = 0
      ready[#ready + 1] = member
    end
  end
end
if #settled > 0 then
  chunked('HDEL', KEYS[3], settled, 1)
  chunked('SREM', KEYS[6], settled, 1)
end
if #acked > 0 then chunked('HSET', KEYS[7], acked, 2) end
if #metas > 0 then chunked('HSET', KEYS[5], metas, 2) end
if #delayed > 0 then chunked('ZADD', KEYS[2], delayed, 2) end
if #ready > 0 then
  chunked('ZADD', KEYS[1], ready, 2)
  redis.call('PUBLISH', ARGV[2], 'ack')
end
return refused
