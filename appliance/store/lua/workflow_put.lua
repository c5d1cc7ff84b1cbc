-- workflow_put: store a checked workflow definition as the name's next version (1, 2, ...;
-- never reused, also after a delete) and make it the latest.
-- Guarantees: the version counter and the definition are written in one step.
-- KEYS[1] <prefix>:{<prefix>/workflows}:workflows         HASH name -> latest version
-- KEYS[2] <prefix>:{<prefix>/workflows}:workflow:<name>   HASH version -> JSON, next -> counter
-- ARGV[1] name; ARGV[2] the definition (JSON)
-- Returns: the new version
local names, versions = KEYS[1], KEYS[2]
local version = redis.call('HINCRBY', versions, 'next', 1)
redis.call('HSET', versions, version, ARGV[2])
redis.call('HSET', names, ARGV[1], version)
return version
