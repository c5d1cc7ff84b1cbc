-- new_record (included by scripts that read tasks never leased): such a task's whole record is
-- one field of the topic's `new` HASH, '<created ms> <max_retries>[ <traceparent>]\n<payload>',
-- its due time being its score in the pending ZSET (see docs/adr/0004-pending-record-layout.md).
local function pack_new_record(created, max_retries, trace, payload)
  local head = string.format('%d %d', created, max_retries)
  if trace ~= '' then head = head .. ' ' .. trace end
  return head .. '\n' .. payload
end

-- The fields of a packed record: payload, created, max_retries, traceparent ('' if none).
local function unpack_new_record(packed)
  local nl = string.find(packed, '\n', 1, true)
  local created, max_retries, trace = string.match(string.sub(packed, 1, nl - 1),
    '^(%d+) (%d+) ?(.*)$')
  return string.sub(packed, nl + 1), created, max_retries, trace
end

-- Write the task HASH `key` of a packed record: due `due` (its pending score), `attempt`,
-- `state`, then any more field/value pairs. Returns payload, created, max_retries, traceparent.
local function write_new_record(key, packed, due, attempt, state, ...)
  local payload, created, max_retries, trace = unpack_new_record(packed)
  local fields = {'payload', payload, 'due', due, 'created', created, 'maxr', max_retries,
    'attempt', attempt, 'state', state, ...}
  if trace ~= '' then
    fields[#fields + 1] = 'trace'
    fields[#fields + 1] = trace
  end
  redis.call('HSET', key, unpack(fields))
  return payload, created, max_retries, trace
end
