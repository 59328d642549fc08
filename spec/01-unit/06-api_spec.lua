-- The engine API modules over impulse.testing's stubs: what a policy spec
-- can rely on when it stubs the engine.
local testing = require "impulse.testing"

describe("engine API modules (stubbed)", function()
  it("impulse.rpc wraps OpenIM's calls", function()
    testing.setup { rpc = {
      ["/openim.msg.msg/GetConversationMaxSeq"] = function(req)
        assert.equal("sg_g", req.conversationID)
        return { maxSeq = 7 }
      end,
      ["/openim.user.user/getUserStatus"] = function()
        return { statusList = { { userID = "a", status = 1, platformIDs = { 1 } }, { userID = "b", status = 0 } } }
      end,
      ["/openim.group.group/dismissGroup"] = function(req, opuser)
        assert.is_true(req.deleteMember)
        assert.equal("imAdmin", opuser)
        return nil, "group service: 1004: record not found", "1004"
      end,
    } }
    local rpc = require "impulse.rpc"
    assert.equal(7, rpc.conversation_max_seq("sg_g"))
    assert.same({ a = { 1 } }, rpc.user_status({ "a", "b" }))
    assert.same({ nil, "group service: 1004: record not found", "1004" }, { rpc.dismiss_group("g", true, "imAdmin") })
    assert.same({ "a" }, rpc.offline_push_user_ids("sg_g", { "a" })) -- the stub's default
    local _, err, code = rpc.call("/openim.user.user/getAllOnlineUsers", { cursor = 0 })
    assert.matches("no stub", err)
    assert.equal("UNAVAILABLE", code)
    assert.has_error(function() rpc.call(42, {}) end)
  end)

  it("impulse.redis has an in-memory stub", function()
    testing.setup {}
    local redis = require "impulse.redis"
    assert.equal(redis.null, redis.call("GET", "k"))
    assert.equal("OK", redis.call("SET", "k", 5))
    assert.equal(6, redis.call("INCR", "k"))
    assert.equal("6", redis.call("GET", "k"))
  end)

  it("impulse.http, kafka and metrics record what a policy asked", function()
    testing.setup { http = function(req) return { status = 204, body = req.method } end }
    local http = require "impulse.http"
    assert.same({ status = 204, body = "POST" }, http.request { method = "POST", url = "http://x" })
    assert.has_error(function() http.request {} end)
    require("impulse.kafka").produce("t", "k", "v")
    assert.same({ topic = "t", key = "k", value = "v" }, testing.produced[1])
    require("impulse.metrics").inc("x_total", { a = "1" })
    assert.same({ kind = "counter", name = "x_total", labels = { a = "1" }, value = 1 }, testing.metrics[1])
  end)
end)
