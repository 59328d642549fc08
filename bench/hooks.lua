-- bench/hooks.lua: what the Lua side costs per message.
--
--   luajit bench/hooks.lua
--
-- Runs the engine's driver (lua/impulse/driver.lua: read-only view,
-- context, route(), the online push answered at once by a stub, offline())
-- for a trivial policy and for the default one (scripts/push.lua), with
-- the JIT off (impulse's default: the budget hook must be able to stop a
-- loop) and on, and with the budget's count hook installed as the engine
-- does (every 1000 instructions). Not included: the C side (decode,
-- coroutine creation, online lookups, gRPC), measured in bench_micro and
-- bench/e2e.lua.
package.path = "./?.lua;./lua/?.lua;" .. package.path
local testing = require "impulse.testing"

local N = tonumber(arg[1]) or 100000
local clock = os.clock

local members = {}
for i = 1, 200 do members[i] = "member" .. i end

local function fields_single()
  return { sendID = "alice", recvID = "bob", clientMsgID = "c1", sessionType = 1, contentType = 101,
           content = '{"content":"hi"}', options = {}, atUserIDList = {}, groupID = "",
           senderPlatformID = 1, sendTime = os.time() * 1000 }
end

local function fields_group()
  return { sendID = "alice", recvID = "", clientMsgID = "c2", sessionType = 3, contentType = 101,
           content = '{"content":"hi"}', options = {}, atUserIDList = {}, groupID = "g",
           senderPlatformID = 1, sendTime = os.time() * 1000 }
end

local function run(label, policy_path, make_fields, jit_on)
  testing.setup { groups = { g = members } }
  -- the online push stub reaches nobody, so offline() has work to do
  package.loaded["impulse.core"].push_online = function(users)
    return false, { recipients = #users, reached = {}, not_reached = users }
  end
  local driver = require "impulse.driver"
  local policy
  if policy_path then
    policy = testing.load_policy(policy_path)
  else
    policy = { route = function(msg) return { msg.recvID ~= "" and msg.recvID or "x" } end }
  end
  if jit_on then jit.on() else jit.off() end
  jit.flush()
  debug.sethook(function() end, "", 1000)
  for _ = 1, 1000 do driver.handle(policy, make_fields(), "op") end -- warm up
  local t0 = clock()
  for i = 1, N do
    driver.handle(policy, make_fields(), "op")
    -- the stubs record every call, log line and hand-off: drop them, or
    -- the growing heap (not the policy) dominates the figure
    if i % 100 == 0 then
      testing.calls, testing.logs, testing.handed_off, testing.produced, testing.metrics = {}, {}, {}, {}, {}
    end
  end
  local us = (clock() - t0) / N * 1e6
  debug.sethook()
  print(string.format("%-44s JIT %-3s %7.2f µs/message", label, jit_on and "on" or "off", us))
end

for _, jit_on in ipairs { false, true } do
  run("trivial policy, single chat", nil, fields_single, jit_on)
  run("default policy, single chat", "scripts/push.lua", fields_single, jit_on)
  run("default policy, group of 200 (all offline)", "scripts/push.lua", fields_group, jit_on)
end
