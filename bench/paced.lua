-- Paced POST load for wrk (wrk -t1 -c16 -d15s --latency -s bench/paced.lua URL -- ARGS).
-- ARGS: mean pause per connection in ms, the JSON body, then headers as "Name: value".
-- Each connection waits a random 0..2x mean pause before its next request, so the
-- connections do not fire in step and the total rate is about connections / pause.
-- done() prints one line "PACED_JSON {...}" with latency percentiles in microseconds.

local pause_ms = 32

function init(args)
  pause_ms = tonumber(args[1]) or pause_ms
  wrk.method = "POST"
  wrk.body = args[2]
  wrk.headers["Content-Type"] = "application/json"
  for i = 3, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
  math.randomseed(os.time())
end

function delay()
  return math.random(0, 2 * pause_ms)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PACED_JSON {"requests":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
