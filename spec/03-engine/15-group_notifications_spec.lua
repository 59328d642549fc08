-- Quit, kick and dismiss notifications against the OpenIM stand-in: the
-- RPCs OpenIM's push service makes, with their fields and metadata.
local h = require "spec.helpers"
local cjson = require "cjson"

local function tips(t)
  return cjson.encode { detail = cjson.encode(t) }
end

describe("group notifications #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { a = { 1 }, q = { 1 }, k1 = { 2 } }, env.gateways[1])
    h.set_group(env, "g1", { "a", "b" })
    h.set_group(env, "g2", { "a", "b" })
    h.http_json("POST", env.services.control .. "/maxseq", { sg_g1 = 42 })
    imp = h.start_impulse(env, { workers = 2 })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function calls(method, opid)
    local out = {}
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == method and (not opid or c.metadata.operationid == opid) then out[#out + 1] = c end
    end
    return out
  end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  it("pushes a quit to the member who left and sets their max seq", function()
    local m = h.push_msg { sendID = "q", recvID = "", groupID = "g1", sessionType = 3, contentType = 1504,
                           content = tips { group = { groupID = "g1" }, quitUser = { userID = "q" } } }
    local opid = h.produce(env, m)
    local r = route_of(m)
    assert.equal(3, r.recipients)
    assert.same({ "a", "q" }, r.online)
    assert.equal(1, #calls("/openim.msg.msg/GetConversationMaxSeq", opid))
    local set = calls("/openim.conversation.conversation/SetConversationMaxSeq", opid)
    assert.equal(1, #set)
    assert.equal("sg_g1", set[1].request.conversationID)
    assert.same({ "q" }, set[1].request.ownerUserID)
    assert.equal("42", tostring(set[1].request.maxSeq))
  end)

  it("pushes a kick to the kicked members and sets their max seq", function()
    local m = h.push_msg { sendID = "a", recvID = "", groupID = "g1", sessionType = 3, contentType = 1508,
                           content = tips { opUser = { userID = "a" },
                                            kickedUserList = { { userID = "k1" }, { userID = "k2" } } } }
    local opid = h.produce(env, m)
    local r = route_of(m)
    assert.equal(4, r.recipients)
    assert.same({ "k1", "k2" }, calls("/openim.conversation.conversation/SetConversationMaxSeq", opid)[1]
      .request.ownerUserID)
  end)

  it("dismisses the group as the admin, and a replayed record is harmless", function()
    local m = h.push_msg { sendID = "a", recvID = "", groupID = "g2", sessionType = 3, contentType = 1511,
                           content = tips { opUser = { userID = "a" } }, options = { isNotNotification = false } }
    local opid = h.produce(env, m)
    assert.equal(2, route_of(m).recipients)
    local d = calls("/openim.group.group/dismissGroup", opid)
    assert.equal(1, #d)
    assert.equal("g2", d[1].request.groupID)
    assert.is_true(d[1].request.deleteMember)
    assert.equal("imAdmin", d[1].metadata.opuserid)
    -- the same record again (a replay): the group is gone, nothing fails
    local again = h.push_msg { sendID = "a", recvID = "", groupID = "g2", sessionType = 3, contentType = 1511,
                               content = m.content, options = { isNotNotification = false } }
    h.produce(env, again, { operationID = opid .. "-replay" })
    assert.equal(2, route_of(again).recipients) -- members from the cache
    assert.equal(1, #calls("/openim.group.group/dismissGroup", opid .. "-replay"))
    for _, l in ipairs(h.log_lines(imp, "route failed")) do
      assert.are_not.equal(again.clientMsgID, l.clientMsgID)
    end
  end)

  it("does not dismiss for a dismissal outside the notification conversation", function()
    local m = h.push_msg { sendID = "a", recvID = "", groupID = "g1", sessionType = 3, contentType = 1511,
                           content = tips { opUser = { userID = "a" } } }
    local opid = h.produce(env, m)
    route_of(m)
    assert.equal(0, #calls("/openim.group.group/dismissGroup", opid))
  end)
end)
