-- requeue_dead: dead letters of one topic go back to PENDING, due now, with fresh attempts.
-- Guarantees: only ids that are in the DLQ move; others are skipped and unchanged.
-- KEYS[1] <prefix>:{<topic>}:pending  KEYS[2] <prefix>:{<topic>}:dlq  (ZSETs, ms scores)
-- ARGV[1] task key prefix (same hash tag); ARGV[2] wake channel; ARGV[3] topic;
-- ARGV[4] limit when no ids are given; ARGV[5] '0', or '1' then a new payload for every id
-- requeued (an edited payload); ARGV[6..] ids (none: the oldest `limit` dead letters)
-- Returns: the ids requeued
--! include clock
--! include wake
--! include history
local pending, dlq = KEYS[1], KEYS[2]
local prefix = ARGV[1]
local ids = {}
for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', dlq, 0, tonumber(ARGV[4]) - 1) end
local now = redis_now()
local moved = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', dlq, id) == 1 then
    redis.call('ZADD', pending, now, id)
    local hist = redis.call('HGET', prefix .. id, 'hist')
    local edited = string.sub(ARGV[5], 1, 1) == '1'
    redis.call('HSET', prefix .. id, 'state', 'PENDING', 'due', now, 'attempt', 0,
      'hist', history_add(hist, now, 'requeue', edited and 'payload edited' or ''))
    if edited then redis.call('HSET', prefix .. id, 'payload', string.sub(ARGV[5], 2)) end
    redis.call('HDEL', prefix .. id, 'died')
    moved[#moved + 1] = id
  end
end
if #moved > 0 then wake(ARGV[2], ARGV[3], now) end
return moved
