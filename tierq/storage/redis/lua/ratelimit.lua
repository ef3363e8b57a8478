-- GCRA for a batch of calls, each over several buckets, for every replica
-- (tierq/storage/ratelimit.py says how). One script call decides every call that arrived
-- while the previous one was in flight, in arrival order.
-- KEYS: the buckets' keys (each its theoretical arrival time, seconds, as a string), each once.
-- ARGV: the number of calls, then per call: cost, number of buckets, and per bucket: its key's
-- index in KEYS (from 1), per_second, burst.
-- The server's clock, so replicas' clocks cannot disagree. A call charges its buckets only
-- when all of them allow it; a later call in the batch sees what earlier ones charged.
-- Returns per call six integers: allowed (0/1), remaining, reset_ms, retry_after_ms, burst and
-- the index (from 0, among the call's buckets) of its tightest bucket: a refusing one first,
-- then the one with the fewest left, the first of equals.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tats = {}
local expiry = {}
local out = {}
local a = 2
for _ = 1, tonumber(ARGV[1]) do
    local cost = tonumber(ARGV[a])
    local count = tonumber(ARGV[a + 1])
    a = a + 2
    local all_ok = true
    local answers = {}
    for b = 1, count do
        local k = tonumber(ARGV[a])
        local rate = tonumber(ARGV[a + 1])
        local burst = tonumber(ARGV[a + 2])
        a = a + 3
        if tats[k] == nil then
            tats[k] = tonumber(redis.call('GET', KEYS[k]) or '0') or 0
        end
        local interval = 1 / rate
        local tolerance = burst * interval
        local tat = tats[k]
        if tat < now then tat = now end
        local new_tat = tat + cost * interval
        local allowance = math.max(tolerance, cost * interval)
        local x = {k = k, burst = burst}
        if new_tat - now <= allowance then
            x.ok = 1
            x.tat = new_tat
            x.remaining = math.max(0, math.floor((tolerance - (new_tat - now)) / interval + 1e-9))
            x.reset = new_tat - now
            x.retry = 0
        else
            all_ok = false
            x.ok = 0
            x.remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval + 1e-9))
            x.reset = tat - now
            x.retry = new_tat - now - allowance
        end
        answers[b] = x
    end
    local tight = nil
    local tight_index = 0
    local retry = 0
    for i, x in ipairs(answers) do
        if all_ok then
            tats[x.k] = x.tat
            if (expiry[x.k] or 0) < x.reset then expiry[x.k] = x.reset end
        end
        if x.retry > retry then retry = x.retry end
        if tight == nil or x.ok < tight.ok or (x.ok == tight.ok and x.remaining < tight.remaining) then
            tight = x
            tight_index = i - 1
        end
    end
    out[#out + 1] = all_ok and 1 or 0
    out[#out + 1] = tight.remaining
    out[#out + 1] = math.ceil(tight.reset * 1000)
    out[#out + 1] = math.ceil(retry * 1000)
    out[#out + 1] = tight.burst
    out[#out + 1] = tight_index
end
for k, reset in pairs(expiry) do
    redis.call('SET', KEYS[k], string.format('%.6f', tats[k]), 'PX', math.ceil(reset * 1000) + 1000)
end
return out
