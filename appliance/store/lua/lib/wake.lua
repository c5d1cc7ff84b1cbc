-- wake (included by scripts that make a task due or a lease end earlier): publish
-- '<name> <ms>' on a channel, so long polls, worker streams, watchdogs and the scheduler wake
-- on time. A hash-tagged channel ('{' in its name, keys.shard_channel) is a shard channel in
-- the script's own slot, on a Redis Cluster: SPUBLISH, which stays within that shard.
-- `more` (optional): text appended to the message as it is (ack.lua's attempt and result).
local function wake(channel, name, ms, more)
  local publish = string.find(channel, '{', 1, true) and 'SPUBLISH' or 'PUBLISH'
  redis.call(publish, channel, name .. ' ' .. string.format('%d', ms) .. (more or ''))
end

-- Publish when `ms` is earlier than the head read before the change (`head`, the reply of
-- ZRANGE <zset> 0 0 WITHSCORES): the only case a waiter must re-plan.
local function wake_if_earlier(head, ms, channel, name)
  if head[2] == nil or ms < tonumber(head[2]) then wake(channel, name, ms) end
end
