-- Shutdown is bounded: SIGTERM exits within drainTimeoutMs plus a margin
-- even while a gateway hangs (SIGSTOPped) with messages in flight, and
-- what was not finished is not committed: the next impulse of the group
-- consumes those messages again. A broker that stops answering (the final
-- commit, leaving the group) holds it no longer than drainTimeoutMs + 4 s.
local h = require "spec.helpers"

local DRAIN_MS = 2000

describe("shutdown with a hung gateway #engine", function()
  local env

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    h.set_online(env, { s1 = { 1 } }, env.gateways[1])
    h.set_online(env, { s2 = { 1 } }, env.gateways[2])
  end)

  lazy_teardown(function()
    if env then h.signal(env.gateways[2], h.SIGCONT) end
    h.stop_env(env)
  end)

  it("exits within the drain deadline and leaves the unfinished messages to be replayed", function()
    -- the hung gateway's calls would wait 60 s: far past the drain deadline
    local imp = h.start_impulse(env, { workers = 2, drain_timeout_ms = DRAIN_MS,
                                       gateway_timeout_ms = 60000 })
    -- a first message connects impulse to both gateways: a gateway that
    -- stops answering on a live connection is the case that hangs (a new
    -- connection to a stopped process fails within the connect timeout)
    local warm = h.push_msg { sendID = "x0", recvID = "s1" }
    h.produce(env, warm)
    h.wait_until(function() return h.routes(imp)[warm.clientMsgID] end, 30000, "the first route")
    h.signal(env.gateways[2], h.SIGSTOP)
    local ids = {}
    for i = 1, 20 do
      -- one conversation each, so all are in flight at once; every message
      -- fans out to both gateways (OpenIM's etcd mode)
      local m = h.push_msg { sendID = "x" .. i, recvID = "s1" }
      ids[#ids + 1] = m.clientMsgID
      h.produce(env, m, { no_flush = true })
    end
    env.producer:flush(10000)
    h.wait_until(function()
      local st = h.http_json("GET", imp.admin .. "/healthz")
      local n = 0
      for _, w in ipairs(st.workers or {}) do n = n + w.inflight end
      return n >= 20
    end, 30000, "20 messages in flight behind the hung gateway")

    local t0 = h.now_ms()
    h.signal(imp, h.SIGTERM)
    -- generous for a loaded machine; without the fix it never exits
    h.wait_exit(imp, DRAIN_MS + 25000)
    local took = h.now_ms() - t0
    local log = h.read_file(imp.log)
    assert.matches("drain deadline passed with %d+ messages in flight", log)
    assert.matches("impulse stopped %(exit 0%)", log)
    print(string.format("\n    SIGTERM to exit with a hung gateway: %d ms (drainTimeoutMs %d)",
      took, DRAIN_MS))

    -- nothing of theirs was committed: the next impulse handles them again
    h.signal(env.gateways[2], h.SIGCONT)
    local again = h.start_impulse(env, { workers = 2, ready_timeout_ms = 60000 })
    finally(function() h.stop(again) end)
    h.wait_until(function()
      local routes = h.routes(again)
      for _, id in ipairs(ids) do
        if not routes[id] then return false end
      end
      return true
    end, 60000, "the 20 unfinished messages handled again by the next impulse")
  end)

  it("exits within drainTimeoutMs + 4 s when the broker stops answering", function()
    local imp = h.start_impulse(env, { workers = 2, drain_timeout_ms = DRAIN_MS })
    local m = h.push_msg { sendID = "b1", recvID = "s1" }
    h.produce(env, m)
    h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 30000, "a route")
    h.signal(env.kafka, h.SIGSTOP) -- connections stay open; nothing answers
    finally(function() h.signal(env.kafka, h.SIGCONT) end)
    local t0 = h.now_ms()
    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, DRAIN_MS + 4000 + 25000)
    local took = h.now_ms() - t0
    local log = h.read_file(imp.log)
    assert.is_truthy(log:find("impulse stopped (exit 0)", 1, true) or
      log:find("shutdown: still not done", 1, true), log)
    print(string.format("\n    SIGTERM to exit with the broker stopped: %d ms (drainTimeoutMs %d)",
      took, DRAIN_MS))
  end)
end)
