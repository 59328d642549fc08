-- Fault: a storm at the offline provider. The fake JPush answers 429 with
-- Retry-After, then 503s, then slow replies, for hundreds of requests in
-- a row, while 300 offline messages (100 users) go through it and online
-- messages keep flowing. Afterwards every message's notification has been
-- answered 200 (each offline user pushed at least once), nothing was
-- dead-lettered, and /readyz stayed 200 throughout. The transport's
-- retry settings are impulse's defaults (8 attempts, backoff from 500 ms,
-- a 60 s deadline); only the test CA is set.
local h = require "spec.helpers"
local F = require "spec.helpers.faults"

local MESSAGES = 300
local STORM = {
  { provider = "jpush", status = 429, headers = { ["retry-after"] = "1" }, times = 150 },
  { provider = "jpush", status = 503, body = "<html>over capacity</html>", times = 150 },
  { provider = "jpush", delayMs = 1500, times = 150 },
}

describe("provider storm #faults", function()
  local env, imp, fake

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    fake = h.start_providers()
    h.set_online(env, { ps_online = { 1 } }, env.gateways[1])
    imp = h.start_impulse(env, {
      workers = 2, provider = "jpush", ready_timeout_ms = 60000,
      push_yaml = h.jpush_yaml(fake.base),
      impulse_yaml = "  providers:\n    caFile: " .. h.test_pki().ca,
    })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("pushes every offline user at least once after 429s, 503s and slow replies; stays ready", function()
    h.http_json("POST", fake.control .. "/faults", STORM)
    local users = {}
    for i = 1, 100 do users[i] = "ps" .. i end -- never online
    local t0 = h.now_ms()
    local s = F.stream(env, "storm", users)
    s:produce(MESSAGES)
    -- online messages during the storm, and /readyz, sampled until every
    -- notification is through
    local online, not_ready, samples = {}, 0, 0
    local counts = F.wait_all(function()
      samples = samples + 1
      if (h.http("GET", imp.admin .. "/readyz")) ~= 200 then not_ready = not_ready + 1 end
      if #online < 20 then
        local m = h.push_msg { sendID = "system", recvID = "ps_online", options = { senderSync = false } }
        h.produce(env, m)
        online[#online + 1] = m.clientMsgID
      end
      return F.jpush_counts(fake)
    end, s.ids, 180000, "a 200 answer for every notification")
    local took = h.now_ms() - t0
    local fig = F.figures(counts, s.ids)
    local applied = {}
    for i, r in ipairs(h.http_json("GET", fake.control .. "/faults")) do applied[i] = r.applied or 0 end
    local stats = h.http_json("GET", fake.control .. "/stats").jpush
    -- the online messages went through while the storm raged
    local seen = F.wait_all(function() return F.gateway_counts(env.gateways[1]) end, online, 30000,
      "the online messages")
    local dead = 0
    for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush.dlq",
                                          timeout_ms = 3000 }) do
      local req = h.pb.decode("openim.push.PushMsgReq", r.value)
      if req.msgData.clientMsgID:match("^storm%-") then dead = dead + 1 end
    end
    local r429 = h.metric(imp, "impulse_provider_retries_total", 'pool="jpush",status="429"')
    local r503 = h.metric(imp, "impulse_provider_retries_total", 'pool="jpush",status="503"')
    print(string.format("\n    %d offline messages through a storm of %d x 429 (Retry-After 1), %d x 503, %d slow "
      .. "(1.5 s): all answered 200 after %.1f s, %d requests in all (%d duplicates of a 200), %d dead-lettered; "
      .. "retries counted: 429 %d, 503 %d; %d online messages reached meanwhile; /readyz 503 in %d of %d samples",
      MESSAGES, applied[1], applied[2], applied[3], took / 1000, stats.requests, fig.dups, dead, r429, r503,
      #online, not_ready, samples))
    assert.equal(0, fig.missing)
    assert.equal(0, dead)
    assert.same({ 150, 150, 150 }, applied) -- the whole storm was met
    assert.is_true(r429 >= 1 and r503 >= 1, "the retries were not counted")
    assert.equal(0, not_ready)
    assert.equal(#online, F.count_delivered(seen, online))
    assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
  end)
end)
