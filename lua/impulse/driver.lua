-- impulse.driver: how the engine runs one message through the policy.
-- Engine-internal (not for scripts). The worker calls driver.handle in a
-- fresh coroutine per message: it builds the read-only message view and the
-- context, asks the policy for recipients, then hands them to the engine's
-- online push, which yields until every gateway has answered.
local core = require "impulse.core"
local offline_leg = require "impulse.offline"
local engine_yield = require("impulse.coroutine").engine_yield
local encode = require("cjson.safe").encode
local unpack = unpack

local error = error
local type = type
local tostring = tostring
local setmetatable = setmetatable
local select = select
local string_format = string.format

local _M = {}

local function readonly_error(_, k)
  error("the message is read-only (attempt to set '" .. tostring(k) .. "')", 2)
end

-- Options default to true when the map or the key is missing (OpenIM).
local function options_view(raw)
  return setmetatable({}, {
    __index = function(_, k)
      local v = raw[k]
      if v == nil then return true end
      return v
    end,
    __newindex = readonly_error,
    __metatable = false,
  })
end
_M.options_view = options_view

-- A read-only view over the decoded fields (a fresh table per message).
local function message_view(fields)
  fields.options = options_view(fields.options or {})
  return setmetatable({}, {
    __index = fields,
    __newindex = readonly_error,
    __metatable = false,
  })
end
_M.message_view = message_view

local function logger(opid)
  local function at(level)
    return function(fmt, ...)
      local text = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
      core.log(level, opid, text)
    end
  end
  return { debug = at("debug"), info = at("info"), warn = at("warn"), error = at("error") }
end

local wall_ms = core.wall_ms

-- ctx.log is made on first use: most messages never log.
local ctx_mt = {
  __index = function(ctx, k)
    if k == "log" then
      local l = logger(ctx.operationID)
      rawset(ctx, "log", l)
      return l
    end
  end,
}

local function new_ctx(opid)
  return setmetatable({ operationID = opid, now_ms = wall_ms }, ctx_mt)
end
_M.new_ctx = new_ctx

-- impulse run --shadow: the offline leg runs in this coroutine instead of
-- a toOfflinePush hand-off (which the live engine would consume)
local shadow = core.config().shadow == true

local function info_string(v)
  return type(v) == "string" and v or ""
end

-- The toOfflinePush record's msgData as the hand-off would write it
-- (push/handoff.c msgdata_with_notice): notice.offlinePushInfo replaces
-- offlinePushInfo whole, a notice {title, content} sets its title and desc.
local function offline_fields(fields, notice)
  local of = setmetatable({}, { __index = fields })
  if type(notice) ~= "table" then return of end
  local given = notice.offlinePushInfo
  if type(given) == "table" then
    of.offlinePushInfo = {
      title = info_string(given.title), desc = info_string(given.desc), ex = info_string(given.ex),
      iOSPushSound = info_string(given.iOSPushSound), iOSBadgeCount = given.iOSBadgeCount == true,
      signalInfo = info_string(given.signalInfo),
    }
  else
    local info = {}
    for k, v in pairs(type(fields.offlinePushInfo) == "table" and fields.offlinePushInfo or {}) do info[k] = v end
    if type(notice.title) == "string" then info.title = notice.title end
    if type(notice.content) == "string" then info.desc = notice.content end
    of.offlinePushInfo = info
  end
  return of
end

-- the route decision's log line costs a JSON encode: only when it is shown
local level = core.log_level and core.log_level() or "info"
local info_on = level == "debug" or level == "info"

-- Checks what route() returned: a list of non-empty strings.
local function check_users(users)
  if type(users) ~= "table" then
    return nil, "route() returned a " .. type(users) .. ", expected a list of user IDs"
  end
  for i = 1, #users do
    local u = users[i]
    if type(u) ~= "string" or u == "" then
      return nil, string_format("route() returned a bad user ID at [%d] (%s)", i, type(u))
    end
  end
  return users
end

-- DelUserPushToken: the policy's del_push_token(userID, platformID, ctx)
-- when it has one, else OpenIM's DEL FCM_TOKEN:<userID>:<platformID>.
local function del_push_token(policy, call, ctx)
  local hook = policy.del_push_token
  if hook then
    local ok, err = hook(call.userID, call.platformID, ctx)
    if not ok then return nil, "del_push_token() failed: " .. tostring(err) end
    return true
  end
  local res, err = require("impulse.redis").call("DEL",
    "FCM_TOKEN:" .. call.userID .. ":" .. call.platformID)
  if res == nil then return nil, "redis: " .. tostring(err) end
  return true
end

-- handle(policy, fields, opid[, call]) -> result | nil, err
-- call is nil for a toPush record; for a push-service call it is
-- {op = "push", users = {...}} (PushMsg: the users are given, route() is
-- skipped), {op = "del_push_token", userID =, platformID =}, or, for a
-- toOfflinePush record, {op = "offline", users =, providers =}.
-- Errors raised by the policy propagate (the worker logs the traceback);
-- a route() that returns nil, err is reported as err.
function _M.handle(policy, fields, opid, call)
  local ctx = new_ctx(opid)
  if call and call.op == "del_push_token" then
    return del_push_token(policy, call, ctx)
  end
  if call and call.op == "offline" then -- a toOfflinePush record
    return offline_leg.handle(policy, message_view(fields), ctx, call)
  end
  local clientMsgID = fields.clientMsgID
  local msg = message_view(fields)
  local users, err
  if call then
    users = call.users
  else
    users, err = policy.route(msg, ctx)
    if users == nil then
      return nil, "route() failed: " .. tostring(err)
    end
  end
  users, err = check_users(users)
  if not users then
    return nil, err
  end
  local pending, res = core.push_online(users)
  if pending then
    res = engine_yield()
  end
  local offline = policy.offline
  if offline and res then
    local to, notice = offline(msg, ctx, res)
    if to ~= nil then
      local checked
      checked, err = check_users(to)
      if not checked then
        return nil, (err:gsub("^route%(%)", "offline()"))
      end
      res.offline, res.notice = to, notice
      if #to > 0 then
        if info_on then
          -- the title the consumer will compute, unless the policy set one
          local title
          if type(notice) == "table" then
            title = notice.title or (type(notice.offlinePushInfo) == "table" and notice.offlinePushInfo.title)
          end
          if title == nil and policy.notice then
            local ok, n = pcall(policy.notice, msg)
            title = ok and type(n) == "table" and n.title or nil
          end
          core.log_fields("info", ctx.operationID, "offline push decided", encode {
            clientMsgID = clientMsgID,
            users = #to > 20 and { unpack(to, 1, 20) } or to,
            count = #to,
            title = title,
          })
        end
        if shadow then
          local ores, oerr = offline_leg.handle(policy, message_view(offline_fields(fields, notice)), ctx,
            { op = "offline", users = to, providers = core.providers() })
          if not ores then return nil, "offline (shadow): " .. tostring(oerr) end
          res.shadow_offline = ores
          return res
        end
        -- to toOfflinePush; the message ends (and its offset is stored)
        -- only once the records are acknowledged
        local waiting, ok, herr = core.offline_handoff(to, type(notice) == "table" and notice or nil)
        if waiting then ok, herr = engine_yield() end
        if not ok then return nil, herr end
      end
    end
  end
  return res
end

return _M
