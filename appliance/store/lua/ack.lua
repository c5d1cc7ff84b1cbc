-- ack: RUNNING tasks of one topic whose lease tokens match are done (-> SUCCEEDED, kept for
-- retention), each with its result (the output a workflow step passes on). One call acks a
-- whole batch.
-- Guarantees: a stale or wrong token changes nothing; repeating an Ack that succeeded with the
-- same token succeeds again (safe to retry after a lost reply). Each settled token's result is
-- kept on the record (field settled:<token>), so a repeat is answered even after later leases.
-- A workflow step's task (id 'wf:<run>:<step>', docs/adr/0010) publishes its id on the
-- workflow channel, so an advancer moves its run on at once: '<id> <now ms> <attempt> <result>'
-- (now ms: its finish as recorded), or '<id> <now ms>' when the result is over RESULT_IN_MESSAGE
-- bytes (the advancer reads it from the task).
-- KEYS[1] <prefix>:{<topic>}:running      ZSET id -> lease deadline (ms)
-- ARGV[1] retention (ms) of the finished records; ARGV[2] task key prefix
--         (<prefix>:{<topic>}:task:, the topic's hash tag); ARGV[3] workflow channel;
--         ARGV[4..] triples: id, lease token, result ('' = none)
-- Returns: one code per triple: 1 done, -1 no such task, -2 stale or wrong token / not running
--! include clock
--! include wake
--! include history
local running, retention, prefix, channel = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local RESULT_IN_MESSAGE = 4096
local now = redis_now()
local codes = {}
for a = 4, #ARGV, 3 do
  local id, token, result = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'settled:' .. token, 'hist', 'attempt')
  local code = 1
  if not f[1] then
    code = -1
  elseif f[3] then
    code = f[3] == 'ack' and 1 or -2
  elseif f[1] ~= 'RUNNING' or f[2] ~= token then
    code = -2
  else
    redis.call('ZREM', running, id)
    redis.call('HSET', key, 'state', 'SUCCEEDED', 'settled:' .. token, 'ack', 'finished', now,
      'hist', history_add(f[4], now, 'ack'))
    if result ~= '' then redis.call('HSET', key, 'result', result) end
    redis.call('PEXPIRE', key, retention)
    if string.sub(id, 1, 3) == 'wf:' and #result <= RESULT_IN_MESSAGE then
      wake(channel, id, now, ' ' .. (f[5] or '0') .. ' ' .. result)
    elseif string.sub(id, 1, 3) == 'wf:' then
      wake(channel, id, now)
    end
  end
  codes[#codes + 1] = code
end
return codes
