-- recover_expired: RUNNING tasks of one topic whose lease deadline has passed go back to
-- PENDING, due now, or to DEAD when their retries are spent (attempt > max_retries).
-- Guarantees: each recovered lease's token is dead from then on (state is no longer RUNNING);
-- safe to run from several watchdogs at once (each task moves once).
-- KEYS[1] <prefix>:{<topic>}:pending  KEYS[2] ...:running  KEYS[3] ...:dlq  (ZSETs, ms scores)
-- ARGV[1] task key prefix (same hash tag); ARGV[2] limit; ARGV[3] wake channel; ARGV[4] topic;
-- ARGV[5] workflow channel: a workflow step's task dead-lettered publishes '<id> <now ms>'
-- there, so an advancer fails its step at once (docs/adr/0010)
-- Returns: {recovered to pending, dead-lettered, ms until the next lease deadline (-1: none)}
--! include clock
--! include wake
--! include history
local pending, running, dlq = KEYS[1], KEYS[2], KEYS[3]
local prefix = ARGV[1]
local now = redis_now()
local ids = redis.call('ZRANGE', running, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local retried, dead = 0, 0
for _, id in ipairs(ids) do
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'attempt', 'maxr', 'hist')
  local hist = history_add(f[3], now, 'recover', 'lease expired')
  redis.call('ZREM', running, id)
  if tonumber(f[1] or 0) > tonumber(f[2] or 0) then
    redis.call('ZADD', dlq, now, id)
    redis.call('HSET', key, 'state', 'DEAD', 'err', 'lease expired', 'died', now,
      'hist', history_add(hist, now, 'dead', 'retries spent'))
    dead = dead + 1
    if string.sub(id, 1, 3) == 'wf:' then wake(ARGV[5], id, now) end
  else
    redis.call('ZADD', pending, now, id)
    redis.call('HSET', key, 'state', 'PENDING', 'due', now, 'err', 'lease expired', 'hist', hist)
    retried = retried + 1
  end
end
if retried > 0 then wake(ARGV[3], ARGV[4], now) end
local head = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
return {retried, dead, head[2] and math.max(tonumber(head[2]) - now, 0) or -1}
