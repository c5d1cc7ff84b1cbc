-- run_start: create a workflow run with every step WAITING, PENDING; or with its first steps
-- (those without parents) SCHEDULED at once, each with its outbox record (the task it is about
-- to get, as step_schedule records it), RUNNING (docs/adr/0010).
-- Guarantees: idempotent by run id: a run that exists is left alone (StartRun with `id`), so
-- no step of it is scheduled twice; the first steps' records and the run appear together.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps (<step>:<field>)
-- ARGV[1] workflow name; ARGV[2] its version; ARGV[3] input; ARGV[4] start (ms, Redis clock;
-- 0 = now; a schedule's tick: its steps without parents are due then); ARGV[5] n, the number
-- of steps; ARGV[6..5+n] step names; then per step scheduled now, six: step, task id
-- (wf:<run>:<step>; '' for a signal step), topic, payload, due (ms), max retries
-- Returns: 1 created; 0 the run existed (nothing changed)
--! include clock
--! include schedule_step
local run = KEYS[1]
if redis.call('EXISTS', run) == 1 then return 0 end
local start = tonumber(ARGV[4]) > 0 and ARGV[4] or redis_now()
local n = tonumber(ARGV[5])
local fields = {'wf', ARGV[1], 'ver', ARGV[2], 'state', 'PENDING', 'input', ARGV[3],
  'created', start}
for a = 6, 5 + n do
  fields[#fields + 1] = ARGV[a] .. ':state'
  fields[#fields + 1] = 'WAITING'
end
redis.call('HSET', run, unpack(fields))
for a = 6 + n, #ARGV, 6 do  -- each as step_schedule records it (the run becomes RUNNING)
  schedule_step(run, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
    {}, 1)
end
return 1
