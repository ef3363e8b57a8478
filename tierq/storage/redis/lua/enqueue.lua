-- KEYS: ready, delayed, lease, body, meta, owned(lease_owner or unused), control
-- ARGV: now, lease_owner ('' = none), wake channel, take back ('1' or '0'),
--       then per task: id, member, run_at, attempt, body
-- A live task already here (leased, ready or delayed) is skipped: re-enqueueing from the
-- record tier must never duplicate or reset it. A task acked as terminal but not yet
-- confirmed is taken back when asked (an explicit retry that raced the confirm): it becomes
-- live again with its stored attempt never lowered, and confirm.lua then leaves it alone. A
-- rebuild never asks: its record-tier read may predate that terminal ack.
-- A queue with controls (paused, max_running, a rate: see claim.lua) leases nothing here: its
-- tasks go to ready or delayed for a claim, which counts them against the limits.
-- Returns the ids added without the lease asked for (a controlled queue).
local now = tonumber(ARGV[1])
local owner = ARGV[2]
local controlled = false
if owner ~= '' and redis.call('EXISTS', KEYS[7]) == 1 then
  local ctl = redis.call('HMGET', KEYS[7], 'paused', 'max_running', 'interval')
  controlled = (ctl[1] or ctl[2] or ctl[3]) and true or false
  if controlled then owner = '' end
end
local metas, ready, delayed, leases, owned, refused = {}, {}, {}, {}, {}, {}
-- Ids added by this call: their meta is written at the end, so in_place cannot see them yet.
local seen = {}
local take_back = ARGV[4] == '1'
for i = 5, #ARGV, 5 do
  local id = ARGV[i]
  local attempt = ARGV[i + 3]
  local fresh = redis.call('HSETNX', KEYS[4], id, ARGV[i + 4]) == 1
  if not fresh and take_back and not seen[id]
    and not in_place(KEYS[1], KEYS[2], KEYS[3], KEYS[5], id) then
    local meta = redis.call('HGET', KEYS[5], id)
    if meta then
      local stored = split_meta(meta)
      if tonumber(stored) > tonumber(attempt) then attempt = stored end
    end
    redis.call('HSET', KEYS[4], id, ARGV[i + 4])
    fresh = true
  end
  if fresh then
    seen[id] = true
    if controlled then refused[#refused + 1] = id end
    local member = ARGV[i + 1]
    metas[#metas + 1] = id
    metas[#metas + 1] = attempt .. '|' .. member
    if owner ~= '' then
      leases[#leases + 1] = id
      leases[#leases + 1] = owner .. '|' .. tostring(tonumber(attempt) + 1)
      owned[#owned + 1] = id
    elseif tonumber(ARGV[i + 2]) <= now then
      ready[#ready + 1] = 0
      ready[#ready + 1] = member
    else
      delayed[#delayed + 1] = ARGV[i + 2]
      delayed[#delayed + 1] = member
    end
  end
end
if #metas > 0 then chunked('HSET', KEYS[5], metas, 2) end
if #ready > 0 then
  chunked('ZADD', KEYS[1], ready, 2)
  redis.call('PUBLISH', ARGV[3], 'enqueue')
end
if #delayed > 0 then chunked('ZADD', KEYS[2], delayed, 2) end
if #leases > 0 then
  chunked('HSET', KEYS[3], leases, 2)
  chunked('SADD', KEYS[6], owned, 1)
end
return refused
