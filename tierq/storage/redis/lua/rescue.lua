-- KEYS: ready, lease, meta, delayed, then one owned set per dead owner (same order as ARGV),
--       then one acked hash per dead owner (same order)
-- ARGV: wake channel, then the dead owners
-- Every lease a dead owner still holds goes back to ready with stored attempt = token: the
-- attempt may have started, so the next run is token + 1 and the dead owner's late acks are
-- refused. So does every task it acked as terminal without confirming, while that ack stands
-- (ack_stands): its record write may never have landed, and running it again is how it is
-- not lost (the record tier refuses a second outcome of a task already terminal).
-- Returns flat triples: id, token, owner.
local n = #ARGV - 1
local out, ready, metas, settled = {}, {}, {}, {}

local function requeue(id, token, owner)
  local meta = redis.call('HGET', KEYS[3], id)
  if meta then
    local _, member = split_meta(meta)
    metas[#metas + 1] = id
    metas[#metas + 1] = token .. '|' .. member
    ready[#ready + 1] = 0
    ready[#ready + 1] = member
  end
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = owner
end

for o = 2, #ARGV do
  local owner = ARGV[o]
  local owned_key = KEYS[3 + o]
  local ids = redis.call('SMEMBERS', owned_key)
  if #ids > 0 then
    local leases = hmget_all(KEYS[2], ids)
    local prefix = owner .. '|'
    for k = 1, #ids do
      local lease, id = leases[k], ids[k]
      if lease and string.sub(lease, 1, #prefix) == prefix then
        local token = string.sub(lease, #prefix + 1)
        if string.find(token, '^%d+$') then
          settled[#settled + 1] = id
          requeue(id, token, owner)
        end
      end
    end
  end
  redis.call('DEL', owned_key)
  local acked_key = KEYS[3 + n + o]
  local acked = redis.call('HGETALL', acked_key)
  for k = 1, #acked, 2 do
    local id, token = acked[k], acked[k + 1]
    if ack_stands(KEYS[1], KEYS[4], KEYS[2], KEYS[3], id, token) then
      requeue(id, token, owner)
    end
  end
  redis.call('DEL', acked_key)
end
if #settled > 0 then chunked('HDEL', KEYS[2], settled, 1) end
if #metas > 0 then chunked('HSET', KEYS[3], metas, 2) end
if #ready > 0 then
  chunked('ZADD', KEYS[1], ready, 2)
  redis.call('PUBLISH', ARGV[1], 'rescue')
end
return out
