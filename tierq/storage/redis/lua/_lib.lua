-- Shared helpers, prepended to every script at load time (Redis scripts cannot import).
-- Keys and members: see tierq/storage/redis/keys.py. A ready/delayed member is
-- 16 hex (priority, inverted) .. 16 hex (run_at bits) .. task id, so the id starts at 33.
-- A meta value is "<attempt>|<member>"; a lease value is "<owner>|<token>".

-- Lua's unpack() is bounded by the C stack (8000 slots in Redis): send long argument
-- lists in slices. `list` is flat; `step` keeps field/value or score/member pairs together.
local function chunked(cmd, key, list, step)
  local n = #list
  local size = 4000 - (4000 % step)
  local out = 0
  for i = 1, n, size do
    local j = math.min(i + size - 1, n)
    local r = redis.call(cmd, key, unpack(list, i, j))
    if type(r) == 'number' then out = out + r end
  end
  return out
end

-- HMGET over a long id list, returning one flat array aligned with `ids`.
local function hmget_all(key, ids)
  local out = {}
  local n = #ids
  for i = 1, n, 4000 do
    local j = math.min(i + 3999, n)
    local r = redis.call('HMGET', key, unpack(ids, i, j))
    for k = 1, #r do out[#out + 1] = r[k] end
  end
  return out
end

local function member_id(member)
  return string.sub(member, 33)
end

-- Splits "<attempt>|<member>" at the first "|" (attempts are digits only).
local function split_meta(meta)
  local bar = string.find(meta, '|', 1, true)
  return string.sub(meta, 1, bar - 1), string.sub(meta, bar + 1)
end

-- Moves up to `cap` due members from delayed to ready; returns how many moved.
local function promote(ready, delayed, now, cap)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, cap)
  if #due == 0 then return 0 end
  local pairs_ = {}
  for i = 1, #due do
    pairs_[#pairs_ + 1] = 0
    pairs_[#pairs_ + 1] = due[i]
  end
  chunked('ZADD', ready, pairs_, 2)
  chunked('ZREM', delayed, due, 1)
  return #due
end

-- Whether task `id` is leased, ready or delayed. A task whose body exists but that is in
-- none of them was acked as terminal and waits for confirm (or rescue) in an acked hash.
local function in_place(ready, delayed, lease, meta_key, id)
  if redis.call('HEXISTS', lease, id) == 1 then return true end
  local meta = redis.call('HGET', meta_key, id)
  if not meta then return false end
  local _, member = split_meta(meta)
  return redis.call('ZSCORE', ready, member) ~= false
    or redis.call('ZSCORE', delayed, member) ~= false
end

-- Whether `owner`'s terminal ack of `id` with `token` (an entry of its acked hash) still
-- stands: the task is in no other place and its stored attempt is that token. Otherwise it
-- was cancelled, enqueued again (an explicit retry), or re-run and acked by another owner
-- since (tokens only grow), and the entry is only to be dropped.
local function ack_stands(ready, delayed, lease, meta_key, id, token)
  local meta = redis.call('HGET', meta_key, id)
  if not meta or split_meta(meta) ~= token then return false end
  return not in_place(ready, delayed, lease, meta_key, id)
end

