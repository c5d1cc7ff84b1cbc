-- enqueue_tasks (included by scripts that create tasks: enqueue, step_hand_off; they include
-- new_record, clock and wake before it): create tasks of one topic as PENDING, an id that
-- exists left alone; a task due earlier than the topic's head publishes '<topic> <due ms>' on
-- the wake channel. `args` from index `first`: three per task, id, payload, and
-- '<delay ms> <execute_at ms or 0> <max_retries> <traceparent or nothing>'.
-- Returns one integer per task: 1 created; 2 its task lives (PENDING, RUNNING or DEAD); 0 its
-- task finished (a record kept for retention).
local function enqueue_tasks(pending, new, channel, topic, prefix, args, first)
  local now = redis_now()
  local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
  local earliest = nil
  local created = {}
  for a = first, #args, 3 do
    local id, payload = args[a], args[a + 1]
    local delay, at, max_retries, trace = string.match(args[a + 2], '^(%d+) (%d+) (%d+) ?(.*)$')
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
end
