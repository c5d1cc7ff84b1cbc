-- enqueue: create tasks of one topic as PENDING; an id that exists is left alone (idempotent).
-- Guarantees: all tasks of the call are written in one atomic step; a task whose due time is
-- earlier than the topic's current head publishes '<topic> <due ms>' on the wake channel.
-- A new task is one packed field of the `new` HASH (lib/new_record.lua), not a HASH of its own,
-- until it is first leased or canceled.
-- KEYS[1] <prefix>:{<topic>}:pending      ZSET id -> due (ms)
-- KEYS[2] <prefix>:{<topic>}:new          HASH id -> packed record of a task never leased
-- ARGV[1] wake channel; ARGV[2] topic; ARGV[3] task key prefix (<prefix>:{<topic>}:task:, the
--         topic's hash tag: task keys are built here, not passed, to keep a batch's call small)
-- ARGV[4..] three per task: id, payload, and '<delay ms> <execute_at ms or 0> <max_retries>
--           <traceparent or nothing>'
-- Returns: one integer per task, 1 = created; the id existed (nothing changed): 2 = its task
--          lives (PENDING, RUNNING or DEAD), 0 = its task finished (a record kept for retention).
--! include new_record
--! include clock
--! include wake
local pending, new = KEYS[1], KEYS[2]
local channel, topic, prefix = ARGV[1], ARGV[2], ARGV[3]
local now = redis_now()
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
local earliest = nil
local created = {}
for a = 4, #ARGV, 3 do
  local id, payload = ARGV[a], ARGV[a + 1]
  local delay, at, max_retries, trace = string.match(ARGV[a + 2], '^(%d+) (%d+) (%d+) ?(.*)$')
  local state = redis.call('HGET', prefix .. id, 'state')
  if redis.call('HEXISTS', new, id) == 1 then
    created[#created + 1] = 2
  elseif state then
    created[#created + 1] = (state == 'SUCCEEDED' or state == 'CANCELED') and 0 or 2
  else
    local due = now + tonumber(delay)
    if tonumber(at) > 0 then due = tonumber(at) end
    redis.call('HSET', new, id, pack_new_record(now, tonumber(max_retries), trace, payload))
    redis.call('ZADD', pending, due, id)
    created[#created + 1] = 1
    if earliest == nil or due < earliest then earliest = due end
  end
end
if earliest ~= nil then wake_if_earlier(head, earliest, channel, topic) end
return created
