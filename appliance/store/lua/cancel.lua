-- cancel: a PENDING task is canceled (-> CANCELED, kept for retention); canceling a canceled
-- task again succeeds. Any other state is refused and nothing changes.
-- KEYS[1] <prefix>:{<topic>}:pending      ZSET id -> due (ms)
-- KEYS[2] <prefix>:{<topic>}:task:<id>    HASH
-- ARGV[1] id; ARGV[2] retention (ms) of the canceled record
-- Returns: {1, 'CANCELED'} done, {-1, ''} no such task, {-3, <state>} not pending
local pending, key = KEYS[1], KEYS[2]
local state = redis.call('HGET', key, 'state')
if not state then return {-1, ''} end
if state == 'CANCELED' then return {1, state} end
if state ~= 'PENDING' then return {-3, state} end
redis.call('ZREM', pending, ARGV[1])
redis.call('HSET', key, 'state', 'CANCELED')
redis.call('PEXPIRE', key, ARGV[2])
return {1, 'CANCELED'}
