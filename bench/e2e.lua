-- bench/e2e.lua: end-to-end throughput of the online push path.
--
--   luajit bench/e2e.lua [messages] [group_messages]
--
-- Starts the local stand-ins (Redis, etcd, the Kafka mock cluster, two
-- Node gateways, the user/group services) and impulse (2 workers), then:
--   A. single chat: `messages` messages over 1,000 conversations, every
--      receiver online on a phone;
--   B. group chat: `group_messages` messages to a 5,000-member group, half
--      of it online.
-- The messages are produced first, then impulse is started, so the figure
-- is how fast it drains a backlog: from the first partition assignment to
-- the last message handled (impulse_messages_total). Latency per message
-- is the "ms" of each push log line (route + online lookup + fan-out;
-- Kafka queueing excluded). Figures go to bench/README.md by hand.
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"

local N = tonumber(arg[1]) or 20000
local G = tonumber(arg[2]) or 200
local format = string.format

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local env
local ok, err = pcall(function()
  env = h.start_env { gateways = 0 }
  env.gateways = {
    h.start_gateway(env.etcd, "--quiet --max-records 100"),
    h.start_gateway(env.etcd, "--quiet --max-records 100"),
  }
  -- 1,000 chat users, half on each gateway; a 5,000-member group
  local online = { {}, {} }
  local all = {}
  for i = 1, 1000 do
    local u = "chat" .. i
    online[i % 2 + 1][u] = { 1 }
    all[u] = { 1 }
  end
  local members = {}
  for i = 1, 5000 do
    members[i] = "member" .. i
    if i % 2 == 0 then
      online[i % 4 == 0 and 1 or 2][members[i]] = { 2 }
      all[members[i]] = { 2 }
    end
  end
  h.http_json("POST", env.services.control .. "/online", all)
  h.http_json("POST", env.gateways[1].control .. "/conns", online[1])
  h.http_json("POST", env.gateways[2].control .. "/conns", online[2])
  h.set_group(env, "big", members)

  io.write(format("producing %d single-chat and %d group messages... ", N, G))
  io.flush()
  for i = 1, N do
    local m = h.push_msg { sendID = "chat" .. ((i + 1) % 1000 + 1), recvID = "chat" .. (i % 1000 + 1),
                           options = { senderSync = false } }
    h.produce(env, m, { no_flush = true })
    if i % 2000 == 0 then env.producer:flush(60000) end
  end
  for _ = 1, G do
    h.produce(env, h.push_msg { sendID = "member1", recvID = "", groupID = "big", sessionType = 3 },
      { no_flush = true })
  end
  env.producer:flush(60000)
  print("done")

  local imp = h.start_impulse(env, { workers = 2, log_level = "info", route_log_users = 0,
                                     impulse = { maxInflight = 4096 } })
  local t0 = h.now_ms()
  local total = N + G
  h.wait_ok(imp, total, 600000, "every message handled")
  local elapsed = (h.now_ms() - t0) / 1000

  local single, group = {}, {}
  for _, l in ipairs(h.log_lines(imp, "push")) do
    if l.sessionType == 3 then group[#group + 1] = l.ms else single[#single + 1] = l.ms end
  end
  table.sort(single)
  table.sort(group)
  local _, status = h.http("GET", imp.admin .. "/metrics")
  local reached = tonumber(status:match('impulse_online_push_users_total{result="reached"} (%d+)')) or 0
  print(format("handled %d messages in %.2f s after ready: %.0f msg/s, %.0f users reached/s",
    total, elapsed, total / elapsed, reached / elapsed))
  print(format("single chat latency (ms): p50 %d  p99 %d  max %d  (%d msgs)",
    percentile(single, 0.5), percentile(single, 0.99), single[#single] or 0, #single))
  print(format("group (5,000 members, 2,500 online) latency (ms): p50 %d  p99 %d  max %d  (%d msgs)",
    percentile(group, 0.5), percentile(group, 0.99), group[#group] or 0, #group))
  local rss = h.run("ps -o rss= -p " .. imp.pid):gsub("%s+", "")
  print(format("impulse RSS after the run: %d KiB", tonumber(rss) or -1))
end)
h.stop_env(env)
if not ok then
  io.stderr:write("bench failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
