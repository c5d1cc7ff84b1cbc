-- workflow_delete: a workflow name is no longer listed nor startable; its versions stay, so
-- runs in flight finish (docs/adr/0010).
-- KEYS[1] <prefix>:{<prefix>/workflows}:workflows         HASH name -> latest version
-- ARGV[1] name
-- Returns: 1 deleted; -1 no such workflow
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
return 1
