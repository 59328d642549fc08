-- examples/policies/vip.lua (or the copy POLICY names, e.g. POLICY=scripts/push.lua)
local testing = require "impulse.testing"

describe("examples/policies/vip.lua", function()
  local policy

  before_each(function()
    testing.setup {}
    policy = testing.load_policy(os.getenv("POLICY") or "examples/policies/vip.lua", "scripts")
  end)

  local function offline(fields, reached, not_reached)
    return policy.offline(testing.message(fields), testing.ctx(),
      { reached = reached, not_reached = not_reached })
  end

  it("pushes a VIP offline even when the online push reached them", function()
    local users = offline({ sendID = "bob", recvID = "ceo" }, { "ceo" }, { "bob" })
    assert.same({ "ceo" }, users)
  end)

  it("pushes a VIP offline even when offline pushes are off for the message", function()
    local users, notice = offline({ sendID = "bob", recvID = "ceo", options = { offlinePush = false } },
      {}, { "ceo" })
    assert.same({ "ceo" }, users)
    assert.is_nil(notice) -- msgData goes on unchanged; the consumer writes "[TEXT]"
  end)

  it("keeps OpenIM's decision for everybody else, and adds no sender", function()
    assert.same({ "alice" }, (offline({ sendID = "bob", recvID = "alice" }, {}, { "alice" })))
    -- a self chat: OpenIM's offline push to its user, once
    assert.same({ "ceo" }, (offline({ sendID = "ceo", recvID = "ceo" }, {}, { "ceo" })))
    assert.same({}, (offline({ sendID = "ceo", recvID = "bob" }, { "bob" }, { "ceo" })))
    local users = offline({ sessionType = 3, groupID = "g", sendID = "x" }, { "ceo", "y" }, { "z" })
    assert.same({ "z", "ceo" }, users)
  end)

  it("passes its check", function()
    assert.is_true(policy.check())
  end)
end)
