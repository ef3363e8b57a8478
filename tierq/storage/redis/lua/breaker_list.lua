-- KEYS: the set of breaker names
-- ARGV: now, policy (8 values, see _lib.lua), the hash key prefix
-- Every known breaker's row (breaker_row); names whose hash is gone (reset, closed and idle)
-- leave the set.
local now = tonumber(ARGV[1])
local policy = breaker_policy(ARGV, 2)
local names = redis.call('SMEMBERS', KEYS[1])
local out, gone = {}, {}
for _, name in ipairs(names) do
  local key = ARGV[10] .. name
  if redis.call('EXISTS', key) == 0 then
    gone[#gone + 1] = name
  else
    local h = breaker_load(key)
    local row = breaker_row(name, key, h, policy, now)
    for j = 1, #row do out[#out + 1] = row[j] end
  end
end
if #gone > 0 then redis.call('SREM', KEYS[1], unpack(gone)) end
return out
