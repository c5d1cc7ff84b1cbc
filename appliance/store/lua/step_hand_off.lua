-- step_hand_off: a step's task succeeded: its success is recorded (step_finish), the steps it
-- makes ready are scheduled (step_schedule, their outbox records) and each one scheduled now
-- gets its task written in its topic (enqueue), in one atomic script: one round trip for the
-- whole hand-off. For a single Redis only: the run and the topics are in different cluster
-- slots, where the advancer makes the same moves with step_finish, step_schedule, then
-- enqueue (docs/adr/0010).
-- Guarantees: as those scripts' (their code is the lib functions they share); a ready step is
-- scheduled only while every step is in the state the decision was made on (else -5, RUN_MOVED),
-- and its task is written only when it was scheduled by this call, so a run canceled, moved or
-- already handed off writes no task, and a repeat (a lost reply, a replay) writes nothing twice.
-- KEYS[1] <prefix>:{run:<id>}:run      HASH the run and its steps
-- KEYS[2i], KEYS[2i+1] <prefix>:{<topic>}:pending, :new of the i-th ready step's topic (a
-- step without a task, a signal's: KEYS[1] twice, untouched)
-- ARGV[1] wake channel; ARGV[2] retention (ms); ARGV[3] the step that succeeded; ARGV[4] its
-- output; ARGV[5] its finish (ms, 0 = now); ARGV[6] attempts; ARGV[7] the on_failure step or '';
-- ARGV[8] n, the number of steps of the run; ARGV[9..8+n] every step of the run; then seven
-- per ready step: step, task id ('' none), topic, payload, due (ms), max retries, task key
-- prefix (<prefix>:{<topic>}:task:); then optional pairs: step, the state the decision was made on
-- Returns: {step_finish's answer, {step_schedule's code per ready step (1: scheduled and its
-- task, if any, written)}, the run's fields after (HGETALL)}
--! include new_record
--! include clock
--! include wake
--! include enqueue_tasks
--! include finish_step
--! include schedule_step
local run, channel, n = KEYS[1], ARGV[1], tonumber(ARGV[8])
local ready, first = (#KEYS - 1) / 2, 9 + n
local finished = finish_step(run, ARGV[3], 'SUCCEEDED', ARGV[4], ARGV[5], ARGV[6], ARGV[2],
  ARGV[7], {unpack(ARGV, 9, 8 + n)})
local moved = ready > 0 and run_moved(run, ARGV, first + 7 * ready)
local codes = {}
for i = 1, ready do
  local a = first + 7 * (i - 1)
  local step, id, topic, payload, due, max_retries = unpack(ARGV, a, a + 5)
  local code = -5
  if not moved then
    code = schedule_step(run, step, id, topic, payload, due, max_retries, {}, 1)
  end
  if code == 1 and id ~= '' then
    local task = {id, payload, string.format('0 %s %s', due, max_retries)}
    enqueue_tasks(KEYS[2 * i], KEYS[2 * i + 1], channel, topic, ARGV[a + 6], task, 1)
  end
  codes[i] = code
end
return {finished, codes, redis.call('HGETALL', run)}
