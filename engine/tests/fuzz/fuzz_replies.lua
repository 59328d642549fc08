-- fuzz_replies.lua: what fuzz_replies.c runs for each input, under the
-- engine's stubs (impulse.testing), with the real modules of lua/ and
-- scripts/: the offline leg of a toOfflinePush record through a
-- provider's transport (Getui, FCM, APNs, JPush), or a toPush record
-- through the default policy with a webhook on (OpenIM's
-- beforeOnlinePush, beforeGroupOnlinePush, beforeOfflinePush), every
-- HTTP answer taken from the input.
--
-- Input: a first line naming the case (getui, fcm, apns, jpush,
-- webhook-online, webhook-group, webhook-offline; "+continue" after a
-- webhook sets failedContinue), then the replies in the order the
-- requests are made, separated by lines "---": each a status line (a
-- number 100-999; anything else is a network error with that text) and
-- the body. Requests beyond the replies get a network error; a case that
-- needs an auth token asks for it first (Getui's /auth, FCM's token
-- exchange), so the first reply answers that.
--
-- run(input) returns nothing: the record's outcome or a nil, err are
-- both fine; a raised error (a reply that breaks the code reading it, or
-- a broken invariant: a bad user ID handed on, a pushed user
-- dead-lettered) is a finding and propagates to the C side.
local testing = require "impulse.testing"
local cjson = require "cjson"

local ipairs, tonumber, tostring, type, error = ipairs, tonumber, tostring, type, error
local setmetatable, pcall, rawset, pairs = setmetatable, pcall, rawset, pairs

local M = {}

local replies, next_reply
-- per-device pushes (FCM, APNs): device token -> user, and the status of
-- the last answer to that device's push
local owner, last_status = {}, {}

-- FUZZ_REPLIES_PRINT=1 fuzz_replies <file>: what an input does
local verbose = os.getenv("FUZZ_REPLIES_PRINT")
local function show(what, res, err)
  if not verbose then return end
  local ok, text = pcall(cjson.encode, res)
  io.stderr:write(("%s: %d replies taken; %s %s\n"):format(what, next_reply - 1,
    ok and text or tostring(res), err and ("(" .. tostring(err) .. ")") or ""))
end

-- M.scripts: the repository's scripts/ folder (set by fuzz_replies.c)
-- M.fixtures: the FCM service account and the APNs key (engine/tests/fuzz/fixtures)

local function answer()
  local r = replies[next_reply]
  next_reply = next_reply + 1
  if not r then return { status = 0, body = "", error = "connection refused", attempts = 1 } end
  return r
end

