-- Several apps in one engine (impulse.apps): provider() answers
-- "<provider>@<app>" and that app's account is used, against a stubbed
-- engine (spec/03-engine/45-apps_spec.lua runs them against the fakes).
local testing = require "impulse.testing"
local cjson = require "cjson"

local SETTINGS = {
  geTui = { pushUrl = "https://gt.test/v2/main", appKey = "k-main", masterSecret = "s-main", channelID = "ch-main" },
  jpush = { appKey = "jk-main", masterSecret = "js-main", pushURL = "https://jp.test/v3/push" },
  impulse = { caFile = "/ca.pem", timeoutMs = 1234, apns = { keyId = "K-MAIN", teamId = "T-MAIN", topic = "main",
                                                             keyFile = "/main.p8", url = "https://apns.test" } },
  apps = {
    shop = {
      getui = { pushUrl = "https://gt.test/v2/shop", appKey = "k-shop", masterSecret = "s-shop",
                channelID = "ch-shop" },
      jpush = { appKey = "jk-shop", masterSecret = "js-shop", pushIntent = "intent://shop" },
      iosPush = { production = true },
      providers = { attempts = 3, jpush = { timeoutMs = 99 } },
    },
  },
}

-- users by prefix: "s-" to app shop, the others to the default app
local function policy(provider)
  return {
    route = function() end,
    provider = function(u) return provider(u) end,
  }
end

-- A stub Getui for both apps: /auth answers a token naming the app
local function http_batch(r)
  local app, path = r.url:match("^https://gt.test/v2/(%w+)(/.*)$")
  if path == "/auth" then
    return { status = 200, body = cjson.encode { code = 0, data = { token = "tok-" .. app } } }
  elseif path == "/push/list/message" then
    return { status = 200, body = cjson.encode { code = 0, data = { taskid = "T-" .. app } } }
  end
  return { status = 200, body = cjson.encode { code = 0, data = {} } }
end

local function redis_stub()
  local store = {}
  return function(cmd, a, b)
    cmd = cmd:upper()
    if cmd == "GET" then return store[a] or cjson.null
    elseif cmd == "SET" then store[a] = b; return "OK"
    elseif cmd == "PTTL" then return store[a] and 3600000 or -2
    end
    return 0
  end, store
end

-- the sum of a counter over the series with these labels (false: absent)
local function metric(name, labels)
  local n = 0
  for _, m in ipairs(testing.metrics) do
    local ok = m.name == name
    for k, v in pairs(labels) do
      local have = m.labels and m.labels[k]
      if v == false then ok = ok and have == nil else ok = ok and have == v end
    end
    if ok then n = n + (m.value or 1) end
  end
  return n
end

