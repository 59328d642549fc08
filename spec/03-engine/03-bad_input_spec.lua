-- Bad input costs at most its own message: malformed records, broken
-- policies, bad configs. The engine keeps running and counts each.
local h = require "spec.helpers"

local POLICY = [[
local group = require "impulse.group"
local _M = {}
function _M.route(msg, ctx)
  if msg.recvID == "boom" then error("kaboom") end
  if msg.recvID == "weird" then return "alice" end
  if msg.recvID == "nil" then return nil, "no thanks" end
  if msg.recvID == "yield" then coroutine.yield() end
  if msg.recvID == "global" then leaked = true end
  if msg.sessionType == 3 then return group.member_ids(msg.groupID) end
  return { msg.recvID }
end
return _M
]]

describe("bad input #engine", function()
  local env, imp, scripts

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    scripts = h.tmpdir() .. "/bad-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    imp = h.start_impulse(env, { workers = 1, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function delivered(msg)
    return h.wait_until(function() return h.routes(imp)[msg.clientMsgID] end, 15000, "a route")
  end

  local function failure(what, msg)
    return h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, what)) do
        if l.clientMsgID == msg.clientMsgID then return l end
      end
    end, 10000, what .. " for " .. msg.clientMsgID)
  end

  it("logs and counts a record that is not a PushMsgReq, then goes on", function()
    local before = h.metric(imp, "impulse_messages_total", 'topic="toPush",result="bad_record"')
    local good = h.push_msg { sendID = "x", recvID = "alice" }
    h.produce(env, good, { raw = "\255\255\255\255garbage", key = h.key_of(good), operationID = "op-bad-1" })
    h.produce(env, good, { raw = "", key = h.key_of(good), operationID = "op-bad-2" })
    h.produce(env, good)
    delivered(good)
    h.wait_until(function()
      return h.metric(imp, "impulse_messages_total", 'topic="toPush",result="bad_record"') == before + 2
    end, 5000, "two bad records counted")
    local lines = h.log_lines(imp, "bad record")
    local ops = {}
    for _, l in ipairs(lines) do ops[l.operationID] = l.error end
    assert.matches("not a PushMsgReq", ops["op-bad-1"])
    assert.matches("not a PushMsgReq with msgData", ops["op-bad-2"])
  end)

  it("logs a route() that raises with its traceback, counts it, and delivers the next message", function()
    local boom = h.push_msg { sendID = "x", recvID = "boom" }
    local after = h.push_msg { sendID = "x", recvID = "alice" }
    local before = h.metric(imp, "impulse_messages_total", 'topic="toPush",result="script_error"')
    h.produce(env, boom, { key = "same-key" })
    h.produce(env, after, { key = "same-key" })
    delivered(after)
    local l = failure("script error", boom)
    assert.matches("kaboom", l.error)
    assert.matches("stack traceback", l.error)
    assert.matches("push.lua:4", l.error)
    assert.equal("op-" .. boom.clientMsgID, l.operationID)
    assert.equal(before + 1, h.metric(imp, "impulse_messages_total", 'topic="toPush",result="script_error"'))
  end)

  it("refuses a route() that returns a non-table or nil, err", function()
    local weird = h.push_msg { sendID = "x", recvID = "weird" }
    local nilmsg = h.push_msg { sendID = "x", recvID = "nil" }
    h.produce(env, weird)
    h.produce(env, nilmsg)
    assert.matches("route%(%) returned a string", failure("route failed", weird).error)
    assert.matches("no thanks", failure("route failed", nilmsg).error)
  end)

  it("stops a policy that yields outside an engine call", function()
    local y = h.push_msg { sendID = "x", recvID = "yield" }
    h.produce(env, y)
    assert.matches("yielded outside an engine call", failure("script error", y).error)
    local after = h.push_msg { sendID = "x", recvID = "alice" }
    h.produce(env, after)
    delivered(after)
  end)

  it("refuses a policy's write to a global, costing that message only", function()
    local g = h.push_msg { sendID = "x", recvID = "global" }
    h.produce(env, g)
    assert.matches("assignment to global 'leaked'", failure("script error", g).error)
    local after = h.push_msg { sendID = "x", recvID = "alice" }
    h.produce(env, after)
    delivered(after)
  end)
end)

