-- Compatibility fixture: a toPush record exactly as OpenIM's msgtransfer
-- writes it (PushMsgDataToMQ{msgData, conversationID}), encoded by an
-- encoder independent of impulse's (protobufjs in the stand-in, from the
-- same .proto files), is decoded and routed correctly, and every field
-- reaches the gateway unchanged (status 1 → 2).
local h = require "spec.helpers"

-- A group text message with every field msgtransfer fills in, including
-- 64-bit times, the options map, offlinePushInfo and @-mentions.
local FIXTURE = {
  msgData = {
    sendID = "sam",
    recvID = "",
    groupID = "g-compat",
    clientMsgID = "c0ffee0000compat0001",
    serverMsgID = "9f4a3c1b2e8d7f60a1b2c3d4e5f60718",
    senderPlatformID = 2,
    senderNickname = "Sam ✓",
    senderFaceURL = "https://example.com/sam.png",
    sessionType = 3,
    msgFrom = 100,
    contentType = 101,
    content = "eyJjb250ZW50Ijoi5L2g5aW9IEBhbm4ifQ==", -- base64 of {"content":"你好 @ann"}
    seq = "4294967301", -- above 2^32
    sendTime = "1764230400123",
    createTime = "1764230400101",
    status = 1,
    isRead = false,
    options = { history = true, persistent = true, offlinePush = true, unreadCount = true },
    offlinePushInfo = { title = "Sam", desc = "said hi", ex = "{\"k\":1}", iOSPushSound = "ding.caf",
      iOSBadgeCount = true, signalInfo = "" },
    atUserIDList = { "ann" },
    attachedInfo = "{\"isPrivateChat\":false}",
    ex = "{\"tenant\":\"acme\"}",
  },
  conversationID = "sg_g-compat",
}

describe("msgtransfer compatibility fixture #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_group(env, "g-compat", { "sam", "ann", "bob" })
    h.set_online(env, { ann = { 1 } }, env.gateways[1])
    imp = h.start_impulse(env, { workers = 1 })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("decodes and routes a PushMsgDataToMQ record written by another encoder", function()
    local enc = h.http_json("POST", env.services.control .. "/encode",
      { type = "openim.msg.PushMsgDataToMQ", value = FIXTURE })
    local bytes = h.base64_decode(enc.base64)
    assert.equal(enc.length, #bytes)
    local m = { clientMsgID = FIXTURE.msgData.clientMsgID, sendID = "sam" }
    h.produce(env, m, { raw = bytes, key = "g-compat", operationID = "op-compat-1" })

    local line = h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "the route")
    assert.equal("op-compat-1", line.operationID)
    assert.equal(3, line.sessionType)
    assert.equal("g-compat", line.groupID)
    assert.equal(3, line.recipients) -- the group's members, the sender included
    assert.same({ "ann" }, line.reached)

    -- the gateway got the message with every field as written, status 2
    local got = h.wait_until(function()
      for _, p in ipairs(h.pushes(env.gateways[1])) do
        if p.msgData and p.msgData.clientMsgID == m.clientMsgID then return p end
      end
    end, 10000, "the gateway push")
    local md = got.msgData
    local want = FIXTURE.msgData
    for _, k in ipairs { "sendID", "groupID", "serverMsgID", "senderNickname", "senderFaceURL",
      "seq", "sendTime", "createTime", "attachedInfo", "ex" } do
      assert.equal(want[k], md[k], k)
    end
    for _, k in ipairs { "senderPlatformID", "sessionType", "msgFrom", "contentType" } do
      assert.equal(want[k], md[k], k)
    end
    assert.equal(2, md.status)
    assert.equal(want.content, md.contentBase64)
    assert.same(want.options, md.options)
    assert.same(want.atUserIDList, md.atUserIDList)
    for k, v in pairs(want.offlinePushInfo) do assert.equal(v, md.offlinePushInfo[k], k) end
    assert.same({ "ann" }, got.pushToUserIDs)
  end)
end)
