-- KEYS: ready, delayed, lease, body, meta
-- ARGV: ids
-- Removes tasks that are ready or delayed. A leased task is being run by a replica and is
-- cancelled through its worker instead; a task acked as terminal and not yet confirmed
-- (in no zset) belongs to its acking replica until its outcome is recorded, so it stays for
-- confirm or rescue. Returns the ids removed.
local removed = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], id) == 0 then
    local meta = redis.call('HGET', KEYS[5], id)
    if meta then
      local _, member = split_meta(meta)
      if redis.call('ZREM', KEYS[1], member) + redis.call('ZREM', KEYS[2], member) > 0 then
        redis.call('HDEL', KEYS[4], id)
        redis.call('HDEL', KEYS[5], id)
        removed[#removed + 1] = id
      end
    end
  end
end
return removed
