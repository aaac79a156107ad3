-- wrk script: POST one body with the headers given in the environment, and print the result as
-- one JSON line (latency in microseconds) so the runner does not parse wrk's human output.
--   BENCH_BODY_FILE  file holding the request body
--   BENCH_HEADERS    "Name: value" lines separated by "\n"
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 90, 95, 99, 99.9}) do
    table.insert(p, string.format('"%s": %d', tostring(q), latency:percentile(q)))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {%s}, "mean_us": %f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, table.concat(p, ", "), latency.mean, latency.max))
end
