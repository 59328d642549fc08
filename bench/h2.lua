-- bench/h2.lua: requests per second of the providers' HTTP/2 sender (one
-- worker, one TLS connection) against h2load, to the same nghttpd, in the
-- same run, each pinned to its own core.
--
--   ./dev build && luajit bench/h2.lua [requests] [concurrency]
--
-- Starts nghttpd (package nghttp2-server) on core 1 with a test CA's
-- certificate, answering every POST with 200 and an FCM-like body from a
-- file in its document root (not --echo-upload: that writes each request
-- body to a temporary file in /tmp, and the disk then sets the pace), then
-- runs h2load (nghttp2-client; one connection, `concurrency` streams) and
-- impulse's batch sender (bench/h2_run_spec.lua inside `impulse test`, one
-- worker), both on core 0, in alternating order, with the same FCM-sized
-- POST body. Prints both rates and their ratio (target: impulse >= 80% of
-- h2load).
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"

local N = tonumber(arg[1]) or 100000
local CONC = tonumber(arg[2]) or 100
local format = string.format

local k = h.test_pki()
local port = h.free_port()
local srv
local PATH = "/v1/projects/bench/messages:send"
local docroot = h.tmpdir() .. "/h2-docroot"
h.run(format("mkdir -p %s/v1/projects/bench", h.shell_quote(docroot)))
h.write_file(docroot .. PATH, '{"name":"projects/bench/messages/0:1500000000000000%8c2a3b"}')
local function start_server()
  srv = h.spawn("nghttpd", format("taskset -c 1 nghttpd -d %s %d %s %s", docroot, port, k.key, k.cert))
  h.wait_until(function()
    return h.run(format("curl -s -o /dev/null -w '%%{http_code}' --cacert %s https://127.0.0.1:%d/ || true",
      k.ca, port)):match("[1-5]%d%d")
  end, 10000, "nghttpd")
end
local url = format("https://127.0.0.1:%d%s", port, PATH)

local body = h.tmpdir() .. "/h2-body.json"
h.write_file(body, '{"message":{"token":"' .. string.rep("t", 150) .. '","notification":{"title":"T","body":"'
  .. string.rep("x", 300) .. '"}}}')

local env = format("H2_URL=%s H2_CA=%s H2_N=%d H2_CONC=%d", h.shell_quote(url), h.shell_quote(k.ca), N, CONC)

local function h2load()
  local out = h.run(format("taskset -c 0 h2load -n %d -c 1 -m %d -d %s -H 'content-type: application/json' "
    .. "-H 'authorization: Bearer ya29.bench' %s 2>&1", N, CONC, body, url))
  local ok = tonumber(out:match("(%d+) succeeded"))
  if ok ~= N then error("h2load: " .. out) end
  return tonumber(out:match("finished in [%d%.]+m?s, ([%d%.]+) req/s"))
end

local function impulse()
  local res = h.run(format("cd %s && %s taskset -c 0 %s %s test bench/h2_run_spec.lua 2>&1",
    h.shell_quote(h.root), env, os.getenv("H2_WRAP") or "", h.shell_quote(h.bin)))
  local n, secs = res:match("impulse: (%d+) requests in ([%d%.]+) s")
  if not n then error("impulse: " .. res) end
  return tonumber(n) / tonumber(secs)
end

-- This machine's speed drifts a lot from one second to the next (shared
-- cores): alternate the two, ROUNDS times, and compare the medians.
local ROUNDS = tonumber(os.getenv("ROUNDS")) or 5
local a, b = {}, {}
start_server()
for i = 1, ROUNDS do
  if i % 2 == 1 then
    a[i] = h2load()
    b[i] = impulse()
  else
    b[i] = impulse()
    a[i] = h2load()
  end
  print(format("round %d: h2load %6.0f req/s, impulse %6.0f req/s (%3.0f%%)", i, a[i], b[i], b[i] / a[i] * 100))
end
local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c[math.floor((#c + 1) / 2)]
end
local ratios = {}
for i = 1, ROUNDS do ratios[i] = b[i] / a[i] end
print(format("median: h2load %.0f req/s, impulse %.0f req/s (one worker, one connection); "
  .. "median per-round ratio %.0f%%", median(a), median(b), median(ratios) * 100))
h.stop(srv)
