-- purge_dead: dead letters of one topic are deleted for good (record and DLQ entry).
-- Guarantees: only ids that are in the DLQ are deleted; others are skipped and unchanged.
-- KEYS[1] <prefix>:{<topic>}:dlq  ZSET id -> time it died (ms)
-- ARGV[1] task key prefix (same hash tag); ARGV[2] limit when no ids are given;
-- ARGV[3..] ids (none: the oldest `limit` dead letters)
-- Returns: the ids purged
local dlq = KEYS[1]
local prefix = ARGV[1]
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', dlq, 0, tonumber(ARGV[2]) - 1) end
local purged = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', dlq, id) == 1 then
    redis.call('DEL', prefix .. id)
    purged[#purged + 1] = id
  end
end
return purged
