-- bench/cpu.lua: impulse's CPU time per message (user + system, the whole
-- process: Kafka, Lua, gRPC, everything), by workload.
--
--   [GATEWAYS=1|2] [GATEWAY=c] [ENGINE=floor] [OFFLINE=0] [TRANSPORT=h2] [RATE=msg/s] \
--     luajit bench/cpu.lua [single_messages] [scale]
--
-- Starts the local stand-ins (Redis, etcd, the Kafka mock cluster, two
-- Node gateways, the services) and impulse (2 workers, the default
-- scripts), then runs one workload after another on the same engine:
--   single: `single_messages` single-chat messages over 1,000
--           conversations, every receiver online on a phone, half on each
--           gateway (no offline push);
--   group N: messages to an N-member group (N = 1,000, 10,000, 100,000),
--           half of it online (split over the two gateways), the other
--           half handed over to toOfflinePush after the conversation
--           filter call.
-- For each workload: CPU of the impulse process (/proc/<pid>/stat) from
-- before the first message is produced to the last one counted in
-- impulse_messages_total, divided by the messages. The idle CPU of the
-- engine (consumers polling) is measured first and reported; the figures
-- are raw (idle not subtracted) and idle-corrected.
--
-- ENGINE=floor (with GATEWAY=c): build/bench_floor, the least work a push
-- needs (bench/floor.c), in impulse's place, given the same online users
-- and group members in its files and the same gateways; its messages are
-- counted from its --status file instead of impulse_messages_total.
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"

local SINGLE = tonumber(arg[1]) or 20000
local SCALE = tonumber(arg[2]) or 1
-- RATE=<msg/s>: produce at that steady rate instead of as fast as possible
local RATE = tonumber(os.getenv("RATE")) or 0
-- GATEWAY=c: the C gateway stand-in (build/bench_gwstub) instead of Node's
local STUB = os.getenv("GATEWAY") == "c"
-- OFFLINE=0: group messages say offlinePush false (no filter call, no
-- toOfflinePush hand-off), to tell the offline leg's cost from the rest
local NO_OFFLINE = os.getenv("OFFLINE") == "0"
-- ENGINE=floor: build/bench_floor instead of impulse
local FLOOR = os.getenv("ENGINE") == "floor"
if FLOOR and not STUB then
  io.stderr:write("bench: ENGINE=floor needs the C gateways (GATEWAY=c)\n")
  os.exit(2)
end
local format = string.format

local TICK = tonumber((h.run("getconf CLK_TCK"):gsub("%s+", ""))) or 100

