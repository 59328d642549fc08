-- The group way of the default policy: quit, kick and dismiss
-- notifications, the conversation's offline filter, old messages.
local testing = require "impulse.testing"
local json = require "cjson"

local MAXSEQ = "/openim.msg.msg/GetConversationMaxSeq"
local SETSEQ = "/openim.conversation.conversation/SetConversationMaxSeq"
local DISMISS = "/openim.group.group/dismissGroup"
local FILTER = "/openim.conversation.conversation/GetConversationOfflinePushUserIDs"

local function tips(t)
  return json.encode { detail = json.encode(t) }
end

local function rpc_calls(method)
  local out = {}
  for _, c in ipairs(testing.calls) do
    if c[1] == "rpc" and c[2] == method then out[#out + 1] = c end
  end
  return out
end

describe("scripts/push.lua, the group way", function()
  local policy

  local function setup(rpc)
    testing.setup { groups = { g = { "a", "b" } }, rpc = rpc }
    policy = testing.load_policy("scripts/push.lua")
  end

  local function msg(fields)
    local f = { sessionType = 3, groupID = "g", sendID = "a", recvID = "" }
    for k, v in pairs(fields) do f[k] = v end
    return testing.message(f)
  end

  it("adds the member who quit and sets their max seq", function()
    setup { [MAXSEQ] = function(req)
      assert.equal("sg_g", req.conversationID)
      return { maxSeq = 42 }
    end }
    local quit = msg { contentType = 1504, content = tips { quitUser = { userID = "q" } } }
    local users = policy.route(quit, testing.ctx())
    assert.same({ "a", "b", "q" }, users)
    local set = rpc_calls(SETSEQ)
    assert.equal(1, #set)
    assert.same({ conversationID = "sg_g", ownerUserID = { "q" }, maxSeq = 42 }, set[1][3])
  end)

  it("adds the kicked members and sets their max seq", function()
    setup { [MAXSEQ] = function() return { maxSeq = 7 } end }
    local content = tips { kickedUserList = { { userID = "k1" }, { userID = "k2" } } }
    assert.same({ "a", "b", "k1", "k2" }, policy.route(msg { contentType = 1508, content = content }, testing.ctx()))
    assert.same({ "k1", "k2" }, rpc_calls(SETSEQ)[1][3].ownerUserID)
  end)

  it("sets a max seq of 0 too: only a failed Get skips the Set (push_handler.go:423-430)", function()
    setup {}
    policy.route(msg { contentType = 1504, content = tips { quitUser = { userID = "q" } } }, testing.ctx())
    assert.equal(1, #rpc_calls(MAXSEQ))
    assert.same({ conversationID = "sg_g", ownerUserID = { "q" }, maxSeq = 0 }, rpc_calls(SETSEQ)[1][3])
    setup { [MAXSEQ] = function() return nil, "msg service: UNAVAILABLE", "UNAVAILABLE" end }
    local users = policy.route(msg { contentType = 1504, content = tips { quitUser = { userID = "q" } } },
      testing.ctx())
    assert.same({ "a", "b", "q" }, users)
    assert.equal(0, #rpc_calls(SETSEQ))
    assert.matches("GetConversationMaxSeq sg_g", testing.logs[1].text)
  end)

  it("asks the max seq for a kick with nobody listed, and sets nothing (conversation.go:17-23)", function()
    setup {}
    local users = policy.route(msg { contentType = 1508, content = tips { kickedUserList = {} } }, testing.ctx())
    assert.same({ "a", "b" }, users)
    assert.equal(1, #rpc_calls(MAXSEQ))
    assert.equal(0, #rpc_calls(SETSEQ))
  end)

  it("pushes to the members without the special handling when the tips do not parse", function()
    setup {}
    assert.same({ "a", "b" }, policy.route(msg { contentType = 1504, content = "{not json" }, testing.ctx()))
    assert.equal(0, #rpc_calls(MAXSEQ))
    assert.equal("warn", testing.logs[1].level)
    assert.same({ "a", "b" }, policy.route(msg { contentType = 1511, content = "{not json",
      options = { isNotNotification = false } }, testing.ctx()))
    assert.equal(0, #rpc_calls(DISMISS))
  end)

  local DISMISSED = tips { group = { groupID = "g" } }

  it("dismisses the group as the admin, only for the notification conversation", function()
    setup {}
    policy.route(msg { contentType = 1511, content = DISMISSED, options = { isNotNotification = false } },
      testing.ctx())
    local d = rpc_calls(DISMISS)
    assert.equal(1, #d)
    assert.same({ groupID = "g", deleteMember = true }, d[1][3])
    assert.equal("imAdmin", d[1][4])
    policy.route(msg { contentType = 1511, content = DISMISSED }, testing.ctx()) -- isNotNotification missing: true
    assert.equal(1, #rpc_calls(DISMISS))
  end)

  it("treats a group already dismissed as success, and logs other failures", function()
    setup { [DISMISS] = function() return nil, "group service: 1004: record not found", "1004" end }
    local dismissed = msg { contentType = 1511, content = DISMISSED, options = { isNotNotification = false } }
    assert.same({ "a", "b" }, policy.route(dismissed, testing.ctx()))
    assert.equal(0, #testing.logs)
    setup { [DISMISS] = function() return nil, "group service: UNAVAILABLE: down", "UNAVAILABLE" end }
    policy.route(msg { contentType = 1511, content = DISMISSED, options = { isNotNotification = false } },
      testing.ctx())
    assert.matches("dismissGroup g: group service: UNAVAILABLE", testing.logs[1].text)
  end)

  it("asks the conversation which members take offline pushes", function()
    setup { [FILTER] = function(req)
      assert.equal("sg_g", req.conversationID)
      local out = {}
      for _, u in ipairs(req.userIDs) do if u ~= "muted" then out[#out + 1] = u end end
      return { userIDs = out }
    end }
    local users = policy.offline(msg {}, testing.ctx(), { reached = { "b" }, not_reached = { "a", "c", "muted" } })
    assert.same({ "c" }, users)
  end)

  it("drops a batch whose filter call fails, and counts it", function()
    setup { [FILTER] = function() return nil, "conversation service: UNAVAILABLE", "UNAVAILABLE" end }
    assert.same({}, (policy.offline(msg {}, testing.ctx(), { reached = {}, not_reached = { "c", "d" } })))
    assert.same({ kind = "counter", name = "offline_push_dropped_total",
                  labels = { reason = "filter_failed" }, value = 2 }, testing.metrics[1])
  end)

  it("asks for a 100,000-member group in one call, as OpenIM (push_handler.go:369-376)", function()
    setup {}
    local many = {}
    for i = 1, 100000 do many[i] = "m" .. i end
    local users = policy.offline(msg {}, testing.ctx(), { reached = {}, not_reached = many })
    assert.equal(100000, #users)
    assert.equal(1, #rpc_calls(FILTER))
  end)

  it("splits only a list that would pass gRPC's 4 MiB, where OpenIM's call fails", function()
    setup {}
    local many, pad = {}, string.rep("u", 96)
    for i = 1, 40000 do many[i] = pad .. i end -- about 4.2 MB of IDs
    local users = policy.offline(msg {}, testing.ctx(), { reached = {}, not_reached = many })
    assert.equal(40000, #users)
    assert.equal(2, #rpc_calls(FILTER))
  end)
end)