describe("several apps", function()
  local store

  before_each(function()
    local redis
    redis, store = redis_stub()
    testing.setup { offline_provider = "getui", providers = SETTINGS, http_batch = http_batch, redis = redis }
  end)

  it("sends each user with the account of the app provider() names, with its own token", function()
    local p = policy(function(u) if u:sub(1, 2) == "s-" then return "getui@shop" end end)
    local res = assert(testing.offline(p, { clientMsgID = "abcdefghijk" }, { "u1", "s-1" }))
    assert.same({ getui = 1, ["getui@shop"] = 1 }, res.providers)
    local pushes = {}
    for _, b in ipairs(testing.batches) do
      for _, r in ipairs(b.requests) do
        if r.url:find("/push/single/alias", 1, true) then pushes[r.url] = r.headers[1] end
      end
    end
    assert.same({ ["https://gt.test/v2/main/push/single/alias"] = "token: tok-main",
                  ["https://gt.test/v2/shop/push/single/alias"] = "token: tok-shop" }, pushes)
    -- OpenIM's key for the default, one of its own for the app
    assert.equal("tok-main", store.GETUI_TOKEN)
    assert.equal("tok-shop", store["GETUI_TOKEN:shop"])
    -- the app's payload takes the app's channel
    for _, b in ipairs(testing.batches) do
      for _, r in ipairs(b.requests) do
        local body = cjson.decode(r.body)
        if body.push_message then
          local want = r.url:find("/shop/", 1, true) and "ch-shop" or "ch-main"
          assert.equal(want, body.push_message.notification.channelID)
        end
      end
    end
  end)

  it("counts an app's users and requests with the label app, the default's without", function()
    local p = policy(function(u) if u:sub(1, 2) == "s-" then return "getui@shop" end end)
    assert(testing.offline(p, { clientMsgID = "abcdefghijk" }, { "u1", "s-1", "s-2" }))
    assert.equal(2, metric("impulse_offline_push_total", { provider = "getui", result = "sent", app = "shop" }))
    assert.equal(1, metric("impulse_offline_push_total", { provider = "getui", result = "sent", app = false }))
    -- the list message and its alias chunk
    assert.equal(2, metric("impulse_provider_requests_total", { provider = "getui", result = "sent", app = "shop" }))
    assert.equal(1, metric("impulse_provider_requests_total", { provider = "getui", result = "sent", app = false }))
  end)

  it("takes { provider = ..., app = ... } as well", function()
    local p = policy(function() return { provider = "jpush", app = "shop" } end)
    assert(testing.offline(p, {}, { "u1" }))
    local r = testing.batches[1].requests[1]
    assert.equal("https://api.jpush.cn/v3/push", r.url) -- the app's pushURL, unset: JPush's, not the default's
    assert.equal("Authorization: Basic " .. require("impulse.core").b64url("jk-shop:js-shop", true), r.headers[1])
    local body = cjson.decode(r.body)
    assert.equal("intent://shop", body.notification.android.intent.url)
    assert.is_true(body.options.apns_production)
    -- the app's options over impulse.providers'
    local o = testing.batches[1].opts
    assert.equal("jpush@shop", o.pool)
    assert.equal(99, o.timeout_ms)
    assert.equal(3, o.attempts)
    assert.equal("/ca.pem", o.ca_file)
  end)

  it("fails the record when provider() names an app impulse.apps does not have", function()
    local p = policy(function() return "getui@nope" end)
    local res, err = testing.offline(p, {}, { "u1" })
    assert.is_nil(res)
    assert.matches("provider() returned getui@nope for u1: no app nope in impulse.apps", err, 1, true)
    assert.equal(0, #testing.batches)
  end)

  it("never lends the default's credentials to an app", function()
    local common = require "impulse.transport.common"
    local _, own = common.options("apns", "shop")
    assert.is_nil(own.keyId)
    assert.is_nil(own.keyFile)
    assert.equal("https://apns.test", own.url) -- endpoints and options are inherited
    assert.equal(1234, (common.options("apns", "shop")).timeout_ms)
    local ok, err = require("impulse.transport.apns").check("shop")
    assert.is_nil(ok)
    assert.equal("impulse.apps.shop.providers.apns.keyFile is not set", err)
  end)
end)

describe("impulse.apps checks", function()
  local function check(apps, policy_)
    local s = {}
    for k, v in pairs(SETTINGS) do s[k] = v end
    s.apps = apps
    testing.setup { offline_provider = "getui", providers = s }
    return require("impulse.offline").check_provider("getui", policy_ or {})
  end

  it("passes complete apps", function()
    assert.is_true(check(SETTINGS.apps))
  end)

  it("names the key of a missing setting, an unknown key, a wrong type, a bad name", function()
    local cases = {
      { { shop = { getui = { pushUrl = "https://x/v2/a", appKey = "k" } } },
        "impulse.apps.shop.getui.masterSecret is not set" },
      { { shop = { fcm = { filePth = "x.json" } } }, "impulse.apps.shop.fcm.filePth: unknown key" },
      { { shop = { fcm = { filePath = "/nonexistent/sa.json" } } },
        "impulse.apps.shop.fcm.filePath: cannot read /nonexistent/sa.json" },
      { { shop = { jpush = { appKey = 5 } } }, "impulse.apps.shop.jpush.appKey: expected a string" },
      { { shop = { apns = {} } },
        "impulse.apps.shop.apns: unknown key (expected geTui, fcm, jpush, iosPush, providers)" },
      { { shop = { providers = { apns = { keyid = "x" } } } }, "impulse.apps.shop.providers.apns.keyid: unknown key" },
      { { shop = { providers = { apns = { keyId = "K" } } } },
        "impulse.apps.shop.providers.apns.keyFile is not set" },
      { { ["a@b"] = {} }, "impulse.apps.a@b: an app's name is letters, digits, '_', '-' and '.'" },
      { { shop = "x" }, "impulse.apps.shop must be a map of provider settings" },
    }
    for _, c in ipairs(cases) do
      local ok, err = check(c[1])
      assert.is_nil(ok)
      assert.equal(c[2], err:sub(1, #c[2]))
    end
  end)

  it("checks the providers the policy lists with their app", function()
    local ok, err = check(SETTINGS.apps, { providers = { "getui@shop", "fcm@shop" } })
    assert.is_nil(ok)
    assert.equal("push.lua providers: fcm@shop: impulse.apps.shop.fcm.filePath is not set", err)
    ok, err = check(SETTINGS.apps, { providers = { "jpush@nope" } })
    assert.is_nil(ok)
    assert.equal("push.lua providers: jpush@nope: no app nope in impulse.apps", err)
    assert.is_true(check(SETTINGS.apps, { providers = { "getui@shop", "jpush@shop", "jpush" } }))
  end)
end)
