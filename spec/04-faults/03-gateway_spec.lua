-- Fault: a gateway node dies or hangs during a stream. Users a* are held by
-- gateway 1, users b* by gateway 2; messages go to both kinds all along.
--
-- What the engine does for a user whose gateway call failed (refused,
-- timed out, or skipped by the open circuit breaker: engine/push/fanout.c)
-- is: the user is "not reached", and the default policy
-- (scripts/openim.lua offline()) gives a single-chat message nobody was
-- reached by an offline push: a toOfflinePush record naming that user.
-- The gateway call itself is not retried. So every message to a b* user
-- is either reached (route line) or handed to toOfflinePush for that user,
-- never neither; messages to a* users are reached all along; and once
-- gateway 2 is back (restarted on the same port, or resumed after
-- SIGSTOP), its users are reached again.
local h = require "spec.helpers"
local F = require "spec.helpers.faults"

local TIMEOUT_MS = 1000 -- gatewayTimeoutMs
local STOP_MS = 4000    -- SIGSTOP longer than the timeout

describe("gateway faults #faults", function()
  local env, imp
  local A, B = {}, {}

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    local a, b = {}, {}
    for i = 1, 10 do
      A[i], B[i] = "ga" .. i, "gb" .. i
      a[A[i]], b[B[i]] = { 1 }, { 1 }
    end
    h.set_online(env, a, env.gateways[1])
    h.set_online(env, b, env.gateways[2])
    imp = h.start_impulse(env, { workers = 2, gateway_timeout_ms = TIMEOUT_MS,
                                 impulse = { gatewayBreakerOpenMs = 1000 } })
  end)

  lazy_teardown(function()
    if env then for _, g in ipairs(env.gateways) do h.signal(g, h.SIGCONT) end end
    h.stop_env(env)
  end)

  local n = 0
  -- One message to user u; returns its clientMsgID.
  local function send(u, tag)
    n = n + 1
    local m = h.push_msg { sendID = "gsys" .. n % 7, recvID = u, clientMsgID = tag .. "-" .. u .. "-" .. n,
                           options = { senderSync = false } }
    h.produce(env, m, { no_flush = true })
    return m.clientMsgID
  end

  -- Sends one message to every a* and b* user every 100 ms until done()
  -- is true (checked after each round); returns the ids by kind.
  local function pump(tag, done, timeout_ms, what)
    local ids = { a = {}, b = {} }
    h.wait_until(function()
      for i = 1, #A do
        ids.a[#ids.a + 1] = send(A[i], tag)
        ids.b[#ids.b + 1] = send(B[i], tag)
      end
      env.producer:flush(30000)
      return done(ids)
    end, timeout_ms or 60000, what)
    return ids
  end

  -- clientMsgID -> userIDs of its toOfflinePush records (all of them).
  local function offline_records()
    local out = {}
    for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush",
                                          timeout_ms = 3000 }) do
      local req = h.pb.decode("openim.push.PushMsgReq", r.value)
      local id = req.msgData.clientMsgID
      out[id] = out[id] or {}
      for _, u in ipairs(req.userIDs or {}) do out[id][u] = true end
    end
    return out
  end

  local function reached(route, u)
    for _, x in ipairs(route.reached or {}) do if x == u then return true end end
    return false
  end

  -- A pump condition for a gateway coming back: true once a whole round of
  -- b* users was reached through it (every worker reconnected and closed
  -- its breaker: each probes on its own); on_first(id) when the first one is.
  local function round_back(on_first)
    local first
    return function(ids)
      local r = h.routes(imp)
      local function ok(id) return r[id] and reached(r[id], id:match("%-(gb%d+)%-")) end
      for _, id in ipairs(ids.b) do
        if not first and ok(id) then first = id on_first(id) end
      end
      for start = 1, #ids.b - #B + 1, #B do
        local all = true
        for i = start, start + #B - 1 do
          if not ok(ids.b[i]) then all = false break end
        end
        if all then return true end
      end
    end
  end

  -- Waits for the route line of every id; returns them.
  local function routes_of(ids, what)
    return h.wait_until(function()
      local r = h.routes(imp)
      for _, id in ipairs(ids) do if not r[id] then return false end end
      return r
    end, 60000, what)
  end

  -- The accounting of a fault: every a* message reached; every b* message
  -- reached, or handed to toOfflinePush for its user. Returns the figures.
  local function account(ids, what)
    local all = {}
    for _, id in ipairs(ids.a) do all[#all + 1] = id end
    for _, id in ipairs(ids.b) do all[#all + 1] = id end
    local r = routes_of(all, what)
    local fig = { a = #ids.a, a_reached = 0, b = #ids.b, b_reached = 0, b_offline = 0, lost = {}, a_ms = {} }
    for _, id in ipairs(ids.a) do
      local u = id:match("%-(ga%d+)%-")
      if reached(r[id], u) then fig.a_reached = fig.a_reached + 1 end
      fig.a_ms[#fig.a_ms + 1] = r[id].ms
    end
    local off = h.wait_until(function()
      local o = offline_records()
      for _, id in ipairs(ids.b) do
        local u = id:match("%-(gb%d+)%-")
        if not reached(r[id], u) and not (o[id] and o[id][u]) then return false end
      end
      return o
    end, 30000, "a toOfflinePush record for every b* message not reached (" .. what .. ")")
    for _, id in ipairs(ids.b) do
      local u = id:match("%-(gb%d+)%-")
      if reached(r[id], u) then
        fig.b_reached = fig.b_reached + 1
        -- reached: no offline push
        assert.is_nil(off[id] and off[id][u], id .. " was reached and still got an offline push")
      else
        fig.b_offline = fig.b_offline + 1
      end
    end
    return fig
  end

  it("a gateway killed and restarted on the same port: its users reached again, nobody lost", function()
    local g2 = env.gateways[2]
    -- flowing to both
    local before = pump("k0", function(ids) return #ids.b >= 20 end, 30000, "a first round")
    local fig0 = account(before, "before the kill")
    assert.equal(fig0.b, fig0.b_reached)
    h.signal(g2, h.SIGKILL)
    h.wait_until(function() return not h.alive(g2) end, 10000, "gateway 2 to die")
    g2.stopped = true
    local port = g2.grpc:match(":(%d+)$")
    -- down for about 3 s while messages flow
    local t0 = h.now_ms()
    local down = pump("kdown", function() return h.now_ms() - t0 >= 3000 end, 30000, "3 s of stream")
    -- back on the same port, holding the same users
    local g2b = h.start_gateway(env.etcd, "--grpc-port " .. port)
    env.gateways[2] = g2b
    local b = {}
    for _, u in ipairs(B) do b[u] = { 1 } end
    h.http_json("POST", g2b.control .. "/conns", b)
    local back_at = h.now_ms()
    local resumed
    local gap = pump("kback", round_back(function(id) resumed = id end), 60000,
      "a whole round of b* users reached through the restarted gateway")
    local back_ms = h.now_ms() - back_at
    -- from then on, every message to its users reaches it
    local after = pump("kafter", function(ids) return #ids.b >= 50 end, 30000, "50 more")
    local fa = account(after, "after the restart")
    local fd = account(down, "while it was down")
    local fg = account(gap, "while it came back")
    local seen = h.http_json("GET", g2b.control .. "/counts")
    local missing = 0
    for _, id in ipairs(after.b) do if not seen[id] then missing = missing + 1 end end
    print(string.format("\n    gateway SIGKILLed ~3 s: %d/%d a* reached meanwhile; b*: %d reached, %d handed to "
      .. "toOfflinePush, 0 neither; restarted on port %s, its users reached again after %d ms (first %s); "
      .. "after that %d/%d b* reached, %d missing at the gateway", fd.a_reached, fd.a, fd.b_reached, fd.b_offline,
      port, back_ms, resumed, fa.b_reached, fa.b, missing))
    assert.equal(fd.a, fd.a_reached)
    assert.equal(fg.a, fg.a_reached)
    assert.equal(fa.a, fa.a_reached)
    assert.is_true(fd.b_offline > 0, "no message met the dead gateway")
    assert.equal(fa.b, fa.b_reached)
    assert.equal(0, missing)
    assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
  end)

  it("a gateway SIGSTOPped longer than gatewayTimeoutMs: the other keeps flowing, its users reached after",
    function()
      local g2 = env.gateways[2]
      pump("s0", function(ids)
        local r = h.routes(imp)
        for _, id in ipairs(ids.b) do
          if not (r[id] and reached(r[id], id:match("%-(gb%d+)%-"))) then return false end
        end
        return true
      end, 30000, "both gateways answering")
      h.signal(g2, h.SIGSTOP)
      local stopped = true
      finally(function() if stopped then h.signal(g2, h.SIGCONT) end end)
      local t0 = h.now_ms()
      local during = pump("sdown", function() return h.now_ms() - t0 >= STOP_MS end, 30000, "the stop")
      h.signal(g2, h.SIGCONT)
      stopped = false
      local cont_at = h.now_ms()
      local first_ms
      local gap = pump("sback", round_back(function() first_ms = h.now_ms() - cont_at end), 60000,
        "a whole round of b* users reached after SIGCONT")
      local back_ms = h.now_ms() - cont_at
      local after = pump("safter", function(ids) return #ids.b >= 50 end, 30000, "50 more")
      local fd = account(during, "during the stop")
      local fg = account(gap, "after SIGCONT")
      local fa = account(after, "after it answered again")
      local med, max = F.median_max(fd.a_ms)
      print(string.format("\n    gateway SIGSTOPped %d ms (timeout %d ms): %d/%d a* reached meanwhile (route "
        .. "median %d ms, max %d ms); b*: %d reached, %d handed to toOfflinePush, 0 neither; after SIGCONT "
        .. "a first b* user reached after %d ms, a whole round after %d ms; then %d/%d b* reached", STOP_MS,
        TIMEOUT_MS, fd.a_reached, fd.a, med, max, fd.b_reached, fd.b_offline, first_ms or -1, back_ms,
        fa.b_reached, fa.b))
      assert.equal(fd.a, fd.a_reached)
      assert.equal(fg.a, fg.a_reached)
      assert.equal(fa.a, fa.a_reached)
      assert.is_true(fd.b_offline > 0, "no message met the stopped gateway")
      assert.equal(fa.b, fa.b_reached)
      assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
    end)
end)
