-- KEYS: the set of breaker names, then one breaker hash per report
-- ARGV: now, policy (8 values, see _lib.lua), then per report: name, calls, failures,
--   probe successes, probe failures
-- Applies one batch of outcomes; returns each breaker's row (breaker_row) after it.
local now = tonumber(ARGV[1])
local policy = breaker_policy(ARGV, 2)
local out = {}
for k = 2, #KEYS do
  local key = KEYS[k]
  local i = 10 + (k - 2) * 5
  local name = ARGV[i]
  local calls, failures = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local pok, pfail = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local h = breaker_load(key)
  if h.state == 'closed' and calls > 0 then
    redis.call('SADD', KEYS[1], name)
    if policy.window == 'count' then
      local w = (h.w or '') .. string.rep('1', failures) .. string.rep('0', calls - failures)
      if #w > policy.size then w = string.sub(w, #w - policy.size + 1) end
      h.w = w
      redis.call('HSET', key, 'w', w)
    else
      local second = tostring(math.floor(now))
      h['c' .. second] = tostring(redis.call('HINCRBY', key, 'c' .. second, calls))
      h['f' .. second] = tostring(redis.call('HINCRBY', key, 'f' .. second, failures))
    end
    local n, f = breaker_window(key, h, policy, now)
    if n >= policy.min_calls and f >= policy.ratio * n then breaker_trip(key, h, policy, now) end
  elseif h.state == 'half_open' then
    if pfail > 0 then
      breaker_trip(key, h, policy, now)
    else
      h.pok = tostring((tonumber(h.pok) or 0) + pok)
      if tonumber(h.pok) >= policy.probes then
        breaker_reset(key, h)
      else
        redis.call('HSET', key, 'pok', h.pok)
      end
    end
  end
  local row = breaker_row(name, key, h, policy, now)
  for j = 1, #row do out[#out + 1] = row[j] end
end
return out
