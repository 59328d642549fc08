-- Shadow mode (impulse run --shadow): the engine consumes toPush in its own
-- consumer group, runs the whole policy (group members, presence, the
-- conversation filter, the offline leg's tokens and payloads) and sends
-- nothing: no gateway call, no toOfflinePush record, no provider request,
-- no writing RPC (dismissGroup, SetConversationMaxSeq), no dead letter.
-- Every metric says mode="shadow". The live engine started afterwards
-- consumes the same records in its own group and sends them, so the
-- shadow took nothing from it.
local h = require "spec.helpers"
local cjson = require "cjson"

local function tips(t)
  return cjson.encode { detail = cjson.encode(t) }
end

describe("shadow mode #engine", function()
  local env, shadow, live, fake, k, yaml, impulse_yaml

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  local function calls(method)
    local out = {}
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == method then out[#out + 1] = c end
    end
    return out
  end

  local function pushed(client_msg_id)
    local n = 0
    for _, set in ipairs(h.delivered(env, client_msg_id)) do
      for _ in pairs(set) do n = n + 1 end
    end
    return n
  end

  -- the shadow's toPush outcomes, read with its constant label
  local function shadow_ok()
    local _, body = h.http("GET", shadow.admin .. "/metrics")
    return tonumber(body:match('impulse_messages_total{mode="shadow",topic="toPush",result="ok"} (%d+)')) or 0
  end

  local msgs = {}

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    k = h.test_pki()
    fake = h.start_providers()
    h.set_online(env, { bob = { 1 } }, env.gateways[1])
    h.set_group(env, "g-sh", { "zed", "bob", "fc-amy", "fc-carl" })
    h.set_group(env, "g-kick", { "zed", "bob" })
    h.set_group(env, "g-dis", { "zed", "bob" })
    h.http_json("POST", env.services.control .. "/maxseq", { sg_g_kick = 7 })
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-amy:2", "tok-amy")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-carl:1", "tok-carl")
    local sa = h.fake_fcm_account(fake, "shadow")
    yaml = table.concat({ "  fcm:", "    filePath: " .. sa }, "\n")
    impulse_yaml = table.concat({
      "  providers:",
      "    caFile: " .. k.ca,
      "    fcm:",
      "      sendURL: " .. fake.base,
    }, "\n")

    -- the records, before either engine starts (both read from the start)
    msgs.single_off = h.push_msg { sendID = "zed", recvID = "fc-amy", options = { senderSync = false } }
    msgs.single_on = h.push_msg { sendID = "zed", recvID = "bob", options = { senderSync = false } }
    msgs.group = h.push_msg { sendID = "zed", recvID = "", groupID = "g-sh", sessionType = 3 }
    msgs.kick = h.push_msg { sendID = "zed", recvID = "", groupID = "g-kick", sessionType = 3, contentType = 1508,
                             content = tips { opUser = { userID = "zed" }, kickedUserList = { { userID = "k1" } } } }
    msgs.dismiss = h.push_msg { sendID = "zed", recvID = "", groupID = "g-dis", sessionType = 3, contentType = 1511,
                                content = tips { opUser = { userID = "zed" } },
                                options = { isNotNotification = false } }
    for _, name in ipairs { "single_off", "single_on", "group", "kick", "dismiss" } do
      h.produce(env, msgs[name])
    end

    shadow = h.start_impulse(env, { workers = 2, provider = "fcm", push_yaml = yaml, impulse_yaml = impulse_yaml,
                                    run_args = "--shadow" })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("runs every record in group push-shadow and sends nothing", function()
    h.wait_until(function() return shadow_ok() >= 5 end, 30000, "the shadow's 5 messages ok")
    local joined = h.log_lines(shadow, "worker 0 joined group")
    assert.matches("push%-shadow on toPush", joined[1].msg)
    assert.equal(0, #h.log_lines(shadow, "worker 0 joined group offlinePush"))
    -- the route lines: as live, marked shadow, bob "reached" though no gateway was called
    local routes = h.routes(shadow)
    local r = routes[msgs.single_on.clientMsgID]
    assert.is_true(r.shadow)
    assert.same({ "bob" }, r.reached)
    assert.equal(2, r.wouldCall)
    assert.equal(4, routes[msgs.group.clientMsgID].recipients)
    -- nothing reached a gateway, toOfflinePush, a provider or a writing RPC
    for _, m in pairs(msgs) do assert.equal(0, pushed(m.clientMsgID)) end
    assert.same({}, h.dead_letters(env, "toOfflinePush"))
    assert.same({}, control("GET", "/requests?provider=fcm"))
    assert.same({}, calls("/openim.group.group/dismissGroup"))
    assert.same({}, calls("/openim.conversation.conversation/SetConversationMaxSeq"))
    -- reads were made: the kick's max seq, the group's offline filter
    assert.is_true(#calls("/openim.msg.msg/GetConversationMaxSeq") >= 1)
    assert.is_true(#calls("/openim.conversation.conversation/GetConversationOfflinePushUserIDs") >= 1)
  end)

  it("builds the offline payloads it would send, with the device tokens, and counts them as shadow", function()
    -- one FCM request per device: fc-amy (single chat), fc-amy and fc-carl
    -- (group); the kicked k1 has no device
    h.wait_until(function()
      return h.metric(shadow, "impulse_shadow_provider_requests_total", 'mode="shadow",provider="fcm"') >= 3
    end, 20000, "3 FCM requests counted")
    assert.equal(4, h.metric(shadow, "impulse_offline_push_total", 'mode="shadow",provider="fcm",result="shadow"'))
    assert.equal(0, h.metric(shadow, "impulse_offline_push_total", 'mode="shadow",provider="fcm",result="sent"'))
    assert.equal(1, h.metric(shadow, "impulse_shadow", 'mode="shadow"'))
    local would = {}
    for _, l in ipairs(h.log_lines(shadow, "shadow: would send")) do would[#would + 1] = l.msg end
    table.sort(would)
    assert.same({ "shadow: would send 0 fcm request(s) for 1 user(s)",
                  "shadow: would send 1 fcm request(s) for 1 user(s)",
                  "shadow: would send 2 fcm request(s) for 2 user(s)" }, would)
    -- the writes it skipped were counted; nothing unlabelled was rendered
    assert.is_true(h.metric(shadow, "impulse_shadow_skipped_total", 'mode="shadow",call="rpc"') >= 2)
    local _, body = h.http("GET", shadow.admin .. "/metrics")
    for line in body:gmatch("[^\n]+") do
      if line:sub(1, 1) ~= "#" then assert.matches('^[%w_]+{mode="shadow"', line) end
    end
  end)

  it("leaves every record to the live engine, which sends them", function()
    live = h.start_impulse(env, { workers = 2, provider = "fcm", push_yaml = yaml, impulse_yaml = impulse_yaml })
    h.wait_ok(live, 5, 30000, "the live engine's 5 messages")
    h.wait_until(function() return pushed(msgs.single_on.clientMsgID) >= 1 end, 20000, "bob's push")
    h.wait_until(function() return #control("GET", "/requests?provider=fcm") >= 3 end, 30000, "3 FCM requests")
    assert.equal(1, #calls("/openim.group.group/dismissGroup"))
    assert.equal(1, #calls("/openim.conversation.conversation/SetConversationMaxSeq"))
    -- the live metrics carry no mode label
    assert.equal(0, h.metric(live, "impulse_shadow", nil))
  end)
end)
