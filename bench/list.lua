-- list: GET /api/{user}/tasks?limit=20
-- env: BENCH_TOKEN, BENCH_USER
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "GET"
wrk.path = "/api/" .. BENCH_USER .. "/tasks?limit=20"
