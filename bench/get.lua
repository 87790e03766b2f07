-- get: GET /api/{user}/tasks/{id}
-- env: BENCH_TOKEN, BENCH_USER, BENCH_TASK_ID
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "GET"
wrk.path = "/api/" .. BENCH_USER .. "/tasks/" .. bench_env("BENCH_TASK_ID")
