-- enqueue: create tasks of one topic as PENDING; an id that exists is left alone (idempotent).
-- Guarantees: all tasks of the call are written in one atomic step; a task whose due time is
-- earlier than the topic's current head publishes '<topic> <due ms>' on the wake channel.
-- KEYS[1]   <prefix>:{<topic>}:pending      ZSET id -> due (ms)
-- KEYS[2..] <prefix>:{<topic>}:task:<id>    HASH, one per task, in ARGV order
-- ARGV[1] wake channel; ARGV[2] topic
-- ARGV[3..] six per task: id, payload, delay (ms), execute_at (ms since epoch, 0 = use delay),
--           max_retries, traceparent ('' = none; stored only when given)
-- Returns: one integer per task, 1 = created, 0 = the id existed (nothing changed).
local pending = KEYS[1]
local channel, topic = ARGV[1], ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
local earliest = nil
local created = {}
for i = 2, #KEYS do
  local a = (i - 2) * 6 + 3
  local id, payload = ARGV[a], ARGV[a + 1]
  local delay, at, max_retries = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    created[#created + 1] = 0
  else
    local due = now + delay
    if at > 0 then due = at end
    redis.call('HSET', KEYS[i], 'payload', payload, 'due', due, 'created', now,
      'maxr', max_retries, 'attempt', 0, 'state', 'PENDING')
    if ARGV[a + 5] ~= '' then redis.call('HSET', KEYS[i], 'trace', ARGV[a + 5]) end
    redis.call('ZADD', pending, due, id)
    created[#created + 1] = 1
    if earliest == nil or due < earliest then earliest = due end
  end
end
if earliest ~= nil and (head[2] == nil or earliest < tonumber(head[2])) then
  redis.call('PUBLISH', channel, topic .. ' ' .. string.format('%d', earliest))
end
return created
