-- GCRA over several buckets at once, for every replica (tierq/storage/ratelimit.py says how).
-- KEYS: one key per bucket (its theoretical arrival time, seconds, as a string).
-- ARGV: cost, then per bucket: per_second, burst.
-- The server's clock, so replicas' clocks cannot disagree. Charges every bucket only when all
-- allow. Returns {allowed (0/1), remaining, reset_ms, retry_after_ms, burst, index} of the
-- tightest bucket (a refusing one first, then the fewest left; the first of equals; index from 0).
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local all_ok = true
local answers = {}
for i, key in ipairs(KEYS) do
    local rate = tonumber(ARGV[2 * i])
    local burst = tonumber(ARGV[2 * i + 1])
    local interval = 1 / rate
    local tolerance = burst * interval
    local tat = tonumber(redis.call('GET', key) or '0') or 0
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local allowance = math.max(tolerance, cost * interval)
    local a = {key = key, burst = burst}
    if new_tat - now <= allowance then
        a.ok = 1
        a.tat = new_tat
        a.remaining = math.max(0, math.floor((tolerance - (new_tat - now)) / interval + 1e-9))
        a.reset = new_tat - now
        a.retry = 0
    else
        all_ok = false
        a.ok = 0
        a.remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval + 1e-9))
        a.reset = tat - now
        a.retry = new_tat - now - allowance
    end
    answers[i] = a
end
local tight = nil
local tight_index = 0
local retry = 0
for i, a in ipairs(answers) do
    if all_ok then
        redis.call('SET', a.key, string.format('%.6f', a.tat), 'PX', math.ceil(a.reset * 1000) + 1000)
    end
    if a.retry > retry then retry = a.retry end
    if tight == nil or a.ok < tight.ok or (a.ok == tight.ok and a.remaining < tight.remaining) then
        tight = a
        tight_index = i - 1
    end
end
return {all_ok and 1 or 0, tight.remaining, math.ceil(tight.reset * 1000), math.ceil(retry * 1000), tight.burst, tight_index}
