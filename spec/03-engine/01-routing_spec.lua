-- The built impulse against real Redis, etcd, the Kafka mock cluster and
-- the OpenIM stand-in: which gateway is asked to push which users.
local h = require "spec.helpers"

-- Twice: the gateways and services called through the engine's own HTTP/2
-- client (impulse.grpcClient h2, the default) and through the gRPC C core
-- (core).
for _, transport in ipairs { "core", "h2" } do
describe("routing over " .. transport .. " #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    -- alice is on her phone via gateway 1, bob on the web via gateway 2,
    -- carol is offline.
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    h.set_online(env, { bob = { 5 } }, env.gateways[2])
    h.set_group(env, "g1", { "alice", "bob", "carol" })
    imp = h.start_impulse(env, { workers = 2, gateway_timeout_ms = 1500,
                                 impulse = { grpcClient = transport } })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function route_of(msg, timeout)
    return h.wait_until(function() return h.routes(imp)[msg.clientMsgID] end,
      timeout or 15000, "the route of " .. msg.clientMsgID)
  end

  it("answers /healthz and /readyz", function()
    local status, body = h.http("GET", imp.admin .. "/readyz")
    assert.equal(200, status)
    assert.equal("ready\n", body)
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.is_true(health.ready)
    assert.is_true(health.redisSubscribed)
    assert.equal(2, #health.workers)
    assert.equal(2, health.onlineUsers)
  end)

  it("pushes a single chat to every gateway, with the receiver and the sender", function()
    local msg = h.push_msg { sendID = "bob", recvID = "alice" }
    local opid = h.produce(env, msg)
    local r = route_of(msg)
    assert.same({ "alice", "bob" }, r.online)
    assert.same({ "alice" }, r.reached) -- bob is on the web: not an online push
    local d = h.wait_until(function()
      local got = h.delivered(env, msg.clientMsgID)
      return got[1].alice and got[2].alice and got
    end, 5000, "both gateways to see the push")
    assert.same({ alice = true, bob = true }, d[1])
    assert.same({ alice = true, bob = true }, d[2])
    -- metadata and the message itself as the gateway received them
    local push
    for _, p in ipairs(h.pushes(env.gateways[1])) do
      if p.msgData.clientMsgID == msg.clientMsgID then push = p end
    end
    assert.equal(opid, push.metadata.operationid)
    assert.equal("bob", push.metadata.opuserid)
    -- keys without a value are left out, not sent empty (main's temporary
    -- admin keys are only for its toPush calls)
    assert.is_nil(push.metadata.customheader)
    assert.is_nil(push.metadata.ctximtempadminkey)
    assert.equal(2, push.msgData.status) -- sending (1) became sent (2)
    assert.equal(msg.content, push.msgData.content)
    assert.equal(msg.serverMsgID, push.msgData.serverMsgID)
  end)

  it("leaves the sender out when senderSync is off, and skips offline users", function()
    local msg = h.push_msg { sendID = "alice", recvID = "carol", options = { senderSync = false } }
    h.produce(env, msg)
    local r = route_of(msg)
    assert.equal(1, r.recipients)
    assert.same({}, r.online)
    assert.same({ "carol" }, r.offline)
    -- nobody online: no gateway is called
    for _, g in ipairs(r.gateways) do assert.equal(0, g.calls) end
  end)

  it("pushes a group message to the online members, asking the group service with the operationID", function()
    local msg = h.push_msg { sendID = "alice", recvID = "", groupID = "g1", sessionType = 3 }
    local opid = h.produce(env, msg)
    local r = route_of(msg)
    assert.equal(3, r.recipients)
    assert.same({ "alice", "bob" }, r.online)
    assert.same({ "carol" }, r.offline)
    assert.same({ "alice" }, r.reached)
    local calls = h.http_json("GET", env.services.control .. "/calls")
    local found
    for _, c in ipairs(calls) do
      if c.method == "/openim.group.group/getGroupMemberUserIDs" and c.metadata.operationid == opid then
        found = c
      end
    end
    assert.is_truthy(found)
    assert.equal("g1", found.request.groupID)
  end)

  it("keeps going when the group service does not know the group", function()
    local bad = h.push_msg { sendID = "alice", recvID = "", groupID = "nope", sessionType = 3 }
    local good = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, bad)
    h.produce(env, good)
    route_of(good)
    h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, "route failed")) do
        if l.clientMsgID == bad.clientMsgID then return l end
      end
    end, 10000, "the failed route to be logged")
    assert.is_nil(h.routes(imp)[bad.clientMsgID])
  end)

  it("finds a gateway that joins mid-run", function()
    local g3 = h.start_gateway(env.etcd)
    env.gateways[3] = g3
    h.http_json("POST", g3.control .. "/conns", { alice = { 2 } })
    h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, "service nodes changed")) do
        if l.service == "messageGateway" and #l.addrs == 3 then return true end
      end
    end, 10000, "impulse to see the third gateway")
    local msg = h.push_msg { sendID = "bob", recvID = "alice", options = { senderSync = false } }
    h.produce(env, msg)
    local r = route_of(msg)
    assert.equal(3, #r.gateways)
    local d = h.wait_until(function()
      local got = h.delivered(env, msg.clientMsgID)
      return got[3].alice and got
    end, 5000, "the new gateway to get the push")
    assert.is_true(d[1].alice and d[2].alice and d[3].alice)
    h.stop(g3)
    table.remove(env.gateways, 3)
    h.wait_until(function()
      local ls = h.log_lines(imp, "service nodes changed")
      local last
      for _, l in ipairs(ls) do if l.service == "messageGateway" then last = l end end
      return last and #last.addrs == 2
    end, 10000, "impulse to see the third gateway leave")
  end)

  it("ends the calls of a hung gateway at the deadline while the others get theirs", function()
    local g2 = env.gateways[2]
    assert.is_true(h.signal(g2, h.SIGSTOP))
    finally(function() h.signal(g2, h.SIGCONT) end)
    local msg = h.push_msg { sendID = "bob", recvID = "alice", options = { senderSync = false } }
    h.produce(env, msg)
    local r = route_of(msg)
    local by = {}
    for _, g in ipairs(r.gateways) do by[g.addr] = g end
    assert.matches("DEADLINE_EXCEEDED", by[g2.grpc].error)
    assert.is_nil(by[env.gateways[1].grpc].error)
    assert.same({ "alice" }, r.reached)
    h.signal(g2, h.SIGCONT)
    -- the engine keeps serving after the hang
    local after = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, after)
    assert.same({ "alice" }, route_of(after).reached)
  end)

  it("counts a gateway that answers garbage as failed, and the others still reach their users", function()
    local g2 = env.gateways[2]
    h.http_json("POST", g2.control .. "/mode", { mode = "garbage" })
    finally(function() h.http_json("POST", g2.control .. "/mode", { mode = "ok" }) end)
    local before = h.metric(imp, "impulse_gateway_calls_total", 'result="garbage"')
    local msg = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, msg)
    local r = route_of(msg)
    local by = {}
    for _, g in ipairs(r.gateways) do by[g.addr] = g end
    assert.is_truthy(by[g2.grpc].error)
    assert.same({ "alice" }, r.reached)
    assert.equal(before + 1, h.metric(imp, "impulse_gateway_calls_total", 'result="garbage"'))
  end)

  it("fails calls to a killed gateway fast (UNAVAILABLE, not a deadline)", function()
    local g2 = env.gateways[2]
    h.signal(g2, h.SIGKILL)
    h.wait_until(function() return not h.alive(g2) end, 5000, "the gateway to die")
    g2.stopped = true
    -- its etcd key stays until the lease expires: impulse still calls it
    local msg = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, msg)
    local r = route_of(msg)
    local by = {}
    for _, g in ipairs(r.gateways) do by[g.addr] = g end
    assert.is_truthy(by[g2.grpc], "the dead gateway is still listed")
    assert.matches("UNAVAILABLE", by[g2.grpc].error)
    assert.same({ "alice" }, r.reached)
  end)

  if transport == "h2" then
    it("calls a gateway again once it is back on its port, on a new connection", function()
      -- gateway 2 was killed by the test above: one comes back on its port
      local port = tonumber(env.gateways[2].grpc:match(":(%d+)$"))
      local g = h.start_gateway(env.etcd, "--grpc-port " .. port)
      env.gateways[#env.gateways + 1] = g
      h.set_online(env, { dave = { 1 } }, g, true) -- a phone, published to impulse
      local r = h.wait_until(function()
        local msg = h.push_msg { sendID = "alice", recvID = "dave", options = { senderSync = false } }
        h.produce(env, msg)
        local got = route_of(msg)
        return got.reached[1] == "dave" and got
      end, 30000, "a push to dave through the restarted gateway")
      local by = {}
      for _, gw in ipairs(r.gateways) do by[gw.addr] = gw end
      assert.is_nil(by[g.grpc].error)
    end)

    it("sends a 20,000-member group's 400 KB request through the flow-control windows", function()
      local members, online = {}, {}
      for i = 1, 20000 do
        members[i] = string.format("big-member-%06d", i)
        online[members[i]] = { 1 }
      end
      h.set_group(env, "gbig", members)
      local before = h.http_json("GET", imp.admin .. "/healthz").onlineUsers
      h.set_online(env, online, env.gateways[1])
      -- into impulse's loaded online table through online_change
      local pipe = io.popen("redis-cli -p " .. env.redis.port .. " > /dev/null", "w")
      for u in pairs(online) do pipe:write("PUBLISH online_change 1:" .. u .. "\n") end
      pipe:close()
      h.wait_until(function()
        return h.http_json("GET", imp.admin .. "/healthz").onlineUsers >= before + 20000
      end, 30000, "20,000 members online")
      local msg = h.push_msg { sendID = "big-member-000001", recvID = "", groupID = "gbig", sessionType = 3 }
      h.produce(env, msg)
      local r = route_of(msg, 60000)
      local by = {}
      for _, gw in ipairs(r.gateways) do by[gw.addr] = gw end
      local g1 = by[env.gateways[1].grpc]
      assert.is_nil(g1.error)
      assert.equal(20000, g1.reached)
    end)
  end
end)
end
