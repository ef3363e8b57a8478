-- KEYS: ready, lease, meta, then one owned set per dead owner (same order as ARGV)
-- ARGV: wake channel, then the dead owners
-- Every lease a dead owner still holds goes back to ready with stored attempt = token: the
-- attempt may have started, so the next run is token + 1 and the dead owner's late acks are
-- refused. Returns flat triples: id, token, owner.
local out, ready, metas, settled = {}, {}, {}, {}
for o = 2, #ARGV do
  local owner = ARGV[o]
  local owned_key = KEYS[2 + o]
  local ids = redis.call('SMEMBERS', owned_key)
  if #ids > 0 then
    local leases = hmget_all(KEYS[2], ids)
    local prefix = owner .. '|'
    for k = 1, #ids do
      local lease, id = leases[k], ids[k]
      if lease and string.sub(lease, 1, #prefix) == prefix then
        local token = string.sub(lease, #prefix + 1)
        if string.find(token, '^%d+$') then
          local meta = redis.call('HGET', KEYS[3], id)
          if meta then
            local _, member = split_meta(meta)
            metas[#metas + 1] = id
            metas[#metas + 1] = token .. '|' .. member
            ready[#ready + 1] = 0
            ready[#ready + 1] = member
          end
          settled[#settled + 1] = id
          out[#out + 1] = id
          out[#out + 1] = token
          out[#out + 1] = owner
        end
      end
    end
  end
  redis.call('DEL', owned_key)
end
if #settled > 0 then chunked('HDEL', KEYS[2], settled, 1) end
if #metas > 0 then chunked('HSET', KEYS[3], metas, 2) end
if #ready > 0 then
  chunked('ZADD', KEYS[1], ready, 2)
  redis.call('PUBLISH', ARGV[1], 'rescue')
end
return out
