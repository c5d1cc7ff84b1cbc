-- schedule_resume: a paused schedule fires again from its next tick after now (ticks missed while
-- paused are not fired). Resuming a running schedule changes nothing.
-- Guarantees: the pause flag, next fire and due ZSET change in one step.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH
-- KEYS[2] <prefix>:{<prefix>/scheduler}:due             ZSET id -> next fire (ms)
-- ARGV[1] id; ARGV[2] next fire (ms, 0 = no tick left); ARGV[3] wake channel
-- Returns: the stored HASH as a flat field/value list; -1 no such schedule
--! include wake
local key, due = KEYS[1], KEYS[2]
local id, next_fire, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local paused = redis.call('HGET', key, 'paused')
if not paused then return -1 end
if paused == '1' then
  redis.call('HSET', key, 'paused', '0', 'next', next_fire)
  redis.call('HINCRBY', key, 'rev', 1)
  if next_fire > 0 then redis.call('ZADD', due, next_fire, id) end
  wake(channel, id, next_fire)
end
return redis.call('HGETALL', key)