local function parse(rest)
  replies, next_reply = {}, 1
  local pos = 1
  while pos <= #rest + 1 do
    local e = rest:find("\n---\n", pos, true)
    local chunk = rest:sub(pos, e and e - 1 or #rest)
    local line, body = chunk:match("^([^\n]*)\n?(.*)$")
    local st = tonumber(line)
    -- the engine hands Lua an integer status (libcurl's, or :status)
    if st and st >= 100 and st <= 999 and st == math.floor(st) then
      replies[#replies + 1] = { status = st, body = body, attempts = 1 }
    else
      replies[#replies + 1] = { status = 0, body = "", error = line, attempts = 1 }
    end
    if not e then break end
    pos = e + 5
  end
end

-- Redis as the transports use it: the Getui token, compare-and-delete,
-- badges (EVAL with keys), device tokens (MGET).
local function redis(cmd, ...)
  cmd = cmd:upper()
  local args = { ... }
  if cmd == "GET" then return cjson.null end
  if cmd == "PTTL" then return -2 end
  if cmd == "SET" then return "OK" end
  if cmd == "MGET" then -- one device a user: FCM's Android (2), APNs' iOS (1)
    local out = {}
    for i = 1, #args do
      local k = args[i]
      out[i] = (k:match("^FCM_TOKEN:.*:2$") or k:match("^APNS_TOKEN:.*:1$")) and ("device-" .. i) or cjson.null
      if out[i] ~= cjson.null then owner[out[i]] = k:match("^%u+_TOKEN:(.*):%d+$") end
    end
    return out
  end
  if cmd == "EVAL" then
    if not args[1]:find("local out", 1, true) then return 1 end -- compare-and-delete
    local out = {} -- badges, one per key
    for i = 1, tonumber(args[2]) or 0 do out[i] = 1 end
    return out
  end
  error("redis stub: " .. cmd)
end

local USERS = { "u1", "u2", "u3" }

local function providers(name)
  local dir = M.fixtures
  if name == "getui" then
    return { geTui = { pushUrl = "https://gt.test/v2/app1", appKey = "k", masterSecret = "s" } }
  elseif name == "fcm" then
    return { fcm = { filePath = dir .. "/fcm-service-account.json" },
             impulse = { fcm = { sendURL = "https://fcm.test" } } }
  elseif name == "apns" then
    return { impulse = { apns = { keyFile = dir .. "/apns-key.p8", keyId = "K1", teamId = "T1", topic = "app",
                                  url = "https://apns.test" } } }
  elseif name == "jpush" then
    return { jpush = { appKey = "a", masterSecret = "b", pushURL = "https://jp.test/v3/push" } }
  end
end

local function offline_case(name)
  owner, last_status = {}, {}
  testing.setup { offline_provider = name, providers = providers(name), redis = redis,
                  http_batch = function(r)
                    local a = answer()
                    local dev = (r.url .. (r.body or "")):match("device%-%d+")
                    if dev then last_status[dev] = a.status end
                    return a
                  end }
  local policy = testing.load_policy(M.scripts .. "/push.lua", M.scripts)
  -- the payload modules from the repository's scripts/providers, whatever
  -- the working folder (testing.offline's default is the relative "scripts")
  local payloads = setmetatable({}, { __index = function(t, p)
    local ok, m = pcall(testing.load_provider, p, M.scripts)
    if not ok then error("payload module " .. p .. ": " .. tostring(m)) end
    rawset(t, p, m)
    return m
  end })
  local res, err = testing.offline(policy, { clientMsgID = "abcdefghijk", sendID = "s" }, USERS, payloads)
  show(name, { result = res, dead_letters = testing.dead_letters }, err)
  if res == nil and type(err) ~= "string" then error("offline leg: nil without an error text") end
  -- a user whose device was pushed (200) is not dead-lettered: a replay
  -- of the dead letter would push it twice
  local dead = {}
  for _, d in ipairs(testing.dead_letters) do
    for _, u in ipairs(d.users) do dead[u] = true end
  end
  for dev, st in pairs(last_status) do
    if st == 200 and owner[dev] and dead[owner[dev]] then
      error(("%s: user %s was pushed and dead-lettered"):format(name, owner[dev]))
    end
  end
end

local function webhook_case(which, continue)
  local w = { url = "http://hooks.example/cb" }
  for _, n in ipairs { "beforeOnlinePush", "beforeGroupOnlinePush", "beforeOfflinePush" } do
    w[n] = { enable = false, timeout = 5, failedContinue = true }
  end
  local hook = ({ online = "beforeOnlinePush", group = "beforeGroupOnlinePush",
                  offline = "beforeOfflinePush" })[which]
  w[hook] = { enable = true, timeout = 3, failedContinue = continue }
  testing.setup {
    groups = { g1 = { "a", "b", "c" } },
    config = { imAdminUserID = "imAdmin", toPushTopic = "toPush", toOfflinePushTopic = "toOfflinePush",
               fullUserCache = true, rpcTimeoutMs = 5000, offlineProvider = "", webhooks = w },
    http = function()
      local r = answer()
      if r.error then return nil, r.error, "HTTP_CONNECTION" end
      return { status = r.status, body = r.body }
    end,
  }
  local core = package.loaded["impulse.core"]
  -- nobody online: the offline leg (and beforeOfflinePush) runs for all
  core.push_online = function(users)
    local copy = {}
    for i, u in ipairs(users) do copy[i] = u end
    return false, { recipients = #users, reached = {}, not_reached = copy }
  end
  local policy = testing.load_policy(M.scripts .. "/push.lua", M.scripts)
  local fields = { sendID = "bob", recvID = "alice", groupID = "", clientMsgID = "m1", serverMsgID = "",
                   senderPlatformID = 2, senderNickname = "", senderFaceURL = "", sessionType = 1, msgFrom = 100,
                   contentType = 101, content = '{"content":"hi"}', seq = 0, sendTime = testing.wall_ms,
                   createTime = testing.wall_ms, status = 2, isRead = false, options = {}, atUserIDList = {},
                   attachedInfo = "", ex = "", conversationID = "",
                   offlinePushInfo = { title = "t", desc = "d", ex = "", iOSPushSound = "", iOSBadgeCount = false,
                                       signalInfo = "" } }
  if which == "group" then fields.sessionType, fields.groupID = 3, "g1" end
  local res, err = require("impulse.driver").handle(policy, fields, "op-fuzz")
  show("webhook-" .. which, { result = res, handed_off = testing.handed_off }, err)
  if res == nil and type(err) ~= "string" then error("toPush: nil without an error text") end
  for _, h in ipairs(testing.handed_off) do
    for _, u in ipairs(h.users) do
      if type(u) ~= "string" or u == "" then error("handed off a bad user ID") end
    end
  end
end

function M.run(input)
  local case, rest = input:match("^([%w%-%+]+)\n(.*)$")
  if not case then return end
  parse(rest)
  local name, flag = case:match("^([%w%-]+)(%+?%w*)$")
  if not name then return end
  if providers(name) then
    offline_case(name)
  else
    local which = name:match("^webhook%-(%w+)$")
    if which == "online" or which == "group" or which == "offline" then
      webhook_case(which, flag == "+continue")
    end
  end
end

return M
