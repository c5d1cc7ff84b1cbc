-- ack: RUNNING tasks of one topic whose lease tokens match are done (-> SUCCEEDED, kept for
-- retention). One call acks a whole batch.
-- Guarantees: a stale or wrong token changes nothing; repeating an Ack that succeeded with the
-- same token succeeds again (safe to retry after a lost reply). Each settled token's result is
-- kept on the record (field settled:<token>), so a repeat is answered even after later leases.
-- KEYS[1] <prefix>:{<topic>}:running      ZSET id -> lease deadline (ms)
-- ARGV[1] retention (ms) of the finished records; ARGV[2] task key prefix
--         (<prefix>:{<topic>}:task:, the topic's hash tag); ARGV[3..] pairs: id, lease token
-- Returns: one code per pair: 1 done, -1 no such task, -2 stale or wrong token / not running
--! include clock
local running, retention, prefix = KEYS[1], ARGV[1], ARGV[2]
local now = redis_now()
local codes = {}
for a = 3, #ARGV, 2 do
  local id, token = ARGV[a], ARGV[a + 1]
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'settled:' .. token)
  local code = 1
  if not f[1] then
    code = -1
  elseif f[3] then
    code = f[3] == 'ack' and 1 or -2
  elseif f[1] ~= 'RUNNING' or f[2] ~= token then
    code = -2
  else
    redis.call('ZREM', running, id)
    redis.call('HSET', key, 'state', 'SUCCEEDED', 'settled:' .. token, 'ack', 'finished', now)
    redis.call('PEXPIRE', key, retention)
  end
  codes[#codes + 1] = code
end
return codes
