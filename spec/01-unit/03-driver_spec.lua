-- lua/impulse/driver.lua: the message view, the context and the checks on
-- what route() returns, with the engine core stubbed.
local testing = require "impulse.testing"

describe("impulse.driver", function()
  local driver

  before_each(function()
    testing.setup {}
    driver = require "impulse.driver"
  end)

  it("gives a read-only view whose options default to true", function()
    local msg = driver.message_view { recvID = "a", options = { senderSync = false } }
    assert.equal("a", msg.recvID)
    assert.is_false(msg.options.senderSync)
    assert.is_true(msg.options.offlinePush)
    assert.has_error(function() msg.recvID = "b" end, "the message is read-only (attempt to set 'recvID')")
    assert.has_error(function() rawset(msg, "x", 1); msg.y = 2 end)
  end)

  it("passes route()'s users to the online push", function()
    local policy = { route = function() return { "u1", "u2" } end }
    local res = driver.handle(policy, { recvID = "u1" }, "op1")
    assert.equal(2, res.recipients)
    assert.same({ "push_online", { "u1", "u2" } }, testing.calls[1])
  end)

  it("reports a route() that returns nil, err", function()
    local policy = { route = function() return nil, "no members" end }
    local res, err = driver.handle(policy, {}, "op1")
    assert.is_nil(res)
    assert.equal("route() failed: no members", err)
    assert.same({}, testing.calls)
  end)

  it("refuses a route() that returns something other than a list of IDs", function()
    local _, err = driver.handle({ route = function() return "alice" end }, {}, "op1")
    assert.equal("route() returned a string, expected a list of user IDs", err)
    _, err = driver.handle({ route = function() return { "a", 42 } end }, {}, "op1")
    assert.equal("route() returned a bad user ID at [2] (number)", err)
    _, err = driver.handle({ route = function() return { "" } end }, {}, "op1")
    assert.matches("bad user ID at %[1%]", err)
  end)

  it("lets errors raised by route() propagate to the engine", function()
    local policy = { route = function() error("boom") end }
    assert.has_error(function() driver.handle(policy, {}, "op1") end)
  end)

  it("pushes a PushMsg call to the given users without calling route()", function()
    local routed = false
    local policy = { route = function() routed = true; return { "x" } end }
    local res = driver.handle(policy, { recvID = "u1" }, "op1", { op = "push", users = { "u2", "u3" } })
    assert.is_false(routed)
    assert.equal(2, res.recipients)
    assert.same({ "push_online", { "u2", "u3" } }, testing.calls[1])
  end)

  it("deletes FCM_TOKEN:<userID>:<platformID> for DelUserPushToken", function()
    testing.redis_store["FCM_TOKEN:u1:2"] = "tok"
    testing.redis_store["FCM_TOKEN:u1:1"] = "other"
    local ok = driver.handle({ route = function() end }, {}, "op1",
      { op = "del_push_token", userID = "u1", platformID = 2 })
    assert.is_true(ok)
    assert.is_nil(testing.redis_store["FCM_TOKEN:u1:2"])
    assert.equal("other", testing.redis_store["FCM_TOKEN:u1:1"])
    assert.same({ "redis", "DEL", "FCM_TOKEN:u1:2" }, testing.calls[1])
  end)

  it("lets a policy's del_push_token hook replace the Redis delete, and reports its failure", function()
    local seen
    local policy = { route = function() end,
                     del_push_token = function(u, p, ctx) seen = { u, p, ctx.operationID }; return true end }
    assert.is_true(driver.handle(policy, {}, "op9", { op = "del_push_token", userID = "u1", platformID = 5 }))
    assert.same({ "u1", 5, "op9" }, seen)
    assert.same({}, testing.calls)
    policy.del_push_token = function() return nil, "token store down" end
    local res, err = driver.handle(policy, {}, "op9", { op = "del_push_token", userID = "u1", platformID = 5 })
    assert.is_nil(res)
    assert.equal("del_push_token() failed: token store down", err)
  end)

  it("gives hooks a logger tagged with the operationID", function()
    local ctx = driver.new_ctx("op-7")
    ctx.log.info("hello %s", "world")
    ctx.log.error("plain")
    assert.same({ level = "info", operationID = "op-7", text = "hello world" }, testing.logs[1])
    assert.same({ level = "error", operationID = "op-7", text = "plain" }, testing.logs[2])
  end)
end)
