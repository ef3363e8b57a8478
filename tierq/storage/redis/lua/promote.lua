-- KEYS: ready, delayed
-- ARGV: now, promote cap, wake channel, peek count
-- Moves due delayed tasks to ready, then returns {promoted, first `peek` ready members}
-- so a claim over several queues can merge their heads in run order before leasing.
local promoted = promote(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
if promoted > 0 then redis.call('PUBLISH', ARGV[3], 'promote') end
local out = { promoted }
local peek = tonumber(ARGV[4])
if peek > 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, peek - 1)
  for i = 1, #head do out[#out + 1] = head[i] end
end
return out
