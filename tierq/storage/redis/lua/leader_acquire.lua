-- Take or renew the leader lease. KEYS[1]: the lease (value "owner|token", expiring),
-- KEYS[2]: the fencing counter. ARGV[1]: owner, ARGV[2]: TTL in milliseconds.
-- Returns the token when ARGV[1] leads after the call, false otherwise.
local current = redis.call('GET', KEYS[1])
if current then
    local holder, token = string.match(current, '^(.*)|(%d+)$')
    if holder == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return tonumber(token)
    end
    return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
