-- POST the body in $WRK_BODY with a rotating caller key (x-user-id); print a JSON summary.
-- $WRK_CONTENT_TYPE (default JSON) and $WRK_V2_JSON_LENGTH describe a V2 binary-tensor body.
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
local body = f:read("*a")
f:close()
local content_type = os.getenv("WRK_CONTENT_TYPE") or "application/json"
-- set for a V2 binary-tensor body: the length of its JSON part
local v2_json_length = os.getenv("WRK_V2_JSON_LENGTH")
local counter = 0

request = function()
  counter = counter + 1
  local headers = {
    ["Host"] = wrk.headers["Host"],
    ["Content-Type"] = content_type,
    ["x-user-id"] = "user-" .. (counter % 997),
  }
  if v2_json_length then
    headers["inference-header-content-length"] = v2_json_length
  end
  return wrk.format("POST", nil, headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