local function cpu_s(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local s = f:read("*a")
  f:close()
  -- fields after the ")" of the command: state is field 3; utime 14, stime 15
  local rest = s:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICK
end

local env
local ok, err = pcall(function()
  env = h.start_env { gateways = 0 }
  local NGW = tonumber(os.getenv("GATEWAYS")) or 2
  env.gateways = {}
  local addrs = {} -- the C gateways' addresses (the floor's --gateway)
  if STUB then
    -- build/bench_gwstub: a C gateway (every user asked about reported
    -- online), registered in etcd as OpenIM's gateways register
    for i = 1, NGW do
      local info = format("%s/gwstub-%d.json", h.tmpdir(), i)
      h.spawn("gwstub", format("%s/build/bench_gwstub --info %s", h.root, info))
      local addr = h.wait_until(function()
        local t = h.read_file(info)
        return t and t:match('"grpc":"([^"]+)"')
      end, 10000, "the C gateway stand-in")
      addrs[#addrs + 1] = addr
      h.run(format("ETCDCTL_API=3 etcdctl --endpoints=%s put openim/messageGateway/%s "
        .. "'{\"Op\":0,\"Addr\":\"%s\",\"Metadata\":null}'", env.etcd.url, addr, addr))
    end
  else
    for i = 1, NGW do env.gateways[i] = h.start_gateway(env.etcd, "--quiet --max-records 10") end
  end
  local online = { {}, {} }
  local all = {}
  for i = 1, 1000 do
    local u = "chat" .. i
    online[i % 2 + 1][u] = { 1 }
    all[u] = { 1 }
  end
  local sizes = { 1000, 10000, 100000 }
  local group_lines = {} -- the floor's --group file
  for _, n in ipairs(sizes) do
    local members = {}
    for i = 1, n do
      local u = format("g%d-member%06d", n, i)
      members[i] = u
      if i % 2 == 0 then
        online[i % 4 == 0 and 1 or 2][u] = { 2 }
        all[u] = { 2 }
      end
    end
    h.set_group(env, "group" .. n, members)
    group_lines[#group_lines + 1] = "group" .. n .. " " .. table.concat(members, " ")
  end
  h.http_json("POST", env.services.control .. "/online", all)
  if not STUB then
    h.http_json("POST", env.gateways[1].control .. "/conns", online[1])
    if NGW > 1 then
      h.http_json("POST", env.gateways[2].control .. "/conns", online[2])
    else
      for u, p in pairs(online[2]) do online[1][u] = p end
      h.http_json("POST", env.gateways[1].control .. "/conns", online[1])
    end
  end

  local imp, status
  if FLOOR then
    -- the same users online and members in its files, the same gateways
    local dir = h.tmpdir()
    local lines = {}
    for u, plats in pairs(all) do lines[#lines + 1] = u .. " " .. plats[1] end
    h.write_file(dir .. "/floor-online.txt", table.concat(lines, "\n") .. "\n")
    h.write_file(dir .. "/floor-groups.txt", table.concat(group_lines, "\n") .. "\n")
    status = dir .. "/floor-status.json"
    local gws = {}
    for _, a in ipairs(addrs) do gws[#gws + 1] = "--gateway " .. a end
    imp = h.spawn("floor", format("%s/build/bench_floor --brokers %s %s --online %s --group %s "
      .. "--status %s --offset-reset earliest --max-inflight 4096", h.root, env.kafka.bootstrap,
      table.concat(gws, " "), dir .. "/floor-online.txt", dir .. "/floor-groups.txt", status))
    -- ready: it holds partitions of toPush (impulse's /readyz)
    h.wait_until(function()
      if not h.alive(imp) then
        error("bench_floor exited during start-up; log:\n" .. (h.read_file(imp.log) or ""), 0)
      end
      local t = h.read_file(status)
      return (tonumber(t and t:match('"assigned":(%d+)')) or 0) > 0
    end, 30000, "bench_floor to join the consumer group")
  else
    imp = h.start_impulse(env, { workers = 2, log_level = "warn",
                                 impulse = { maxInflight = 4096,
                                             grpcClient = os.getenv("TRANSPORT") } })
  end
  local ENGINE = FLOOR and "bench_floor" or "impulse"

  -- Waits until `want` messages ended ok; fails at once, with one line
  -- naming the outcome, when one ends otherwise (h.wait_ok) or the floor
  -- exits.
  local function wait_ok(want, timeout_ms, what)
    if not FLOOR then return h.wait_ok(imp, want, timeout_ms, what) end
    return h.wait_until(function()
      local t = h.read_file(status) or ""
      local done, failed = tonumber(t:match('"done":(%d+)')), tonumber(t:match('"failed":(%d+)'))
      if failed and failed > 0 then
        error(format("%s: %d message(s) failed in bench_floor (its log: %s)", what, failed, imp.log), 0)
      end
      if not h.alive(imp) then error(format("%s: bench_floor exited (its log: %s)", what, imp.log), 0) end
      return (done or 0) >= want
    end, timeout_ms, what)
  end

  -- idle: the engine with nothing to do
  local c0, t0 = cpu_s(imp.pid), h.now_ms()
  h.sleep_ms(5000)
  local idle = (cpu_s(imp.pid) - c0) / ((h.now_ms() - t0) / 1000)
  print(format("idle: %.1f ms CPU per second", idle * 1000))

  -- the script's Lua time so far: impulse_script_lua_ms's sum (ms) and
  -- count
  local function lua_ms()
    if FLOOR then return 0, 0 end
    local _, mt = h.http("GET", imp.admin .. "/metrics")
    return tonumber(mt:match("impulse_script_lua_ms_sum (%S+)")) or 0,
      tonumber(mt:match("impulse_script_lua_ms_count (%S+)")) or 0
  end

  local done = 0
  local function run(name, count, make)
    -- warm-up message: caches filled, channels connected
    h.produce(env, make(0))
    done = done + 1
    wait_ok(done, 120000, name .. " warm-up")
    local cpu0, wall0 = cpu_s(imp.pid), h.now_ms()
    local lsum0, lcount0 = lua_ms()
    if RATE > 0 then
      -- paced: message i is due at wall0 + i / RATE seconds, produced in
      -- 10 ms ticks, so the engine sees a steady stream, not a backlog
      local i = 0
      while i < count do
        local due = math.min(count, math.floor((h.now_ms() - wall0) * RATE / 1000) + 1)
        while i < due do
          i = i + 1
          h.produce(env, make(i), { no_flush = true })
        end
        h.sleep_ms(10)
      end
    else
      for i = 1, count do
        h.produce(env, make(i), { no_flush = true })
        if i % 2000 == 0 then env.producer:flush(60000) end
      end
    end
    env.producer:flush(60000)
    done = done + count
    wait_ok(done, 1800000, name)
    local cpu = cpu_s(imp.pid) - cpu0
    local wall = (h.now_ms() - wall0) / 1000
    local corrected = cpu - idle * wall
    local lsum, lcount = lua_ms()
    print(format("%-14s %7d msgs in %6.2f s: CPU %6.2f s = %8.1f us/msg (idle-corrected %8.1f us/msg)%s",
      name, count, wall, cpu, cpu / count * 1e6, corrected / count * 1e6,
      FLOOR and "" or format(", Lua %.3f ms/msg", (lsum - lsum0) / math.max(1, lcount - lcount0))))
    return cpu / count, corrected / count
  end

  run("single chat", SINGLE, function(i)
    return h.push_msg { sendID = "chat" .. ((i + 1) % 1000 + 1), recvID = "chat" .. (i % 1000 + 1),
                        options = { senderSync = false } }
  end)
  local counts = { [1000] = 1000 * SCALE, [10000] = 200 * SCALE, [100000] = 20 * SCALE }
  for _, n in ipairs(sizes) do
    run(format("group %d", n), counts[n], function()
      return h.push_msg { sendID = format("g%d-member000001", n), recvID = "", groupID = "group" .. n,
                          sessionType = 3, options = NO_OFFLINE and { offlinePush = false } or nil }
    end)
  end
  if not FLOOR then
    local _, mt = h.http("GET", imp.admin .. "/metrics")
    local lsum = tonumber(mt:match("impulse_script_lua_ms_sum (%S+)")) or 0
    local lcount = tonumber(mt:match("impulse_script_lua_ms_count (%S+)")) or 1
    print(format("Lua time per message (all workloads): %.1f us", lsum / lcount * 1000))
  end
  local rss = h.run("ps -o rss= -p " .. imp.pid):gsub("%s+", "")
  print(format("%s RSS after the run: %d KiB", ENGINE, tonumber(rss) or -1))
end)
h.stop_env(env)
if not ok then
  io.stderr:write("bench failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
