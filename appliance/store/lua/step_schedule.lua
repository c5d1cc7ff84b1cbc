-- step_schedule: a WAITING step whose parents finished becomes SCHEDULED, recording the task it
-- is about to get (the outbox record: task id, topic, rendered payload, due time, max retries)
-- before that task is written in its topic's slot; the run becomes RUNNING (docs/adr/0010).
-- Guarantees: a step is scheduled once; a run that is not PENDING or RUNNING (canceled,
-- failed) schedules nothing; with expected states (the hand-off deciding from the run as it
-- last saw it), nothing unless every step named is in its state (SCHEDULED matching RUNNING:
-- a task leased or not decides nothing), so a decision is never made on a moved run.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- ARGV[1] step; ARGV[2] task id (wf:<run>:<step>); ARGV[3] topic; ARGV[4] payload;
-- ARGV[5] due (ms, Redis clock); ARGV[6] max retries; ARGV[7..] optional pairs: step, its
-- expected state
-- Returns: 1 scheduled; -1 no such run; -3 the step is not WAITING; -4 the run is finished;
-- -5 a step is not in its expected state (nothing changed)
local run, step = KEYS[1], ARGV[1]
local f = redis.call('HMGET', run, 'state', step .. ':state')
if not f[1] then return -1 end
if f[1] ~= 'PENDING' and f[1] ~= 'RUNNING' then return -4 end
if f[2] ~= 'WAITING' then return -3 end
for a = 7, #ARGV, 2 do
  local s = redis.call('HGET', run, ARGV[a] .. ':state')
  if s ~= ARGV[a + 1] and not (s == 'RUNNING' and ARGV[a + 1] == 'SCHEDULED') then return -5 end
end
redis.call('HSET', run, 'state', 'RUNNING', step .. ':state', 'SCHEDULED',
  step .. ':task', ARGV[2], step .. ':topic', ARGV[3], step .. ':payload', ARGV[4],
  step .. ':due', ARGV[5], step .. ':maxr', ARGV[6])
return 1
