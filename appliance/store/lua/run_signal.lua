-- run_signal: a named signal for an active run is kept with its arrival time (Redis clock);
-- a step waiting for it succeeds with its payload if it came by the step's deadline, which
-- the advancer judges from that time, so a signal racing its timeout has one answer.
-- Guarantees: the first signal of a name wins; a repeat (a retried SignalRun) changes nothing.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] signal name; ARGV[2] payload
-- Returns: 1 kept; 0 a signal of this name came before; -1 no such run; -4 the run finished
--! include clock
local run, name = KEYS[1], ARGV[1]
local state = redis.call('HGET', run, 'state')
if not state then return -1 end
if state ~= 'PENDING' and state ~= 'RUNNING' then return -4 end
if redis.call('HEXISTS', run, 'signal:' .. name) == 1 then return 0 end
local now = redis_now()
redis.call('HSET', run, 'signal:' .. name, ARGV[2], 'signal_at:' .. name, now)
return 1
