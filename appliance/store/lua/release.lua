-- release: a RUNNING task whose lease token matches goes back to PENDING without counting the
-- attempt (the consumer is shutting down, not failing): its retries are not used up.
-- Guarantees: a stale token changes nothing; repeating a release with the same token returns
-- the first result (field settled:<token>).
-- KEYS[1] <prefix>:{<topic>}:pending  KEYS[2] ...:running  (ZSETs, ms scores)
-- KEYS[3] <prefix>:{<topic>}:task:<id> HASH
-- ARGV[1] id; ARGV[2] token; ARGV[3] delay (ms, >= 0); ARGV[4] wake channel; ARGV[5] topic;
-- ARGV[6] why (kept as the task's last error)
-- Returns: {1, next due ms}, {-1} no such task, {-2} stale or wrong token / not running
--! include clock
--! include wake
--! include history
local pending, running, key = KEYS[1], KEYS[2], KEYS[3]
local id, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'state', 'token', 'settled:' .. token, 'hist')
if not f[1] then return {-1} end
if f[3] and string.sub(f[3], 1, 8) == 'release:' then return {1, tonumber(string.sub(f[3], 9))} end
if f[3] or f[1] ~= 'RUNNING' or f[2] ~= token then return {-2} end
local now = redis_now()
local due = now + tonumber(ARGV[3])
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
redis.call('ZREM', running, id)
redis.call('ZADD', pending, due, id)
redis.call('HINCRBY', key, 'attempt', -1)
redis.call('HSET', key, 'state', 'PENDING', 'due', due, 'err', ARGV[6],
  'settled:' .. token, 'release:' .. string.format('%d', due),
  'hist', history_add(f[4], now, 'release', ARGV[6]))
wake_if_earlier(head, due, ARGV[4], ARGV[5])
return {1, due}
