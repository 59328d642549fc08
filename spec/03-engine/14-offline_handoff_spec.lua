-- The offline hand-off: every offline push goes to toOfflinePush as
-- PushMsgReq{msgData, userIDs} with OpenIM's key, partition and four
-- headers, split under 1,000,000 bytes; a 100,000-member group (half of
-- it online) works.
local h = require "spec.helpers"

describe("offline hand-off #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { bob = { 1 } }, env.gateways[1])
    -- 1 MiB gRPC requests, so a big group's online push is chunked
    imp = h.start_impulse(env, { workers = 2, impulse = { maxGrpcMessageBytes = 1048576 } })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  -- the toOfflinePush records whose decoded request pred accepts; with
  -- needle, only records whose bytes contain it are decoded (a 100,000-member
  -- group's records are megabytes: decoding every record on every poll kept
  -- a loaded machine busy past the deadline)
  local function records(pred, needle)
    local out = {}
    local all = h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush", timeout_ms = 15000 }
    for _, r in ipairs(all) do
      local req = (not needle or r.value:find(needle, 1, true))
        and h.pb.decode("openim.push.PushMsgReq", r.value)
      if req and pred(req) then
        r.req = req
        out[#out + 1] = r
      end
    end
    return out
  end

  local function route_of(m, timeout)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, timeout or 15000, "a route")
  end

  it("hands a single chat's offline push over with OpenIM's key, partition and headers", function()
    local m = h.push_msg { sendID = "zed", recvID = "amy" } -- amy is offline, zed sender
    local opid = h.produce(env, m)
    route_of(m)
    local recs = h.wait_until(function()
      local r = records(function(req) return req.msgData.clientMsgID == m.clientMsgID end)
      return #r > 0 and r
    end, 15000, "the toOfflinePush record")
    assert.equal(1, #recs)
    local r = recs[1]
    assert.equal("amy_zed", r.key) -- sendID and recvID sorted
    assert.equal(h.kafka.openim_partition("amy_zed", 8), r.partition)
    assert.same({ { "operationID", opid }, { "opUserID", "zed" }, { "platform", "iOS" }, { "connID", "c1" } },
      r.headers)
    assert.same({ "amy" }, r.req.userIDs) -- never the sender
    assert.equal(2, r.req.msgData.status)
    -- msgData as consumed: no offlinePushInfo invented (the title is the
    -- consumer's; OpenIM@v3.8.3:pkg/common/storage/controller/push.go:58)
    assert.is_nil(r.req.msgData.offlinePushInfo)
    assert.equal(m.content, r.req.msgData.content)
  end)

  it("skips the hand-off when the receiver was reached online", function()
    local m = h.push_msg { sendID = "zed", recvID = "bob" }
    h.produce(env, m)
    route_of(m)
    h.produce(env, h.push_msg { sendID = "zed", recvID = "amy" }) -- a marker after it
    h.wait_until(function()
      return #records(function(req) return req.msgData.sendID == "zed" end) >= 2
    end, 15000, "the marker")
    assert.equal(0, #records(function(req) return req.msgData.clientMsgID == m.clientMsgID end))
  end)

  it("pushes a 100,000-member group: chunked gateway calls, records under 1,000,000 bytes", function()
    local members, online, conns = {}, {}, {}
    for i = 1, 100000 do
      local u = string.format("member-%06d-%s", i, ("x"):rep(20))
      members[i] = u
      if i % 2 == 0 then
        online[u] = { 1 }
        conns[u] = { 1 }
      end
    end
    h.set_group(env, "big", members)
    -- the online ones: in the user service, on the gateway, and through
    -- online_change (the table is already loaded)
    h.http_json("POST", env.services.control .. "/online", online)
    h.http_json("POST", env.gateways[1].control .. "/conns", conns)
    local pipe = io.popen("redis-cli -p " .. env.redis.port .. " > /dev/null", "w")
    for u in pairs(online) do pipe:write("PUBLISH online_change 1:" .. u .. "\n") end
    pipe:close()
    h.wait_until(function()
      return h.http_json("GET", imp.admin .. "/healthz").onlineUsers >= 50001
    end, 30000, "50,000 members online")
    h.reset_pushes(env.gateways[1])
    local m = h.push_msg { sendID = members[1], recvID = "", groupID = "big", sessionType = 3 }
    h.produce(env, m)
    local r = route_of(m, 60000)
    assert.equal(100000, r.recipients)
    -- the gateway got every online member, over several requests
    local pushes, got = 0, {}
    for _, p in ipairs(h.pushes(env.gateways[1])) do
      if p.msgData.clientMsgID == m.clientMsgID then
        pushes = pushes + 1
        for _, u in ipairs(p.pushToUserIDs) do got[u] = true end
      end
    end
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    assert.equal(50000, n)
    assert.is_true(pushes >= 2, "50,000 users (1.5 MB) in one request under a 1 MiB limit")
    -- the offline ones, in records under OpenIM's 1,000,000-byte cap
    -- the message ends once every record is acknowledged: wait for that,
    -- then read the records (the clientMsgID's bytes pick them out)
    h.wait_until(function()
      for _, w in ipairs(h.http_json("GET", imp.admin .. "/healthz").workers) do
        if w.inflight > 0 then return false end
      end
      return true
    end, 120000, "the group message to end")
    local recs = h.wait_until(function()
      local rs = records(function(req) return req.msgData.clientMsgID == m.clientMsgID end,
        m.clientMsgID)
      local total = 0
      for _, x in ipairs(rs) do total = total + #x.req.userIDs end
      return total >= 49999 and rs
    end, 60000, "the offline records")
    local total, seen = 0, {}
    for _, x in ipairs(recs) do
      assert.is_true(#x.value <= 1000000, "a record of " .. #x.value .. " bytes")
      for _, u in ipairs(x.req.userIDs) do
        assert.is_nil(seen[u])
        seen[u] = true
        total = total + 1
      end
    end
    assert.equal(49999, total) -- 50,000 offline minus the sender
    assert.is_nil(seen[members[1]])
    assert.is_true(#recs >= 2)
  end)
end)
