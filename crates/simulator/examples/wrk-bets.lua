-- wrk script: POST /casino/bet with a fresh Idempotency-Key on every request (no replays).
-- Usage: wrk -t1 -c64 -d10s -s crates/simulator/examples/wrk-bets.lua http://127.0.0.1:PORT
local threads_started = 0

function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end

local sequence = 0
local body = '{"game":"dice","amount":"0.01","target":50,"prediction":"over"}'

function request()
  sequence = sequence + 1
  local headers = {}
  headers["Idempotency-Key"] = "wrk-" .. tostring(thread_id) .. "-" .. tostring(sequence)
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/casino/bet", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
