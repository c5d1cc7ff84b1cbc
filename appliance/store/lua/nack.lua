-- nack: a RUNNING task whose lease token matches failed: retry (-> PENDING after a delay) or,
-- when asked or when its retries are spent (attempt > max_retries), dead-letter it (-> DEAD).
-- Guarantees: a stale token changes nothing; repeating a settled Nack with the same token
-- returns the first result, even after the task was leased again (field settled:<token>). The retry delay is retry_after when > 0, else exponential backoff
-- min(cap, base * 2^(attempt-1)) scaled by a jitter factor in [0.5, 1].
-- KEYS[1] <prefix>:{<topic>}:pending  KEYS[2] ...:running  KEYS[3] ...:dlq  (ZSETs, ms scores)
-- KEYS[4] <prefix>:{<topic>}:task:<id> HASH
-- ARGV[1] id; ARGV[2] token; ARGV[3] error text; ARGV[4] retry_after (ms, 0 = backoff);
-- ARGV[5] dead_letter (1/0); ARGV[6] backoff base (ms); ARGV[7] backoff cap (ms);
-- ARGV[8] jitter in [0,1] (caller's random); ARGV[9] wake channel; ARGV[10] topic;
-- ARGV[11] workflow channel: a workflow step's task dead-lettered publishes '<id> <now ms>'
-- there, so an advancer fails its step at once (docs/adr/0010)
-- Returns: {1, dead (1/0), next due ms (0 when dead)}, {-1} no such task, {-2} stale token
--! include clock
--! include wake
--! include history
local pending, running, dlq, key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'state', 'token', 'settled:' .. token, 'attempt', 'maxr',
  'hist')
if not f[1] then return {-1} end
if f[3] == 'dead' then return {1, 1, 0} end
if f[3] and string.sub(f[3], 1, 6) == 'retry:' then return {1, 0, tonumber(string.sub(f[3], 7))} end
if f[3] or f[1] ~= 'RUNNING' or f[2] ~= token then return {-2} end
local now = redis_now()
local attempt = tonumber(f[4])
local hist = history_add(f[6], now, 'nack', ARGV[3])
redis.call('ZREM', running, id)
if ARGV[5] == '1' or attempt > tonumber(f[5]) then
  redis.call('ZADD', dlq, now, id)
  local why = ARGV[5] == '1' and 'asked' or 'retries spent'
  redis.call('HSET', key, 'state', 'DEAD', 'err', ARGV[3], 'settled:' .. token, 'dead', 'died', now,
    'hist', history_add(hist, now, 'dead', why))
  if string.sub(id, 1, 3) == 'wf:' then wake(ARGV[11], id, now) end
  return {1, 1, 0}
end
local delay = tonumber(ARGV[4])
if delay <= 0 then
  local backoff = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ (attempt - 1))
  delay = math.floor(backoff * (0.5 + 0.5 * tonumber(ARGV[8])))
end
local due = now + delay
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
redis.call('ZADD', pending, due, id)
redis.call('HSET', key, 'state', 'PENDING', 'due', due, 'err', ARGV[3],
  'settled:' .. token, 'retry:' .. string.format('%d', due), 'hist', hist)
wake_if_earlier(head, due, ARGV[9], ARGV[10])
return {1, 0, due}
