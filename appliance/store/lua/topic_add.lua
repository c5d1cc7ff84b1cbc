-- topic_add: admits the topics an Enqueue names, all or none, under two limits: the
-- appliance's (max_topics) and that of the token first using them (max_topics_per_token).
-- Guarantees: a known topic is always admitted; a refusal changes nothing.
-- KEYS[1] <prefix>:topics              SET of the known topics
-- KEYS[2] {<prefix>:topics}:owner      HASH topic -> name of the token that made it
-- KEYS[3] {<prefix>:topics}:owned      HASH token name -> how many known topics it made
-- ARGV[1] token name ('' = none: only the appliance's limit); ARGV[2] max topics;
-- ARGV[3] max topics per token; ARGV[4..] the topics
-- Returns: {0, ''} all known now; {-1, <topic>} over max_topics; {-2, <topic>} over the token's
local topics, owner, owned = KEYS[1], KEYS[2], KEYS[3]
local token, most, per_token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local unknown = {}
for i = 4, #ARGV do
  if redis.call('SISMEMBER', topics, ARGV[i]) == 0 then unknown[#unknown + 1] = ARGV[i] end
end
if #unknown == 0 then return {0, ''} end
if redis.call('SCARD', topics) + #unknown > most then return {-1, unknown[1]} end
if token ~= '' and (tonumber(redis.call('HGET', owned, token)) or 0) + #unknown > per_token then
  return {-2, unknown[1]}
end
for _, topic in ipairs(unknown) do
  redis.call('SADD', topics, topic)
  if token ~= '' then redis.call('HSET', owner, topic, token) end
end
if token ~= '' then redis.call('HINCRBY', owned, token, #unknown) end
return {0, ''}
