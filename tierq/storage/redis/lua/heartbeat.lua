-- KEYS: replicas (zset owner -> expires_at), replica info hash, dead (zset owner -> declared at),
--       the owner's TTL key
-- ARGV: owner, expires_at, info JSON, ttl in ms
-- Renews the owner and returns 1 when it had been declared dead since its last heartbeat
-- (the caller then takes back whatever it leased meanwhile and reports False).
local was_dead = redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
return was_dead
