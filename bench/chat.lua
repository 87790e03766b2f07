-- chat: POST /api/{user}/chat with the rules provider, one turn per request, each a new
-- conversation (no conversation_id), cycling through three everyday requests: the task list
-- (the user has 50 tasks), what is due today, and a greeting (no tool). A turn with a tool calls
-- the tasks API as the user; every turn stores the conversation and both messages and emits
-- chat.turn_completed. No request here changes the user's tasks, so the other scenarios'
-- data stays put.
-- env: BENCH_TOKEN, BENCH_USER
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local messages = {
  "show my tasks",
  "what's left for today?",
  "hello",
}

local requests = {}
local next_index = 0

-- wrk.format's headers argument replaces wrk.headers (and its Authorization): add to them instead
wrk.headers["Content-Type"] = "application/json"

function init(args)
  for i, m in ipairs(messages) do
    requests[i] = wrk.format("POST", "/api/" .. BENCH_USER .. "/chat", nil, '{"message":"' .. m .. '"}')
  end
  next_index = (tid or 0) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
