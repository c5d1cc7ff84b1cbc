-- release_lost: RUNNING tasks of one topic held by a worker stream that ended without a goodbye
-- (process killed, connection reset) go back to PENDING at their place in the queue (their own
-- due time, which has passed: due at once, ahead of what came due after them), with the
-- attempt counted and error "worker lost"; tasks whose retries are spent (attempt >
-- max_retries) go to DEAD.
-- Guarantees: only tasks whose lease token still matches move; each released token is settled
-- (field settled:<token> = 'lost'), so the lost worker's late Ack or Nack is refused as stale;
-- repeating the call changes nothing more.
-- KEYS[1] <prefix>:{<topic>}:pending  KEYS[2] ...:running  KEYS[3] ...:dlq  (ZSETs, ms scores)
-- ARGV[1] task key prefix (<prefix>:{<topic>}:task:, same hash tag); ARGV[2] wake channel;
-- ARGV[3] topic; ARGV[4] error text; ARGV[5] workflow channel (a workflow step's task
-- dead-lettered publishes '<id> <now ms>' there: an advancer fails its step at once,
-- docs/adr/0010); ARGV[6..] pairs: id, lease token
-- Returns: {released to pending, dead-lettered}
--! include clock
--! include wake
--! include history
local pending, running, dlq, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = redis_now()
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
local retried, dead, earliest = 0, 0, nil
for a = 6, #ARGV, 2 do
  local id, token = ARGV[a], ARGV[a + 1]
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'attempt', 'maxr', 'due', 'hist')
  if f[1] == 'RUNNING' and f[2] == token then
    redis.call('ZREM', running, id)
    local hist = history_add(f[6], now, 'recover', ARGV[4])
    if tonumber(f[3] or 0) > tonumber(f[4] or 0) then
      redis.call('ZADD', dlq, now, id)
      redis.call('HSET', key, 'state', 'DEAD', 'err', ARGV[4], 'died', now,
        'settled:' .. token, 'lost', 'hist', history_add(hist, now, 'dead', 'retries spent'))
      dead = dead + 1
      if string.sub(id, 1, 3) == 'wf:' then wake(ARGV[5], id, now) end
    else
      local due = math.min(tonumber(f[5] or now), now)
      redis.call('ZADD', pending, due, id)
      redis.call('HSET', key, 'state', 'PENDING', 'err', ARGV[4], 'settled:' .. token, 'lost',
        'hist', hist)
      retried = retried + 1
      if earliest == nil or due < earliest then earliest = due end
    end
  end
end
if earliest then wake_if_earlier(head, earliest, ARGV[2], ARGV[3]) end
return {retried, dead}
