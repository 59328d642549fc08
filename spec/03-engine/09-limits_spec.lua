-- A runaway or greedy script costs one message: the budget stops loops
-- (also inside pcall), the memory cap stops bombs, and the next message
-- is handled normally. Scripts' own coroutines can call the engine.
local h = require "spec.helpers"

local POLICY = [[
local group = require "impulse.group"
local _M = {}
function _M.route(msg, ctx)
  local r = msg.recvID
  if r == "loop" then while true do end end
  if r == "loop_pcall" then
    while true do pcall(function() while true do end end) end
  end
  if r == "bomb" then
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 1048576) .. i end
  end
  if r == "co_loop" then -- a loop inside the script's own coroutine
    local f = coroutine.wrap(function() while true do end end)
    return f()
  end
  if r == "xpcall_loop" then -- a loop inside an xpcall message handler
    while true do xpcall(function() error("x") end, function() while true do end end) end
  end
  if r == "poison" then -- an error value whose __tostring raises
    error(setmetatable({}, { __tostring = function() error("x") end }))
  end
  if r == "co" then
    local co = coroutine.wrap(function() return group.member_ids(msg.groupID) end)
    return co()
  end
  return { r }
end
return _M
]]

describe("script limits #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    h.set_group(env, "g1", { "alice", "bob" })
    local scripts = h.tmpdir() .. "/limit-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    imp = h.start_impulse(env, { workers = 1, scripts = scripts,
                                 impulse = { scriptBudgetMs = 50, scriptMemoryMB = 64 } })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function stopped(msg)
    return h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, "script stopped")) do
        if l.clientMsgID == msg.clientMsgID then return l end
      end
    end, 20000, "the script to be stopped")
  end

  local function delivered(msg)
    return h.wait_until(function() return h.routes(imp)[msg.clientMsgID] end, 15000, "a route")
  end

  for _, case in ipairs { { "loop", "script budget exceeded", "script_budget" },
                          { "loop_pcall", "script budget exceeded", "script_budget" },
                          { "co_loop", "script budget exceeded", "script_budget" },
                          { "xpcall_loop", "script budget exceeded", "script_budget" },
                          { "bomb", "not enough memory", "script_memory" } } do
    it("stops " .. case[1] .. " and handles the next message", function()
      local before = h.metric(imp, "impulse_messages_total", 'topic="toPush",result="' .. case[3] .. '"')
      local bad = h.push_msg { sendID = "x", recvID = case[1] }
      local good = h.push_msg { sendID = "x", recvID = "alice" }
      h.produce(env, bad, { key = "k" })
      h.produce(env, good, { key = "k" })
      assert.matches(case[2], stopped(bad).error)
      assert.same({ "alice" }, delivered(good).reached)
      assert.equal(before + 1,
        h.metric(imp, "impulse_messages_total", 'topic="toPush",result="' .. case[3] .. '"'))
      if case[1] == "bomb" then -- the VM is rebuilt after running out of memory
        h.wait_until(function()
          return h.http_json("GET", imp.admin .. "/healthz").scripts.lastReloadTrigger == "out of memory"
        end, 5000, "the rebuild")
      end
    end)
  end

  it("survives an error value whose __tostring raises, and dead-letters the message", function()
    local before = h.metric(imp, "impulse_messages_total", 'topic="toPush",result="script_error"')
    local bad = h.push_msg { sendID = "x", recvID = "poison" }
    local good = h.push_msg { sendID = "x", recvID = "alice" }
    h.produce(env, bad, { key = "k" })
    h.produce(env, good, { key = "k" })
    local line = h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, "script error")) do
        if l.clientMsgID == bad.clientMsgID then return l end
      end
    end, 20000, "the script error")
    assert.matches("its __tostring failed", line.error, 1, true)
    assert.same({ "alice" }, delivered(good).reached)
    assert.equal(before + 1,
      h.metric(imp, "impulse_messages_total", 'topic="toPush",result="script_error"'))
    assert.is_true(h.alive(imp), "impulse exited")
  end)

  it("lets a script's own coroutine call the engine", function()
    local m = h.push_msg { sendID = "x", recvID = "co", groupID = "g1" }
    h.produce(env, m)
    assert.equal(2, delivered(m).recipients)
  end)
end)
