-- KEYS: the set of breaker names, the breaker hash
-- ARGV: now, policy (8 values, see _lib.lua), name
-- May a task run now as a probe? Returns {granted (0/1), row...} (breaker_row).
local now = tonumber(ARGV[1])
local policy = breaker_policy(ARGV, 2)
local name = ARGV[10]
local key = KEYS[2]
local h = breaker_load(key)
local granted = 0
local due = now >= (tonumber(h.next) or 0)
if h.state == 'closed' then
  granted = 1
elseif h.forced == '1' then
  granted = 0
elseif due and (h.state == 'open' or h.state == 'half_open') then
  h.state, h.granted, h.pok = 'half_open', '1', '0'
  h.next = tostring(now + breaker_cooldown(policy, tonumber(h.trips) or 1))
  redis.call('HSET', key, 'state', h.state, 'granted', '1', 'pok', '0', 'next', h.next)
  granted = 1
elseif h.state == 'half_open' and (tonumber(h.granted) or 0) < policy.probes then
  h.granted = tostring((tonumber(h.granted) or 0) + 1)
  redis.call('HSET', key, 'granted', h.granted)
  granted = 1
end
local out = {tostring(granted)}
local row = breaker_row(name, key, h, policy, now)
for j = 1, #row do out[#out + 1] = row[j] end
return out
