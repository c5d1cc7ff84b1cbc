-- run_start: create a workflow run, PENDING, with every step WAITING (docs/adr/0010).
-- Guarantees: idempotent by run id: a run that exists is left alone (StartRun with `id`).
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps (<step>:<field>)
-- ARGV[1] workflow name; ARGV[2] its version; ARGV[3] input; ARGV[4] start (ms, Redis clock;
-- 0 = now; a schedule's tick: its steps without parents are due then); ARGV[5..] step names
-- Returns: 1 created; 0 the run existed (nothing changed)
--! include clock
local run = KEYS[1]
if redis.call('EXISTS', run) == 1 then return 0 end
local start = tonumber(ARGV[4]) > 0 and ARGV[4] or redis_now()
local fields = {'wf', ARGV[1], 'ver', ARGV[2], 'state', 'PENDING', 'input', ARGV[3],
  'created', start}
for a = 5, #ARGV do
  fields[#fields + 1] = ARGV[a] .. ':state'
  fields[#fields + 1] = 'WAITING'
end
redis.call('HSET', run, unpack(fields))
return 1
