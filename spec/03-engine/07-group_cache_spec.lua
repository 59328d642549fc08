-- The shared group cache (OpenIM's localcache GROUP_MEMBER_IDS:<groupID>):
-- one fetch across workers, hits, DELETE_CACHE_GROUP, cached failures.
local h = require "spec.helpers"

local METHOD = "/openim.group.group/getGroupMemberUserIDs"

describe("group cache #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 }, bob = { 1 }, carol = { 1 } }, env.gateways[1])
    h.set_group(env, "g1", { "alice", "bob" })
    imp = h.start_impulse(env, { workers = 2,
      yaml = "local-cache:\n  group:\n    topic: DELETE_CACHE_GROUP\n    failedExpire: 2\n" })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function member_calls()
    local n = 0
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == METHOD then n = n + 1 end
    end
    return n
  end

  local function group_msg(gid, key)
    local m = h.push_msg { sendID = "alice", recvID = "", groupID = gid, sessionType = 3 }
    h.produce(env, m, { key = key })
    return m
  end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  -- "ok", route | "failed", log line
  local function outcome(m)
    return unpack(h.wait_until(function()
      local r = h.routes(imp)[m.clientMsgID]
      if r then return { "ok", r } end
      for _, l in ipairs(h.log_lines(imp, "route failed")) do
        if l.clientMsgID == m.clientMsgID then return { "failed", l } end
      end
    end, 15000, "the outcome of " .. m.clientMsgID))
  end

  local function failure_of(m)
    local what, line = outcome(m)
    assert.equal("failed", what)
    return line
  end

  it("fetches a group once for concurrent messages on both workers, then hits", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "slow", delayMs = 800 })
    local msgs = {}
    for i = 1, 8 do -- 8 keys spread over the 8 partitions of both workers
      msgs[i] = h.push_msg { sendID = "alice", recvID = "", groupID = "g1", sessionType = 3 }
      h.produce(env, msgs[i], { key = "k" .. i, no_flush = true })
    end
    env.producer:flush(10000)
    for _, m in ipairs(msgs) do
      assert.equal(2, route_of(m).recipients)
    end
    assert.equal(1, member_calls())
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "ok" })
    assert.equal(2, route_of(group_msg("g1", "later")).recipients)
    assert.equal(1, member_calls())
    assert.is_true(h.metric(imp, "impulse_cache_requests_total", 'cache="group",result="hit"') >= 1)
  end)

  it("drops a group on DELETE_CACHE_GROUP and fetches the new members", function()
    h.set_group(env, "g1", { "alice", "bob", "carol" })
    h.publish(env.redis, "DELETE_CACHE_GROUP", '["GROUP_MEMBER_IDS:g1"]')
    h.wait_until(function()
      return h.metric(imp, "impulse_cache_invalidations_total", 'cache="group"') == 1
    end, 5000, "the invalidation")
    h.http_json("POST", env.services.control .. "/reset", {})
    assert.equal(3, route_of(group_msg("g1")).recipients)
    assert.equal(1, member_calls())
  end)

  it("counts and skips an invalidation that is not a JSON array", function()
    h.publish(env.redis, "DELETE_CACHE_GROUP", "GROUP_MEMBER_IDS:g1")
    h.wait_until(function()
      return h.metric(imp, "impulse_cache_invalidations_bad_total", 'cache="group"') == 1
    end, 5000, "the bad invalidation to be counted")
    h.http_json("POST", env.services.control .. "/reset", {})
    assert.equal(3, route_of(group_msg("g1")).recipients) -- still cached
    assert.equal(0, member_calls())
  end)

  it("caches a failed fetch for failedExpire, then asks again", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "error", code = 14 })
    assert.matches("UNAVAILABLE", failure_of(group_msg("g2")).error)
    assert.matches("UNAVAILABLE", failure_of(group_msg("g2")).error)
    assert.equal(1, member_calls()) -- the second failure came from the cache
    h.http_json("POST", env.services.control .. "/mode", { method = METHOD, mode = "ok" })
    h.set_group(env, "g2", { "carol" })
    local r = h.wait_until(function()
      local what, route = outcome(group_msg("g2"))
      return what == "ok" and route
    end, 15000, "the failure to expire")
    assert.equal(1, r.recipients)
  end)

  it("flushes the cache after a gap in DELETE_CACHE_GROUP (Redis restart)", function()
    assert.equal(3, route_of(group_msg("g1")).recipients) -- cached
    local port = env.redis.port
    h.stop(env.redis)
    h.set_group(env, "g1", { "alice" }) -- changed while nobody could tell us
    env.redis = h.start_redis(port)
    h.wait_until(function() return #h.log_lines(imp, "group cache flushed") > 0 end, 20000,
      "the flush after resubscribing")
    h.http_json("POST", env.services.control .. "/reset", {})
    assert.equal(1, route_of(group_msg("g1")).recipients)
    assert.equal(1, member_calls())
  end)
end)
