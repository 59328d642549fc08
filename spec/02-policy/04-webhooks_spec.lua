-- The push webhooks of the default policy (scripts/webhooks.lua), against
-- a stubbed HTTP client: requests, stop, replacement, failedContinue.
local testing = require "impulse.testing"
local json = require "cjson"

local function config(hooks)
  local w = { url = "http://hooks.example/cb" }
  for _, name in ipairs { "beforeOnlinePush", "beforeGroupOnlinePush", "beforeOfflinePush" } do
    w[name] = hooks[name] or { enable = false, timeout = 5, failedContinue = true }
  end
  return { imAdminUserID = "imAdmin", toPushTopic = "toPush", toOfflinePushTopic = "toOfflinePush",
           fullUserCache = true, rpcTimeoutMs = 5000, webhooks = w }
end

local ON = { enable = true, timeout = 3, failedContinue = true }
local ON_STRICT = { enable = true, timeout = 0, failedContinue = false }

describe("scripts/push.lua webhooks", function()
  local policy, requests

  local function setup(hooks, answer)
    requests = {}
    testing.setup { groups = { g = { "a", "b", "c" } }, config = config(hooks), http = function(req)
      requests[#requests + 1] = req
      return answer(req, json.decode(req.body))
    end }
    policy = testing.load_policy("scripts/push.lua")
  end

  local function ok() return { status = 200, body = '{"actionCode":0,"errCode":0,"errMsg":"","nextCode":0}' } end

  it("sends beforeOnlinePush for the user way, as OpenIM does", function()
    setup({ beforeOnlinePush = ON }, ok)
    local msg = testing.message { sendID = "bob", recvID = "alice", senderPlatformID = 2, contentType = 101,
                                  content = '{"content":"hi"}', clientMsgID = "m1" }
    assert.same({ "alice", "bob" }, policy.route(msg, testing.ctx("op-1")))
    local r = requests[1]
    assert.equal("POST", r.method)
    assert.equal("http://hooks.example/cb/callbackBeforeOnlinePushCommand", r.url)
    assert.equal("op-1", r.headers.operationID)
    assert.equal("application/json; charset=utf-8", r.headers["Content-Type"])
    assert.equal(3000, r.timeout_ms)
    assert.equal("\n", r.body:sub(-1))
    local b = json.decode(r.body)
    assert.same({
      callbackCommand = "callbackBeforeOnlinePushCommand", operationID = "op-1", platformID = 2,
      platform = "Android", userIDList = { "alice", "bob" }, clientMsgID = "m1", sendID = "bob", groupID = "",
      contentType = 101, sessionType = 1, atUserIDList = json.null, content = '{"content":"hi"}',
    }, b)
  end)

  it("stops the push on actionCode 0 and nextCode 1", function()
    setup({ beforeOnlinePush = ON }, function()
      return { status = 200, body = '{"actionCode":0,"errCode":5001,"errMsg":"no","nextCode":1}' }
    end)
    assert.same({}, policy.route(testing.message { sendID = "b", recvID = "a" }, testing.ctx()))
  end)

  it("is skipped for typing messages and when off", function()
    setup({ beforeOnlinePush = ON }, ok)
    policy.route(testing.message { sendID = "b", recvID = "a", contentType = 113 }, testing.ctx())
    assert.equal(0, #requests)
    setup({}, ok)
    policy.route(testing.message { sendID = "b", recvID = "a" }, testing.ctx())
    assert.equal(0, #requests)
  end)

  it("sends the notification detail as content, and seq for the group way", function()
    setup({ beforeGroupOnlinePush = ON }, ok)
    local msg = testing.message { sessionType = 3, groupID = "g", sendID = "a", contentType = 1501, seq = 77,
                                  content = json.encode { detail = '{"group":{}}' } }
    assert.same({ "a", "b", "c" }, policy.route(msg, testing.ctx()))
    local b = json.decode(requests[1].body)
    assert.equal("callbackBeforeGroupOnlinePushCommand", b.callbackCommand)
    assert.equal('{"group":{}}', b.content)
    assert.equal(77, b.seq)
    assert.is_nil(b.userIDList)
  end)

  it("lets beforeGroupOnlinePush name the recipients, skipping the quit handling", function()
    setup({ beforeGroupOnlinePush = ON }, function()
      return { status = 200, body = '{"actionCode":0,"nextCode":0,"userIDList":["x","y"]}' }
    end)
    local quit = testing.message { sessionType = 3, groupID = "g", contentType = 1504,
                                   content = json.encode { detail = '{"quitUser":{"userID":"q"}}' } }
    assert.same({ "x", "y" }, policy.route(quit, testing.ctx()))
    for _, c in ipairs(testing.calls) do assert.are_not.equal("group_member_ids", c[1]) end
  end)

  it("lets beforeOfflinePush replace the targets and the whole push info", function()
    setup({ beforeOfflinePush = ON }, function()
      return { status = 200,
               body = '{"actionCode":0,"nextCode":0,"userIDList":["z"],"offlinePushInfo":{"title":"T","desc":"D"}}' }
    end)
    local msg = testing.message { sendID = "b", recvID = "a", offlinePushInfo = { title = "orig", desc = "",
                                  ex = "", iOSPushSound = "ding", iOSBadgeCount = true, signalInfo = "" } }
    local users, notice = policy.offline(msg, testing.ctx(), { reached = {}, not_reached = { "a" } })
    assert.same({ "z" }, users)
    -- the reply's offlinePushInfo replaces the message's whole, unset
    -- fields empty (OpenIM@v3.8.3:internal/push/callback.go:63-65)
    assert.same({ offlinePushInfo = { title = "T", desc = "D", ex = "", iOSPushSound = "",
                                      iOSBadgeCount = false, signalInfo = "" } }, notice)
    local b = json.decode(requests[1].body)
    assert.equal("callbackBeforeOfflinePushCommand", b.callbackCommand)
    assert.same({ "a" }, b.userIDList)
    assert.equal("orig", b.title)           -- offlinePushInfo flattened, empty fields left out
    assert.equal("ding", b.iOSPushSound)
    assert.is_true(b.iOSBadgeCount)
    assert.is_nil(b.desc)
  end)

  it("goes on when a webhook fails and failedContinue is true, gives up when false", function()
    setup({ beforeOnlinePush = ON }, function() return nil, "http: timed out", "TIMEOUT" end)
    assert.same({ "a", "b" }, policy.route(testing.message { sendID = "b", recvID = "a" }, testing.ctx()))
    setup({ beforeOnlinePush = ON_STRICT }, function() return { status = 502, body = "bad gateway" } end)
    local users, err = policy.route(testing.message { sendID = "b", recvID = "a" }, testing.ctx())
    assert.is_nil(users)
    assert.matches("webhook callbackBeforeOnlinePushCommand failed: HTTP 502", err)
    assert.equal(15000, requests[1].timeout_ms) -- timeout 0: OpenIM's client default
  end)
end)
