-- impulse as openim.push.PushMsgService: registered in etcd as OpenIM
-- services are (exact key and value, a lease, revoked first on SIGTERM),
-- DelUserPushToken deletes the FCM token, PushMsg pushes to the given
-- users through the same path as a toPush record.
local h = require "spec.helpers"

local SVC = "/openim.push.PushMsgService/"

describe("push service #engine", function()
  local env, imp, addr

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { ann = { 1 } }, env.gateways[1]) -- iOS: reached online
    imp = h.start_impulse(env, { workers = 2 })
    addr = h.push_service_addr(env)
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("registers under the push service name with OpenIM's exact value and a lease", function()
    local keys = h.etcd_keys(env.etcd, "openim/push/")
    assert.equal("127.0.0.1", addr:match("^([%d.]+):%d+$"))
    assert.equal('{"Op":0,"Addr":"' .. addr .. '","Metadata":null}', keys["openim/push/" .. addr])
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.equal(addr, health.pushService.addr)
    assert.is_true(health.pushService.etcd.registered)
    local lease = health.pushService.etcd.lease
    assert.truthy(lease:match("^%d+$"))
    -- the key lives under that lease, with the 30 s TTL
    -- (etcdctl wants the ID in hex; it does not fit a double)
    local f = io.popen(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s lease timetolive $(printf %%x %s)",
      env.etcd.url, lease))
    local out = f:read("*a")
    f:close()
    local ttl = tonumber(out:match("remaining%((%d+)s%)"))
    assert.truthy(ttl and ttl > 0 and ttl <= 30, out)
  end)

  it("DelUserPushToken deletes FCM_TOKEN:<userID>:<platformID> and nothing else", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:tom:2", "tok-android")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:tom:1", "tok-ios")
    local reply, err = h.grpc_call(addr, SVC .. "DelUserPushToken", { userID = "tom", platformID = 2 })
    assert.is_nil(err)
    assert.same({}, reply)
    assert.equal("0", h.redis_cli(env.redis, "EXISTS", "FCM_TOKEN:tom:2"):match("%d+"))
    assert.equal("1", h.redis_cli(env.redis, "EXISTS", "FCM_TOKEN:tom:1"):match("%d+"))
    assert.equal(1, h.metric(imp, "impulse_rpc_total", 'method="DelUserPushToken",result="ok"'))
    -- and OpenIM's own, as its server interceptor counts (prommetrics/rpc.go:16-22)
    assert.equal(1, h.metric(imp, "rpc_count",
      'name="push",path="/openim.push.PushMsgService/DelUserPushToken",code="0"'))
  end)

  it("refuses a DelUserPushToken without a userID as INVALID_ARGUMENT", function()
    local reply, err = h.grpc_call(addr, SVC .. "DelUserPushToken", { platformID = 2 })
    assert.is_nil(reply)
    assert.equal(3, err.code)
    assert.truthy(err.details:find("userID is empty", 1, true))
    assert.equal(1, h.metric(imp, "rpc_count",
      'name="push",path="/openim.push.PushMsgService/DelUserPushToken",code="3"'))
  end)

  it("PushMsg pushes the message to the given users: online, then offline hand-off", function()
    -- a group message: the given users, not the group's members (there is
    -- no such group), get it; OpenIM's group offline rule applies
    local m = h.push_msg { sendID = "sam", recvID = "", groupID = "g-rpc", sessionType = 3 }
    m.content = nil
    m.status = nil
    local req = { msgData = m, userIDs = { "ann", "ben", "sam" } }
    req.msgData.content = '{"content":"by rpc"}'
    local md = { operationid = "op-rpc-1", opuserid = "sam", platform = "Android", connid = "c9" }
    local reply, err = h.grpc_call(addr, SVC .. "PushMsg", req, md)
    assert.is_nil(err)
    assert.same({}, reply)
    -- the gateway was asked for the given user who is online (not for
    -- the group's members, nor for ben, who is offline)
    local got = h.delivered(env, m.clientMsgID)[1]
    assert.same({ ann = true }, got)
    -- the route log line carries the call's operationID
    local line = h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 10000, "the route line")
    assert.equal("op-rpc-1", line.operationID)
    -- ben was not reached: handed over to toOfflinePush with the call's metadata as headers
    local rec = h.wait_until(function()
      for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush",
        timeout_ms = 10000 }) do
        local v = h.pb.decode("openim.push.PushMsgReq", r.value)
        if v.msgData.clientMsgID == m.clientMsgID then
          r.req = v
          return r
        end
      end
    end, 15000, "the toOfflinePush record")
    assert.same({ "ben" }, rec.req.userIDs) -- never the sender
    assert.same({ { "operationID", "op-rpc-1" }, { "opUserID", "sam" }, { "platform", "Android" },
      { "connID", "c9" } }, rec.headers)
    assert.equal("_sam", rec.key) -- OpenIM's key: sendID and recvID sorted
    assert.equal(1, h.metric(imp, "impulse_rpc_total", 'method="PushMsg",result="ok"'))
  end)

  it("answers a PushMsg without msgData with INVALID_ARGUMENT", function()
    local reply, err = h.grpc_call(addr, SVC .. "PushMsg", { userIDs = { "ann" } })
    assert.is_nil(reply)
    assert.equal(3, err.code)
  end)

  it("answers methods it does not serve with UNIMPLEMENTED", function()
    local reply, err = h.grpc_call(addr, "/openim.user.user/getAllOnlineUsers", { cursor = "0" })
    assert.is_nil(reply)
    assert.equal(12, err.code)
    assert.equal(1, h.metric(imp, "rpc_count", 'name="push",path="/openim.user.user/getAllOnlineUsers",code="12"'))
  end)

  it("revokes its lease first on SIGTERM: the key is gone before the workers stop", function()
    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, 30000)
    assert.same({}, h.etcd_keys(env.etcd, "openim/push/"))
    local revoked, stopped
    for i, l in ipairs(h.log_lines(imp)) do
      if not revoked and l.msg:find("lease revoked", 1, true) then revoked = i end
      if not stopped and l.msg:find("^worker %d+ stopped") then stopped = i end
    end
    assert.truthy(revoked, "no 'lease revoked' log line")
    assert.truthy(stopped, "no 'worker stopped' log line")
    assert.is_true(revoked < stopped)
  end)
end)
