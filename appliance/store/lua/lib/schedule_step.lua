-- schedule_step (included by step_schedule and step_hand_off): a WAITING step of an active run
-- becomes SCHEDULED with its outbox record (task id, topic, payload, due ms, max retries), the
-- run RUNNING; with expected states (`args` from index `first`, pairs: step, the state a
-- decision was made on; SCHEDULED matching RUNNING, as a task leased or not decides nothing),
-- only while every step named is in its state.
-- Returns 1 scheduled; -1 no such run; -4 the run is finished; -3 the step is not WAITING;
-- -5 a step is not in its expected state (nothing changed).
local function run_moved(run, args, first)
  for a = first, #args, 2 do
    local s = redis.call('HGET', run, args[a] .. ':state')
    if s ~= args[a + 1] and not (s == 'RUNNING' and args[a + 1] == 'SCHEDULED') then
      return true
    end
  end
  return false
end

local function schedule_step(run, step, task_id, topic, payload, due, max_retries, args, first)
  local f = redis.call('HMGET', run, 'state', step .. ':state')
  if not f[1] then return -1 end
  if f[1] ~= 'PENDING' and f[1] ~= 'RUNNING' then return -4 end
  if f[2] ~= 'WAITING' then return -3 end
  if run_moved(run, args, first) then return -5 end
  redis.call('HSET', run, 'state', 'RUNNING', step .. ':state', 'SCHEDULED',
    step .. ':task', task_id, step .. ':topic', topic, step .. ':payload', payload,
    step .. ':due', due, step .. ':maxr', max_retries)
  return 1
end
