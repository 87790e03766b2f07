-- create: POST /api/{user}/tasks {"title":"bench task"}
-- env: BENCH_TOKEN, BENCH_USER
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "POST"
wrk.path = "/api/" .. BENCH_USER .. "/tasks"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench task"}'
