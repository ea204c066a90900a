-- wrk script: each request carries the next token from a file (one token a line), in order,
-- wrapping around at the end.
--
--   wrk ... -s bench/rotate_tokens.lua URL -- TOKEN_FILE [REQUEST_LIMIT]
--
-- With REQUEST_LIMIT, the thread stops when it is asked for request REQUEST_LIMIT + 1, so a run
-- sends each token of a file of that length once (plus at most that one extra request). The
-- responses to the last requests in flight may be cut off and then are not counted by wrk.
-- Run it with one wrk thread: each thread keeps its own position in the file.

local tokens = {}
local next_index = 1
local request_count = 0
local request_limit = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("rotate_tokens.lua: missing token file argument (wrk ... -- TOKEN_FILE)")
  end
  for line in io.lines(path) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  if #tokens == 0 then
    error("rotate_tokens.lua: no tokens in " .. path)
  end
  request_limit = tonumber(args[2] or "0")
end

-- No response() function: wrk then skips handing each response to Lua, which would slow the
-- client down on this listener only.
function request()
  request_count = request_count + 1
  if request_limit > 0 and request_count > request_limit then
    wrk.thread:stop()
  end
  local token = tokens[next_index]
  next_index = next_index % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. token })
end
