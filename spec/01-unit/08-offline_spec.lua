-- lua/impulse/offline.lua: a toOfflinePush record through the providers'
-- payload modules and transports, with the engine core stubbed.
local testing = require "impulse.testing"

describe("impulse.offline", function()
  local function module(build) return { build = build } end
  local echo = module(function(msg, users, notice)
    return { { path = "/p", body = { users = users, title = notice.title, id = msg.clientMsgID } } }
  end)

  it("sends the users to the configured provider with the requests its module built", function()
    testing.setup { offline_provider = "log" }
    local res = testing.offline({ route = function() end }, {
      clientMsgID = "m1", offlinePushInfo = { title = "Hi", desc = "there", ex = "", iOSPushSound = "",
                                              iOSBadgeCount = false, signalInfo = "" },
    }, { "u1", "u2" }, { log = echo })
    assert.same({ offline = 2, providers = { log = 2 } }, res)
    assert.equal(1, #testing.sent)
    local sent = testing.sent[1]
    assert.equal("log", sent.provider)
    assert.equal(2, sent.users)
    assert.equal("m1", sent.clientMsgID)
    assert.equal("/p", sent.requests[1].path)
    assert.same({ users = { "u1", "u2" }, title = "Hi", id = "m1" },
      require("cjson").decode(sent.requests[1].body))
  end)

  it("lets provider() split the users, and counts users with no provider", function()
    testing.setup { offline_provider = "" }
    local policy = { route = function() end,
                     provider = function(u) return u:match("^cn%-") and "getui" or nil end }
    local res = testing.offline(policy, {}, { "cn-1", "eu-1", "cn-2" }, { getui = echo })
    assert.same({ offline = 3, providers = { getui = 2, none = 1 } }, res)
    assert.equal(1, testing.skipped)
    assert.same({ "cn-1", "cn-2" }, require("cjson").decode(testing.sent[1].requests[1].body).users)
  end)

  it("takes the notice from the policy's notice(msg) when it has one", function()
    testing.setup { offline_provider = "log" }
    local policy = { route = function() end, notice = function(msg) return { title = "T" .. msg.contentType } end }
    testing.offline(policy, { contentType = 102 }, { "u1" }, { log = echo })
    assert.equal("T102", require("cjson").decode(testing.sent[1].requests[1].body).title)
  end)

  it("reports what cannot be sent, naming the provider and the request", function()
    testing.setup { offline_provider = "fcm" }
    local p = { route = function() end }
    local _, err = testing.offline(p, {}, { "u1" }, {})
    assert.equal("no payload module scripts/providers/fcm.lua for provider fcm", err)
    _, err = testing.offline(p, {}, { "u1" }, { fcm = module(function() return nil, "no token" end) })
    assert.equal("providers/fcm.lua: build() failed: no token", err)
    _, err = testing.offline(p, {}, { "u1" }, { fcm = module(function() return "x" end) })
    assert.equal("providers/fcm.lua: build() returned a string, expected a list of requests", err)
    _, err = testing.offline(p, {}, { "u1" }, { fcm = module(function() return { 42 } end) })
    assert.equal("providers/fcm.lua: request 1 is a number, expected a table or a string", err)
    _, err = testing.offline({ route = function() end, provider = function() return 7 end }, {}, { "u1" }, {})
    assert.equal("provider() returned a number for u1, expected a name", err)
  end)

  it("passes a transport's failure on, so the record is dead-lettered", function()
    testing.setup { offline_provider = "log", provider_send = function() return nil, "HTTP 503" end }
    local res, err = testing.offline({ route = function() end }, {}, { "u1" }, { log = echo })
    assert.is_nil(res)
    assert.equal("HTTP 503", err)
  end)

  it("does nothing for a record without users", function()
    testing.setup { offline_provider = "log" }
    assert.same({ offline = 0, providers = {} }, testing.offline({ route = function() end }, {}, {}, { log = echo }))
    assert.same({}, testing.sent)
  end)
end)
