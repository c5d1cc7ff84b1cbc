-- ack: a RUNNING task whose lease token matches is done (-> SUCCEEDED, kept for retention).
-- Guarantees: a stale or wrong token changes nothing; repeating an Ack that succeeded with the
-- same token succeeds again (safe to retry after a lost reply). Each settled token's result is
-- kept on the record (field settled:<token>), so a repeat is answered even after later leases.
-- KEYS[1] <prefix>:{<topic>}:running      ZSET id -> lease deadline (ms)
-- KEYS[2] <prefix>:{<topic>}:task:<id>    HASH
-- ARGV[1] id; ARGV[2] lease token; ARGV[3] retention (ms) of the finished record
-- Returns: 1 done, -1 no such task, -2 stale or wrong token / not running
local running, key = KEYS[1], KEYS[2]
local id, token, retention = ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', key, 'state', 'token', 'settled:' .. token)
if not f[1] then return -1 end
if f[3] then return f[3] == 'ack' and 1 or -2 end
if f[1] ~= 'RUNNING' or f[2] ~= token then return -2 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREM', running, id)
redis.call('HSET', key, 'state', 'SUCCEEDED', 'settled:' .. token, 'ack', 'finished', now)
redis.call('PEXPIRE', key, retention)
return 1
