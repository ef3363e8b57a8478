-- KEYS: ready, delayed, lease, body, meta, acked(owner)
-- ARGV: ids
-- The record tier holds these terminal outcomes: forget the tasks. Only ids in the owner's
-- acked hash are touched, and body and meta go only while that ack still stands (see
-- ack_stands: a task rescued, retried or re-run since belongs to someone else now).
-- Unknown ids change nothing. Returns how many tasks were forgotten.
local tokens = hmget_all(KEYS[6], ARGV)
local mine, gone = {}, {}
for k = 1, #ARGV do
  local token = tokens[k]
  if token then
    local id = ARGV[k]
    mine[#mine + 1] = id
    if ack_stands(KEYS[1], KEYS[2], KEYS[3], KEYS[5], id, token) then
      gone[#gone + 1] = id
    end
  end
end
if #mine == 0 then return 0 end
chunked('HDEL', KEYS[6], mine, 1)
if #gone > 0 then
  chunked('HDEL', KEYS[4], gone, 1)
  chunked('HDEL', KEYS[5], gone, 1)
end
return #gone
