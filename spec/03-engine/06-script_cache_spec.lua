-- impulse.cache inside the engine: one fetch serves every message waiting
-- for the same key (single flight across coroutines of a worker).
local h = require "spec.helpers"

local POLICY = [[
local cache = require "impulse.cache"
local group = require "impulse.group"

local members = cache.new("members", {
  size = 100, ttl = 60, failed_ttl = 1, wait_timeout = 10,
  fetch = function(group_id) return group.member_ids(group_id) end,
})

local _M = {}
function _M.route(msg, ctx)
  if msg.sessionType == 3 then return members:get(msg.groupID, ctx) end
  return { msg.recvID }
end
return _M
]]

describe("script caches #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 }, bob = { 1 } }, env.gateways[1])
    h.set_group(env, "g1", { "alice", "bob", "carol" })
    local scripts = h.tmpdir() .. "/cache-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    imp = h.start_impulse(env, { workers = 1, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("fetches a key once for many concurrent messages", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    h.http_json("POST", env.services.control .. "/mode",
      { method = "/openim.group.group/getGroupMemberUserIDs", mode = "slow", delayMs = 500 })
    local msgs = {}
    for i = 1, 5 do
      -- distinct Kafka keys, so the five messages run concurrently
      msgs[i] = h.push_msg { sendID = "alice", recvID = "", groupID = "g1", sessionType = 3 }
      h.produce(env, msgs[i], { key = "conv-" .. i, no_flush = true })
    end
    env.producer:flush(10000)
    for _, m in ipairs(msgs) do
      local r = h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
      assert.equal(3, r.recipients)
    end
    local n = 0
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == "/openim.group.group/getGroupMemberUserIDs" then n = n + 1 end
    end
    assert.equal(1, n)
  end)

  it("serves later messages from the cache without another call", function()
    h.http_json("POST", env.services.control .. "/reset", {})
    local m = h.push_msg { sendID = "alice", recvID = "", groupID = "g1", sessionType = 3 }
    h.produce(env, m)
    h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
    assert.same({}, h.http_json("GET", env.services.control .. "/calls"))
  end)
end)
