-- step_finish: a step's outcome, recorded once: WAITING, SCHEDULED or RUNNING -> SUCCEEDED
-- (with its output) or FAILED (with its error); WAITING -> SKIPPED (its `when` was false, or
-- a parent was skipped; the reason kept as its error). The first failure of an active run fails it:
-- its WAITING steps are SKIPPED, its other SCHEDULED ones CANCELED, and the run is FAILED, or
-- stays RUNNING for its on_failure step (field `failed`), whose end then fails it. When every
-- other step has finished, a RUNNING run SUCCEEDED (its on_failure step SKIPPED). A finished
-- run expires after the retention time. A run canceled meanwhile stays CANCELED: the outcome
-- is recorded and starts nothing (docs/adr/0010).
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] step; ARGV[2] SUCCEEDED | FAILED | SKIPPED; ARGV[3] output or error (reason); ARGV[4] finished (ms,
-- 0 = now); ARGV[5] attempts; ARGV[6] retention (ms); ARGV[7] the on_failure step or '';
-- ARGV[8..] every step of the run
-- Returns: {1, run state, ids of the tasks of steps canceled now...}; {-1} no such run;
-- {-3} the step had finished already (nothing changed)
--! include clock
local run, step, outcome, on_failure = KEYS[1], ARGV[1], ARGV[2], ARGV[7]
local f = redis.call('HMGET', run, 'state', step .. ':state', 'failed')
if not f[1] then return {-1} end
if f[2] ~= 'WAITING' and f[2] ~= 'SCHEDULED' and f[2] ~= 'RUNNING' then return {-3} end
local now = redis_now()
local ended = tonumber(ARGV[4]) > 0 and ARGV[4] or now
redis.call('HSET', run, step .. ':state', outcome, step .. ':att', ARGV[5], step .. ':end', ended,
  step .. (outcome == 'SUCCEEDED' and ':out' or ':err'), ARGV[3])
local state, canceled, open = f[1], {}, 0
local active = (state == 'PENDING' or state == 'RUNNING') and not f[3]
local failing = active and outcome == 'FAILED' and step ~= on_failure
for a = 8, #ARGV do
  local s = redis.call('HGET', run, ARGV[a] .. ':state')
  if failing and ARGV[a] ~= on_failure then
    if s == 'WAITING' then redis.call('HSET', run, ARGV[a] .. ':state', 'SKIPPED') end
    if s == 'SCHEDULED' then
      redis.call('HSET', run, ARGV[a] .. ':state', 'CANCELED')
      canceled[#canceled + 1] = redis.call('HGET', run, ARGV[a] .. ':task')
    end
  end
  if ARGV[a] ~= on_failure and (s == 'WAITING' or s == 'SCHEDULED' or s == 'RUNNING') then
    open = open + 1
  end
end
if failing then
  redis.call('HSET', run, 'error', step .. ': ' .. ARGV[3], 'failed', step)
  if on_failure == '' then state = 'FAILED' end
elseif step == on_failure and (state == 'PENDING' or state == 'RUNNING') then
  state = 'FAILED'
elseif active and open == 0 and state == 'RUNNING' then
  state = 'SUCCEEDED'
  if on_failure ~= '' then redis.call('HSET', run, on_failure .. ':state', 'SKIPPED') end
end
if state ~= f[1] then
  redis.call('HSET', run, 'state', state, 'finished', now)
  redis.call('PEXPIRE', run, ARGV[6])
end
return {1, state, unpack(canceled)}
