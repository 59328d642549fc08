-- Fault: Redis killed for ~10 s during a stream, then started again on
-- the same port. While it is gone, one user comes online and one goes
-- offline (the user service lists them so; with Redis down no
-- online_change can be published). Once Redis is back impulse
-- resubscribes and reloads its online table (the watcher's new load), so
-- the newcomer is reached and the leaver gets an offline push; no message
-- of the stream is lost; /readyz is 200 after.
local h = require "spec.helpers"
local F = require "spec.helpers.faults"

local DOWN_MS = 10000

describe("Redis outage #faults", function()
  local env, imp
  local users = {}

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    local online = { rgone = { 1 } }
    for i = 1, 50 do
      users[i] = "rd" .. i
      online[users[i]] = { 1 }
    end
    h.set_online(env, online, env.gateways[1])
    imp = h.start_impulse(env, { workers = 2, ready_timeout_ms = 60000 })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function health() return h.http_json("GET", imp.admin .. "/healthz") end

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 30000, "the route of " .. m.clientMsgID)
  end

  it("resyncs the online table after Redis comes back, losing no message", function()
    local s = F.stream(env, "redis", users)
    s:produce(500)
    h.wait_until(function() return F.count_delivered(F.gateway_counts(env.gateways[1]), s.ids) >= 100 end, 60000,
      "the first pushes")
    local loads = health().onlineLoads
    local port = env.redis.port
    h.signal(env.redis, h.SIGKILL)
    h.wait_until(function() return not h.alive(env.redis) end, 10000, "redis to die")
    env.redis.stopped = true
    local down_at = h.now_ms()
    h.wait_until(function() return not health().redisSubscribed end, 30000, "impulse to see Redis gone")
    -- meanwhile: rlate comes online, rgone goes offline
    h.http_json("POST", env.services.control .. "/online", '{"rlate":[1],"rgone":[]}')
    h.http_json("POST", env.gateways[1].control .. "/conns", '{"rlate":[1],"rgone":[]}')
    -- the stream goes on while Redis is down
    local not_ready = false
    while h.now_ms() - down_at < DOWN_MS do
      s:produce(50)
      if (h.http("GET", imp.admin .. "/readyz")) ~= 200 then not_ready = true end
      h.sleep_ms(200)
    end
    local during = F.count_delivered(F.gateway_counts(env.gateways[1]), s.ids)
    env.redis = h.start_redis(port)
    local up_at = h.now_ms()
    h.wait_until(function()
      local st = health()
      return st.redisSubscribed and st.onlineLoads > loads
    end, 60000, "the online table reloaded after Redis came back")
    local resync_ms = h.now_ms() - up_at
    h.wait_until(function() return (h.http("GET", imp.admin .. "/readyz")) == 200 end, 60000, "/readyz")
    local ready_ms = h.now_ms() - up_at
    s:produce(500)
    local got = F.wait_all(function() return F.gateway_counts(env.gateways[1]) end, s.ids, 120000,
      "every message of the stream")
    local fig = F.figures(got, s.ids)
    -- the online state changed during the outage is the engine's now
    local to_late = h.push_msg { sendID = "system", recvID = "rlate", options = { senderSync = false } }
    local to_gone = h.push_msg { sendID = "system", recvID = "rgone", options = { senderSync = false } }
    h.produce(env, to_late)
    h.produce(env, to_gone)
    local rl, rg = route_of(to_late), route_of(to_gone)
    print(string.format("\n    Redis down %d ms: %d of the %d messages produced by its end delivered by then; "
      .. "/readyz %s during it; resubscribed and reloaded %d ms after Redis came back, /readyz 200 after %d ms; "
      .. "%d messages, %d lost, %d duplicates; online table now %d users", DOWN_MS, during, #s.ids - 500,
      not_ready and "503 at times" or "200 throughout", resync_ms, ready_ms, #s.ids, fig.missing, fig.dups,
      health().onlineUsers))
    assert.equal(0, fig.missing)
    assert.same({ "rlate" }, rl.reached)
    assert.same({ "rgone" }, rg.offline)
    assert.equal(51, health().onlineUsers) -- rd1..rd50 and rlate
    assert.is_true(fig.dups <= 2 * 1024, fig.dups .. " duplicates with no consumer lost")
  end)
end)
