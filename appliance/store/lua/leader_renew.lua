-- leader_renew: extend the scheduler lease to now + ttl, only for the holder of this token.
-- Guarantees: a deposed leader (lease expired, or taken over under a newer token) changes
-- nothing; repeating a renew only moves the expiry again.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:leader   HASH holder, token, expires (ms); PEXPIREAT
-- ARGV[1] fencing token; ARGV[2] lease length (ms)
-- Returns: the new expiry (ms, Redis clock); -1 no lease (it expired); -2 another token holds it
--! include clock
local lease = KEYS[1]
local token, ttl = ARGV[1], tonumber(ARGV[2])
local cur = redis.call('HGET', lease, 'token')
if not cur then return -1 end
if cur ~= token then return -2 end
local now = redis_now()
local expires = now + ttl
redis.call('HSET', lease, 'expires', expires)
redis.call('PEXPIREAT', lease, expires)
return expires
