-- Scale-out by consumer group: impulse processes that share a config share
-- the toPush partitions (group "push"). With three of them running, one
-- SIGKILLed and a fourth joining mid-stream, the partitions rebalance and
-- every message still reaches the gateway (at least once).
local h = require "spec.helpers"

describe("scale-out #engine", function()
  local env
  local users = {}

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    local online = {}
    for i = 1, 20 do
      users[i] = "user" .. i
      online[users[i]] = { 1 }
    end
    h.set_online(env, online, env.gateways[1])
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function seen()
    return h.http_json("GET", env.gateways[1].control .. "/seen")
  end

  local function count(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
  end

  it("rebalances across processes that die and join, losing nothing", function()
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "slow", delayMs = 3 })
    finally(function() h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "ok" }) end)
    local procs = {}
    for i = 1, 3 do
      procs[i] = h.start_impulse(env, { workers = 1, ready_timeout_ms = 60000 })
    end
    local t0 = h.now_ms()
    local ids = {}
    local function produce(first, last)
      for i = first, last do
        local m = h.push_msg { sendID = "system", recvID = users[(i - 1) % #users + 1],
                               clientMsgID = "scale-" .. i, options = { senderSync = false } }
        h.produce(env, m, { no_flush = true })
        ids[i] = m.clientMsgID
        if i % 500 == 0 then env.producer:flush(30000) end
      end
      env.producer:flush(30000)
    end
    produce(1, 6000)

    h.wait_until(function() return count(seen()) >= 1500 end, 120000, "1,500 pushes")
    h.signal(procs[2], h.SIGKILL)
    h.wait_until(function() return not h.alive(procs[2]) end, 5000, "the second impulse to die")
    procs[2].stopped = true
    local at_kill = count(seen())
    h.wait_until(function() return count(seen()) >= 3000 end, 120000, "3,000 pushes")
    procs[4] = h.start_impulse(env, { workers = 1, ready_timeout_ms = 60000 })
    -- more messages once the joiner holds its partitions (ready): on every
    -- key, so it gets some even when the others finished the first 6,000
    -- while it joined
    produce(6001, 6600)

    local s = h.wait_until(function()
      local got = seen()
      for _, id in ipairs(ids) do if not got[id] then return false end end
      return got
    end, 240000, "all 6,600 messages at the gateway")
    local took = h.now_ms() - t0
    local pushes = #h.pushes(env.gateways[1])
    assert.equal(6600, count(s))
    -- every process that lived took part: the group spread the partitions
    for _, i in ipairs { 1, 3, 4 } do
      local n = 0
      for _ in pairs(h.routes(procs[i])) do n = n + 1 end
      assert.is_true(n > 0, "impulse " .. i .. " handled no message")
    end
    print(string.format("\n    3 processes, one SIGKILLed after %d and one joining after 3,000: "
      .. "6,600 messages in %.1f s, 0 lost, %d pushes (%d replayed)", at_kill, took / 1000, pushes,
      pushes - 6600))
    for _, i in ipairs { 1, 3, 4 } do h.stop(procs[i]) end
  end)
end)
