-- schedule_fire_now: one tick of a schedule fires now, besides its timetable (paused or not):
-- its task is parked in the outbox, which the leading scheduler enqueues (idempotent by task
-- id) and then clears, so the tick makes exactly one task; the schedule's next fire stays.
-- Guarantees: nothing changes for a schedule that does not exist; the leader is woken at once.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH
-- KEYS[2] <prefix>:{<prefix>/scheduler}:outbox          HASH task id -> task JSON
-- KEYS[3] <prefix>:{<prefix>/scheduler}:fired           STRING, ticks fired in total
-- ARGV[1] id; ARGV[2] tick (ms); ARGV[3] task id; ARGV[4] task JSON (topic, payload, due,
-- max_retries); ARGV[5] schedules channel ('<id> <ms>' wakes the leader)
-- Returns: 1 parked; -1 no such schedule
--! include wake
local key, outbox, fired = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', key) == 0 then return -1 end
redis.call('HSET', key, 'last', ARGV[2])
redis.call('HSET', outbox, ARGV[3], ARGV[4])
redis.call('INCR', fired)
wake(ARGV[5], ARGV[1], tonumber(ARGV[2]))
return 1
