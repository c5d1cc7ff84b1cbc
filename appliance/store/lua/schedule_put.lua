-- schedule_put: create, replace or upsert one schedule's definition, keeping its last fired tick.
-- Guarantees: one atomic write of the HASH, the due ZSET and the id SET; a retry of the same call
-- (same call token, reply lost) returns the stored schedule instead of failing or writing again.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH (definition + next, last, rev, ...)
-- KEYS[2] <prefix>:{<prefix>/scheduler}:due             ZSET id -> next fire (ms); not paused only
-- KEYS[3] <prefix>:{<prefix>/scheduler}:ids             SET of every schedule id
-- ARGV[1] mode: create | update | upsert; ARGV[2] id; ARGV[3] next fire (ms, 0 = no tick left)
-- ARGV[4] call token; ARGV[5] wake channel ('<id> <next ms>' is published there)
-- ARGV[6..] the definition's field, value pairs (including paused '0'/'1' and source)
-- Returns: the stored HASH as a flat field/value list; -1 exists (create); -2 no such schedule
--          (update); -3 declared in the config file (update).
--! include clock
--! include wake
local key, due, ids = KEYS[1], KEYS[2], KEYS[3]
local mode, id, next_fire, call, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local old = redis.call('HMGET', key, 'call', 'source', 'last', 'rev', 'created')
if old[1] == call then return redis.call('HGETALL', key) end
if mode == 'create' and old[4] then return -1 end
if mode == 'update' and not old[4] then return -2 end
if mode == 'update' and old[2] == 'config' then return -3 end
local now = redis_now()
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 6))
redis.call('HSET', key, 'next', next_fire, 'last', old[3] or 0, 'rev', (tonumber(old[4]) or 0) + 1,
  'created', old[5] or now, 'updated', now, 'call', call)
if redis.call('HGET', key, 'paused') == '1' or next_fire == 0 then
  redis.call('ZREM', due, id)
else
  redis.call('ZADD', due, next_fire, id)
end
redis.call('SADD', ids, id)
wake(channel, id, next_fire)
return redis.call('HGETALL', key)
