-- KEYS: replicas (zset owner -> expires_at), replica info hash
-- ARGV: now, owners
-- Forgets owners whose heartbeat is still expired at `now`; one that heartbeated again
-- since the caller looked keeps its entry. Returns how many were forgotten.
local now = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
