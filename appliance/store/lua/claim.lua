-- claim: lease up to `limit` due PENDING tasks of one topic to one Retrieve call (-> RUNNING).
-- Guarantees: a task is leased to one call at a time, never before its due time (Redis clock);
-- each lease token is new and unguessable from its siblings' (<call token>.<n>.<nonce>). A retry
-- with the same call token returns the tasks that call still holds instead of leasing more (a
-- lost reply leases nothing twice). The tasks' encoded size stays within the byte budget (the
-- first task always fits: its payload is bounded at enqueue), so what is leased can be sent.
-- A task leased for the first time moves from its packed field in `new` to a HASH of its own.
-- KEYS[1] <prefix>:{<topic>}:pending            ZSET id -> due (ms)
-- KEYS[2] <prefix>:{<topic>}:running            ZSET id -> lease deadline (ms)
-- KEYS[3] <prefix>:{<topic>}:claim:<call token> STRING, ids leased by this call, '\n'-joined
-- KEYS[4] <prefix>:{<topic>}:new                HASH id -> packed record of a task never leased
-- ARGV[1] task key prefix (<prefix>:{<topic>}:task:, same hash tag); ARGV[2] limit
-- ARGV[3] lease length (ms); ARGV[4] call token; ARGV[5] memo lifetime (ms)
-- ARGV[6] lease channel; ARGV[7] topic: '<topic> <deadline ms>' is published there when these
--         leases end before every lease already running (so watchdogs wake on time)
-- ARGV[8] byte budget of the leased tasks (an upper bound of each one's protobuf size is
--         counted: payload + id + 2 * topic + TASK_OVERHEAD)
-- ARGV[9] nonces: NONCE_LEN random base64url characters per slot (limit of them)
-- ARGV[10] who leases (the history's lease detail: a worker stream or a Retrieve's peer)
-- Returns: {now ms, microseconds until the next due task (-1: none; 0 when tasks are
--           returned; at least 1), then 9 per task: id, payload, due, created, max_retries,
--           attempt, token, deadline, traceparent (the times and counts as integers)}
--! include new_record
--! include clock
--! include wake
--! include history
local TASK_OVERHEAD, NONCE_LEN = 300, 8
local pending, running, memo_key, new = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, limit, lease, call = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local budget, nonces, who = tonumber(ARGV[8]), ARGV[9], ARGV[10]
local now, now_us = redis_now()
local out = {now, 0}
local memo = redis.call('GET', memo_key)
if memo then
  local n = 0
  for id in string.gmatch(memo, '[^\n]+') do
    n = n + 1
    local f = redis.call('HMGET', prefix .. id, 'payload', 'due', 'created', 'maxr', 'attempt',
      'token', 'deadline', 'state', 'trace')
    local mine = call .. '.' .. n .. '.'
    if f[8] == 'RUNNING' and f[6] and string.sub(f[6], 1, #mine) == mine then
      for _, v in ipairs({id, f[1], tonumber(f[2]), tonumber(f[3]), tonumber(f[4]),
          tonumber(f[5]), f[6], tonumber(f[7]), f[9] or ''}) do
        out[#out + 1] = v
      end
    end
  end
  return out
end
local due = redis.call('ZRANGE', pending, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
if #due == 0 then
  local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
  if head[2] == nil then
    out[2] = -1
  else
    out[2] = math.max(tonumber(head[2]) * 1000 - now_us, 1)
  end
  return out
end
local deadline = now + lease
local ids = {}
for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
local packed = redis.call('HMGET', new, unpack(ids))
local fixed = 2 * #ARGV[7] + TASK_OVERHEAD
local taken, new_ids, leases, size = {}, {}, {}, 0
for n, id in ipairs(ids) do
  local key = prefix .. id
  local bytes = packed[n] and #packed[n] or redis.call('HSTRLEN', key, 'payload')
  size = size + bytes + #id + fixed
  if n > 1 and size > budget then break end
  local token = call .. '.' .. n .. '.' .. string.sub(nonces, (n - 1) * NONCE_LEN + 1, n * NONCE_LEN)
  local f
  if packed[n] then
    new_ids[#new_ids + 1] = id
    local payload, created, max_retries, trace = write_new_record(key, packed[n], due[2 * n], 1,
      'RUNNING', 'token', token, 'deadline', deadline, 'hist', history_add(nil, now, 'lease', who))
    f = {id, payload, tonumber(due[2 * n]), tonumber(created), tonumber(max_retries), 1, token,
      deadline, trace}
  else
    local r = redis.call('HMGET', key, 'payload', 'due', 'created', 'maxr', 'trace', 'hist')
    redis.call('HSET', key, 'state', 'RUNNING', 'token', token, 'deadline', deadline,
      'hist', history_add(r[6], now, 'lease', who))
    local attempt = redis.call('HINCRBY', key, 'attempt', 1)
    f = {id, r[1], tonumber(r[2]), tonumber(r[3]), tonumber(r[4]), attempt, token, deadline,
      r[5] or ''}
  end
  for _, v in ipairs(f) do out[#out + 1] = v end
  taken[#taken + 1] = id
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
end
if #new_ids > 0 then redis.call('HDEL', new, unpack(new_ids)) end
redis.call('ZREM', pending, unpack(taken))
local first = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
wake_if_earlier(first, deadline, ARGV[6], ARGV[7])
redis.call('ZADD', running, unpack(leases))
redis.call('SET', memo_key, table.concat(taken, '\n'), 'PX', ARGV[5])
return out
