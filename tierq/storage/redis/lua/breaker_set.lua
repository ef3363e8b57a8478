-- KEYS: the set of breaker names, the breaker hash
-- ARGV: now, policy (8 values, see _lib.lua), name, 'closed' (reset) or 'open' (forced)
-- Returns the breaker's row (breaker_row) after it.
local now = tonumber(ARGV[1])
local policy = breaker_policy(ARGV, 2)
local name, key = ARGV[10], KEYS[2]
local h = breaker_load(key)
if ARGV[11] == 'closed' then
  breaker_reset(key, h)
  redis.call('SREM', KEYS[1], name)
else
  breaker_trip(key, h, policy, now)
  h.forced = '1'
  redis.call('HSET', key, 'forced', '1')
  redis.call('SADD', KEYS[1], name)
end
return breaker_row(name, key, h, policy, now)
