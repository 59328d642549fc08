-- impulse.config: the settings a script may read (read-only):
-- imAdminUserID, toPushTopic, toOfflinePushTopic, fullUserCache,
-- rpcTimeoutMs, offlineProvider, and for payload modules `push`: the
-- non-secret provider settings of openim-push:
--   push.iosPush = { pushSound, badgeCount, production }
--   push.jpush   = { pushIntent }
--   push.geTui   = { intent, channelID, channelName }
-- and apps[<app>] the same for each app of impulse.apps (app(name) gives
-- an app's, or push when name is nil: what a payload module uses for
-- ctx.app).
local cfg = require("impulse.core").config()
local decode = require("cjson.safe").decode

local all = decode(cfg.providersJSON or "{}") or {}
local function pick(section, keys, from)
  from = from or all
  local src, out = type(from[section]) == "table" and from[section] or {}, {}
  for _, k in ipairs(keys) do out[k] = src[k] end
  return out
end

local function push_view(from)
  return {
    iosPush = pick("iosPush", { "pushSound", "badgeCount", "production" }, from),
    jpush = pick("jpush", { "pushIntent" }, from),
    geTui = pick("geTui", { "intent", "channelID", "channelName" }, from),
  }
end

local view = {}
for k, v in pairs(cfg) do
  if k ~= "providersJSON" then view[k] = v end
end
view.push = push_view(all)
-- an app's sections, their names matched regardless of case
view.apps = {}
for name, raw in pairs(type(all.apps) == "table" and all.apps or {}) do
  local from = {}
  if type(raw) == "table" then
    for k, v in pairs(raw) do
      local canon = type(k) == "string" and ({ getui = "geTui", jpush = "jpush", iospush = "iosPush" })[k:lower()]
      if canon then from[canon] = v end
    end
  end
  view.apps[name] = push_view(from)
end
function view.app(name)
  return name ~= nil and view.apps[name] or view.push
end

return setmetatable({}, {
  __index = view,
  __newindex = function(_, k) error("impulse.config is read-only (attempt to set '" .. tostring(k) .. "')", 2) end,
  __metatable = false,
})
