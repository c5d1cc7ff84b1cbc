-- run_cancel: a PENDING or RUNNING run is CANCELED: its WAITING and SCHEDULED steps are
-- CANCELED (a RUNNING step may finish; its outcome starts nothing); kept for retention.
-- Guarantees: canceling a canceled run changes nothing and answers again.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] retention (ms); ARGV[2..] every step of the run
-- Returns: {1, ids of the tasks of the steps canceled (to delete while PENDING)...};
-- {0} canceled before; {-1} no such run; {-3, state} the run had finished (SUCCEEDED, FAILED)
--! include clock
local run = KEYS[1]
local state = redis.call('HGET', run, 'state')
if not state then return {-1} end
if state == 'CANCELED' then return {0} end
if state ~= 'PENDING' and state ~= 'RUNNING' then return {-3, state} end
local tasks = {}
for a = 2, #ARGV do
  local s = redis.call('HGET', run, ARGV[a] .. ':state')
  if s == 'WAITING' or s == 'SCHEDULED' then
    redis.call('HSET', run, ARGV[a] .. ':state', 'CANCELED')
    if s == 'SCHEDULED' then tasks[#tasks + 1] = redis.call('HGET', run, ARGV[a] .. ':task') end
  end
end
local now = redis_now()
redis.call('HSET', run, 'state', 'CANCELED', 'finished', now)
redis.call('PEXPIRE', run, ARGV[1])
return {1, unpack(tasks)}
