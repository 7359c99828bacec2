-- wrk script for scripts/bench-vs-peer.sh: replays pre-signed Mango webhooks, each request a
-- different body, in the order `callbridge generate` wrote them (a realistic arrival order).
--
-- Usage: wrk -t1 -c32 -d15s --latency -s webhooks.lua http://127.0.0.1:PORT -- BODIES.tsv LABEL
-- BODIES.tsv: one request a line, `PATH<TAB>FORM-BODY` (bench/sign-bodies.js writes it).
--
-- It counts what it sent and what was answered, and prints one line
--   RESULT label=... requests_per_s=... p50_ms=... p99_ms=... sent=... ok=... not_ok=... ...
-- that the script reads; `sent` minus the answered ones is what was in flight when wrk stopped.
-- When the bodies run out it starts over and says so (`wrapped=1`): repeated bodies are
-- acknowledged but stored once, so the script refuses such a run.

local requests, count = {}, 0
local next_index = 0
-- Globals, so done() can read them from each thread with thread:get().
label, sent, wrapped = "server", 0, 0

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local bodies_path = args[1]
   label = args[2] or "server"
   if bodies_path == nil then
      error("webhooks.lua: give the bodies file after --")
   end
   local file, err = io.open(bodies_path, "r")
   if file == nil then
      error("webhooks.lua: cannot open " .. bodies_path .. ": " .. tostring(err))
   end
   local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
   for line in file:lines() do
      local tab = line:find("\t", 1, true)
      if tab == nil then
         error("webhooks.lua: " .. bodies_path .. ":" .. (count + 1) .. ": no TAB between path and body")
      end
      count = count + 1
      -- Formatted once here, before wrk starts its clock, so sending costs the client no
      -- string building: on 2 shared cores the client's CPU is taken from the server's.
      requests[count] = wrk.format("POST", line:sub(1, tab - 1), headers, line:sub(tab + 1))
   end
   file:close()
   if count == 0 then
      error("webhooks.lua: " .. bodies_path .. " holds no request")
   end
end

function request()
   next_index = next_index + 1
   if next_index > count then
      next_index = 1
      wrapped = 1
   end
   sent = sent + 1
   return requests[next_index]
end

-- No response() hook: with one, wrk hands every answer's headers and body to Lua, which costs
-- the client more than the peer's whole handler. Answers other than 2xx/3xx are counted in
-- summary.errors.status instead; neither server redirects, so the rest are their 200s.
function done(summary, latency, requests)
   local total_sent, any_wrapped = 0, 0
   for _, thread in ipairs(threads) do
      total_sent = total_sent + thread:get("sent")
      any_wrapped = math.max(any_wrapped, thread:get("wrapped"))
   end
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   io.write(string.format(
      "RESULT label=%s requests_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f answered=%d sent=%d ok=%d not_ok=%d wrapped=%d socket_errors=%d timeouts=%d\n",
      threads[1]:get("label"), summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      summary.requests, total_sent, summary.requests - errors.status, errors.status, any_wrapped,
      errors.connect + errors.read + errors.write, errors.timeout))
end