describe("bad config and scripts #engine", function()
  local function run_impulse(args)
    local out = h.run(h.shell_quote(h.bin) .. " " .. args .. " 2>&1; echo \"rc=$?\"")
    local text, rc = out:match("^(.*)rc=(%d+)%s*$")
    return tonumber(rc), text
  end

  local base = table.concat({
    "kafka:", "  address: [127.0.0.1:9092]",
    "redis:", "  address: [127.0.0.1:6379]",
    "discovery:", "  etcd:", "    address: [127.0.0.1:2379]",
  }, "\n") .. "\n"

  local function config(extra)
    local path = h.tmpdir() .. "/cfg-" .. h.free_port() .. ".yml"
    h.write_file(path, base .. (extra or ""))
    return path
  end

  it("accepts the sample config examples/impulse.yml", function()
    local rc, out = run_impulse("check --skip-kafka -c examples/impulse.yml")
    assert.equal(0, rc, out)
  end)

  it("accepts a good config with impulse check", function()
    local rc, out = run_impulse("check --skip-kafka -c " .. config("impulse:\n  scripts: " .. h.root .. "/scripts\n"))
    assert.equal(0, rc, out)
    assert.matches("^ok: ", out)
  end)

  for _, case in ipairs {
    { "impulse:\n  maxInflight: many\n", "config: impulse.maxInflight: expected an integer" },
    { "impulse:\n  wokers: 2\n", "config: impulse.wokers: unknown key" },
    { "discovery:\n  enable: k8s\n", "duplicate key 'discovery'" },
    { "openim-push:\n  fullUserCache: sometimes\n", "config: openim-push.fullUserCache" },
    { "impulse:\n  scriptBudgetMs: -5\n", "config: impulse.scriptBudgetMs" },
    { "openim-push:\n  enable: pushy\n", "'pushy' is not a provider: expected getui, fcm, jpush, apns, log or none" },
    { "openim-push:\n  enable: apns\n", "config: impulse.providers.apns.keyFile is not set" },
    { "impulse:\n  providers:\n    fcm:\n      sendUrl: https://x\n",
      "config: impulse.providers.fcm.sendUrl: unknown key" },
    { "impulse:\n  providers:\n    attempts: many\n", "config: impulse.providers.attempts: expected a number" },
  } do
    it("refuses " .. case[2] .. " in one line, for check and for run", function()
      local path = config(case[1])
      for _, cmd in ipairs { "check", "run" } do
        local rc, out = run_impulse(cmd .. " -c " .. path)
        assert.equal(2, rc, out)
        assert.matches(case[2], out, 1, true)
        assert.equal(1, select(2, out:gsub("\n", "")), "one line: " .. out)
      end
    end)
  end

  -- openim-push starts with its provider's keys empty (openim-docker ships
  -- geTui so) and fails at each push: impulse starts too, and says so
  for _, case in ipairs {
    { "openim-push:\n  enable: fcm\n", "openim-push.enable: fcm: openim-push fcm.filePath is not set" },
    { "openim-push:\n  enable: fcm\n  fcm:\n    filePath: /nonexistent/sa.json\n",
      "openim-push.enable: fcm: openim-push fcm.filePath: cannot read /nonexistent/sa.json" },
    { "openim-push:\n  enable: jpush\n  jpush:\n    appKey: a\n",
      "openim-push.enable: jpush: openim-push jpush.masterSecret is not set" },
    { "openim-push:\n  enable: geTui\n  geTui:\n    pushUrl: https://restapi.getui.com/v2/$appId\n"
      .. "    appKey: k\n    masterSecret: s\n", "geTui.pushUrl still holds the placeholder $appId" },
  } do
    it("passes check with a warning for " .. case[2], function()
      local rc, out = run_impulse("check --skip-kafka -c " .. config(case[1]))
      assert.equal(0, rc, out)
      assert.matches("warning: openim-push.enable: ", out, 1, true)
      assert.matches(case[2], out, 1, true)
      assert.matches("every offline push through it fails", out, 1, true)
      assert.matches("\nok: ", out)
    end)
  end

  it("refuses a policy that does not compile, naming file and line", function()
    local dir = h.tmpdir() .. "/broken-scripts"
    os.execute("mkdir -p " .. dir)
    h.write_file(dir .. "/push.lua", "local _M = {}\nfunction _M.route(\n  return {}\nend\nreturn _M\n")
    local rc, out = run_impulse("check -c " .. config("impulse:\n  scripts: " .. dir .. "\n"))
    assert.equal(2, rc)
    assert.matches("push.lua:3:", out)
    h.write_file(dir .. "/push.lua", "return { route = 42 }\n")
    rc, out = run_impulse("run -c " .. config("impulse:\n  scripts: " .. dir .. "\n"))
    assert.equal(2, rc)
    assert.matches("no route function", out)
  end)

  it("checks at start the providers a policy lists for provider(), in one line", function()
    local dir = h.tmpdir() .. "/listing-scripts"
    os.execute("mkdir -p " .. dir .. "/providers && cp scripts/*.lua " .. dir .. " && cp scripts/providers/*.lua "
      .. dir .. "/providers")
    h.write_file(dir .. "/push.lua", 'local openim = require "openim"\n'
      .. 'return { route = openim.route, offline = openim.offline, providers = { "log", "apns" },\n'
      .. '  provider = function(u) return u:sub(1, 4) == "ios-" and "apns" or nil end }\n')
    local path = config("openim-push:\n  enable: log\nimpulse:\n  scripts: " .. dir .. "\n")
    for _, cmd in ipairs { "check --skip-kafka", "run" } do
      local rc, out = run_impulse(cmd .. " -c " .. path)
      assert.equal(2, rc, out)
      assert.matches("script: push.lua providers: apns: impulse.providers.apns.keyFile is not set", out, 1, true)
      assert.equal(1, select(2, out:gsub("\n", "")), "one line: " .. out)
    end
    h.write_file(dir .. "/push.lua", 'local openim = require "openim"\n'
      .. 'return { route = openim.route, providers = { "log" } }\n')
    local rc, out = run_impulse("check --skip-kafka -c " .. path)
    assert.equal(0, rc, out)
  end)
end)
