-- schedule_fire: the leader moves one schedule past a tick and parks that tick's task in the
-- outbox (the caller enqueues it, then removes it), only while it holds the lease's token.
-- Guarantees: a deposed leader (stale token) changes nothing; so does a fire planned from an
-- old view (the schedule was changed, paused, deleted or already advanced): compare-and-set
-- on rev and next. A tick parked here is enqueued by this leader or the next one.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:leader   HASH holder, token, expires (ms)
-- KEYS[2] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH
-- KEYS[3] <prefix>:{<prefix>/scheduler}:due      ZSET id -> next fire (ms)
-- KEYS[4] <prefix>:{<prefix>/scheduler}:outbox   HASH task id -> task JSON
-- KEYS[5] <prefix>:{<prefix>/scheduler}:fired    STRING, ticks fired in total
-- ARGV[1] fencing token; ARGV[2] id; ARGV[3] expected rev; ARGV[4] expected next fire (ms)
-- ARGV[5] fired tick (ms; 0 = none, skipping missed ticks); ARGV[6] new next fire (ms; 0 = none)
-- ARGV[7] task id; ARGV[8] task JSON (topic, payload, due, max_retries)
-- Returns: 1 advanced; -1 no such schedule; -2 not the leader (token); -3 paused;
--          -4 changed since planned (rev or next moved)
local lease, key, due, outbox, fired = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, tick, next_fire = ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('HGET', lease, 'token') ~= ARGV[1] then return -2 end
local f = redis.call('HMGET', key, 'rev', 'next', 'paused')
if not f[1] then return -1 end
if f[3] == '1' then return -3 end
if f[1] ~= ARGV[3] or tonumber(f[2]) ~= tonumber(ARGV[4]) then return -4 end
redis.call('HSET', key, 'next', next_fire)
if next_fire > 0 then redis.call('ZADD', due, next_fire, id) else redis.call('ZREM', due, id) end
if tick > 0 then
  redis.call('HSET', key, 'last', tick)
  redis.call('HSET', outbox, ARGV[7], ARGV[8])
  redis.call('INCR', fired)
end
return 1
