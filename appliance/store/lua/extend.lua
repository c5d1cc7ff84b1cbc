-- extend: a RUNNING task whose lease token matches gets a new lease deadline (now + lease).
-- Guarantees: a stale or wrong token changes nothing; repeating it only moves the deadline again.
-- KEYS[1] <prefix>:{<topic>}:running      ZSET id -> lease deadline (ms)
-- KEYS[2] <prefix>:{<topic>}:task:<id>    HASH
-- ARGV[1] id; ARGV[2] lease token; ARGV[3] lease length (ms)
-- Returns: the new deadline (ms), -1 no such task, -2 stale or wrong token / not running
local running, key = KEYS[1], KEYS[2]
local id, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'state', 'token')
if not f[1] then return -1 end
if f[1] ~= 'RUNNING' or f[2] ~= token then return -2 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local deadline = now + tonumber(ARGV[3])
redis.call('ZADD', running, 'XX', deadline, id)
redis.call('HSET', key, 'deadline', deadline)
return deadline
