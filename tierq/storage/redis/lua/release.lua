-- KEYS: ready, lease, meta, owned(owner)
-- ARGV: owner, wake channel, ids
-- Hands owner's leases back to ready with the stored attempt unchanged (they never
-- started). Leases held by anyone else are left alone. Returns how many were released.
local prefix = ARGV[1] .. '|'
local n = #prefix
local released, ready = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local lease = redis.call('HGET', KEYS[2], id)
  -- The token after the owner's prefix must be all digits, so owner "a" never matches a
  -- lease of owner "a|1".
  if lease and string.sub(lease, 1, n) == prefix and string.find(lease, '^%d+$', n + 1) then
    local meta = redis.call('HGET', KEYS[3], id)
    if meta then
      local _, member = split_meta(meta)
      ready[#ready + 1] = 0
      ready[#ready + 1] = member
    end
    released[#released + 1] = id
  end
end
if #released == 0 then return 0 end
chunked('HDEL', KEYS[2], released, 1)
chunked('SREM', KEYS[4], released, 1)
if #ready > 0 then
  chunked('ZADD', KEYS[1], ready, 2)
  redis.call('PUBLISH', ARGV[2], 'release')
end
return #released
