-- Trim the event stream: drop entries whose newest event is older than ARGV[1] (seconds),
-- and entries holding only events beyond the newest ARGV[2]. Records the newest cursor
-- removed, so a reader whose cursor is older learns about the gap (EventPage.reset).
-- Looks at ARGV[3] entries at most per call (the caller repeats while it returns 1), so
-- Redis is never blocked for long.
-- KEYS[1] the stream, KEYS[2] the counter, KEYS[3] the trimmed-through marker.
local older_than = tonumber(ARGV[1])
local keep_from = (tonumber(redis.call('GET', KEYS[2]) or '0')) - tonumber(ARGV[2]) + 1
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[3]))
local cut = nil
local threshold = nil
local through = nil
for _, entry in ipairs(entries) do
  local first = tonumber(string.match(entry[1], '^(%d+)-'))
  local fields = entry[2]
  local n, at = 0, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then n = tonumber(fields[i + 1]) end
    if fields[i] == 'at' then at = tonumber(fields[i + 1]) end
  end
  local last = first + n - 1
  if last < keep_from or (at ~= nil and at < older_than) then
    cut = entry[1]
    threshold = string.format('%d', first) .. '-1'
    through = last
  else
    break
  end
end
if cut == nil then
  return 0
end
-- Every id is "<first>-0": "<first>-1" is the smallest id above the last entry cut.
redis.call('XTRIM', KEYS[1], 'MINID', threshold)
redis.call('SET', KEYS[3], string.format('%d', through))
if #entries == tonumber(ARGV[3]) and cut == entries[#entries][1] then
  return 1
end
return 0
