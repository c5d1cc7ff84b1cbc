-- extend: RUNNING tasks of one topic whose lease tokens match get a new lease deadline
-- (now + lease). One call renews a whole batch (a worker stream's held tasks).
-- Guarantees: a stale or wrong token changes nothing; repeating it only moves the deadline again.
-- KEYS[1] <prefix>:{<topic>}:running      ZSET id -> lease deadline (ms)
-- ARGV[1] lease length (ms); ARGV[2] task key prefix (<prefix>:{<topic>}:task:, same hash tag);
-- ARGV[3..] pairs: id, lease token
-- Returns: one value per pair: the new deadline (ms), -1 no such task, -2 stale or wrong token
--          / not running
--! include clock
--! include history
local running, prefix = KEYS[1], ARGV[2]
local now = redis_now()
local deadline = now + tonumber(ARGV[1])
local out = {}
for a = 3, #ARGV, 2 do
  local id, token = ARGV[a], ARGV[a + 1]
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'hist')
  if not f[1] then
    out[#out + 1] = -1
  elseif f[1] ~= 'RUNNING' or f[2] ~= token then
    out[#out + 1] = -2
  else
    redis.call('ZADD', running, 'XX', deadline, id)
    redis.call('HSET', key, 'deadline', deadline, 'hist', history_extend(f[3], now))
    out[#out + 1] = deadline
  end
end
return out
