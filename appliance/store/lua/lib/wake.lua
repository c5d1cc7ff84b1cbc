-- wake (included by scripts that make a task due): publish '<topic> <due ms>' on the wake
-- channel when `due` is earlier than the pending head read before the change (`head`, the
-- reply of ZRANGE pending 0 0 WITHSCORES), so long polls and worker streams wake on time.
local function wake_if_earlier(head, due, channel, topic)
  if head[2] == nil or due < tonumber(head[2]) then
    redis.call('PUBLISH', channel, topic .. ' ' .. string.format('%d', due))
  end
end
