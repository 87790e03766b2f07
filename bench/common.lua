-- Shared by the scenario scripts (loaded with dofile from the script's own directory).
--
-- Counts every response that is not 2xx per thread, by status code, and prints the totals in
-- done() as two lines that bench/run.sh parses:
--   lua_non2xx: N
--   lua_status: 409=3 503=1        (or "lua_status: none")
-- Settings come from the environment (wrk scripts cannot take flags from run.sh otherwise):
--   BENCH_TOKEN    access token (Authorization: Bearer …)
--   BENCH_USER     user id of the path /api/{user}/…

function bench_env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then
    error("bench: environment variable " .. name .. " is not set")
  end
  return v
end

BENCH_USER = bench_env("BENCH_USER")
wrk.headers["Authorization"] = "Bearer " .. bench_env("BENCH_TOKEN")
wrk.headers["Accept"] = "application/json"

-- main Lua state: one entry per thread, so done() can collect the per-thread counters
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- per-thread state (each wrk thread has its own Lua state)
non2xx = 0
statuses = {}

function response(status, headers, body)
  if status < 200 or status >= 300 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    total = total + (thread:get("non2xx") or 0)
    for status, n in pairs(thread:get("statuses") or {}) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local codes = {}
  for status, _ in pairs(by_status) do
    table.insert(codes, status)
  end
  table.sort(codes)
  local parts = {}
  for _, status in ipairs(codes) do
    table.insert(parts, string.format("%d=%d", status, by_status[status]))
  end
  io.write(string.format("lua_non2xx: %d\n", total))
  io.write("lua_status: " .. (#parts > 0 and table.concat(parts, " ") or "none") .. "\n")
end
