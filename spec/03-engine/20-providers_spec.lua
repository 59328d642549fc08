-- The providers end to end: toOfflinePush records sent over HTTPS/HTTP2 to
-- the fake Getui, FCM, JPush and APNs (examples/openim-standin/providers.js,
-- which checks the auth: Getui's sign, FCM's RS256 JWT, APNs' ES256 JWT,
-- JPush's Basic auth, with its own implementation), with a test CA.
local h = require "spec.helpers"

-- users are sent to a provider by prefix
local POLICY = [[
local openim = require "openim"
local _M = {}
function _M.route(msg, ctx) return openim.route(msg, ctx) end
function _M.offline(msg, ctx, result) return openim.offline(msg, ctx, result) end
function _M.notice(msg) return openim.notice(msg) end
local BY = { ["gt-"] = "getui", ["jp-"] = "jpush", ["fc-"] = "fcm", ["io-"] = "apns" }
function _M.provider(user) return BY[user:sub(1, 3)] end
return _M
]]

local HEX64 = string.rep("ab", 32)

describe("providers #engine", function()
  local env, imp, fake, k

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  local function requests(provider)
    return control("GET", "/requests?provider=" .. provider)
  end

  -- waits until pred(requests of provider) is true; returns them
  local function wait_requests(provider, pred, what)
    return h.wait_until(function()
      local r = requests(provider)
      return pred(r) and r
    end, 30000, what)
  end

  local function single(to, extra)
    local fields = { sendID = "zed", recvID = to, options = { senderSync = false } }
    for key, v in pairs(extra or {}) do fields[key] = v end
    local m = h.push_msg(fields)
    h.produce(env, m)
    return m
  end

  local function of_msg(reqs, m, field)
    local out = {}
    for _, r in ipairs(reqs) do
      if type(r.body) == "table" and field(r.body) == m.clientMsgID then out[#out + 1] = r end
    end
    return out
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    k = h.test_pki()
    fake = h.start_providers()
    local dir = h.tmpdir() .. "/providers-scripts"
    os.execute("mkdir -p " .. dir .. " && cp -r " .. h.root .. "/scripts/. " .. dir)
    h.write_file(dir .. "/push.lua", POLICY)
    local sa = h.fake_fcm_account(fake)
    control("POST", "/config/apns", { publicKeyPem = h.read_file(k.apns_pub), keyId = "KEY123", teamId = "TEAM123",
                                      topic = "com.example.app" })
    imp = h.start_impulse(env, {
      workers = 2, scripts = dir, provider = "none",
      push_yaml = table.concat({
        "  geTui:",
        "    pushUrl: " .. fake.base .. "/v2/app1",
        "    appKey: key1",
        "    masterSecret: secret1",
        "  jpush:",
        "    appKey: jkey",
        "    masterSecret: jsecret",
        "    pushURL: " .. fake.base .. "/v3/push",
        "  fcm:",
        "    filePath: " .. sa,
        "  iosPush:",
        "    production: false",
      }, "\n"),
      impulse_yaml = table.concat({
        "  providers:",
        "    caFile: " .. k.ca,
        "    backoffMs: 200",
        "    maxBackoffMs: 1000",
        "    attempts: 30",
        "    deadlineMs: 30000",
        "    fcm:",
        "      sendURL: " .. fake.base,
        "    apns:",
        "      url: " .. fake.base,
        "      keyFile: " .. k.apns_key,
        "      keyId: KEY123",
        "      teamId: TEAM123",
        "      topic: com.example.app",
      }, "\n"),
    })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("pushes JPush batches of at most 1000 aliases, each user once, with Basic auth", function()
    local members = {}
    for i = 1, 1001 do members[i] = string.format("jp-%04d", i) end
    members[#members + 1] = "zed"
    h.set_group(env, "g-jp", members)
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-jp", sessionType = 3 }
    h.produce(env, m)
    local reqs = wait_requests("jpush", function(r)
      return #of_msg(r, m, function(b) return b.message and b.message.extras and b.message.extras.ClientMsgID end) >= 2
    end, "two JPush requests")
    reqs = of_msg(reqs, m, function(b) return b.message.extras.ClientMsgID end)
    assert.equal(2, #reqs)
    local seen, total = {}, 0
    for _, r in ipairs(reqs) do
      assert.equal(200, r.status)
      assert.equal("Basic " .. h.base64_encode("jkey:jsecret"), r.headers.authorization)
      for _, a in ipairs(r.body.audience.alias) do
        assert.is_nil(seen[a])
        seen[a] = true
        total = total + 1
      end
    end
    assert.equal(1001, total)
  end)

  it("authenticates to Getui, shares the token in Redis, and refreshes it on 10001 without losing the push",
    function()
      local m = single("gt-1")
      local reqs = wait_requests("getui", function(r)
        return #of_msg(r, m, function(b) return b.request_id end) >= 1
      end, "the Getui push")
      local push = of_msg(reqs, m, function(b) return b.request_id end)[1]
      assert.equal("/v2/app1/push/single/alias", push.path)
      assert.same({ "gt-1" }, push.body.audience.alias)
      local tok = h.redis_cli(env.redis, "GET", "GETUI_TOKEN"):gsub("%s+$", "")
      assert.equal(push.headers.token, tok)
      -- every token expires: the next push is answered 10001, then resent
      control("POST", "/expire-tokens", { provider = "getui" })
      local m2 = single("gt-2")
      reqs = wait_requests("getui", function(r)
        local mine = {}
        for _, x in ipairs(r) do
          if type(x.body) == "table" and x.body.request_id == m2.clientMsgID then mine[#mine + 1] = x end
        end
        return #mine >= 2 and mine[#mine].status == 200
      end, "the Getui push after a token refresh")
      local auths = 0
      for _, x in ipairs(reqs) do if x.path == "/v2/app1/auth" then auths = auths + 1 end end
      assert.equal(2, auths)
      assert.is_not.equal(tok, h.redis_cli(env.redis, "GET", "GETUI_TOKEN"):gsub("%s+$", ""))
    end)

  it("sends a Getui list push to several users: one task, each alias once", function()
    local members = { "zed", "gt-a", "gt-b", "gt-c" }
    h.set_group(env, "g-gt", members)
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-gt", sessionType = 3 }
    h.produce(env, m)
    local reqs = wait_requests("getui", function(r)
      for _, x in ipairs(r) do if x.path == "/v2/app1/push/list/alias" and x.status == 200 then return true end end
    end, "the list alias push")
    local aliases = {}
    for _, x in ipairs(reqs) do
      if x.path == "/v2/app1/push/list/alias" then
        for _, a in ipairs(x.body.audience.alias) do aliases[#aliases + 1] = a end
      end
    end
    table.sort(aliases)
    assert.same({ "gt-a", "gt-b", "gt-c" }, aliases)
  end)

  it("sends FCM messages per device token with a verified OAuth2 token, and counts the badge once", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-1:1", "tok-ios")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-1:2", "tok-and")
    local m = h.push_msg { sendID = "zed", recvID = "fc-1", options = { senderSync = false },
                           offlinePushInfo = { title = "Hello", desc = "there", iOSBadgeCount = true } }
    local record = h.pb.encode("openim.push.PushMsgReq", { msgData = m, userIDs = { "fc-1" } })
    local function produce_record()
      env.producer:produce("toOfflinePush", "fc-1_zed", record, {
        { "operationID", "op-fcm" }, { "opUserID", "zed" }, { "platform", "iOS" }, { "connID", "c1" },
      })
      env.producer:flush(10000)
    end
    produce_record()
    local function sends()
      return of_msg(requests("fcm"), m, function(b)
        return b.message and b.message.android and b.message.android.collapse_key
      end)
    end
    h.wait_until(function() return #sends() >= 2 end, 30000, "two FCM messages")
    local toks = {}
    for _, r in ipairs(sends()) do
      assert.equal(200, r.status)
      assert.equal("/v1/projects/proj1/messages:send", r.path)
      toks[#toks + 1] = r.body.message.token
      assert.same({ title = "Hello", body = "there" }, r.body.message.notification)
      assert.equal(1, r.body.message.apns.payload.aps.badge)
    end
    table.sort(toks)
    assert.same({ "tok-and", "tok-ios" }, toks)
    assert.equal("1", h.redis_cli(env.redis, "GET", "USER_BADGE_UNREAD_COUNT_SUM:fc-1"):gsub("%s+$", ""))
    -- the same record again (a replay): not sent again (offline dedupe),
    -- badge not counted twice
    local dup0 = h.metric(imp, "impulse_offline_dedupe_total", 'provider="fcm",result="duplicate"')
    produce_record()
    h.wait_until(function()
      return h.metric(imp, "impulse_offline_dedupe_total", 'provider="fcm",result="duplicate"') >= dup0 + 2
    end, 30000, "the replayed record's two devices skipped")
    assert.equal(2, #sends())
    assert.equal("1", h.redis_cli(env.redis, "GET", "USER_BADGE_UNREAD_COUNT_SUM:fc-1"):gsub("%s+$", ""))
    -- another message to the same devices reuses the access token
    local m2 = h.push_msg { sendID = "zed", recvID = "fc-1", options = { senderSync = false } }
    h.produce(env, m2)
    h.wait_until(function()
      return #of_msg(requests("fcm"), m2, function(b)
        return b.message and b.message.android and b.message.android.collapse_key
      end) >= 2
    end, 30000, "the second message's two FCM requests")
    local auth = requests("fcm-auth")
    assert.equal(1, #auth) -- the access token was reused
    assert.equal(200, auth[1].status)
  end)

  it("deletes an UNREGISTERED FCM token, but keeps a token registered meanwhile", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-dead:2", "tok-dead")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-new:2", "tok-old")
    control("POST", "/fcm/unregistered", { "tok-dead", "tok-old" })
    -- tok-old's answer is slow; meanwhile the user registers a new token
    control("POST", "/faults", { { provider = "fcm", bodyContains = "tok-old", delayMs = 1500, times = 1 } })
    single("fc-dead")
    single("fc-new")
    -- the fake records a request when it arrives: tok-old's is in flight
    h.wait_until(function()
      for _, r in ipairs(requests("fcm")) do
        if type(r.body) == "table" and r.body.message and r.body.message.token == "tok-old" then return true end
      end
    end, 15000, "tok-old's request at the fake")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-new:2", "tok-fresh")
    h.wait_until(function()
      return h.redis_cli(env.redis, "EXISTS", "FCM_TOKEN:fc-dead:2"):match("^0")
    end, 30000, "the dead token deleted")
    h.wait_until(function()
      return h.metric(imp, "impulse_provider_requests_total", 'provider="fcm",result="dead_token"') >= 2
    end, 30000, "both dead-token answers")
    assert.equal("tok-fresh", h.redis_cli(env.redis, "GET", "FCM_TOKEN:fc-new:2"):gsub("%s+$", ""))
  end)

  it("honours Retry-After and counts garbage replies without harming other pushes", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-ra:2", "tok-ra")
    control("POST", "/faults", {
      { provider = "fcm", bodyContains = "tok-ra", status = 429, headers = { ["retry-after"] = "2" }, times = 1 },
      { provider = "fcm", bodyContains = "tok-ra", status = 503, body = "<html>oops", times = 1 },
    })
    local m = single("fc-ra")
    local function mine()
      local out = {}
      for _, r in ipairs(requests("fcm")) do
        if type(r.body) == "table" and r.body.message and r.body.message.token == "tok-ra" then out[#out + 1] = r end
        if type(r.body) == "string" and r.body:find("tok-ra", 1, true) then out[#out + 1] = r end
      end
      return out
    end
    local reqs = h.wait_until(function()
      local r = mine()
      return #r >= 3 and r[#r].status == 200 and r
    end, 30000, "the FCM message after a 429 and a 503")
    assert.equal(429, reqs[1].status)
    assert.equal(503, reqs[2].status)
    assert.is_true(reqs[2].at - reqs[1].at >= 1900, "Retry-After: 2 was not honoured")
    assert.is_true(h.metric(imp, "impulse_provider_retries_total", 'pool="fcm",status="429"') >= 1)
    assert.is_true(h.metric(imp, "impulse_provider_retries_total", 'pool="fcm",status="503"') >= 1)
    -- an online push meanwhile went through
    local online = single("bob")
    assert.is_truthy(m)
    h.wait_until(function() return h.routes(imp)[online.clientMsgID] end, 15000, "an online push")
  end)

  it("signs APNs provider tokens (ES256), reuses them, and deletes a device token on 410", function()
    h.redis_cli(env.redis, "SET", "APNS_TOKEN:io-1:1", HEX64)
    local dead = string.rep("cd", 32)
    h.redis_cli(env.redis, "SET", "APNS_TOKEN:io-2:1", dead)
    control("POST", "/apns/unregistered", { dead })
    local m = single("io-1")
    single("io-2")
    local reqs = wait_requests("apns", function(r) return #r >= 2 end, "two APNs requests")
    local ok
    for _, r in ipairs(reqs) do
      if r.path == "/3/device/" .. HEX64 then ok = r end
    end
    assert.equal(200, ok.status)
    assert.equal("com.example.app", ok.headers["apns-topic"])
    assert.equal("alert", ok.headers["apns-push-type"])
    assert.equal(m.clientMsgID, ok.headers["apns-collapse-id"])
    assert.is_truthy(tonumber(ok.headers["apns-expiration"]))
    h.wait_until(function()
      return h.redis_cli(env.redis, "EXISTS", "APNS_TOKEN:io-2:1"):match("^0")
    end, 15000, "the unregistered APNs token deleted")
    assert.equal(1, control("GET", "/apns/jwts").count) -- one provider token for both
  end)

  it("gets a new FCM access token when FCM answers 401, and resends", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-401:2", "tok-401")
    local before = #requests("fcm-auth")
    control("POST", "/expire-tokens", { provider = "fcm" })
    single("fc-401")
    local reqs = h.wait_until(function()
      local out = {}
      for _, r in ipairs(requests("fcm")) do
        if type(r.body) == "table" and r.body.message and r.body.message.token == "tok-401" then out[#out + 1] = r end
      end
      return #out >= 2 and out[#out].status == 200 and out
    end, 30000, "the FCM message resent with a new token")
    assert.equal(401, reqs[1].status)
    assert.is_not.equal(reqs[1].headers.authorization, reqs[2].headers.authorization)
    assert.equal(before + 1, #requests("fcm-auth"))
  end)

  it("does not re-sign the APNs provider token sooner than 20 minutes, even after a 403", function()
    h.redis_cli(env.redis, "SET", "APNS_TOKEN:io-3:1", string.rep("ef", 32))
    control("POST", "/faults", { { provider = "apns", status = 403, body = '{"reason":"ExpiredProviderToken"}',
                                   times = 1 } })
    single("io-3")
    local reqs = wait_requests("apns", function(r)
      local n = 0
      for _, x in ipairs(r) do if x.path == "/3/device/" .. string.rep("ef", 32) then n = n + 1 end end
      return n >= 2
    end, "the APNs request resent")
    local mine = {}
    for _, x in ipairs(reqs) do if x.path == "/3/device/" .. string.rep("ef", 32) then mine[#mine + 1] = x end end
    assert.equal(403, mine[1].status)
    assert.equal(200, mine[2].status)
    assert.equal(mine[1].headers.authorization, mine[2].headers.authorization)
    assert.equal(1, control("GET", "/apns/jwts").count)
  end)

  it("dead-letters only the users whose sends failed for good, and replay sends them alone", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-good:2", "tok-good")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-bad:2", "tok-bad")
    h.set_group(env, "g-mix", { "zed", "fc-good", "fc-bad" })
    control("POST", "/faults", { { provider = "fcm", bodyContains = "tok-bad", status = 400,
                                   body = '{"error":{"code":400,"status":"INVALID_ARGUMENT"}}', times = -1 } })
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-mix", sessionType = 3 }
    h.produce(env, m)
    local recs = h.wait_until(function()
      local out = {}
      for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush.dlq",
                                            timeout_ms = 3000 }) do
        local req = h.pb.decode("openim.push.PushMsgReq", r.value)
        if req.msgData.clientMsgID == m.clientMsgID then
          r.req = req
          out[#out + 1] = r
        end
      end
      return #out > 0 and out
    end, 30000, "the dead letter")
    assert.equal(1, #recs)
    local r = recs[1]
    assert.same({ "fc-bad" }, r.req.userIDs) -- fc-good was sent, and is not in it
    local names = {}
    for i, hd in ipairs(r.headers) do names[i] = hd[1] end
    assert.same({ "operationID", "opUserID", "platform", "connID", "impulse-reason", "impulse-error",
                  "impulse-origin" }, names)
    assert.equal("push_failed", r.headers[5][2])
    assert.matches("HTTP 400", r.headers[6][2])
    assert.is_true(h.metric(imp, "impulse_provider_failures_total", 'provider="fcm",reason="http_400"') >= 1)
    -- fixed: the replay sends fc-bad's notification, and only it
    control("DELETE", "/faults")
    local before = #of_msg(requests("fcm"), m, function(b) return b.message and b.message.android
      and b.message.android.collapse_key end)
    local out = h.run(h.shell_quote(h.bin) .. " replay -c " .. h.shell_quote(imp.config)
      .. " --from toOfflinePush.dlq 2>&1")
    assert.matches("replayed %d+ records from toOfflinePush.dlq", out)
    h.wait_until(function()
      for _, x in ipairs(requests("fcm")) do
        if type(x.body) == "table" and x.body.message and x.body.message.token == "tok-bad" and x.status == 200 then
          return true
        end
      end
    end, 30000, "fc-bad's notification after the replay")
    local after = of_msg(requests("fcm"), m, function(b) return b.message and b.message.android
      and b.message.android.collapse_key end)
    assert.equal(before + 1, #after) -- tok-good was not sent again
  end)

  it("rides out a provider outage: a group's notifications delivered after it, online pushes during it", function()
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-out:2", "tok-out")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:fc-out2:1", "tok-out2")
    h.set_group(env, "g-out", { "zed", "bob", "fc-out", "fc-out2" })
    control("POST", "/faults", { { provider = "fcm", status = 503, times = -1 } })
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-out", sessionType = 3 }
    h.produce(env, m)
    h.wait_until(function()
      for _, r in ipairs(requests("fcm")) do
        if r.status == 503 then return true end
      end
    end, 15000, "the outage seen")
    -- online delivery is not held up by the offline leg
    local online = single("bob")
    h.wait_until(function() return h.routes(imp)[online.clientMsgID] end, 15000, "an online push during the outage")
    control("DELETE", "/faults")
    h.wait_until(function()
      local ok = {}
      for _, r in ipairs(requests("fcm")) do
        if type(r.body) == "table" and r.body.message and r.status == 200 then ok[r.body.message.token] = true end
      end
      return ok["tok-out"] and ok["tok-out2"]
    end, 30000, "the notifications after the outage")
    assert.is_truthy(m)
    for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush.dlq",
                                          timeout_ms = 3000 }) do
      local req = h.pb.decode("openim.push.PushMsgReq", r.value)
      assert.is_not.equal(m.clientMsgID, req.msgData.clientMsgID, "the outage's record was dead-lettered")
    end
  end)

  it("counts the HTTP/2 connections it opened", function()
    -- every provider above went over HTTP/2 (engine/net/h2.c) to the fake
    assert.is_true(h.metric(imp, "impulse_http2_connections_opened_total") >= 1)
  end)
end)
