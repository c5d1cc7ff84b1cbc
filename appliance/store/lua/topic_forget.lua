-- topic_forget: forgets the topics found empty (nothing pending, running or dead) once they
-- have stayed so for the retention time (their finished records are gone by then), and gives
-- each one back to the token that made it. A topic found not empty starts over.
-- KEYS[1] <prefix>:topics              SET of the known topics
-- KEYS[2] {<prefix>:topics}:owner      HASH topic -> name of the token that made it
-- KEYS[3] {<prefix>:topics}:owned      HASH token name -> how many known topics it made
-- KEYS[4] {<prefix>:topics}:empty      HASH topic -> when it was first found empty (ms)
-- ARGV[1] retention (ms); ARGV[2..] pairs: topic, 1 (found empty) or 0 (not)
-- Returns: the topics forgotten
--! include clock
local topics, owner, owned, empty = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = redis_now()
local forgotten = {}
for i = 2, #ARGV, 2 do
  local topic = ARGV[i]
  local since = tonumber(redis.call('HGET', empty, topic))
  if ARGV[i + 1] ~= '1' then
    if since then redis.call('HDEL', empty, topic) end
  elseif not since then
    redis.call('HSET', empty, topic, now)
  elseif now - since >= tonumber(ARGV[1]) then
    redis.call('SREM', topics, topic)
    redis.call('HDEL', empty, topic)
    local token = redis.call('HGET', owner, topic)
    if token then
      redis.call('HDEL', owner, topic)
      if redis.call('HINCRBY', owned, token, -1) <= 0 then redis.call('HDEL', owned, token) end
    end
    forgotten[#forgotten + 1] = topic
  end
end
return forgotten
