-- scripts/push.lua against the engine stubs: every branch of route().
local testing = require "impulse.testing"

describe("scripts/push.lua route()", function()
  local policy

  before_each(function()
    testing.setup { groups = { g1 = { "alice", "bob", "carol" }, broken = "group service: UNAVAILABLE: down" } }
    policy = testing.load_policy("scripts/push.lua")
  end)

  describe("the user way", function()
    it("targets the receiver and the sender when senderSync is missing (defaults to true)", function()
      local users = policy.route(testing.message { sendID = "bob", recvID = "alice" }, testing.ctx())
      assert.same({ "alice", "bob" }, users)
    end)

    it("targets only the receiver when senderSync is off", function()
      local msg = testing.message { sendID = "bob", recvID = "alice", options = { senderSync = false } }
      assert.same({ "alice" }, policy.route(msg, testing.ctx()))
    end)

    it("does not add the sender twice when sending to oneself", function()
      local msg = testing.message { sendID = "alice", recvID = "alice" }
      assert.same({ "alice" }, policy.route(msg, testing.ctx()))
    end)

    it("handles notifications (sessionType 4) the user way", function()
      local msg = testing.message { sessionType = 4, sendID = "admin", recvID = "alice",
                                    options = { senderSync = false } }
      assert.same({ "alice" }, policy.route(msg, testing.ctx()))
      assert.same({}, testing.calls)
    end)
  end)

  describe("the group way", function()
    it("targets every member of the group", function()
      local msg = testing.message { sessionType = 3, groupID = "g1", sendID = "alice" }
      assert.same({ "alice", "bob", "carol" }, policy.route(msg, testing.ctx()))
      assert.same({ { "group_member_ids", "g1" } }, testing.calls)
    end)

    it("gives up with the service's error when members cannot be read, and logs it", function()
      local msg = testing.message { sessionType = 3, groupID = "broken" }
      local users, err = policy.route(msg, testing.ctx("op-9"))
      assert.is_nil(users)
      assert.matches("UNAVAILABLE", err)
      assert.equal(1, #testing.logs)
      assert.equal("warn", testing.logs[1].level)
      assert.equal("op-9", testing.logs[1].operationID)
    end)

    it("reports an unknown group as an error", function()
      local users, err = policy.route(testing.message { sessionType = 3, groupID = "nope" }, testing.ctx())
      assert.is_nil(users)
      assert.matches("record not found", err)
    end)
  end)

  it("cannot change the message", function()
    local msg = testing.message { recvID = "alice" }
    assert.has_error(function() msg.recvID = "mallory" end)
    assert.has_error(function() msg.options.senderSync = false end)
  end)
end)
