-- bench/lanes.lua: priority lanes and the provider's rate limit while a
-- huge group's offline pushes drain.
--
--   [MEMBERS=100000] [RATE=4000] [EVERY_MS=200] [VARIANTS=lanes,fifo] luajit bench/lanes.lua
--
-- Starts the stand-ins and the fake FCM (examples/openim-standin/providers.js,
-- HTTPS + HTTP/2), gives MEMBERS offline group members one FCM token each,
-- and runs impulse (2 workers, the default policy) with
-- impulse.providers.fcm.ratePerSecond RATE (burst RATE/10). For each
-- variant: one message to the group, and while its MEMBERS requests drain
-- at RATE, a single-chat message every EVERY_MS to a member-less user with
-- a token. Measured at the fake (its arrival clock, the same machine):
--   - each single chat's offline push: produce → arrival of its FCM request
--     (through toPush, the hand-off, toOfflinePush and the provider queue):
--     p50, p99, max; and the same for those produced from the drain's
--     second second on (the first meet the group's own toPush leg: its
--     100,000 members, the filter call and the hand-off, on the workers);
--   - the group's requests in every sliding 1 s window: the most the
--     provider saw (the quota: RATE a second plus the burst);
--   - the drain's length and rate.
-- Variants: lanes (the default: single chats in the direct lane) and fifo
-- (a policy whose lane() puts every message in the group lane: what a
-- single queue would do).
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"
local ffi = require "ffi"

local MEMBERS = tonumber(os.getenv("MEMBERS")) or 100000
local RATE = tonumber(os.getenv("RATE")) or 4000
local EVERY_MS = tonumber(os.getenv("EVERY_MS")) or 200
local VARIANTS = os.getenv("VARIANTS") or "lanes,fifo"
local format = string.format

local tsbuf = ffi.new("struct timespec")
local function wall_ms()
  ffi.C.clock_gettime(0, tsbuf)
  return tonumber(tsbuf.tv_sec) * 1000 + tonumber(tsbuf.tv_nsec) / 1e6
end

