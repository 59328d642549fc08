-- A slow part slows only itself: a gateway whose calls keep timing out is
-- skipped (circuit breaker) after impulse.gatewayBreakerFailures failures
-- in a row, so messages stop waiting for it and users on the healthy
-- gateway get their usual latency; its users take the path of a failed
-- call. Once it answers again, a probe closes the breaker.
local h = require "spec.helpers"

local TIMEOUT_MS = 2000

describe("gateway circuit breaker #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    h.set_online(env, { a1 = { 1 } }, env.gateways[1])
    h.set_online(env, { a2 = { 1 } }, env.gateways[2])
    imp = h.start_impulse(env, { workers = 1, gateway_timeout_ms = TIMEOUT_MS,
                                 impulse = { gatewayBreakerOpenMs = 1000 } })
  end)

  lazy_teardown(function()
    if env then h.signal(env.gateways[2], h.SIGCONT) end
    h.stop_env(env)
  end)

  local function route(m, timeout_ms)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, timeout_ms or 30000,
      "the route of " .. m.clientMsgID)
  end

  local function send(to, i)
    local m = h.push_msg { sendID = "s" .. i, recvID = to, options = { senderSync = false } }
    h.produce(env, m)
    return m
  end

  it("stops waiting for a hung gateway, then closes again when it answers", function()
    route(send("a1", 0)) -- both gateways connected
    h.signal(env.gateways[2], h.SIGSTOP)
    local sent = {}
    for i = 1, 50 do -- one conversation each: they run at once
      sent[i] = send("a1", i)
      h.sleep_ms(100)
    end
    local late, skipped = {}, 0
    for i, m in ipairs(sent) do
      local r = route(m)
      assert.same({ "a1" }, r.reached)
      if i > 30 then late[#late + 1] = r.ms end
      for _, g in ipairs(r.gateways) do
        if g.error and g.error:match("^circuit breaker open") then skipped = skipped + 1 end
      end
    end
    table.sort(late)
    local median = late[math.floor(#late / 2) + 1]
    print(string.format("\n    hung gateway, breaker open: median %d ms, max %d ms over the last %d "
      .. "messages (gateway timeout %d ms)", median, late[#late], #late, TIMEOUT_MS))
    assert.is_true(skipped > 0, "no message skipped the hung gateway")
    -- loose: the usual is tens of ms; without the breaker each waits 2,000 ms
    assert.is_true(median < TIMEOUT_MS / 2, "the last messages still waited: median " .. median .. " ms")
    assert.is_true(h.metric(imp, "impulse_gateway_breaker_opened_total",
      'gateway="' .. env.gateways[2].grpc .. '"') >= 1)

    h.signal(env.gateways[2], h.SIGCONT)
    -- after gatewayBreakerOpenMs a probe goes through and closes it
    local i = 100
    h.wait_until(function()
      i = i + 1
      local r = route(send("a2", i))
      return r.reached[1] == "a2"
    end, 30000, "a2 reached again")
  end)
end)
