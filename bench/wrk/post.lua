-- post.lua — wrk script for agentd's benchmarks: sends one fixed POST and
-- prints a machine-readable summary (latency distribution, error counts,
-- answers by status class) after the human-readable one.
--
-- Usage: wrk ... -s bench/wrk/post.lua URL -- BODY_FILE [Header:value ...]
-- The body comes from a file so the same script serves /v1/agent and the
-- fake's /v1/messages; each extra argument is one request header. BODY_FILE
-- "-" sends a GET without a body instead (bench/run.sh e: /health/live).
-- BENCH_LATENCY_FILE=path also writes the latency distribution there.
-- BENCH_IDEM_PREFIX=p gives every request its own Idempotency-Key,
-- p-<thread>-<n> (n counts that thread's requests), so each one is a new
-- durable run and none can be a replay (bench/durable.sh); answers that say
-- Idempotent-Replayed are counted all the same (idem_replayed, expect 0).
-- 503 answers whose body names the circuit breaker are counted apart
-- (status_503_circuit: runs failed fast because a breaker was open).

local threads = {}
local idem_prefix = os.getenv("BENCH_IDEM_PREFIX")
if idem_prefix == "" then idem_prefix = nil end

-- Optional staggered start (a diagnostic, see README.md): the first
-- BENCH_STAGGER_REQUESTS requests of each wrk thread wait a random
-- 0..BENCH_STAGGER_MS ms, so the connections do not all fire at t=0. wrk
-- only routes requests through its timer when delay() exists, so it is
-- defined only when asked for.
local stagger_ms = tonumber(os.getenv("BENCH_STAGGER_MS") or "")
local stagger_requests = tonumber(os.getenv("BENCH_STAGGER_REQUESTS") or "")
if stagger_ms and stagger_requests then
   local sent = 0
   function delay()
      sent = sent + 1
      if sent <= stagger_requests then
         return math.random(0, stagger_ms)
      end
      return 0
   end
end

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

local function read_file(path)
   local f = assert(io.open(path, "rb"), "cannot open body file " .. tostring(path))
   local s = f:read("*a")
   f:close()
   return s
end

function init(args)
   assert(args[1], "usage: wrk ... -s post.lua URL -- BODY_FILE [Header:value ...]")
   if args[1] == "-" then
      -- No body: a GET (bench (e): /health/live).
      wrk.method = "GET"
   else
      wrk.method = "POST"
      wrk.body = read_file(args[1])
      wrk.headers["Content-Type"] = "application/json"
   end
   for i = 2, #args do
      local name, value = args[i]:match("^([^:]+):%s*(.*)$")
      assert(name, "bad header argument " .. args[i])
      wrk.headers[name] = value
   end
   -- Each thread keeps its own counters (wrk runs one Lua state per thread);
   -- done() reads them back through thread:get().
   statuses = { s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, other = 0 }
   keys_sent = 0
   replayed = 0
   circuit = 0
   req = wrk.format()
end

function request()
   if not idem_prefix then
      return req
   end
   keys_sent = keys_sent + 1
   local h = {}
   for name, value in pairs(wrk.headers) do h[name] = value end
   h["Idempotency-Key"] = idem_prefix .. "-" .. tostring(tid) .. "-" .. keys_sent
   return wrk.format(nil, nil, h)
end

-- wrk itself only counts status > 399 as an error; count every class so a
-- 1xx/3xx answer cannot pass as success either.
function response(status, headers, body)
   local k
   if status >= 200 and status < 300 then k = "s2xx"
   elseif status >= 300 and status < 400 then k = "s3xx"
   elseif status >= 400 and status < 500 then k = "s4xx"
   elseif status >= 500 and status < 600 then k = "s5xx"
   else k = "other" end
   statuses[k] = statuses[k] + 1
   if status == 503 and body and body:find("circuit", 1, true) then
      circuit = circuit + 1
   end
   if headers["Idempotent-Replayed"] or headers["idempotent-replayed"] then
      replayed = replayed + 1
   end
end

-- BENCH_WRK_LIGHT=1: no response() at all, so wrk does not hand every
-- answer's headers to Lua (on a 2-CPU machine that work caps wrk below a fast
-- server's rate: bench (e)). Status classes then come from wrk's own count
-- of answers >= 400 (3xx counted as 2xx; status_counted says which).
local light = os.getenv("BENCH_WRK_LIGHT") == "1"
if light then
   response = nil
end

function done(summary, latency, requests)
   local c = { s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, other = 0 }
   local keys, replays, circuits = 0, 0, 0
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      for k, _ in pairs(c) do c[k] = c[k] + (s and s[k] or 0) end
      keys = keys + (t:get("keys_sent") or 0)
      replays = replays + (t:get("replayed") or 0)
      circuits = circuits + (t:get("circuit") or 0)
   end
   local e = summary.errors
   if light then
      c.s2xx = summary.requests - e.status
      c.other = e.status
   end
   local secs = summary.duration / 1e6
   local function ms(us) return string.format("%.3f", us / 1000) end
   local out = {
      { "requests", summary.requests },
      { "duration_s", string.format("%.3f", secs) },
      { "rps", string.format("%.1f", summary.requests / secs) },
      { "bytes", summary.bytes },
      { "status_2xx", c.s2xx },
      { "status_3xx", c.s3xx },
      { "status_4xx", c.s4xx },
      { "status_5xx", c.s5xx },
      { "status_other", c.other },
      { "status_503_circuit", circuits },
      { "non_2xx", c.s3xx + c.s4xx + c.s5xx + c.other },
      { "status_counted", light and "wrk (>= 400 in status_other)" or "lua" },
      { "err_connect", e.connect },
      { "err_read", e.read },
      { "err_write", e.write },
      { "err_timeout", e.timeout },
      { "socket_errors", e.connect + e.read + e.write + e.timeout },
      { "lat_min_ms", ms(latency.min) },
      { "lat_mean_ms", ms(latency.mean) },
      { "lat_p50_ms", ms(latency:percentile(50)) },
      { "lat_p90_ms", ms(latency:percentile(90)) },
      { "lat_p99_ms", ms(latency:percentile(99)) },
      { "lat_p999_ms", ms(latency:percentile(99.9)) },
      { "lat_max_ms", ms(latency.max) },
      { "idem_keys_sent", keys },
      { "idem_replayed", replays },
   }
   -- The latency distribution in fine steps, for looking at the shape of
   -- the tail (wrk's summary only gives a few percentiles).
   local dist = os.getenv("BENCH_LATENCY_FILE")
   if dist and dist ~= "" then
      local f = assert(io.open(dist, "w"))
      f:write("percentile\tlatency_ms\n")
      local points = {}
      for p = 1, 99 do table.insert(points, p) end
      for p = 99.1, 99.95, 0.1 do table.insert(points, p) end
      table.insert(points, 99.99)
      for _, p in ipairs(points) do
         f:write(string.format("%g\t%.3f\n", p, latency:percentile(p) / 1000))
      end
      f:write(string.format("100\t%.3f\n", latency.max / 1000))
      f:close()
   end
   io.write("--- machine-readable\n")
   for _, kv in ipairs(out) do
      io.write(string.format("%s=%s\n", kv[1], tostring(kv[2])))
   end
end
