-- hold.lua — wrk script of bench/rss_per_run.sh: each connection first runs one quick agent
-- request, then requests whose LLM answer the fake delays by HOLD_MS ([slow:N] marker), so the
-- runs held in flight sit on connections that have already served a request (as kept-alive
-- client connections do: their server-side buffers have been used once).
--
-- Usage: wrk -tT -cC ... -s bench/wrk/hold.lua URL -- HOLD_MS CONNECTIONS_PER_THREAD
local quick, held
local per_thread, sent = 0, 0

function init(args)
   local hold_ms = assert(tonumber(args[1]), "usage: -- HOLD_MS CONNECTIONS_PER_THREAD")
   per_thread = assert(tonumber(args[2]), "usage: -- HOLD_MS CONNECTIONS_PER_THREAD")
   local h = { ["Content-Type"] = "application/json" }
   quick = wrk.format("POST", nil, h, '{"input":"hello"}')
   held = wrk.format("POST", nil, h, '{"input":"[slow:' .. hold_ms .. '] hello"}')
end

-- wrk sends each connection's first request in turn, so a thread's first per_thread requests
-- are one per connection.
function request()
   sent = sent + 1
   if sent <= per_thread then
      return quick
   end
   return held
end
