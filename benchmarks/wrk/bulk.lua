-- wrk script: POST /check with 1,000-UUID batches, round-robin over prepared bodies.
--
--   wrk ... -s bulk.lua http://127.0.0.1:PORT -- BODIES_FILE SIZE ABSENT
--
-- BODIES_FILE has one JSON body {"uuids": [...]} per line, each of SIZE UUIDs of
-- which ABSENT do not exist. An answer is "ok" when it is a 200 with SIZE codes,
-- each 200 or 404, ABSENT of them 404; done() prints one WRK_RESULT JSON line
-- (its counts are requests, not UUIDs).
--
-- Each batch goes on a new connection ("Connection: close"), as a sweep script
-- would send it: with a handful of long-lived connections, Gunicorn often leaves
-- them all on one worker, and the run would measure that worker alone.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  size, absent = tonumber(args[2]), tonumber(args[3])
  local headers = { ["Content-Type"] = "application/json", ["Connection"] = "close" }
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("POST", "/check", headers, line)
  end
  position, ok, unexpected = 0, 0, 0
end

function request()
  position = position % #reqs + 1
  return reqs[position]
end

local function counts(body)
  local found, notfound, other = 0, 0, 0
  for code in body:gmatch('"code":%s*(%d+)') do
    found = found + 1
    if code == "404" then
      notfound = notfound + 1
    elseif code ~= "200" then
      other = other + 1
    end
  end
  return found, notfound, other
end

function response(status, headers, body)
  local found, notfound, other = counts(body)
  if status == 200 and found == size and other == 0 and notfound == absent then
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
