-- Consistent reloads: an operator who saves push.lua and a module it
-- requires a few hundred milliseconds apart gets one reload, once the
-- folder has been quiet for impulse.reloadQuietMs, built from one snapshot
-- of every file: no message runs the new push.lua with the old module.
-- Every route log line names the scripts version that handled it.
local h = require "spec.helpers"

local function push_lua(v)
  return ([[
local mod = require "mod"
local V = %d
return {
  route = function(msg)
    if mod.version ~= V then
      error("torn: push.lua " .. V .. " with mod.lua " .. tostring(mod.version))
    end
    return { msg.recvID }
  end,
}
]]):format(v)
end

local function mod_lua(v)
  return ("return { version = %d }\n"):format(v)
end

describe("reload snapshots #engine", function()
  local env, imp, scripts

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    scripts = h.tmpdir() .. "/snapshot-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/mod.lua", mod_lua(1))
    h.write_file(scripts .. "/push.lua", push_lua(1))
    imp = h.start_impulse(env, { workers = 2, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("never runs a new file with an old one saved 400 ms later", function()
    local before = h.http_json("GET", imp.admin .. "/healthz").scripts.active
    local sent = {}
    local function send()
      local m = h.push_msg { sendID = "x" .. #sent, recvID = "alice", options = { senderSync = false } }
      h.produce(env, m)
      sent[#sent + 1] = m.clientMsgID
    end
    -- the producer connected and the route seen before the clock starts
    send()
    h.wait_until(function() return h.routes(imp)[sent[1]] end, 15000, "the first route")
    local t0 = h.now_ms()
    local wrote_push, wrote_mod = false, false
    -- messages every ~20 ms for 3 s; push.lua saved at 0.5 s, mod.lua 400 ms
    -- after it (well inside reloadQuietMs, well past the old 200 ms debounce)
    while h.now_ms() - t0 < 3000 do
      local t = h.now_ms() - t0
      if not wrote_push and t >= 500 then
        h.write_file(scripts .. "/push.lua", push_lua(2))
        wrote_push = t
      elseif wrote_push and not wrote_mod and t >= wrote_push + 400 then
        h.write_file(scripts .. "/mod.lua", mod_lua(2))
        wrote_mod = t
      end
      send()
      h.sleep_ms(20)
    end
    assert.is_truthy(wrote_mod, "mod.lua was not saved within the 3 s")
    local after = h.wait_until(function()
      local st = h.http_json("GET", imp.admin .. "/healthz").scripts
      return st.active ~= before and st
    end, 20000, "the reload")
    -- every message ends: routed, or failed with the script's error
    local torn = {}
    h.wait_until(function()
      local routes, failed = h.routes(imp), {}
      torn = {}
      for _, l in ipairs(h.log_lines(imp, "script error")) do
        failed[l.clientMsgID] = true
        torn[#torn + 1] = l.error:match("torn: [^\n]*")
      end
      for _, id in ipairs(sent) do
        if not routes[id] and not failed[id] then return false end
      end
      return true
    end, 30000, "the end of every message sent")
    assert.same({}, torn)
    assert.equal(1, after.reloads, "one reload for the two saves")
    -- each route names the version that handled it: the old, then the new
    local routes, seen = h.routes(imp), {}
    for _, id in ipairs(sent) do seen[routes[id].scripts] = true end
    assert.is_true(seen[before], "a message handled by the first version")
    assert.is_true(seen[after.active], "a message handled by the new version")
  end)

  it("follows a Kubernetes ConfigMap update (the ..data symlink swapped)", function()
    -- the layout kubelet makes: files are links through ..data to a
    -- timestamped folder; an update writes a new folder and renames a new
    -- ..data link over the old one
    local dir = h.tmpdir() .. "/configmap"
    local function version(v)
      local sub = dir .. "/..v" .. v
      os.execute("mkdir -p " .. sub)
      h.write_file(sub .. "/push.lua", push_lua(v))
      h.write_file(sub .. "/mod.lua", mod_lua(v))
    end
    version(1)
    os.execute(("cd %s && ln -s ..v1 ..data && ln -s ..data/push.lua push.lua && "
      .. "ln -s ..data/mod.lua mod.lua"):format(dir))
    h.stop(imp) -- alone in the consumer group: every message comes to cm
    local cm = h.start_impulse(env, { workers = 1, scripts = dir, ready_timeout_ms = 60000 })
    finally(function() h.stop(cm) end)
    local first = h.http_json("GET", cm.admin .. "/healthz").scripts.active
    version(2)
    os.execute(("cd %s && ln -s ..v2 ..data_tmp && mv -T ..data_tmp ..data"):format(dir))
    local st = h.wait_until(function()
      local s = h.http_json("GET", cm.admin .. "/healthz").scripts
      return s.active ~= first and s
    end, 20000, "the reload after the ..data swap")
    local m = h.push_msg { sendID = "y", recvID = "alice", options = { senderSync = false } }
    h.produce(env, m)
    local route = h.wait_until(function() return h.routes(cm)[m.clientMsgID] end, 15000, "a route")
    assert.equal(st.active, route.scripts)
  end)
end)
