-- KEYS: replicas (zset owner -> expires_at), replica info hash, dead (zset owner -> declared at)
-- ARGV: now, forget dead markers declared before this time
-- Declares every owner whose heartbeat expired at `now` dead, atomically: an owner that
-- heartbeats afterwards learns it (heartbeat.lua). Returns every owner currently marked
-- dead, not only the new ones, so leases missed by an interrupted rescue, or taken by a
-- dead owner before it heartbeated again, are swept on the next rescue.
local now = ARGV[1]
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired do
  redis.call('ZREM', KEYS[1], expired[i])
  redis.call('HDEL', KEYS[2], expired[i])
  redis.call('ZADD', KEYS[3], now, expired[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
return redis.call('ZRANGE', KEYS[3], 0, -1)
