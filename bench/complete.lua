-- complete: PATCH /api/{user}/tasks/{id}/complete (toggles), cycling round-robin through the
-- ids in BENCH_TASK_IDS (comma-separated) so the load is not all on one row. Each thread starts
-- at a different offset of the list.
-- env: BENCH_TOKEN, BENCH_USER, BENCH_TASK_IDS
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids = {}
for id in string.gmatch(bench_env("BENCH_TASK_IDS"), "[^,]+") do
  table.insert(ids, id)
end

local requests = {}
local next_index = 0

function init(args)
  -- the requests are formatted once; request() only picks the next one
  for i, id in ipairs(ids) do
    requests[i] = wrk.format("PATCH", "/api/" .. BENCH_USER .. "/tasks/" .. id .. "/complete")
  end
  -- tid is set by setup() in common.lua before init runs
  next_index = ((tid or 0) * 17) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
