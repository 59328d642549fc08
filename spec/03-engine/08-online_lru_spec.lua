-- fullUserCache: false: statuses come from getUserStatus through the
-- online LRU, one call per batch, and online_change updates cached users.
local h = require "spec.helpers"

local METHOD = "/openim.user.user/getUserStatus"

describe("online LRU mode #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 }, bob = { 2 }, carol = { 1 } }, env.gateways[1])
    h.set_group(env, "g1", { "alice", "bob", "carol", "dave" })
    imp = h.start_impulse(env, { workers = 2, full_user_cache = false })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function status_calls()
    local out = {}
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == METHOD then out[#out + 1] = c end
    end
    return out
  end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  local function single(to)
    local m = h.push_msg { sendID = "sys", recvID = to, options = { senderSync = false } }
    h.produce(env, m)
    return route_of(m)
  end

  it("is ready without loading the online table", function()
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.equal(0, health.onlineUsers)
    local loads = 0
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == "/openim.user.user/getAllOnlineUsers" then loads = loads + 1 end
    end
    assert.equal(0, loads)
  end)

  it("asks the user service once per batch, then serves from the cache", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    local m = h.push_msg { sendID = "alice", recvID = "", groupID = "g1", sessionType = 3 }
    local opid = h.produce(env, m)
    local r = route_of(m)
    assert.same({ "alice", "bob", "carol" }, r.online)
    assert.same({ "dave" }, r.offline)
    local calls = status_calls()
    assert.equal(1, #calls)
    table.sort(calls[1].request.userIDs)
    assert.same({ "alice", "bob", "carol", "dave" }, calls[1].request.userIDs)
    assert.equal(opid, calls[1].metadata.operationid)
    assert.same({ "alice" }, single("alice").reached)
    assert.equal(1, #status_calls())
  end)

  it("updates a cached user on online_change and ignores uncached ones", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    h.publish(env.redis, "online_change", "alice")   -- cached: now offline
    h.publish(env.redis, "online_change", "1:erin")  -- not cached: ignored
    h.wait_until(function() return h.metric(imp, "impulse_online_changes_total") >= 2 end, 5000, "the changes")
    assert.same({ "alice" }, single("alice").offline)
    assert.equal(0, #status_calls())
    h.http_json("POST", env.services.control .. "/online", { erin = { 1 } })
    h.http_json("POST", env.gateways[1].control .. "/conns", { erin = { 1 } })
    assert.same({ "erin" }, single("erin").reached) -- fetched, not taken from the change
    assert.equal(1, #status_calls())
  end)

  it("fetches a user once for concurrent messages", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    h.http_json("POST", env.services.control .. "/online", { frank = { 2 } })
    h.http_json("POST", env.gateways[1].control .. "/conns", { frank = { 2 } })
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "slow", delayMs = 600 })
    finally(function() h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "ok" }) end)
    local msgs = {}
    for i = 1, 6 do
      msgs[i] = h.push_msg { sendID = "sys" .. i, recvID = "frank", options = { senderSync = false } }
      h.produce(env, msgs[i], { key = "k" .. i, no_flush = true })
    end
    env.producer:flush(10000)
    for _, m in ipairs(msgs) do assert.same({ "frank" }, route_of(m).reached) end
    assert.equal(1, #status_calls())
  end)

  it("counts users as not online when the user service fails, and goes on", function()
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "error", code = 14 })
    finally(function() h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "ok" }) end)
    local before = h.metric(imp, "impulse_presence_errors_total")
    assert.same({ "gina" }, single("gina").offline)
    assert.is_true(h.metric(imp, "impulse_presence_errors_total") > before)
  end)
end)
