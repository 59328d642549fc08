-- The offline decision of the default policy (scripts/openim.lua via
-- scripts/push.lua): options, excluded content types, the reached-online
-- rule, the sender, and what the notification says.
local testing = require "impulse.testing"

describe("scripts/push.lua offline()", function()
  local policy

  before_each(function()
    testing.setup {}
    policy = testing.load_policy("scripts/push.lua")
  end)

  local function offline(fields, reached, not_reached)
    return policy.offline(testing.message(fields), testing.ctx(),
      { reached = reached or {}, not_reached = not_reached or {} })
  end

  it("pushes a single chat offline when the receiver was not reached", function()
    local users, notice = offline({ sendID = "bob", recvID = "alice" }, { "bob" }, { "alice" })
    assert.same({ "alice" }, users)
    assert.same({ title = "[TEXT]", content = "[TEXT]" }, notice)
  end)

  it("skips a single chat when a recipient other than the sender was reached", function()
    assert.same({}, (offline({ sendID = "bob", recvID = "alice" }, { "alice" }, { "bob" })))
  end)

  it("never pushes the sender offline", function()
    assert.same({}, (offline({ sendID = "bob", recvID = "bob" }, {}, { "bob" })))
  end)

  it("pushes the group members not reached, minus the sender", function()
    local users = offline({ sessionType = 3, groupID = "g", sendID = "a" }, { "b" }, { "a", "c", "d" })
    assert.same({ "c", "d" }, users)
  end)

  it("respects offlinePush = false and the excluded content types", function()
    assert.same({}, (offline({ recvID = "x", options = { offlinePush = false } }, {}, { "x" })))
    assert.same({}, (offline({ recvID = "x", contentType = 1602 }, {}, { "x" })))
    assert.same({}, (offline({ recvID = "x", contentType = 1603 }, {}, { "x" })))
    assert.same({ "x" }, (offline({ recvID = "x", contentType = 1601 }, {}, { "x" })))
  end)

  it("titles by content type, offlinePushInfo first, and fixes the empty @-mention title", function()
    local _, n = offline({ recvID = "x", contentType = 106 }, {}, { "x" })
    assert.same({ title = "[@TEXT]", content = "[@TEXT]" }, n)
    _, n = offline({ recvID = "x", contentType = 102 }, {}, { "x" })
    assert.equal("[PICTURE]", n.title)
    _, n = offline({ recvID = "x", contentType = 999 }, {}, { "x" })
    assert.equal("[NEWMSG]", n.title)
    _, n = offline({ recvID = "x", offlinePushInfo = { title = "Hi", desc = "" } }, {}, { "x" })
    assert.same({ title = "Hi", content = "Hi" }, n)
    _, n = offline({ recvID = "x", offlinePushInfo = { title = "Hi", desc = "there" } }, {}, { "x" })
    assert.same({ title = "Hi", content = "there" }, n)
  end)
end)
