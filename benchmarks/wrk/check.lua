-- wrk script: GET /check/<uuid> round-robin over a list, checking every answer.
--
--   wrk ... -s check.lua http://127.0.0.1:PORT -- LIST_FILE
--
-- LIST_FILE has one "uuid expected-status" per line (200 or 404). An answer is
-- "ok" when its body names a UUID of the list and its status is the one expected
-- for that UUID; anything else (5xx, 400, a 404 for an existing instance, a 200
-- for an absent one) is "unexpected". done() prints one WRK_RESULT JSON line.

local threads = {}
local started = 0

function setup(thread)
  started = started + 1
  thread:set("id", started)
  table.insert(threads, thread)
end

function init(args)
  reqs, expected = {}, {}
  for line in io.lines(args[1]) do
    local uuid, code = line:match("^(%S+)%s+(%d+)$")
    reqs[#reqs + 1] = wrk.format("GET", "/check/" .. uuid)
    expected[uuid] = tonumber(code)
  end
  position = (id * 7919) % #reqs -- threads start at different places
  ok, unexpected = 0, 0
end

function request()
  position = position % #reqs + 1
  return reqs[position]
end

function response(status, headers, body)
  local uuid = body:match('"uuid":%s*"([%x%-]+)"')
  if uuid ~= nil and expected[uuid] == status then
    ok = ok + 1
  else
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local good, bad = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("ok")
    bad = bad + thread:get("unexpected")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"ok": %d, "unexpected": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    good, bad, e.connect, e.read, e.write, e.timeout))
end
