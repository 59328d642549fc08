-- bench/reload.lua: message latency at a steady load, without and during
-- script reloads.
--
--   luajit bench/reload.lua [rate_per_s] [seconds_per_phase]
--
-- Produces single-chat messages at a fixed rate (50 conversations, the
-- receiver online on one Node gateway) through impulse (2 workers): first
-- a phase with no reload, then a phase rewriting scripts/push.lua (a copy
-- in a temporary folder) every 500 ms. Latency is end to end: from the
-- produce call to the gateway stand-in receiving the push.
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"

local RATE = tonumber(arg[1]) or 300
local SECS = tonumber(arg[2]) or 10
-- FETCH_WAIT_MS=<ms>: impulse.fetchWaitMs (the mock broker holds an idle
-- fetch that long even when records arrive meanwhile: a real broker answers
-- as soon as there are records)
local FETCH_WAIT = tonumber(os.getenv("FETCH_WAIT_MS"))
local format = string.format

local function pct(t, p)
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))] or 0
end

local env
local ok, err = pcall(function()
  env = h.start_env { gateways = 0 }
  env.gateways = { h.start_gateway(env.etcd, "--quiet") }
  local online = {}
  for i = 1, 50 do online["u" .. i] = { 1 } end
  h.set_online(env, online, env.gateways[1])
  local scripts = h.tmpdir() .. "/bench-scripts"
  os.execute("mkdir -p " .. scripts .. " && cp -r scripts/. " .. scripts)
  -- reloadQuietMs 100: a folder rewritten every 500 ms is quiet long
  -- enough between writes (the default 1000 would wait for the writes to stop)
  local imp = h.start_impulse(env, { workers = 2, scripts = scripts,
                                     impulse = { reloadQuietMs = 100, fetchWaitMs = FETCH_WAIT } })
  local sent = {}
  local function phase(name, reload)
    local t0 = h.now_ms()
    local n, next_reload, reloads = 0, t0 + 500, 0
    while h.now_ms() - t0 < SECS * 1000 do
      local due = math.floor((h.now_ms() - t0) * RATE / 1000)
      while n < due do
        n = n + 1
        local m = h.push_msg { sendID = "sys", recvID = "u" .. (n % 50 + 1), options = { senderSync = false },
                               clientMsgID = name .. "-" .. n }
        h.produce(env, m, { no_flush = true })
        sent[m.clientMsgID] = h.now_ms()
      end
      env.producer:flush(5000)
      if reload and h.now_ms() >= next_reload then
        local text = h.read_file(scripts .. "/push.lua"):gsub("%-%- reload %d+\n", "")
        reloads = reloads + 1
        h.write_file(scripts .. "/push.lua.tmp", text .. "-- reload " .. reloads .. "\n")
        os.rename(scripts .. "/push.lua.tmp", scripts .. "/push.lua")
        next_reload = next_reload + 500
      end
      h.sleep_ms(5)
    end
    env.producer:flush(10000)
    return n, reloads
  end
  -- the gateway's clock and ours are the same machine's wall clock: use
  -- the push's arrival time minus the produce time, both in ms
  local wall0 = os.time() * 1000
  local mono0 = h.now_ms()
  local function wall(mono) return wall0 + (mono - mono0) end
  local n1 = phase("steady", false)
  local n2, reloads = phase("reload", true)
  h.wait_until(function()
    local seen = h.http_json("GET", env.gateways[1].control .. "/seen")
    local c = 0
    for _ in pairs(seen) do c = c + 1 end
    return c >= n1 + n2
  end, 120000, "every message at the gateway")
  local lat = { steady = {}, reload = {} }
  for _, p in ipairs(h.pushes(env.gateways[1])) do
    local id = p.msgData.clientMsgID
    local phase_name = id:match("^(%a+)%-")
    if sent[id] and lat[phase_name] then
      table.insert(lat[phase_name], p.at - wall(sent[id]))
    end
  end
  -- os.time() has a 1 s resolution: align both phases on the steady
  -- phase's minimum so the offset cancels out
  local base = math.huge
  for _, v in ipairs(lat.steady) do base = math.min(base, v) end
  for _, name in ipairs { "steady", "reload" } do
    local t = lat[name]
    for i = 1, #t do t[i] = t[i] - base end
    print(format("%-7s %5d msgs at %d/s%s: latency above the fastest p50 %5.1f ms  p99 %5.1f ms  max %5.1f ms",
      name, #t, RATE, name == "reload" and format(" (%d reloads)", reloads) or "",
      pct(t, 0.5), pct(t, 0.99), t[#t] or 0))
  end
  print(format("reloads applied: %d", h.http_json("GET", imp.admin .. "/healthz").scripts.reloads))
end)
h.stop_env(env)
if not ok then
  io.stderr:write("bench failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
