-- lua/impulse/offline.lua: a toOfflinePush record through the providers'
-- payload modules and transports, with the engine core stubbed.
local testing = require "impulse.testing"
local cjson = require "cjson"

describe("impulse.offline", function()
  local function module(build) return { build = build } end
  local echo = module(function(msg, users, notice)
    return { { path = "/p", body = { users = users, title = notice.title, id = msg.clientMsgID }, user = users[1] } }
  end)
  local sent -- what the fake transport got: { {requests, users}, ... }

  -- a transport named "fake", recording what it is given
  local function setup(opts)
    testing.setup(opts)
    sent = {}
    package.loaded["impulse.transport.fake"] = {
      send = function(requests, users)
        sent[#sent + 1] = { requests = requests, users = users }
        if opts.fail then return nil, opts.fail end
        return { sent = #requests, rejected = 0, dead = 0 }
      end,
    }
  end

  local info = { title = "Hi", desc = "there", ex = "", iOSPushSound = "", iOSBadgeCount = false, signalInfo = "" }

  it("sends the users to the configured provider with the requests its module built", function()
    setup { offline_provider = "fake" }
    local res = testing.offline({ route = function() end }, { clientMsgID = "m1", offlinePushInfo = info },
      { "u1", "u2" }, { fake = echo })
    assert.same({ offline = 2, providers = { fake = 2 } }, res)
    assert.equal(1, #sent)
    local r = sent[1].requests[1]
    assert.equal("/p", r.path)
    assert.equal("u1", r.user) -- fields besides path and body reach the transport
    assert.same({ users = { "u1", "u2" }, title = "Hi", id = "m1" }, cjson.decode(r.body))
    assert.same({ "u1", "u2" }, sent[1].users)
  end)

  it("calls build() per chunk of users", function()
    setup { offline_provider = "fake" }
    local users = {}
    for i = 1, 2500 do users[i] = "u" .. i end
    testing.offline({ route = function() end }, {}, users, { fake = echo })
    assert.equal(3, #sent)
    assert.equal(1000, #sent[1].users)
    assert.equal(1000, #sent[2].users)
    assert.equal(500, #sent[3].users)
    assert.equal("u2001", sent[3].users[1])
  end)

  it("lets provider() split the users, and counts users with no provider", function()
    setup { offline_provider = "" }
    local policy = { route = function() end,
                     provider = function(u) return u:match("^cn%-") and "fake" or nil end }
    local res = testing.offline(policy, {}, { "cn-1", "eu-1", "cn-2" }, { fake = echo })
    assert.same({ offline = 3, providers = { fake = 2, none = 1 } }, res)
    assert.equal(1, testing.skipped)
    assert.same({ "cn-1", "cn-2" }, cjson.decode(sent[1].requests[1].body).users)
  end)

  it("takes the notice from the policy's notice(msg) when it has one", function()
    setup { offline_provider = "fake" }
    local policy = { route = function() end, notice = function(msg) return { title = "T" .. msg.contentType } end }
    testing.offline(policy, { contentType = 102 }, { "u1" }, { fake = echo })
    assert.equal("T102", cjson.decode(sent[1].requests[1].body).title)
  end)

  it("reports what cannot be sent, naming the provider and the request", function()
    setup { offline_provider = "fake" }
    local p = { route = function() end }
    local _, err = testing.offline(p, {}, { "u1" }, {})
    assert.equal("no payload module scripts/providers/fake.lua for provider fake", err)
    _, err = testing.offline(p, {}, { "u1" }, { fake = module(function() return nil, "no token" end) })
    assert.equal("providers/fake.lua: build() failed: no token", err)
    _, err = testing.offline(p, {}, { "u1" }, { fake = module(function() return "x" end) })
    assert.equal("providers/fake.lua: build() returned a string, expected a list of requests", err)
    _, err = testing.offline(p, {}, { "u1" }, { fake = module(function() return { 42 } end) })
    assert.equal("providers/fake.lua: request 1 is a number, expected a table or a string", err)
    _, err = testing.offline({ route = function() end, provider = function() return 7 end }, {}, { "u1" }, {})
    assert.equal("provider() returned a number for u1, expected a name", err)
    _, err = testing.offline({ route = function() end, provider = function() return "nope" end }, {}, { "u1" },
      { nope = echo })
    assert.equal("provider nope has no transport in this build", err)
  end)

  it("dead-letters the users a transport could not reach, and only them", function()
    setup { offline_provider = "fake", fail = "HTTP 503" }
    local res = testing.offline({ route = function() end }, {}, { "u1", "u2" }, { fake = echo })
    assert.equal(2, res.dead_lettered)
    assert.same({ { users = { "u1", "u2" }, reason = "push_failed", error = "fake: HTTP 503" } }, testing.dead_letters)

    setup { offline_provider = "fake" }
    package.loaded["impulse.transport.fake"].send = function(requests)
      return { sent = #requests - 1, rejected = 1, dead = 0, failed = { "u2" }, error = "HTTP 400 bad token" }
    end
    res = testing.offline({ route = function() end }, {}, { "u1", "u2", "u3" }, { fake = echo })
    assert.equal(1, res.dead_lettered)
    assert.same({ { users = { "u2" }, reason = "push_failed", error = "fake: HTTP 400 bad token" } },
      testing.dead_letters)
  end)

  it("does nothing for a record without users", function()
    setup { offline_provider = "fake" }
    assert.same({ offline = 0, providers = {} }, testing.offline({ route = function() end }, {}, {}, { fake = echo }))
    assert.same({}, sent)
  end)

  it("logs each request with the log transport", function()
    setup { offline_provider = "log" }
    testing.offline({ route = function() end }, { clientMsgID = "m5", offlinePushInfo = info }, { "u1" },
      { log = echo })
    local l = testing.logs[#testing.logs]
    assert.equal("offline push", l.text)
    local f = cjson.decode(l.fields)
    assert.equal("log", f.provider)
    assert.equal("m5", f.clientMsgID)
    assert.same({ users = { "u1" }, title = "Hi", id = "m5" }, f.body)
  end)
end)
