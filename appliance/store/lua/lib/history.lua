-- history (included by scripts that move a task): the task's event history is one field `hist`
-- of its task HASH, lines '<ms> <event>[ <detail>]', oldest first, at most HIST_MAX bytes (the
-- oldest lines leave first), so it lives, expires and is deleted with the record, in the
-- record's slot (docs/adr/0017). The enqueue is no line: it is the record's `created`.
-- HIST_MAX stays under the task HASH's listpack bound (hash-max-listpack-value 1024).
local HIST_MAX, HIST_DETAIL = 1000, 160

-- `old` (nil or '': none yet) with `line` added, the oldest lines dropped past HIST_MAX.
local function history_trim(old, line)
  local text = line
  if old and old ~= '' then text = old .. '\n' .. line end
  while #text > HIST_MAX do
    local nl = string.find(text, '\n', 1, true)
    if not nl then return line end
    text = string.sub(text, nl + 1)
  end
  return text
end

-- `old` with one more line: `event` at `ms`, its detail cut to HIST_DETAIL bytes on one line.
local function history_add(old, ms, event, detail)
  local line = string.format('%d %s', ms, event)
  if detail and detail ~= '' then
    line = line .. ' ' .. (string.gsub(string.sub(detail, 1, HIST_DETAIL), '[\r\n]', ' '))
  end
  return history_trim(old, line)
end

-- `old` with an extension at `ms`: back-to-back extensions are one line counting them
-- ('<ms of the last> extend <n>'), so a long task's renewals never push its lease out.
local function history_extend(old, ms)
  local n = 1
  if old and old ~= '' then
    local last = string.match(old, '[^\n]*$')
    local count = string.match(last, '^%d+ extend (%d+)$')
    if count then
      old, n = string.sub(old, 1, #old - #last - 1), tonumber(count) + 1
    end
  end
  return history_trim(old, string.format('%d extend %d', ms, n))
end
