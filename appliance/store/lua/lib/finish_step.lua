-- finish_step (included by step_finish and step_hand_off, after clock): a step's outcome
-- recorded once, and what it does to the run (step_finish.lua's contract says what).
-- `outcome` SUCCEEDED | FAILED | SKIPPED; `text` its output or error; `finished` ms (0: now);
-- `steps` every step of the run (a table).
-- Returns {1, run state, ids of the tasks of steps canceled now...}; {-1} no such run; {-3}
-- the step had finished already (nothing changed).
local function finish_step(run, step, outcome, text, finished, attempts, retention, on_failure,
    steps)
  local f = redis.call('HMGET', run, 'state', step .. ':state', 'failed')
  if not f[1] then return {-1} end
  if f[2] ~= 'WAITING' and f[2] ~= 'SCHEDULED' and f[2] ~= 'RUNNING' then return {-3} end
  local now = redis_now()
  local ended = tonumber(finished) > 0 and finished or now
  redis.call('HSET', run, step .. ':state', outcome, step .. ':att', attempts, step .. ':end',
    ended, step .. (outcome == 'SUCCEEDED' and ':out' or ':err'), text)
  local state, canceled, open = f[1], {}, 0
  local active = (state == 'PENDING' or state == 'RUNNING') and not f[3]
  local failing = active and outcome == 'FAILED' and step ~= on_failure
  for _, name in ipairs(steps) do
    local s = redis.call('HGET', run, name .. ':state')
    if failing and name ~= on_failure then
      if s == 'WAITING' then redis.call('HSET', run, name .. ':state', 'SKIPPED') end
      if s == 'SCHEDULED' then
        redis.call('HSET', run, name .. ':state', 'CANCELED')
        canceled[#canceled + 1] = redis.call('HGET', run, name .. ':task')
      end
    end
    if name ~= on_failure and (s == 'WAITING' or s == 'SCHEDULED' or s == 'RUNNING') then
      open = open + 1
    end
  end
  if failing then
    redis.call('HSET', run, 'error', step .. ': ' .. text, 'failed', step)
    if on_failure == '' then state = 'FAILED' end
  elseif step == on_failure and (state == 'PENDING' or state == 'RUNNING') then
    state = 'FAILED'
  elseif active and open == 0 and state == 'RUNNING' then
    state = 'SUCCEEDED'
    if on_failure ~= '' then redis.call('HSET', run, on_failure .. ':state', 'SKIPPED') end
  end
  if state ~= f[1] then
    redis.call('HSET', run, 'state', state, 'finished', now)
    redis.call('PEXPIRE', run, retention)
  end
  return {1, state, unpack(canceled)}
end
