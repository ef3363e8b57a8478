-- Append one batch of events as one stream entry. The entry's id is "<first>-0", where
-- <first> is the sequence number (cursor) of the batch's first event; event i of the
-- entry has cursor <first> + i. Numbers come from one counter, so they grow by one per
-- event across every replica.
-- KEYS[1] the stream, KEYS[2] the counter. ARGV[1] events in the batch, ARGV[2] their JSON
-- array, ARGV[3] the time of its newest event (seconds; trimming by age reads it).
local n = tonumber(ARGV[1])
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
redis.call('XADD', KEYS[1], string.format('%d', first) .. '-0', 'n', ARGV[1], 'at', ARGV[3], 'events', ARGV[2])
return first
