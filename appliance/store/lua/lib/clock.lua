-- clock (included by scripts that read the time): the Redis server's clock, so every process
-- judges due times and lease deadlines by one clock (docs/adr/0001).
-- Returns now in milliseconds and in microseconds.
local function redis_now()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us
end
