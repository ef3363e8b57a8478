-- KEYS: ready, delayed, lease, body, meta, owned(owner), control
-- ARGV: now, limit, owner, promote cap, wake channel, rate look-ahead (seconds)
-- Promotes due delayed tasks, then leases up to `limit` ready ones in member order
-- (priority desc, run_at asc, id asc). The lease token is the stored attempt + 1; the
-- stored attempt itself only moves when the attempt is settled (ack or rescue).
-- The queue's control hash (engine/flow/controls.py writes it) is obeyed here, for every
-- replica at once: `paused` = '1' leases nothing; `max_running` caps the queue's leases
-- (leased = claimed or running, anywhere: the lease hash's size); `interval` (seconds per
-- start) with `tat` (the next free start time, GCRA) hands out start slots up to the
-- look-ahead: task k of this claim may start at `first + k * interval`.
-- Returns: first slot ('' = no rate), interval, how many ready tasks the controls kept
-- from this claim (the limiter's waits), then flat pairs: body, meta.
local wanted = tonumber(ARGV[2])
local limit = wanted
local now = tonumber(ARGV[1])
local ctl = redis.call('HMGET', KEYS[7], 'paused', 'max_running', 'interval', 'tat')
local function kept_back(allowed)
  local ready = redis.call('ZCARD', KEYS[1])
  return tostring(math.max(0, math.min(wanted, ready) - math.max(allowed, 0)))
end
if ctl[1] == '1' then return {'', '', kept_back(0)} end
if ctl[2] then
  limit = math.min(limit, tonumber(ctl[2]) - redis.call('HLEN', KEYS[3]))
end
local interval = tonumber(ctl[3])
local first = nil
if interval then
  first = math.max(tonumber(ctl[4]) or 0, now)
  local horizon = now + tonumber(ARGV[6])
  if first > horizon then
    limit = 0
  else
    limit = math.min(limit, math.floor((horizon - first) / interval) + 1)
  end
end
local waits = (ctl[2] or interval) and kept_back(limit) or '0'
if limit <= 0 then return {'', '', waits} end
local promoted = promote(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[4]))
local popped = redis.call('ZPOPMIN', KEYS[1], limit)
local ids = {}
for i = 1, #popped, 2 do ids[#ids + 1] = member_id(popped[i]) end
if promoted > #ids then redis.call('PUBLISH', ARGV[5], 'promote') end
if #ids == 0 then return {'', '', waits} end
local metas = hmget_all(KEYS[5], ids)
local bodies = hmget_all(KEYS[4], ids)
local owner = ARGV[3]
local leases, owned, out = {}, {}, {'', '', waits}
for k = 1, #ids do
  local meta, body = metas[k], bodies[k]
  -- A member without body/meta would be an inconsistency; dropping it heals the set.
  if meta and body then
    local attempt = split_meta(meta)
    leases[#leases + 1] = ids[k]
    leases[#leases + 1] = owner .. '|' .. tostring(tonumber(attempt) + 1)
    owned[#owned + 1] = ids[k]
    out[#out + 1] = body
    out[#out + 1] = meta
  end
end
if #owned > 0 then
  chunked('HSET', KEYS[3], leases, 2)
  chunked('SADD', KEYS[6], owned, 1)
  if first then
    redis.call('HSET', KEYS[7], 'tat', tostring(first + #owned * interval))
    out[1], out[2] = tostring(first), tostring(interval)
  end
end
return out
