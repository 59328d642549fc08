-- scripts/providers/*.lua: the payloads the default scripts build.
local testing = require "impulse.testing"
local cjson = require "cjson"

describe("scripts/providers/log.lua", function()
  it("builds one request naming the message, the users and the notice", function()
    testing.setup { offline_provider = "log" }
    local policy = testing.load_policy("scripts/push.lua")
    local res = testing.offline(policy, {
      clientMsgID = "m9", sendID = "alice", sessionType = 1, contentType = 102,
      offlinePushInfo = { title = "", desc = "", ex = "", iOSPushSound = "", iOSBadgeCount = false, signalInfo = "" },
    }, { "bob" })
    assert.same({ offline = 1, providers = { log = 1 } }, res)
    local body = cjson.decode(testing.logs[#testing.logs].fields).body
    assert.same({ clientMsgID = "m9", sendID = "alice", sessionType = 1, title = "[PICTURE]",
                  content = "[PICTURE]", users = { "bob" } }, body)
  end)

  it("keeps the title the toPush leg chose", function()
    testing.setup { offline_provider = "log" }
    local policy = testing.load_policy("scripts/push.lua")
    testing.offline(policy, {
      offlinePushInfo = { title = "Alice", desc = "hello", ex = "", iOSPushSound = "", iOSBadgeCount = false,
                          signalInfo = "" },
    }, { "bob" })
    local body = cjson.decode(testing.logs[#testing.logs].fields).body
    assert.equal("Alice", body.title)
    assert.equal("hello", body.content)
  end)
end)
