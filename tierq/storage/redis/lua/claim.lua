-- KEYS: ready, delayed, lease, body, meta, owned(owner)
-- ARGV: now, limit, owner, promote cap, wake channel
-- Promotes due delayed tasks, then leases up to `limit` ready ones in member order
-- (priority desc, run_at asc, id asc). The lease token is the stored attempt + 1; the
-- stored attempt itself only moves when the attempt is settled (ack or rescue).
-- Returns flat pairs: body, meta ("<attempt>|<member>").
local promoted = promote(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[4]))
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
local ids = {}
for i = 1, #popped, 2 do ids[#ids + 1] = member_id(popped[i]) end
if promoted > #ids then redis.call('PUBLISH', ARGV[5], 'promote') end
if #ids == 0 then return {} end
local metas = hmget_all(KEYS[5], ids)
local bodies = hmget_all(KEYS[4], ids)
local owner = ARGV[3]
local leases, owned, out = {}, {}, {}
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
end
return out
