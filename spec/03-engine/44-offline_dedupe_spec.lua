-- Offline dedupe (impulse.offlineDedupe, on by default): an offline push to
-- a (user, clientMsgID, device) is sent at most once. impulse is SIGKILLed
-- after its FCM requests went out and before any offset was committed
-- (commitIntervalMs 60000), so the restarted engine replays both the toPush
-- record and the toOfflinePush record: the fake FCM still sees one request
-- per device. The same run with impulse.offlineDedupe false sends every
-- device three times (the push, the replayed hand-off, the replayed toPush
-- record's new hand-off): what the dedupe removes.
local h = require "spec.helpers"

describe("offline dedupe #engine", function()
  local env, fake, k, yaml, impulse_yaml

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  -- FCM requests per device token, for the tokens given
  local function per_token(tokens)
    local want, out = {}, {}
    for _, t in ipairs(tokens) do want[t], out[t] = true, 0 end
    for _, r in ipairs(control("GET", "/requests?provider=fcm")) do
      local t = type(r.body) == "table" and r.body.message and r.body.message.token
      if t and want[t] then out[t] = out[t] + 1 end
    end
    return out
  end

  local function total(counts)
    local n = 0
    for _, c in pairs(counts) do n = n + c end
    return n
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    k = h.test_pki()
    fake = h.start_providers()
    local sa = h.fake_fcm_account(fake, "dedupe")
    yaml = table.concat({ "  fcm:", "    filePath: " .. sa }, "\n")
    impulse_yaml = table.concat({ "  providers:", "    caFile: " .. k.ca, "    fcm:", "      sendURL: " .. fake.base },
      "\n")
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  -- A group message to three offline members (u1 with two devices), the
  -- engine killed once its four requests are out, then started again on
  -- the same config; returns the requests per token after the replay.
  local function push_kill_replay(tag, dedupe)
    local tokens = { tag .. "-u1-ios", tag .. "-u1-android", tag .. "-u2", tag .. "-u3" }
    h.set_group(env, "g-" .. tag, { "zed", tag .. "-u1", tag .. "-u2", tag .. "-u3" })
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. tag .. "-u1:1", tokens[1])
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. tag .. "-u1:2", tokens[2])
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. tag .. "-u2:2", tokens[3])
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. tag .. "-u3:5", tokens[4])
    local opts = {
      workers = 2, provider = "fcm", push_yaml = yaml, impulse_yaml = impulse_yaml,
      impulse = { commitIntervalMs = 60000, offlineDedupe = tostring(dedupe) },
    }
    local cfg_imp = h.start_impulse(env, opts)
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-" .. tag, sessionType = 3 }
    h.produce(env, m)
    h.wait_until(function() return total(per_token(tokens)) >= 4 end, 30000, tag .. ": the 4 FCM requests")
    -- the toOfflinePush record done: its sends are recorded (or not)
    h.wait_until(function()
      return h.metric(cfg_imp, "impulse_messages_total", 'topic="toOfflinePush",result="ok"') >= 1
    end, 30000, tag .. ": the toOfflinePush record done")
    if dedupe then
      assert.equal(4, h.metric(cfg_imp, "impulse_offline_dedupe_total", 'provider="fcm",result="claimed"'))
    end
    h.signal(cfg_imp, h.SIGKILL)
    h.wait_exit(cfg_imp, 10000)
    -- the same config again: same groups, nothing committed, both records replay
    local again = h.spawn("impulse", h.bin .. " run -c " .. cfg_imp.config)
    again.admin = cfg_imp.admin
    h.wait_ready(again)
    h.wait_until(function()
      return h.metric(again, "impulse_messages_total", 'topic="toPush",result="ok"') >= 1 and
        h.metric(again, "impulse_messages_total", 'topic="toOfflinePush",result="ok"') >= 2
    end, 60000, tag .. ": the replayed toPush record and both toOfflinePush records")
    local dup = h.metric(again, "impulse_offline_dedupe_total", 'provider="fcm",result="duplicate"')
    h.stop(again)
    local counts, parts = per_token(tokens), {}
    for i, t in ipairs(tokens) do parts[i] = t .. " " .. counts[t] end
    print(string.format("\n    offlineDedupe %s: SIGKILL after the 4 FCM requests, both records replayed: "
      .. "requests per device: %s; replayed pushes skipped: %d", tostring(dedupe), table.concat(parts, ", "), dup))
    return counts, dup
  end

  it("sends each device once across a SIGKILL and the replay of both records", function()
    local counts, dup = push_kill_replay("dd", true)
    assert.same({ ["dd-u1-ios"] = 1, ["dd-u1-android"] = 1, ["dd-u2"] = 1, ["dd-u3"] = 1 }, counts)
    assert.equal(8, dup) -- two replayed hand-offs of four devices each, all skipped
    -- the keys: "sent", expiring within the window (600 s by default)
    local keys = h.redis_cli(env.redis, "--raw", "KEYS", "IMPULSE_PUSHED:*:fcm:dd-*")
    local n = 0
    for key in keys:gmatch("[^\n]+") do
      n = n + 1
      assert.equal("sent", (h.redis_cli(env.redis, "--raw", "GET", key):gsub("%s+$", "")))
      local ttl = tonumber((h.redis_cli(env.redis, "--raw", "TTL", key)))
      assert.is_true(ttl > 0 and ttl <= 600, "TTL " .. tostring(ttl))
    end
    assert.equal(4, n)
  end)

  it("without it (offlineDedupe false) the replay pushes every device again", function()
    local counts = push_kill_replay("nd", false)
    assert.same({ ["nd-u1-ios"] = 3, ["nd-u1-android"] = 3, ["nd-u2"] = 3, ["nd-u3"] = 3 }, counts)
  end)
end)
