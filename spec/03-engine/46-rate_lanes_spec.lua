-- Provider rate limits, priority lanes and per-device limits, against the
-- fake FCM: impulse.providers.fcm.ratePerSecond 10 (burst 1),
-- perDeviceMax 1 per hour. A 150-member group's offline pushes drain at
-- the rate; single chats produced meanwhile go ahead of the rest of the
-- group (the direct lane); the drain is never faster than the rate. Then
-- three notifications from three chats to one device: the first is sent,
-- the second is held by the device limit and superseded by the third,
-- which is held to its deadline and dropped.
local h = require "spec.helpers"

local RATE, GROUP = 10, 150

describe("rate limits and lanes #engine", function()
  local env, fake, k, imp

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  -- FCM requests whose token starts with prefix, in arrival order
  local function fcm(prefix)
    local out = {}
    for _, r in ipairs(control("GET", "/requests?provider=fcm")) do
      local t = type(r.body) == "table" and r.body.message and r.body.message.token
      if t and t:sub(1, #prefix) == prefix then out[#out + 1] = r end
    end
    table.sort(out, function(a, b) return a.at < b.at end)
    return out
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    k = h.test_pki()
    fake = h.start_providers()
    local members = { "zed" }
    for i = 1, GROUP do
      members[#members + 1] = string.format("gm-%03d", i)
      h.redis_cli(env.redis, "SET", string.format("FCM_TOKEN:gm-%03d:2", i), string.format("g-tok-%03d", i))
    end
    h.set_group(env, "g-rate", members)
    for _, u in ipairs { "d1", "d2", "d3", "dv" } do
      h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. u .. ":2", "d-tok-" .. u)
    end
    local sa = h.fake_fcm_account(fake, "rate")
    imp = h.start_impulse(env, {
      workers = 1, provider = "fcm",
      push_yaml = table.concat({ "  fcm:", "    filePath: " .. sa }, "\n"),
      impulse_yaml = table.concat({
        "  providers:",
        "    caFile: " .. k.ca,
        "    deadlineMs: 15000",
        "    fcm:",
        "      sendURL: " .. fake.base,
        "      ratePerSecond: " .. RATE,
        "      burst: 1",
        "      perDeviceMax: 1",
        "      perDeviceIntervalS: 3600",
      }, "\n"),
    })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("sends single chats ahead of a draining group, and never faster than the rate", function()
    h.produce(env, h.push_msg { sendID = "zed", recvID = "", groupID = "g-rate", sessionType = 3 })
    h.wait_until(function() return #fcm("g-tok-") >= 10 end, 60000, "the group's drain under way")
    for _, u in ipairs { "d1", "d2", "d3" } do
      h.produce(env, h.push_msg { sendID = "s-" .. u, recvID = u, options = { senderSync = false } })
    end
    h.wait_until(function() return #fcm("d-tok-d") >= 3 end, 60000, "the three single chats' requests")
    local group = h.wait_until(function()
      local g = fcm("g-tok-")
      return #g >= GROUP and g
    end, 120000, "the whole group")
    -- each device once
    local seen = {}
    for _, r in ipairs(group) do
      local t = r.body.message.token
      assert.is_nil(seen[t], "twice: " .. t)
      seen[t] = true
    end
    -- the single chats went ahead: much of the group arrived after them
    local direct = fcm("d-tok-d")
    local last_direct = direct[#direct].at
    local after = 0
    for _, r in ipairs(group) do if r.at > last_direct then after = after + 1 end end
    print(string.format("\n    group of %d at %d/s: %d of its requests arrived after the last single chat's; "
      .. "drain %d ms", GROUP, RATE, after, group[#group].at - group[1].at))
    assert.is_true(after >= 20, after .. " group requests after the last single chat")
    -- never faster than the rate: 153 requests with a burst of 1 need at
    -- least 15.2 s (the bound allows the fake's clock 5% of slack)
    local first, last = math.min(group[1].at, direct[1].at), math.max(group[#group].at, last_direct)
    assert.is_true(last - first >= (GROUP + 3 - 2) / RATE * 1000 * 0.95,
      "the drain took " .. (last - first) .. " ms")
    assert.is_true(h.metric(imp, "impulse_provider_rate_limited_total", 'pool="fcm"') > 0)
  end)

  it("holds a device over its limit, and a newer notification supersedes the held one", function()
    local ms = {}
    for i = 1, 3 do
      ms[i] = h.push_msg { sendID = "c" .. i, recvID = "dv", options = { senderSync = false } }
    end
    h.produce(env, ms[1])
    h.wait_until(function() return #fcm("d-tok-dv") >= 1 end, 30000, "the first notification")
    -- the other two, in either order: the one held second supersedes the first
    h.produce(env, ms[2])
    h.produce(env, ms[3])
    h.wait_until(function()
      return h.metric(imp, "impulse_provider_collapsed_total", 'pool="fcm",reason="superseded"') >= 1 and
        h.metric(imp, "impulse_provider_collapsed_total", 'pool="fcm",reason="over_limit"') >= 1
    end, 60000, "the second superseded, the third dropped at its deadline")
    local got = fcm("d-tok-dv")
    assert.equal(1, #got)
    assert.equal(ms[1].clientMsgID, got[1].body.message.android.collapse_key)
    assert.equal(2, h.metric(imp, "impulse_provider_requests_total", 'provider="fcm",result="collapsed"'))
    -- collapsed is not failed: nothing dead-lettered
    assert.equal(0, h.metric(imp, "impulse_messages_total", 'topic="toOfflinePush",result="push_failed"'))
  end)
end)
