-- leader_release: give the scheduler lease up at once (graceful stop), only with its token.
-- Guarantees: a stale token never deletes a newer leader's lease; releasing twice is harmless.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:leader   HASH holder, token, expires (ms)
-- ARGV[1] fencing token
-- Returns: 1 released; 0 not held under this token (nothing changed)
local lease = KEYS[1]
if redis.call('HGET', lease, 'token') ~= ARGV[1] then return 0 end
redis.call('DEL', lease)
return 1
