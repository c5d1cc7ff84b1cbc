-- cancel: a PENDING task is canceled (-> CANCELED, kept for retention); canceling a canceled
-- task again succeeds. Any other state is refused and nothing changes. A task never leased
-- moves from its packed field in `new` to a HASH of its own, to be kept for retention.
-- KEYS[1] <prefix>:{<topic>}:pending      ZSET id -> due (ms)
-- KEYS[2] <prefix>:{<topic>}:task:<id>    HASH
-- KEYS[3] <prefix>:{<topic>}:new          HASH id -> packed record of a task never leased
-- ARGV[1] id; ARGV[2] retention (ms) of the canceled record
-- Returns: {1, 'CANCELED'} done, {0, 'CANCELED'} canceled before (nothing changed),
--          {-1, ''} no such task, {-3, <state>} not pending
--! include new_record
--! include clock
--! include history
local pending, key, new, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local packed = redis.call('HGET', new, id)
local now = redis_now()
if packed then
  write_new_record(key, packed, redis.call('ZSCORE', pending, id), 0, 'CANCELED',
    'hist', history_add(nil, now, 'cancel'))
  redis.call('HDEL', new, id)
  redis.call('ZREM', pending, id)
  redis.call('PEXPIRE', key, ARGV[2])
  return {1, 'CANCELED'}
end
local state, hist = unpack(redis.call('HMGET', key, 'state', 'hist'))
if not state then return {-1, ''} end
if state == 'CANCELED' then return {0, state} end
if state ~= 'PENDING' then return {-3, state} end
redis.call('ZREM', pending, id)
redis.call('HSET', key, 'state', 'CANCELED', 'hist', history_add(hist, now, 'cancel'))
redis.call('PEXPIRE', key, ARGV[2])
return {1, 'CANCELED'}
