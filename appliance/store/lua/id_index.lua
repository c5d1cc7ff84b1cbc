-- id_index: keeps the index of the topics holding a client-given id in step with their tasks
-- (ADR 0006): 'live' when a task with the id is created (or found living) in a topic, 'done'
-- when it finished (its record kept for the retention time), 'found' when a repeated Enqueue
-- finds its task finished (the first call's indexing may have been cut off), 'drop' when its
-- record is deleted.
-- Guarantees: the key never expires while a topic's task with the id lives, and expires the
-- retention time after the last one finished; 'done' never creates a key (an Enqueue cut off
-- before its index was written leaves nothing to finish).
-- KEYS[1] <prefix>:ids:<id>     HASH topic -> 'live' | 'done'
-- ARGV[1] 'live' | 'done' | 'found' | 'drop'; ARGV[2] topic; ARGV[3] retention (ms)
-- Returns: how many topics hold a living task with the id
local key, mode, topic, retention = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if mode == 'live' then
  redis.call('HSET', key, topic, 'live')
  redis.call('PERSIST', key)
elseif mode == 'done' then
  if redis.call('HEXISTS', key, topic) == 1 then redis.call('HSET', key, topic, 'done') end
elseif mode == 'found' then
  if redis.call('HGET', key, topic) ~= 'live' then redis.call('HSET', key, topic, 'done') end
elseif mode == 'drop' then
  redis.call('HDEL', key, topic)
else
  return redis.error_reply('id_index: mode must be live, done, found or drop')
end
local live, any = 0, false
for _, state in ipairs(redis.call('HVALS', key)) do
  any = true
  if state == 'live' then live = live + 1 end
end
if any and live == 0 then redis.call('PEXPIRE', key, retention) end
return live
