-- ---- circuit breakers (breaker_*.lua; the machine is storage/breakers.py's) ----
-- One hash per breaker: state, trips, opened, next, forced, granted, pok, w (count window:
-- a string of '0'/'1', newest last) and, for a time window, c<second>/f<second> counters.
-- Policy (ARGV, in this order from `p`): ratio, min_calls, window, window_size, window_s,
-- cooldown_s, cooldown_max_s, probes.

local function breaker_policy(argv, p)
  return {
    ratio = tonumber(argv[p]), min_calls = tonumber(argv[p + 1]), window = argv[p + 2],
    size = tonumber(argv[p + 3]), window_s = tonumber(argv[p + 4]),
    cooldown = tonumber(argv[p + 5]), cooldown_max = tonumber(argv[p + 6]),
    probes = tonumber(argv[p + 7]),
  }
end

local function breaker_cooldown(policy, trips)
  local t = math.min(math.max(trips - 1, 0), 30)
  return math.min(policy.cooldown_max, policy.cooldown * (2 ^ t))
end

local function breaker_load(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  h.state = h.state or 'closed'
  return h
end

-- (calls, failures) in the window; drops time buckets that left it.
local function breaker_window(key, h, policy, now)
  if policy.window == 'count' then
    local w = h.w or ''
    local _, failures = string.gsub(w, '1', '')
    return #w, failures
  end
  local oldest = math.floor(now - policy.window_s)
  local calls, failures, stale = 0, 0, {}
  for field, value in pairs(h) do
    local kind, second = string.match(field, '^([cf])(%d+)$')
    if kind then
      if tonumber(second) <= oldest then
        stale[#stale + 1] = field
      elseif kind == 'c' then
        calls = calls + tonumber(value)
      else
        failures = failures + tonumber(value)
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return calls, failures
end

local function breaker_clear_window(key, h)
  local fields = {'w'}
  for field, _ in pairs(h) do
    if string.match(field, '^[cf]%d+$') then fields[#fields + 1] = field end
  end
  redis.call('HDEL', key, unpack(fields))
  h.w = nil
end

local function breaker_trip(key, h, policy, now)
  breaker_clear_window(key, h)
  h.state = 'open'
  h.trips = tostring((tonumber(h.trips) or 0) + 1)
  h.opened = tostring(now)
  h.next = tostring(now + breaker_cooldown(policy, tonumber(h.trips)))
  h.granted, h.pok = '0', '0'
  redis.call('HSET', key, 'state', h.state, 'trips', h.trips, 'opened', h.opened,
    'next', h.next, 'granted', '0', 'pok', '0')
end

local function breaker_reset(key, h)
  redis.call('DEL', key)
  for k, _ in pairs(h) do h[k] = nil end
  h.state = 'closed'
end

-- name, state, calls, failures, trips, opened, next, forced, granted, pok (as strings)
local function breaker_row(name, key, h, policy, now)
  local calls, failures = 0, 0
  if h.state == 'closed' then calls, failures = breaker_window(key, h, policy, now) end
  return {name, h.state, tostring(calls), tostring(failures), h.trips or '0', h.opened or '',
    h.next or '', h.forced or '0', h.granted or '0', h.pok or '0'}
end
