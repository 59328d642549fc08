-- lua/impulse/transport/*.lua against a stubbed engine: what each sends
-- and how it reads the answers (the engine specs run them against the fake
-- providers over HTTPS).
local testing = require "impulse.testing"
local cjson = require "cjson"

local GETUI = { geTui = { pushUrl = "https://gt.test/v2/app1", appKey = "k", masterSecret = "s" } }

local function users(n)
  local u = {}
  for i = 1, n do u[i] = "u" .. i end
  return u
end

-- A stub Getui: /auth answers a token, pushes code 0 (or what reply() says).
local function getui_stub(reply)
  local n = 0
  return function(r)
    local path = r.url:gsub("^https://gt.test/v2/app1", "")
    if path == "/auth" then
      n = n + 1
      return { status = 200, body = cjson.encode { code = 0, data = { token = "tok" .. n, expire_time = "0" } } }
    end
    local custom = reply and reply(path, r)
    if custom then return custom end
    if path == "/push/list/message" then
      return { status = 200, body = cjson.encode { code = 0, data = { taskid = "T1" } } }
    end
    return { status = 200, body = cjson.encode { code = 0, data = {} } }
  end
end

-- A small Redis for the Getui token: GET, SET, PTTL and the transports'
-- compare-and-delete script (EVAL with one key and the expected value).
local function redis_stub()
  local store = {}
  return function(cmd, a, b, c, d)
    cmd = cmd:upper()
    if cmd == "GET" then return store[a] or cjson.null
    elseif cmd == "SET" then store[a] = b; return "OK"
    elseif cmd == "PTTL" then return store[a] and 3600000 or -2
    elseif cmd == "EVAL" then -- (script, 1, key, token): delete if it holds token
      if store[c] == d then store[c] = nil; return 1 end
      return 0
    end
    error("redis stub: " .. cmd)
  end, store
end

local function sent(path)
  local out = {}
  for _, b in ipairs(testing.batches) do
    for _, r in ipairs(b.requests) do
      if r.url:sub(-#path) == path then out[#out + 1] = r end
    end
  end
  return out
end

describe("getui transport", function()
  it("authenticates with the signed request and shares the token in Redis", function()
    testing.setup { offline_provider = "getui", providers = GETUI, http_batch = getui_stub() }
    local policy = testing.load_policy("scripts/push.lua")
    assert.truthy(testing.offline(policy, { clientMsgID = "abcdefghijk" }, { "u1" }))
    local auth = sent("/auth")
    assert.equal(1, #auth)
    local b = cjson.decode(auth[1].body)
    assert.equal("k", b.appkey)
    assert.equal("sha256(k" .. b.timestamp .. "s)", b.sign)
    assert.equal("tok1", testing.redis_store.GETUI_TOKEN)
    local push = sent("/push/single/alias")
    assert.equal(1, #push)
    assert.same({ "token: tok1", "Content-Type: application/json;charset=utf-8" }, push[1].headers)
  end)

  for _, n in ipairs { 2, 999, 1000, 1001, 5000 } do
    it("sends " .. n .. " users as list pushes, each user exactly once", function()
      testing.setup { offline_provider = "getui", providers = GETUI, http_batch = getui_stub() }
      local policy = testing.load_policy("scripts/push.lua")
      assert.truthy(testing.offline(policy, { clientMsgID = "abcdefghijk" }, users(n)))
      local seen, total = {}, 0
      local function count(aliases)
        assert.is_true(#aliases <= 1000)
        for _, a in ipairs(aliases) do
          assert.is_nil(seen[a], a .. " sent twice")
          seen[a] = true
          total = total + 1
        end
      end
      for _, r in ipairs(sent("/push/list/alias")) do
        local b = cjson.decode(r.body)
        assert.equal("T1", b.taskid)
        assert.is_true(b.is_async)
        count(b.audience.alias)
      end
      -- a chunk of one user (1001 = 1000 + 1) is a single alias push
      for _, r in ipairs(sent("/push/single/alias")) do count(cjson.decode(r.body).audience.alias) end
      assert.equal(n, total)
      local lists = n % 1000 == 1 and math.floor(n / 1000) or math.ceil(n / 1000)
      assert.equal(lists, #sent("/push/list/message"))
    end)
  end

  it("refreshes the token on code 10001 and sends that request once more", function()
    local expired = true
    local redis, store = redis_stub()
    testing.setup { offline_provider = "getui", providers = GETUI, redis = redis, http_batch = getui_stub(function(path)
      if path == "/push/single/alias" and expired then
        expired = false
        return { status = 200, body = cjson.encode { code = 10001, msg = "token expired" } }
      end
    end) }
    local policy = testing.load_policy("scripts/push.lua")
    assert.truthy(testing.offline(policy, { clientMsgID = "abcdefghijk" }, { "u1" }))
    local push = sent("/push/single/alias")
    assert.equal(2, #push)
    assert.equal("token: tok1", push[1].headers[1])
    assert.equal("token: tok2", push[2].headers[1])
    assert.equal("tok2", store.GETUI_TOKEN)
  end)

  it("dead-letters the users of a request still failing (5xx) or rejected (other codes)", function()
    testing.setup { offline_provider = "getui", providers = GETUI, http_batch = getui_stub(function(path)
      if path == "/push/single/alias" then return { status = 503, body = "<html>down", error = nil } end
    end) }
    local policy = testing.load_policy("scripts/push.lua")
    local res = testing.offline(policy, { clientMsgID = "abcdefghijk" }, { "u1" })
    assert.equal(1, res.dead_lettered)
    assert.same({ { users = { "u1" }, reason = "push_failed", error = "getui: HTTP 503 <html>down" } },
      testing.dead_letters)

    testing.setup { offline_provider = "getui", providers = GETUI, http_batch = getui_stub(function(path)
      if path == "/push/single/alias" then return { status = 200, body = '{"code":20001,"msg":"bad alias"}' } end
    end) }
    policy = testing.load_policy("scripts/push.lua")
    res = testing.offline(policy, { clientMsgID = "abcdefghijk" }, { "u1" })
    assert.equal(1, res.dead_lettered)
    assert.equal("getui: code 20001 bad alias", testing.dead_letters[1].error)
    local counted
    for _, m in ipairs(testing.metrics) do
      if m.name == "impulse_provider_failures_total" and m.labels.reason == "code_20001" then counted = true end
    end
    assert.is_true(counted)
    local warned = false
    for _, l in ipairs(testing.logs) do
      if l.text:find("getui rejected /push/single/alias: code 20001 bad alias", 1, true) then warned = true end
    end
    assert.is_true(warned)
  end)

  it("names the missing setting", function()
    testing.setup { offline_provider = "getui", providers = { geTui = { pushUrl = "https://x/v2/$appId" } } }
    local policy = testing.load_policy("scripts/push.lua")
    local res = testing.offline(policy, {}, { "u1" })
    assert.equal(1, res.dead_lettered)
    assert.equal("getui: openim-push geTui.appKey is not set", testing.dead_letters[1].error)
  end)
end)

describe("jpush transport", function()
  it("sends Basic auth and rejects a 400 for good, fails a 401", function()
    local status = 200
    testing.setup { offline_provider = "jpush",
                    providers = { jpush = { appKey = "a", masterSecret = "b", pushURL = "https://jp.test/v3/push" } },
                    http_batch = function() return { status = status, body = "{}" } end }
    local policy = testing.load_policy("scripts/push.lua")
    assert.truthy(testing.offline(policy, {}, { "u1" }))
    local r = testing.batches[1].requests[1]
    assert.equal("https://jp.test/v3/push", r.url)
    assert.equal("Authorization: Basic YTpi", r.headers[1])
    status = 400
    assert.equal(1, testing.offline(policy, {}, { "u1" }).dead_lettered)
    assert.equal("jpush: HTTP 400 {}", testing.dead_letters[1].error)
    status = 401
    assert.equal(1, testing.offline(policy, {}, { "u1" }).dead_lettered)
    assert.equal("jpush: HTTP 401 {}", testing.dead_letters[2].error)
  end)
end)

describe("apns transport", function()
  local HEX = string.rep("ab", 32)
  local function setup(status_of)
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/key.p8", "w")
    f:write("-----BEGIN PRIVATE KEY-----\nstub\n-----END PRIVATE KEY-----\n")
    f:close()
    testing.setup {
      offline_provider = "apns",
      providers = { impulse = { apns = { keyFile = dir .. "/key.p8", keyId = "K1", teamId = "T1", topic = "app",
                                         url = "https://apns.test" } } },
      http_batch = function(r) return status_of(r) end,
    }
  end
  local policy = {
    route = function() end,
    tokens = function(_, list)
      local out = {}
      for _, u in ipairs(list) do out[u] = { { token = HEX, platformID = 1 } } end
      return out
    end,
  }
  local function auths()
    local seen, n = {}, 0
    for _, b in ipairs(testing.batches) do
      for _, r in ipairs(b.requests) do
        local a = r.headers[1]
        if not seen[a] then seen[a] = true; n = n + 1 end
      end
    end
    return n
  end
  local redis = function(cmd) if cmd == "EVAL" then return { 1 } end return "OK" end

  it("reuses the provider token for 50 minutes, then signs a new one", function()
    setup(function() return { status = 200, body = "" } end)
    package.loaded["impulse.core"].redis = function(...) return false, redis(...) end
    testing.offline(policy, {}, { "u1" })
    testing.advance(49 * 60000)
    testing.offline(policy, {}, { "u1" })
    assert.equal(1, auths())
    testing.advance(2 * 60000)
    testing.offline(policy, {}, { "u1" })
    assert.equal(2, auths())
    local h = testing.batches[1].requests[1].headers
    assert.equal("apns-topic: app", h[2])
    assert.equal("apns-push-type: alert", h[3])
    assert.equal("https://apns.test/3/device/" .. HEX, testing.batches[1].requests[1].url)
  end)

  it("does not re-sign within 20 minutes after a 403, and does after", function()
    local n = 0
    setup(function()
      n = n + 1
      if n % 2 == 1 then return { status = 403, body = '{"reason":"ExpiredProviderToken"}' } end
      return { status = 200, body = "" }
    end)
    package.loaded["impulse.core"].redis = function(...) return false, redis(...) end
    testing.offline(policy, {}, { "u1" }) -- 403, then resent with the same token
    assert.equal(1, auths())
    testing.advance(21 * 60000)
    testing.offline(policy, {}, { "u1" }) -- 403, now old enough: a new token
    assert.equal(2, auths())
  end)
end)

describe("fcm transport", function()
  -- A service-account file (the signer is stubbed); the caller removes it.
  local function service_account()
    local sa = os.tmpname()
    local f = io.open(sa, "w")
    f:write(cjson.encode { client_email = "svc@p.iam", private_key = "KEY", project_id = "p1",
                           token_uri = "https://oauth.test/token" })
    f:close()
    return sa
  end

  it("reuses the access token until a minute before it expires, then exchanges a new JWT", function()
    local sa = service_account()
    local exchanges = 0
    testing.setup {
      offline_provider = "fcm",
      providers = { fcm = { filePath = sa }, impulse = { fcm = { sendURL = "https://fcm.test" } } },
      http_batch = function(r)
        if r.url == "https://oauth.test/token" then
          exchanges = exchanges + 1
          return { status = 200, body = cjson.encode { access_token = "at" .. exchanges, expires_in = 3600 } }
        end
        return { status = 200, body = "{}" }
      end,
    }
    package.loaded["impulse.core"].redis = function(cmd)
      if cmd == "EVAL" then return false, { 1 } end
      return false, "OK"
    end
    local policy = { route = function() end, tokens = function(_, list)
      local out = {}
      for _, u in ipairs(list) do out[u] = { { token = "dev-" .. u, platformID = 2 } } end
      return out
    end }
    local function bearer()
      local last = testing.batches[#testing.batches].requests[1]
      return last.headers[1], last.url
    end
    testing.offline(policy, {}, { "u1" })
    local b, url = bearer()
    assert.equal("Authorization: Bearer at1", b)
    assert.equal("https://fcm.test/v1/projects/p1/messages:send", url)
    local jwt = testing.batches[1].requests[1].body:match("assertion=(.*)$")
    assert.truthy(jwt, "the token exchange carries the JWT")
    testing.advance(58 * 60000)
    testing.offline(policy, {}, { "u1" })
    assert.equal("Authorization: Bearer at1", (bearer()))
    testing.advance(2 * 60000)
    testing.offline(policy, {}, { "u1" })
    assert.equal("Authorization: Bearer at2", (bearer()))
    assert.equal(2, exchanges)
    os.remove(sa)
  end)

  it("fails only the requests answered 401 when no new token can be had", function()
    local sa = service_account()
    local exchanges = 0
    testing.setup {
      offline_provider = "fcm",
      providers = { fcm = { filePath = sa }, impulse = { fcm = { sendURL = "https://fcm.test" } } },
      http_batch = function(r)
        if r.url == "https://oauth.test/token" then
          exchanges = exchanges + 1
          if exchanges > 1 then return { status = 400, body = '{"error":"invalid_grant"}' } end
          return { status = 200, body = cjson.encode { access_token = "at1", expires_in = 3600 } }
        end
        if r.body:find("dev-u1", 1, true) then return { status = 401, body = "{}" } end
        return { status = 200, body = "{}" }
      end,
    }
    package.loaded["impulse.core"].redis = function(cmd)
      if cmd == "EVAL" then return false, { 1, 1 } end
      return false, "OK"
    end
    local policy = { route = function() end, tokens = function(_, list)
      local out = {}
      for _, u in ipairs(list) do out[u] = { { token = "dev-" .. u, platformID = 2 } } end
      return out
    end }
    local res = testing.offline(policy, {}, { "u1", "u2" })
    assert.equal(2, exchanges)
    -- u2 was pushed: only u1 goes to the dead-letter topic (u2 twice on a replay otherwise)
    assert.equal(1, res.dead_lettered)
    assert.same({ "u1" }, testing.dead_letters[1].users)
    assert.matches("token exchange", testing.dead_letters[1].error)
    os.remove(sa)
  end)
end)