local function pct(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local env = h.start_env { gateways = 1 }
local ok, err = pcall(function()
  local k = h.test_pki()
  local fake = h.start_providers()
  local function control(method, path, body) return h.http_json(method, fake.control .. path, body) end

  -- tokens: the members' and the single chats' receivers', through one pipe
  local pipe = h.tmpdir() .. "/lanes-tokens.txt"
  local f = assert(io.open(pipe, "w"))
  local members = { "zed" }
  for i = 1, MEMBERS do
    members[#members + 1] = format("gm-%06d", i)
    f:write(format("SET FCM_TOKEN:gm-%06d:2 g-tok-%06d\n", i, i))
  end
  for i = 1, 2000 do f:write(format("SET FCM_TOKEN:dm-%04d:2 d-tok-%04d\n", i, i)) end
  f:close()
  h.run(format("redis-cli -p %d < %s > /dev/null", env.redis.port, pipe))
  h.set_group(env, "g-big", members)

  local sa = h.fake_fcm_account(fake, "lanes")

  print(format("lanes bench: %d offline members at %d FCM requests/s (burst %d), a single chat every %d ms; %s",
    MEMBERS, RATE, math.max(1, math.floor(RATE / 10)), EVERY_MS, os.date("!%Y-%m-%d %H:%MZ")))
  print("variant | single chats | produce→provider p50 / p99 / max ms | the same from the drain's 2nd second | "
    .. "most in any 1 s (quota " ..
    (RATE + math.max(1, math.floor(RATE / 10))) .. ") | drain s | drain rate/s")
  local direct_n = 0
  for variant in VARIANTS:gmatch("[^,]+") do
    local scripts = h.tmpdir() .. "/lanes-scripts-" .. variant
    os.execute("rm -rf " .. scripts .. " && mkdir -p " .. scripts .. " && cp -r " .. h.root .. "/scripts/. " .. scripts)
    if variant == "fifo" then
      local push = h.read_file(scripts .. "/push.lua")
      push = push:gsub("\nreturn _M%s*$", "\nfunction _M.lane() return \"group\" end\nreturn _M\n")
      h.write_file(scripts .. "/push.lua", push)
    end
    control("DELETE", "/requests")
    control("DELETE", "/stats")
    local imp = h.start_impulse(env, {
      workers = 2, provider = "fcm", scripts = scripts, log_level = "warn",
      push_yaml = table.concat({ "  fcm:", "    filePath: " .. sa }, "\n"),
      impulse_yaml = table.concat({
        "  providers:",
        "    caFile: " .. k.ca,
        "    deadlineMs: 600000",
        "    fcm:",
        "      sendURL: " .. fake.base,
        "      ratePerSecond: " .. RATE,
        "      burst: " .. math.max(1, math.floor(RATE / 10)),
      }, "\n"),
    })
    h.produce(env, h.push_msg { sendID = "zed", recvID = "", groupID = "g-big", sessionType = 3 })
    h.wait_until(function() return control("GET", "/stats").fcm.requests >= 1 end, 300000, "the group's drain")
    local sent_at = {}
    local drain_at = wall_ms()
    local stop_at = drain_at + MEMBERS / RATE * 1000 * 0.8
    while wall_ms() < stop_at do
      direct_n = direct_n + 1
      local to = format("dm-%04d", direct_n)
      sent_at[format("d-tok-%04d", direct_n)] = wall_ms()
      h.produce(env, h.push_msg { sendID = "s-" .. to, recvID = to, options = { senderSync = false } })
      h.sleep_ms(EVERY_MS)
    end
    local want = MEMBERS
    for _ in pairs(sent_at) do want = want + 1 end
    h.wait_until(function() return control("GET", "/stats").fcm.requests >= want end, 600000,
      "all " .. want .. " FCM requests")
    local arrivals = control("GET", "/arrivals?provider=fcm&field=message.token")
    local lat, group, later = {}, {}, {}
    for _, a in ipairs(arrivals) do
      local at, tok = a[1], a[2]
      if type(tok) == "string" and sent_at[tok] then
        lat[#lat + 1] = at - sent_at[tok]
        -- produced once the group's own toPush leg is over (its first second)
        if sent_at[tok] >= drain_at + 1000 then later[#later + 1] = at - sent_at[tok] end
      elseif type(tok) == "string" and tok:sub(1, 6) == "g-tok-" then
        group[#group + 1] = at
      end
    end
    -- in the order they were produced: where in the drain the slow ones were
    local order = {}
    for _, a in ipairs(arrivals) do
      local tok = a[2]
      if type(tok) == "string" and sent_at[tok] then order[#order + 1] = { sent_at[tok], a[1] - sent_at[tok] } end
    end
    table.sort(order, function(x, y) return x[1] < y[1] end)
    local worst = {}
    for i, o in ipairs(order) do worst[i] = { i, o[2] } end
    table.sort(worst, function(x, y) return x[2] > y[2] end)
    local parts = {}
    for i = 1, math.min(5, #worst) do parts[i] = format("#%d %.0f ms", worst[i][1], worst[i][2]) end
    io.stderr:write(format("  %s: slowest single chats (by production order): %s\n", variant,
      table.concat(parts, ", ")))
    table.sort(lat)
    table.sort(later)
    table.sort(group)
    -- the most requests of the group in any 1 s window (two pointers)
    local most, j = 0, 1
    for i = 1, #group do
      while group[i] - group[j] >= 1000 do j = j + 1 end
      most = math.max(most, i - j + 1)
    end
    local drain_s = (group[#group] - group[1]) / 1000
    print(format("%-7s | %12d | %8.0f / %5.0f / %5.0f | %8.0f / %5.0f / %5.0f | %20d | %7.1f | %12.0f", variant, #lat,
      pct(lat, 0.5), pct(lat, 0.99), lat[#lat] or 0, pct(later, 0.5), pct(later, 0.99), later[#later] or 0, most,
      drain_s, #group / drain_s))
    assert(#group == MEMBERS, #group .. " group requests at the fake, not " .. MEMBERS)
    h.stop(imp)
  end
end)
h.stop_env(env)
if not ok then
  io.stderr:write("bench/lanes.lua: " .. tostring(err) .. "\n")
  os.exit(1)
end
