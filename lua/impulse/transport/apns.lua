-- The APNs transport (beyond OpenIM): HTTP/2 POST /3/device/<token> with an
-- ES256 provider token.
--
-- Settings, impulse.providers.apns: keyFile (the .p8 key), keyId, teamId,
-- topic (the app's bundle ID), url (default: production or sandbox as
-- openim-push iosPush.production says), pushType (alert), ttlS (expiration
-- of a notification, 86400). The provider token is signed once and reused
-- for 50 minutes (Apple: refresh every 20 to 60 minutes, never more often);
-- a 403 ExpiredProviderToken makes a new one only if the current one is
-- older than 20 minutes.
--
-- prepare: device tokens from APNS_TOKEN:<userID>:<1|9> (iOS, iPad) unless
-- the policy has tokens(provider, users, msg, ctx), and badges as for FCM.
-- send: 410 Unregistered and 400 BadDeviceToken delete that token
-- (compare-and-delete); other 4xx are rejected for good; 429, 5xx and
-- network errors are retried and, if they persist, fail the record.
--
-- An app of impulse.apps (ctx.app) has its own providers.apns (key, team,
-- topic) and iosPush.production.
local core = require "impulse.core"
local common = require "impulse.transport.common"
local cjson = require "cjson.safe"

local _M = {}

_M.PRODUCTION = "https://api.push.apple.com"
_M.SANDBOX = "https://api.sandbox.push.apple.com"
_M.PLATFORMS = { 1, 9 }
_M.REUSE_MS = 50 * 60000
_M.MIN_AGE_MS = 20 * 60000

local confs = {} -- by app ("" the default), once per VM

local function settings(app)
  local conf = confs[app or ""]
  if conf then return conf end
  local s = common.settings(app)
  if not s then return nil, "no app " .. tostring(app) .. " in impulse.apps" end
  local _, own = common.options("apns", app)
  local prefix = common.key_prefix(app, "impulse") .. "apns."
  local ok, err = common.need(own, prefix, { "keyFile", "keyId", "teamId", "topic" })
  if not ok then return nil, err end
  local path = own.keyFile -- resolved against the config's folder by the loader
  local key
  key, err = common.read_file(prefix .. "keyFile", path)
  if not key then return nil, err end
  local prod = s.iosPush.production
  conf = {
    key = key, key_id = own.keyId, team = own.teamId, topic = own.topic,
    url = own.url or (prod and _M.PRODUCTION or _M.SANDBOX),
    push_type = own.pushType or "alert",
    ttl_s = tonumber(own.ttlS) or 86400,
    prefix = prefix,
  }
  confs[app or ""] = conf
  return conf
end

-- The settings are complete and the key signs (the start, `impulse check`).
function _M.check(app)
  local c, err = settings(app)
  if not c then return nil, err end
  local sig, serr = core.jwt_sign("ES256", c.key, "check")
  if not sig then return nil, c.prefix .. "keyFile: " .. serr end
  return true
end

-- The provider token: reused while younger than REUSE_MS; force (after
-- a 403) makes a new one only when the current one is old enough.
local function provider_token(c, force)
  local name = "apns:" .. c.team .. ":" .. c.key_id
  local tok, born = core.token_get(name)
  local now = common.now_ms()
  if tok and now - born < _M.REUSE_MS and not (force and now - born >= _M.MIN_AGE_MS) then
    return tok
  end
  local input = core.b64url(cjson.encode { alg = "ES256", kid = c.key_id }) .. "." ..
    core.b64url(cjson.encode { iss = c.team, iat = math.floor(now / 1000) })
  local sig, err = core.jwt_sign("ES256", c.key, input)
  if not sig then return nil, c.prefix .. "keyFile: " .. err end
  tok = input .. "." .. core.b64url(sig)
  core.token_set(name, tok, now) -- "expires" holds the signing time here
  return tok
end

-- one request per device token: offline dedupe keys are per device
_M.per_device = true

function _M.prepare(msg, users, ctx, notice)
  return common.prepare_devices("apns", "APNS_TOKEN", _M.PLATFORMS, msg, users, ctx, notice)
end

local function reason(body)
  local j = cjson.decode(body or "")
  return type(j) == "table" and j.reason or nil
end

-- A 403 that a new provider token may cure.
local function token_refused(r)
  local why = r.status == 403 and reason(r.body)
  return why == "ExpiredProviderToken" or why == "InvalidProviderToken"
end

function _M.send(requests, users, msg, ctx) -- luacheck: no unused args
  local c, err = settings(ctx.app)
  if not c then return nil, err end
  local expiration = math.floor(common.now_ms() / 1000) + c.ttl_s
  local collapse = msg.clientMsgID ~= "" and msg.clientMsgID:sub(1, 64) or nil
  local results
  results, err = common.send_with_token("apns", requests, common.options("apns", ctx.app, ctx), {
    token = function(round) return provider_token(c, round == 2) end,
    request = function(r, jwt)
      local h = {
        "authorization: bearer " .. jwt,
        "apns-topic: " .. (r.topic or c.topic),
        "apns-push-type: " .. (r.push_type or c.push_type),
        "apns-expiration: " .. tostring(r.expiration or expiration),
        "apns-priority: " .. tostring(r.priority or 10),
        "content-type: application/json",
      }
      if collapse then h[#h + 1] = "apns-collapse-id: " .. collapse end
      return { method = "POST", url = c.url .. "/3/device/" .. tostring(r.token), body = r.body, headers = h,
               device = r.token }
    end,
    expired = token_refused,
  })
  if not results then return nil, err end
  local out = common.outcome(ctx.app)
  for i, r in ipairs(results) do
    local st, req = r.status, requests[i]
    local why = st >= 400 and reason(r.body)
    if common.collapsed("apns", r) then
      out.collapsed = (out.collapsed or 0) + 1
    elseif st == 200 then
      out.sent = out.sent + 1
      common.count("apns", "sent", 1, ctx.app)
    elseif st == 410 or why == "BadDeviceToken" or why == "Unregistered" then
      common.dead_token(out, "apns", req, ctx)
    elseif st >= 400 and st < 500 and st ~= 403 and st ~= 429 then
      common.fail(out, "apns", req, "rejected", common.describe(r))
      ctx.log.warn("apns rejected a notification for %s: %s", tostring(req.user), common.describe(r))
    else
      common.fail(out, "apns", req, "failed", common.describe(r))
    end
  end
  return out
end

return _M
