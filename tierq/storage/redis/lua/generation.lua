-- KEYS: generation
-- ARGV: a fresh id
-- Returns {id, created}: the stored generation, or the fresh one when the key is missing
-- (first start, or Redis lost its data), in which case created = 1.
local current = redis.call('GET', KEYS[1])
if current then return { current, 0 } end
redis.call('SET', KEYS[1], ARGV[1])
return { ARGV[1], 1 }
