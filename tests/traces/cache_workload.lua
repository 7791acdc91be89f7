-- A cache workload for tests/traces/lua-cache: lua5.4 holds 20,000 records
-- (a table with a 200-byte payload string each, about 10 MB) in a table keyed
-- by string, then serves 3 phases of requests, 90% within a hot window of
-- 2,000 keys that moves each phase and 10% uniform. A quarter of requests
-- replace the record (a new table and payload), so the garbage collector
-- (Lua 5.4's default, incremental) runs cycles over the whole heap as the
-- program goes. An argument sets the requests per phase (default 10,000).
local N, HOT = 20000, 2000
local REQUESTS = tonumber(arg and arg[1]) or 10000
local function record(i, v)
  return { id = i, version = v, payload = string.rep(string.char(65 + (i + v) % 26), 200) .. i }
end
local cache = {}
for i = 1, N do cache["k" .. i] = record(i, 0) end
local x, sum = 12345, 0
for phase = 0, 2 do
  local base = phase * (N - HOT) // 2
  for _ = 1, REQUESTS do
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    local k = (x % 10 ~= 0) and (base + (x >> 4) % HOT) or ((x >> 4) % N)
    local key = "k" .. (k + 1)
    local r = cache[key]
    if (x >> 8) % 4 == 0 then
      cache[key] = record(k + 1, r.version + 1)
    else
      sum = sum + string.byte(r.payload, 1 + (x >> 12) % 200)
    end
  end
  io.stderr:write(string.format("phase %d: %.1f MB\n", phase, collectgarbage("count") / 1024))
end
print(sum)
