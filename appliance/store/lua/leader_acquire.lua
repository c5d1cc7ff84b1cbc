-- leader_acquire: take the scheduler lease when it is free, under a new fencing token.
-- Guarantees: one holder at a time; every grant gets a token larger than all before it (INCR);
-- a holder asking again (its reply was lost) gets its own lease back, never a second token.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:leader   HASH holder, token, expires (ms); PEXPIREAT
-- KEYS[2] <prefix>:{<prefix>/scheduler}:fence    STRING, the fencing token counter
-- ARGV[1] holder id (unique per process); ARGV[2] lease length (ms)
-- Returns: {granted (1/0), holder, token, expires (ms), ms left on the lease} - on 0, who holds
--          it (and for how long), so a follower can wait until exactly then.
--! include clock
local lease, fence = KEYS[1], KEYS[2]
local holder, ttl = ARGV[1], tonumber(ARGV[2])
local now = redis_now()
local cur = redis.call('HMGET', lease, 'holder', 'token', 'expires')
if cur[1] then
  local left = redis.call('PTTL', lease)
  local mine = 0
  if cur[1] == holder then mine = 1 end
  return {mine, cur[1], tonumber(cur[2]), tonumber(cur[3]), left}
end
local token = redis.call('INCR', fence)
local expires = now + ttl
redis.call('HSET', lease, 'holder', holder, 'token', token, 'expires', expires)
redis.call('PEXPIREAT', lease, expires)
return {1, holder, token, expires, ttl}
