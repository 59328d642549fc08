-- Hot reload: a change under scripts/ (inotify), SIGHUP or POST
-- /admin/reload builds new VMs aside and swaps them in between messages; a
-- broken script keeps the old policy and says why.
local h = require "spec.helpers"

local function policy(version, extra)
  return ([[
local _M = {}
%s
function _M.route(msg, ctx)
  return { msg.recvID, "v%d" }
end
return _M
]]):format(extra or "", version)
end

describe("hot reload #engine", function()
  local env, imp, scripts

  local function health()
    return h.http_json("GET", imp.admin .. "/healthz")
  end

  -- Writes push.lua the way editors do: a temporary file renamed over it.
  local function write_policy(text)
    h.write_file(scripts .. "/push.lua.tmp", text)
    os.rename(scripts .. "/push.lua.tmp", scripts .. "/push.lua")
  end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  local function marker_of(m)
    for _, u in ipairs(route_of(m).online) do
      if u:match("^v%d+$") then return u end
    end
  end

  local function send()
    local m = h.push_msg { sendID = "x", recvID = "alice", options = { senderSync = false } }
    h.produce(env, m)
    return m
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    local online = { alice = { 1 } }
    for v = 0, 40 do online["v" .. v] = { 1 } end
    h.set_online(env, online, env.gateways[1])
    scripts = h.tmpdir() .. "/reload-scripts"
    os.execute("mkdir -p " .. scripts)
    write_policy(policy(1))
    imp = h.start_impulse(env, { workers = 2, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("picks up an edited script without a restart", function()
    assert.equal("v1", marker_of(send()))
    local before = health().scripts
    write_policy(policy(2))
    h.wait_until(function() return health().scripts.reloads == before.reloads + 1 end, 5000,
      "the reload")
    assert.are_not.equal(before.active, health().scripts.active)
    assert.equal("v2", marker_of(send()))
    assert.equal(1, h.metric(imp, "impulse_script_reload_total", 'result="ok"'))
  end)

  for _, case in ipairs {
    { "a syntax error", "local _M = {}\nfunction _M.route(msg\n  return {}\nend\nreturn _M\n", "push.lua:3:" },
    { "an error in check()", policy(9, "function _M.check() error('config table is empty') end"),
      "check%(%) failed: .*config table is empty" },
    { "check() answering nil, err", policy(9, "function _M.check() return nil, 'no VIP list' end"),
      "check%(%) failed: no VIP list" },
    { "an infinite loop at load", "while true do end\n", "script budget exceeded" },
    { "a missing route hook", "return { offline = function() end }\n", "no route function" },
    { "a write to a global at load", "helper = 1\nreturn { route = function() return {} end }\n",
      "assignment to global 'helper'" },
  } do
    it("keeps the old policy on " .. case[1] .. ", and says why", function()
      local before = health().scripts
      local failed = h.metric(imp, "impulse_script_reload_total", 'result="error"')
      write_policy(case[2])
      h.wait_until(function() return health().scripts.reloadFailures == before.reloadFailures + 1 end,
        5000, "the failed reload")
      local now = health().scripts
      assert.equal(before.active, now.active)
      assert.matches(case[3], now.lastError)
      assert.equal(failed + 1, h.metric(imp, "impulse_script_reload_total", 'result="error"'))
      local line
      for _, l in ipairs(h.log_lines(imp, "script reload failed")) do line = l end
      assert.matches(case[3], line.error)
      assert.equal("v2", marker_of(send())) -- still the old policy
    end)
  end

  it("keeps the old scripts when a provider module is broken", function()
    -- a good policy first (the cases above left a broken one on disk)
    local n0 = health().scripts.reloads
    write_policy(policy(2) .. "-- provider case\n")
    h.wait_until(function() return health().scripts.reloads == n0 + 1 end, 5000, "a good policy")
    local before = health().scripts
    os.execute("mkdir -p " .. scripts .. "/providers")
    h.write_file(scripts .. "/providers/fcm.lua", "return { build = 'not a function' }\n")
    h.wait_until(function() return health().scripts.reloadFailures == before.reloadFailures + 1 end,
      5000, "the failed reload")
    assert.matches("providers/fcm.lua: must return a table with a build function", health().scripts.lastError)
    local n = health().scripts.reloads
    h.write_file(scripts .. "/providers/fcm.lua", "return { build = function() return {} end }\n")
    h.wait_until(function() return health().scripts.reloads == n + 1 end, 5000, "the fixed provider to load")
    os.remove(scripts .. "/providers/fcm.lua")
    h.wait_until(function() return health().scripts.reloads == n + 2 end, 5000, "the removal to reload")
  end)

  it("reloads on SIGHUP and on POST /admin/reload", function()
    local n = health().scripts.reloads
    write_policy(policy(3))
    h.wait_until(function() return health().scripts.reloads == n + 1 end, 5000, "the reload")
    n = n + 1
    h.signal(imp, 1) -- SIGHUP
    h.wait_until(function() return health().scripts.reloads == n + 1 end, 5000, "the SIGHUP reload")
    assert.equal("SIGHUP", health().scripts.lastReloadTrigger)
    local status, body = h.http("POST", imp.admin .. "/admin/reload")
    assert.equal(202, status, body)
    h.wait_until(function() return health().scripts.reloads == n + 2 end, 5000, "the admin reload")
    assert.equal("POST /admin/reload", health().scripts.lastReloadTrigger)
    assert.equal(405, (h.http("GET", imp.admin .. "/admin/reload")))
    assert.equal("v3", marker_of(send()))
  end)

  it("loses nothing and runs each message on one version while scripts change 20 times", function()
    h.reset_pushes(env.gateways[1])
    local ids, total = {}, 10000
    local version = 3
    for i = 1, total do
      local m = h.push_msg { sendID = "x", recvID = "alice", clientMsgID = "reload-" .. i,
                             options = { senderSync = false } }
      h.produce(env, m, { key = "k" .. (i % 50), no_flush = true })
      ids[#ids + 1] = m.clientMsgID
      if i % 500 == 0 then
        env.producer:flush(30000)
        version = version + 1
        local n = health().scripts.reloads
        write_policy(policy(version))
        h.wait_until(function() return health().scripts.reloads > n end, 5000, "reload " .. version)
      end
    end
    env.producer:flush(30000)
    local seen = h.wait_until(function()
      local s = h.http_json("GET", env.gateways[1].control .. "/seen")
      for _, id in ipairs(ids) do if not s[id] then return false end end
      return s
    end, 120000, "all 10,000 messages at the gateway")
    local versions, bad = {}, 0
    for _, id in ipairs(ids) do
      local markers = 0
      for _, u in ipairs(seen[id]) do
        if u:match("^v%d+$") then markers = markers + 1; versions[u] = true end
      end
      if markers ~= 1 then bad = bad + 1 end
    end
    assert.equal(0, bad)
    local nv = 0
    for _ in pairs(versions) do nv = nv + 1 end
    assert.is_true(nv >= 5, "the messages ran on only " .. nv .. " versions")
    print(string.format("\n    10,000 messages over %d script versions; %d reloads", nv,
      health().scripts.reloads))
  end)
end)
