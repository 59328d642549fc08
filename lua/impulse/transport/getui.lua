-- The Getui RestAPI v2 transport. Base URL: openim-push geTui.pushUrl
-- (https://restapi.getui.com/v2/<appId>).
--
-- Auth: POST /auth {sign = sha256_hex(appKey .. timestamp .. masterSecret),
-- timestamp, appkey}; the token is shared by every impulse and openim-push
-- instance through Redis GETUI_TOKEN (23 h, as OpenIM), and kept in the
-- engine's token store. A reply with code 10001 (token expired) drops the
-- token (compare-and-delete in Redis), gets a new one and sends that
-- request once more (OpenIM refreshes but loses the push).
--
-- A list request ({path = "/push/list/message", alias_chunks = {...}})
-- creates the task, then posts each chunk to /push/list/alias with its
-- taskid, once. Code 0 is success; other codes are rejected for good
-- (logged); 429, 5xx and network errors are retried and, if they persist,
-- fail the record.
--
-- An app of impulse.apps (ctx.app) uses its own geTui section, token
-- store entry and Redis key GETUI_TOKEN:<app>.
local core = require "impulse.core"
local common = require "impulse.transport.common"
local cjson = require "cjson.safe"

local _M = {}

_M.REDIS_KEY = "GETUI_TOKEN"
_M.TTL_S = 23 * 3600
_M.EXPIRED = 10001

local function settings(app)
  local s = common.settings(app)
  if not s then return nil, "no app " .. tostring(app) .. " in impulse.apps" end
  local g, prefix = s.geTui, common.key_prefix(app, "geTui")
  local ok, err = common.need(g, prefix, { "pushUrl", "appKey", "masterSecret" })
  if not ok then return nil, err end
  if g.pushUrl:find("$appId", 1, true) then
    return nil, prefix .. "pushUrl still holds the placeholder $appId"
  end
  return g
end

-- The Redis key of an app's token (GETUI_TOKEN, OpenIM's, for the default).
function _M.redis_key(app)
  return app and (_M.REDIS_KEY .. ":" .. app) or _M.REDIS_KEY
end

-- The settings are complete (the start and `impulse check`).
function _M.check(app)
  local g, err = settings(app)
  if not g then return nil, err end
  return true
end

-- The auth token: the store, then Redis, then /auth.
local function token(g, opts)
  local name = "getui:" .. (opts.app and (opts.app .. ":") or "") .. g.pushUrl
  local key = _M.redis_key(opts.app)
  local tok, exp = core.token_get(name)
  local now = common.now_ms()
  if tok and exp > now then return tok end
  local shared = common.redis("GET", key)
  if type(shared) == "string" and shared ~= "" then
    local ttl = common.redis("PTTL", key)
    ttl = tonumber(ttl) or 0
    core.token_set(name, shared, now + (ttl > 0 and ttl or 60000))
    return shared
  end
  local ts = tostring(math.floor(now))
  local r = common.one("getui-auth", {
    method = "POST", url = g.pushUrl .. "/auth",
    headers = { "Content-Type: application/json;charset=utf-8" },
    body = cjson.encode { sign = core.sha256_hex(g.appKey .. ts .. g.masterSecret), timestamp = ts,
                          appkey = g.appKey },
  }, opts)
  local j = r.status == 200 and cjson.decode(r.body)
  local data = type(j) == "table" and j.code == 0 and type(j.data) == "table" and j.data
  if not data or type(data.token) ~= "string" then
    common.count("getui-auth", "failed", 1, opts.app)
    return nil, "auth at " .. g.pushUrl .. "/auth: " .. common.describe(r)
  end
  common.count("getui-auth", "sent", 1, opts.app)
  common.redis("SET", key, data.token, "EX", _M.TTL_S)
  core.token_set(name, data.token, now + _M.TTL_S * 1000)
  return data.token
end

local function drop_token(g, tok, app)
  core.token_set("getui:" .. (app and (app .. ":") or "") .. g.pushUrl, nil)
  common.delete_token(_M.redis_key(app), tok)
end

-- The decoded body of a 200 answer (kept on the result).
local function json_of(r)
  if r.json == nil then
    local j = r.status == 200 and cjson.decode(r.body)
    r.json = type(j) == "table" and j or false
  end
  return r.json or nil
end

-- Posts bodies (encoded) to paths; returns the results, refreshing the
-- token once for the ones answered 10001.
local function post(g, opts, items)
  return common.send_with_token("getui", items, opts, {
    token = function() return token(g, opts) end,
    request = function(item, tok)
      return { method = "POST", url = g.pushUrl .. item.path, body = item.body,
               headers = { "token: " .. tok, "Content-Type: application/json;charset=utf-8" } }
    end,
    expired = function(r) local j = json_of(r); return j ~= nil and j.code == _M.EXPIRED end,
    drop = function(tok) drop_token(g, tok, opts.app) end,
  })
end

function _M.send(requests, users, msg, ctx) -- luacheck: no unused args
  local g, err = settings(ctx.app)
  if not g then return nil, err end
  local opts = common.options("getui", ctx.app, ctx)
  local out = common.outcome(ctx.app)

  local function judge(r, req)
    local what = req.path
    json_of(r)
    if r.json and r.json.code == 0 then
      out.sent = out.sent + 1
      common.count("getui", "sent", 1, ctx.app)
      return true
    elseif r.status == 200 and r.json then
      common.fail(out, "getui", req, "rejected", "code " .. tostring(r.json.code) .. " " .. tostring(r.json.msg))
      ctx.log.warn("getui rejected %s: code %s %s", what, tostring(r.json.code), tostring(r.json.msg))
    elseif r.status == 0 or r.status == 429 or r.status >= 500 or r.status == 401 or r.status == 403 then
      common.fail(out, "getui", req, "failed", common.describe(r))
    else
      common.fail(out, "getui", req, "rejected", common.describe(r))
      ctx.log.warn("getui rejected %s: %s", what, common.describe(r))
    end
  end

  local results
  results, err = post(g, opts, requests)
  if not results then return nil, err end
  -- list messages that got a taskid: their alias chunks, each once
  local chunks = {}
  for i, r in ipairs(results) do
    local req = requests[i]
    if judge(r, req) and req.alias_chunks then
      local data = r.json.data
      local taskid = type(data) == "table" and (data.taskid or data.taskID)
      if type(taskid) ~= "string" then
        common.fail(out, "getui", req, "failed", "no taskid in the reply to " .. req.path)
      else
        for _, c in ipairs(req.alias_chunks) do
          chunks[#chunks + 1] = { path = "/push/list/alias", users = c,
                                  body = cjson.encode { audience = { alias = c }, taskid = taskid, is_async = true } }
        end
      end
    end
  end
  if #chunks > 0 then
    results, err = post(g, opts, chunks)
    if not results then return nil, err end
    for i, r in ipairs(results) do judge(r, chunks[i]) end
  end
  return out
end

return _M
