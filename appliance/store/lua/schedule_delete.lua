-- schedule_delete: remove one schedule; it never fires again (its outbox entries still settle).
-- Guarantees: the HASH, its due entry and its id go in one step; a config-declared schedule is
-- refused when the caller asks for api-made ones only.
-- KEYS[1] <prefix>:{<prefix>/scheduler}:schedule:<id>   HASH
-- KEYS[2] <prefix>:{<prefix>/scheduler}:due             ZSET id -> next fire (ms)
-- KEYS[3] <prefix>:{<prefix>/scheduler}:ids             SET of every schedule id
-- ARGV[1] id; ARGV[2] 'api' to refuse a schedule whose source is config ('' = any source)
-- Returns: the deleted HASH as a flat field/value list; -1 no such schedule; -3 declared in the
--          config file (nothing changed).
local key, due, ids = KEYS[1], KEYS[2], KEYS[3]
local id, only = ARGV[1], ARGV[2]
local old = redis.call('HGETALL', key)
if #old == 0 then return -1 end
if only == 'api' and redis.call('HGET', key, 'source') == 'config' then return -3 end
redis.call('DEL', key)
redis.call('ZREM', due, id)
redis.call('SREM', ids, id)
return old
