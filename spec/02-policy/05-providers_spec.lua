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

-- what a sandboxed payload module builds, with the engine stubbed
local function msg(fields)
  return testing.message(fields or { clientMsgID = "0123456789abcdef0123456789abcdef", sendID = "zed" })
end

local function users(n)
  local u = {}
  for i = 1, n do u[i] = "user" .. i end
  return u
end

local notice = { title = "T", content = "C", ex = "x1", sound = "ding", badge = true, signalInfo = "" }

describe("scripts/providers/jpush.lua", function()
  before_each(function()
    testing.setup { providers = { jpush = { pushIntent = "intent://open" }, iosPush = { production = true } } }
  end)

  it("builds OpenIM's body", function()
    local jpush = testing.load_provider("jpush")
    local r = jpush.build(msg(), { "u1" }, notice, testing.ctx())
    assert.same({
      platform = "all",
      audience = { alias = { "u1" } },
      notification = {
        alert = "C",
        android = { alert = "C", title = "T", intent = { url = "intent://open" },
                    extras = { ex = "x1", ClientMsgID = "0123456789abcdef0123456789abcdef" } },
        ios = { alert = { title = "T", body = "C" }, sound = "ding", badge = "+1", ["mutable-content"] = true,
                extras = { ex = "x1", ClientMsgID = "0123456789abcdef0123456789abcdef" } },
      },
      message = { msg_content = "C", title = "T",
                  extras = { ex = "x1", ClientMsgID = "0123456789abcdef0123456789abcdef" } },
      options = { apns_production = true },
    }, r[1].body)
  end)

  for _, n in ipairs { 1, 999, 1000, 1001, 5000 } do
    it("sends " .. n .. " users in requests of at most 1000 aliases, each user once", function()
      local jpush = testing.load_provider("jpush")
      local r = jpush.build(msg(), users(n), notice, testing.ctx())
      assert.equal(math.ceil(n / 1000), #r)
      local seen, total = {}, 0
      for _, req in ipairs(r) do
        assert.is_true(#req.body.audience.alias <= 1000)
        for _, a in ipairs(req.body.audience.alias) do
          assert.is_nil(seen[a])
          seen[a] = true
          total = total + 1
        end
      end
      assert.equal(n, total)
    end)
  end
end)

describe("scripts/providers/getui.lua", function()
  before_each(function()
    testing.setup { providers = { geTui = { channelID = "ch1", channelName = "News" } } }
  end)

  it("builds a single alias push for one user, with a request_id from the clientMsgID", function()
    local getui = testing.load_provider("getui")
    local r = getui.build(msg(), { "u1" }, notice, testing.ctx())
    assert.equal(1, #r)
    assert.equal("/push/single/alias", r[1].path)
    local b = r[1].body
    assert.equal("0123456789abcdef0123456789abcdef", b.request_id)
    assert.same({ alias = { "u1" } }, b.audience)
    assert.same({ title = "T", body = "C", channelID = "ch1", ChannelName = "News", click_type = "startapp" },
      b.push_message.notification)
    assert.same({ sound = "default", alert = { title = "T", body = "C" } }, b.push_channel.ios.aps)
  end)

  it("keeps request_id within 10 to 32 characters", function()
    local getui = testing.load_provider("getui")
    assert.equal("abc0000000", getui.request_id({ clientMsgID = "abc" }))
    assert.equal(32, #getui.request_id({ clientMsgID = string.rep("a", 40) .. "b" }))
  end)

  for _, n in ipairs { 2, 999, 1000 } do
    it("builds one list message with alias chunks of at most 1000 for " .. n .. " users", function()
      local getui = testing.load_provider("getui")
      local r = getui.build(msg(), users(n), notice, testing.ctx())
      assert.equal(1, #r)
      assert.equal("/push/list/message", r[1].path)
      assert.same({ ttl = 300000 }, r[1].body.settings)
      local total = 0
      for _, c in ipairs(r[1].alias_chunks) do
        assert.is_true(#c <= 1000)
        total = total + #c
      end
      assert.equal(n, total)
    end)
  end
end)

describe("scripts/providers/fcm.lua", function()
  it("builds one message per device token, with OpenIM's fields and a collapse key", function()
    testing.setup {}
    local fcm = testing.load_provider("fcm")
    local ctx = testing.ctx()
    ctx.tokens = { u1 = { { token = "t-ios", platformID = 1, key = "FCM_TOKEN:u1:1" },
                          { token = "t-and", platformID = 2, key = "FCM_TOKEN:u1:2" } } }
    ctx.badge = { u1 = 7 }
    local r = fcm.build(msg(), { "u1", "u2" }, notice, ctx)
    assert.equal(2, #r) -- u2 has no token
    assert.equal("t-ios", r[1].token)
    assert.equal("FCM_TOKEN:u1:1", r[1].key)
    assert.equal("u1", r[1].user)
    assert.same({ message = {
      token = "t-ios",
      notification = { title = "T", body = "C" },
      data = { ex = "x1" },
      android = { collapse_key = "0123456789abcdef0123456789abcdef" },
      apns = { headers = { ["apns-collapse-id"] = "0123456789abcdef0123456789abcdef" },
               payload = { aps = { sound = "ding", badge = 7 } } },
    } }, r[1].body)
    -- no sound: left out, as the Go SDK OpenIM uses does
    local quiet = fcm.build(msg(), { "u1" }, { title = "T", content = "C", ex = "", sound = "" }, ctx)
    assert.is_nil(quiet[1].body.message.apns.payload.aps.sound)
  end)
end)

describe("scripts/providers/apns.lua", function()
  it("builds one notification per device token", function()
    testing.setup {}
    local apns = testing.load_provider("apns")
    local ctx = testing.ctx()
    ctx.tokens = { u1 = { { token = string.rep("a", 64), platformID = 1, key = "APNS_TOKEN:u1:1" } } }
    ctx.badge = { u1 = 3 }
    local r = apns.build(msg(), { "u1" }, { title = "T", content = "C", sound = "", ex = "" }, ctx)
    assert.equal(1, #r)
    assert.same({ aps = { alert = { title = "T", body = "C" }, badge = 3, sound = "default", ["mutable-content"] = 1 },
                  ex = "", clientMsgID = "0123456789abcdef0123456789abcdef" }, r[1].body)
  end)
end)

-- The exact bodies, kept as files (spec/fixtures/providers/*.json) that a
-- reader can compare with OpenIM's (openim-wire.md §8; OpenIM v3.8.3's
-- internal/push/offlinepush): a change to a payload shows up here.
describe("provider payload fixtures", function()
  local function fixture(name)
    local f = assert(io.open("spec/fixtures/providers/" .. name .. ".json"))
    local s = f:read("*a")
    f:close()
    return cjson.decode(s)
  end
  local cases = {
    { "jpush-single", "jpush", { "u1" } }, { "jpush-group", "jpush", { "u1", "u2", "u3" } },
    { "getui-single", "getui", { "u1" } }, { "getui-group", "getui", { "u1", "u2", "u3" } },
    { "fcm-single", "fcm", { "u1" } }, { "apns-single", "apns", { "u1" } },
  }
  for _, c in ipairs(cases) do
    it("builds " .. c[1] .. ".json", function()
      testing.setup { providers = { jpush = { pushIntent = "intent://open" }, iosPush = { production = true },
                                    geTui = { channelID = "ch1", channelName = "News" } } }
      local ctx = testing.ctx()
      ctx.tokens = { u1 = { { token = "tok-u1", platformID = 2, key = "FCM_TOKEN:u1:2" } } }
      ctx.badge = { u1 = 4 }
      local body = testing.load_provider(c[2]).build(msg(), c[3], notice, ctx)[1].body
      assert.same(fixture(c[1]), cjson.decode(cjson.encode(body)))
    end)
  end
end)
