-- schedule_pause: stop a schedule firing; its definition and last fired tick stay.
-- Guarantees: a paused schedule leaves the due ZSET in the same step, so no later fire of it
-- passes (schedule_fire refuses paused ones); pausing twice changes nothing more.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH
-- KEYS[2] <prefix>:{<prefix>/scheduler}:due             ZSET id -> next fire (ms)
-- ARGV[1] id
-- Returns: the stored HASH as a flat field/value list; -1 no such schedule
local key, due = KEYS[1], KEYS[2]
local id = ARGV[1]
local paused = redis.call('HGET', key, 'paused')
if not paused then return -1 end
if paused ~= '1' then
  redis.call('HSET', key, 'paused', '1')
  redis.call('HINCRBY', key, 'rev', 1)
  redis.call('ZREM', due, id)
end
return redis.call('HGETALL', key)
