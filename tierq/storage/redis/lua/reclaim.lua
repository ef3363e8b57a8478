-- KEYS: ready, delayed, lease, body, meta, owned(owner)
-- ARGV: owner, then per task: id, member, stored attempt, token, body
-- After Redis lost its data: lease to `owner` the tasks it still holds (queued, running, or
-- finished with a report not yet acked), each for the token its next report carries; a task
-- a rebuild already put in ready or delayed is taken out of there. A task leased to anyone
-- else (claimed from the rebuilt tier meanwhile) is left alone. Returns those ids.
local owner = ARGV[1]
local taken, leases, owned, metas, bodies = {}, {}, {}, {}, {}
for i = 2, #ARGV, 5 do
  local id, token = ARGV[i], ARGV[i + 3]
  local lease = redis.call('HGET', KEYS[3], id)
  if lease and lease ~= owner .. '|' .. token then
    taken[#taken + 1] = id
  elseif not lease then
    local meta = redis.call('HGET', KEYS[5], id)
    if meta then
      local _, old = split_meta(meta)
      redis.call('ZREM', KEYS[1], old)
      redis.call('ZREM', KEYS[2], old)
    end
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = ARGV[i + 4]
    metas[#metas + 1] = id
    metas[#metas + 1] = ARGV[i + 2] .. '|' .. ARGV[i + 1]
    leases[#leases + 1] = id
    leases[#leases + 1] = owner .. '|' .. token
    owned[#owned + 1] = id
  end
end
if #owned > 0 then
  chunked('HSET', KEYS[4], bodies, 2)
  chunked('HSET', KEYS[5], metas, 2)
  chunked('HSET', KEYS[3], leases, 2)
  chunked('SADD', KEYS[6], owned, 1)
end
return taken
