-- The FCM HTTP v1 transport.
--
-- Credentials: the service-account JSON named by openim-push fcm.filePath
-- (relative to the config's folder, as OpenIM resolves it). An OAuth2
-- access token is obtained with an RS256-signed JWT at the account's
-- token_uri (impulse.providers.fcm.tokenURL overrides it), kept in the
-- engine's token store until a minute before it expires, and dropped and
-- fetched again when FCM answers 401.
--
-- prepare: the users' device tokens from FCM_TOKEN:<userID>:<1|2|5> (one
-- MGET; or the policy's tokens(provider, users, msg, ctx)) into ctx.tokens, and their badges (OpenIM's
-- USER_BADGE_UNREAD_COUNT_SUM, the increment guarded per message and user)
-- into ctx.badge. send: one POST per device token, multiplexed on HTTP/2;
-- 404 UNREGISTERED deletes that token (compare-and-delete); 400 is
-- rejected for good; 429, 5xx and network errors are retried (Retry-After
-- honoured) and, if they persist, fail the record.
--
-- An app of impulse.apps (ctx.app) has its own service account (its
-- fcm.filePath) and so its own access token.
local core = require "impulse.core"
local common = require "impulse.transport.common"
local cjson = require "cjson.safe"

local _M = {}

_M.SEND_URL = "https://fcm.googleapis.com"
_M.TOKEN_URL = "https://oauth2.googleapis.com/token"
_M.SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_M.PLATFORMS = { 1, 2, 5 } -- iOS, Android, Web (OpenIM's)

local accounts = {} -- the parsed service accounts by app ("" the default), once per VM

local function load_account(app)
  local account = accounts[app or ""]
  if account then return account end
  local s = common.settings(app)
  if not s then return nil, "no app " .. tostring(app) .. " in impulse.apps" end
  local key = common.key_prefix(app, "fcm") .. "filePath"
  -- the config loader resolved a relative path against the config's
  -- folder already (prefixing it again broke a relative -c)
  local path = s.fcm.filePath
  local data, err = common.read_file(key, path)
  if not data then return nil, err end
  local sa = cjson.decode(data)
  if type(sa) ~= "table" then
    return nil, key .. ": " .. path .. " is not JSON"
  end
  for _, k in ipairs { "client_email", "private_key", "project_id" } do
    if type(sa[k]) ~= "string" or sa[k] == "" then
      return nil, key .. ": " .. path .. " has no " .. k
    end
  end
  local _, own = common.options("fcm", app)
  account = {
    email = sa.client_email,
    key = sa.private_key,
    project = own.projectId or sa.project_id,
    token_uri = own.tokenURL or sa.token_uri or _M.TOKEN_URL,
    send_url = own.sendURL or _M.SEND_URL,
  }
  accounts[app or ""] = account
  return account
end

-- The service account reads and its key signs (the start, `impulse check`).
function _M.check(app)
  local acc, err = load_account(app)
  if not acc then return nil, err end
  local sig, serr = core.jwt_sign("RS256", acc.key, "check")
  if not sig then return nil, common.key_prefix(app, "fcm") .. "filePath: the private_key: " .. serr end
  return true
end

-- A valid access token (from the store, or a new one).
local function access_token(acc, opts)
  local name = "fcm:" .. acc.email
  local tok, exp = core.token_get(name)
  local now = common.now_ms()
  if tok and exp - 60000 > now then return tok end
  local iat = math.floor(now / 1000)
  local input = core.b64url('{"alg":"RS256","typ":"JWT"}') .. "." .. core.b64url(cjson.encode {
    iss = acc.email, scope = _M.SCOPE, aud = acc.token_uri, iat = iat, exp = iat + 3600,
  })
  local sig, serr = core.jwt_sign("RS256", acc.key, input)
  if not sig then return nil, "the service account's private_key: " .. serr end
  local r = common.one("fcm-auth", {
    method = "POST", url = acc.token_uri,
    headers = { "Content-Type: application/x-www-form-urlencoded" },
    body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
      .. input .. "." .. core.b64url(sig),
  }, opts)
  local j = r.status == 200 and cjson.decode(r.body)
  if type(j) ~= "table" or type(j.access_token) ~= "string" then
    common.count("fcm-auth", "failed", 1, opts.app)
    return nil, "token exchange at " .. acc.token_uri .. ": " .. common.describe(r)
  end
  common.count("fcm-auth", "sent", 1, opts.app)
  tok = j.access_token
  core.token_set(name, tok, now + (tonumber(j.expires_in) or 3600) * 1000)
  return tok
end

-- one request per device token: offline dedupe keys are per device
_M.per_device = true

function _M.prepare(msg, users, ctx, notice)
  return common.prepare_devices("fcm", "FCM_TOKEN", _M.PLATFORMS, msg, users, ctx, notice)
end

-- FCM's error code of a reply (errorCode in details, else status).
local function fcm_error(body)
  local j = cjson.decode(body or "")
  local e = type(j) == "table" and j.error
  if type(e) ~= "table" then return nil end
  if type(e.details) == "table" then
    for _, d in ipairs(e.details) do
      if type(d) == "table" and d.errorCode then return d.errorCode end
    end
  end
  return e.status
end

function _M.send(requests, users, msg, ctx) -- luacheck: no unused args
  local acc, err = load_account(ctx.app)
  if not acc then return nil, err end
  local opts = common.options("fcm", ctx.app, ctx)
  local url = acc.send_url .. "/v1/projects/" .. acc.project .. "/messages:send"
  local results
  results, err = common.send_with_token("fcm", requests, opts, {
    token = function() return access_token(acc, opts) end,
    request = function(r, tok)
      return { method = "POST", url = url, body = r.body, device = r.token,
               headers = { "Authorization: Bearer " .. tok, "Content-Type: application/json" } }
    end,
    expired = function(r) return r.status == 401 end, -- revoked or expired early
    drop = function() core.token_set("fcm:" .. acc.email, nil) end,
  })
  if not results then return nil, err end
  local out = common.outcome(ctx.app)
  for i, r in ipairs(results) do
    local st, req = r.status, requests[i]
    local code = st >= 400 and fcm_error(r.body)
    if common.collapsed("fcm", r) then
      out.collapsed = (out.collapsed or 0) + 1
    elseif st == 200 then
      out.sent = out.sent + 1
      common.count("fcm", "sent", 1, ctx.app)
    elseif code == "UNREGISTERED" or (st == 404 and req.token) then
      common.dead_token(out, "fcm", req, ctx)
    elseif st == 400 then
      common.fail(out, "fcm", req, "rejected", common.describe(r))
      ctx.log.warn("fcm rejected a message for %s: %s", tostring(req.user), common.describe(r))
    else
      common.fail(out, "fcm", req, "failed", common.describe(r))
    end
  end
  return out
end

return _M
