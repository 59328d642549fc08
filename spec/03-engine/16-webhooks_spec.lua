-- Webhooks against the stand-in's receiver: what OpenIM's webhook server
-- sees, and how its answers steer the push.
local h = require "spec.helpers"

describe("webhooks #engine", function()
  local env, imp

  local function start(failed_continue)
    local yaml = table.concat({
      "webhooks:",
      "  url: " .. env.services.control .. "/webhook",
      "  beforeOnlinePush: {enable: true, timeout: 1, failedContinue: " .. tostring(failed_continue) .. "}",
      "  beforeGroupOnlinePush: {enable: true, timeout: 1, failedContinue: true}",
      "  beforeOfflinePush: {enable: true, timeout: 1, failedContinue: true}",
    }, "\n")
    return h.start_impulse(env, { workers = 1, yaml = yaml })
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    h.set_group(env, "g1", { "alice", "bob" })
    imp = start(true)
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function calls(command)
    local out = {}
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/webhook-calls")) do
      if c.command == command then out[#out + 1] = c end
    end
    return out
  end

  local function mode(command, m)
    m.command = command
    h.http_json("POST", env.services.control .. "/webhook-mode", m)
  end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  before_each(function()
    h.http_json("POST", env.services.control .. "/webhook-reset", {})
    for _, c in ipairs { "callbackBeforeOnlinePushCommand", "callbackBeforeGroupOnlinePushCommand",
                         "callbackBeforeOfflinePushCommand" } do
      h.http_json("POST", env.services.control .. "/webhook-mode", '{"command":"' .. c .. '","reply":null}')
    end
  end)

  it("calls beforeOnlinePush and beforeOfflinePush with OpenIM's headers and bodies", function()
    local m = h.push_msg { sendID = "bob", recvID = "carol", options = { senderSync = false } }
    local opid = h.produce(env, m)
    route_of(m)
    local on = h.wait_until(function() return calls("callbackBeforeOnlinePushCommand")[1] end, 5000, "the call")
    assert.equal("/webhook/callbackBeforeOnlinePushCommand", on.path)
    assert.equal(opid, on.headers.operationid)
    assert.equal("application/json; charset=utf-8", on.headers["content-type"])
    assert.equal("\n", on.raw:sub(-1))
    assert.same({ "carol" }, on.body.userIDList)
    assert.equal(m.clientMsgID, on.body.clientMsgID)
    assert.equal("IOS", on.body.platform)
    local off = h.wait_until(function() return calls("callbackBeforeOfflinePushCommand")[1] end, 5000, "offline")
    assert.same({ "carol" }, off.body.userIDList)
  end)

  it("lets a beforeOfflinePush reply replace the whole offlinePushInfo on toOfflinePush (callback.go:63-65)", function()
    mode("callbackBeforeOfflinePushCommand", { reply = { actionCode = 0, nextCode = 0, userIDList = { "dave" },
                                                         offlinePushInfo = { title = "T", desc = "D" } } })
    local m = h.push_msg { sendID = "bob", recvID = "carol", options = { senderSync = false },
                           offlinePushInfo = { title = "orig", iOSPushSound = "ding.caf", iOSBadgeCount = true } }
    h.produce(env, m)
    local rec = h.wait_until(function()
      for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush",
                                             timeout_ms = 5000 }) do
        local req = h.pb.decode("openim.push.PushMsgReq", r.value)
        if req.msgData.clientMsgID == m.clientMsgID then return req end
      end
    end, 20000, "the toOfflinePush record")
    assert.same({ "dave" }, rec.userIDs)
    -- replaced whole: the sound and badge the message had are gone, as in OpenIM
    local info = rec.msgData.offlinePushInfo
    assert.equal("T", info.title)
    assert.equal("D", info.desc)
    assert.is_true(info.iOSPushSound == nil or info.iOSPushSound == "")
    assert.is_true(not info.iOSBadgeCount)
  end)

  it("stops the push when the webhook says so", function()
    mode("callbackBeforeOnlinePushCommand", { reply = { actionCode = 0, errCode = 1, errMsg = "no", nextCode = 1 } })
    local m = h.push_msg { sendID = "bob", recvID = "alice", options = { senderSync = false } }
    h.produce(env, m)
    assert.equal(0, route_of(m).recipients)
  end)

  it("takes the group's recipients from beforeGroupOnlinePush", function()
    mode("callbackBeforeGroupOnlinePushCommand", { reply = { actionCode = 0, nextCode = 0, userIDList = { "alice" } } })
    local m = h.push_msg { sendID = "bob", recvID = "", groupID = "g1", sessionType = 3 }
    h.produce(env, m)
    local r = route_of(m)
    assert.equal(1, r.recipients)
    assert.equal(1, #calls("callbackBeforeGroupOnlinePushCommand"))
  end)

  it("pushes anyway when a webhook times out and failedContinue is true", function()
    mode("callbackBeforeOnlinePushCommand", { delayMs = 2500 })
    local m = h.push_msg { sendID = "bob", recvID = "alice", options = { senderSync = false } }
    h.produce(env, m)
    assert.same({ "alice" }, route_of(m).reached)
  end)

  it("gives the message up when a webhook fails and failedContinue is false", function()
    h.stop(imp)
    imp = start(false)
    mode("callbackBeforeOnlinePushCommand", { status = 500, raw = "oops" })
    local m = h.push_msg { sendID = "bob", recvID = "alice", options = { senderSync = false } }
    h.produce(env, m)
    local l = h.wait_until(function()
      for _, x in ipairs(h.log_lines(imp, "route failed")) do
        if x.clientMsgID == m.clientMsgID then return x end
      end
    end, 15000, "the failed route")
    assert.matches("webhook callbackBeforeOnlinePushCommand failed", l.error)
  end)
end)
