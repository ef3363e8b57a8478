-- Drop the leader lease if ARGV[1] holds it. KEYS[1]: the lease.
local current = redis.call('GET', KEYS[1])
if current then
    local holder = string.match(current, '^(.*)|%d+$')
    if holder == ARGV[1] then
        redis.call('DEL', KEYS[1])
        return 1
    end
end
return 0
