-- step_running: a SCHEDULED step whose task was leased is RUNNING (its first start recorded);
-- a RUNNING step's attempts are brought up to date (a retry).
-- Guarantees: only a SCHEDULED or RUNNING step moves; the start time is written once.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] step; ARGV[2] attempts so far (the task's)
-- Returns: 1 done; -1 no such run; -3 the step is neither SCHEDULED nor RUNNING
--! include clock
local run, step = KEYS[1], ARGV[1]
local f = redis.call('HMGET', run, 'state', step .. ':state', step .. ':start')
if not f[1] then return -1 end
if f[2] ~= 'SCHEDULED' and f[2] ~= 'RUNNING' then return -3 end
redis.call('HSET', run, step .. ':state', 'RUNNING', step .. ':att', ARGV[2])
local now = redis_now()
if not f[3] then redis.call('HSET', run, step .. ':start', now) end
return 1
