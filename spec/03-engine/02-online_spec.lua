-- The online table: OpenIM's start-up phases, online_change, reconnects.
local h = require "spec.helpers"

describe("online table #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1, services_args = "--page-size 1" }
    h.set_online(env, { u1 = { 1 }, u2 = { 1 }, u3 = { 2 }, u4 = { 1 }, dave = { 1 } }, env.gateways[1])
    h.http_json("POST", env.gateways[1].control .. "/conns", { late = { 1 } })
    -- a slow user service: one user per page, 700 ms a page, so the load
    -- takes seconds and online_change messages arrive in the middle of it
    h.http_json("POST", env.services.control .. "/mode",
      { method = "/openim.user.user/getAllOnlineUsers", mode = "slow", delayMs = 700 })
    imp = h.start_impulse(env, { workers = 1, no_wait = true })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function route_of(msg)
    return h.wait_until(function() return h.routes(imp)[msg.clientMsgID] end, 15000, "a route")
  end

  it("keeps online_change messages published while the table loads", function()
    h.wait_until(function()
      local st, body = h.http("GET", imp.admin .. "/healthz")
      return st == 200 and body:match('"redisSubscribed":true')
    end, 10000, "the subscription")
    local status = h.http("GET", imp.admin .. "/readyz")
    assert.equal(503, status) -- still loading
    h.publish(env.redis, "online_change", "1:late") -- came online during the load
    h.publish(env.redis, "online_change", "dave")   -- went offline during the load
    h.wait_ready(imp)
    local loaded = h.log_lines(imp, "online table loaded")[1]
    assert.matches("2 buffered changes applied", loaded.msg)
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.equal(5, health.onlineUsers) -- u1..u4 + late; dave gone

    local to_late = h.push_msg { sendID = "u1", recvID = "late", options = { senderSync = false } }
    local to_dave = h.push_msg { sendID = "u1", recvID = "dave", options = { senderSync = false } }
    h.produce(env, to_late)
    h.produce(env, to_dave)
    assert.same({ "late" }, route_of(to_late).reached)
    assert.same({ "dave" }, route_of(to_dave).offline)
  end)

  it("applies online_change after the load, and drops a malformed one", function()
    h.http_json("POST", env.gateways[1].control .. "/conns", { erin = { 2 } })
    h.publish(env.redis, "online_change", "x:erin")   -- malformed: not counted as online
    h.publish(env.redis, "online_change", "2:erin")
    h.wait_until(function()
      return h.metric(imp, "impulse_online_changes_bad_total") == 1
        and h.http_json("GET", imp.admin .. "/healthz").onlineUsers == 6
    end, 5000, "both changes to be handled")
    local bad = h.log_lines(imp, "bad online_change message dropped")
    assert.equal(1, #bad)
    assert.equal("x:erin", bad[1].payload)
    assert.matches("non%-integer platform", bad[1].error)
    local msg = h.push_msg { sendID = "u1", recvID = "erin", options = { senderSync = false } }
    h.produce(env, msg)
    assert.same({ "erin" }, route_of(msg).reached)
  end)

  it("resubscribes and reloads after Redis restarts, dropping users that left meanwhile", function()
    h.http_json("POST", env.services.control .. "/mode",
      { method = "/openim.user.user/getAllOnlineUsers", mode = "ok" })
    local port = env.redis.port
    h.stop(env.redis)
    -- while Redis is gone: u4 leaves (the user service no longer lists it)
    h.http_json("POST", env.services.control .. "/online", '{"u4":[]}')
    env.redis = h.start_redis(port)
    h.wait_until(function()
      return h.http_json("GET", imp.admin .. "/healthz").onlineLoads == 2
    end, 20000, "the second load")
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.is_true(health.redisSubscribed)
    -- u1, u2, u3 and dave are listed by the user service (dave was only
    -- marked offline through Redis); late and erin only came through
    -- online_change, so the reload drops them along with u4.
    assert.equal(4, health.onlineUsers)
    local msg = h.push_msg { sendID = "u1", recvID = "u4", options = { senderSync = false } }
    h.produce(env, msg)
    assert.same({ "u4" }, route_of(msg).offline)
  end)
end)
