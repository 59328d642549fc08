-- impulse.config: the settings a script may read (read-only):
-- imAdminUserID, toPushTopic, toOfflinePushTopic, fullUserCache,
-- rpcTimeoutMs, offlineProvider, and for payload modules `push`: the
-- non-secret provider settings of openim-push:
--   push.iosPush = { pushSound, badgeCount, production }
--   push.jpush   = { pushIntent }
--   push.geTui   = { intent, channelID, channelName }
local cfg = require("impulse.core").config()
local decode = require("cjson.safe").decode

local all = decode(cfg.providersJSON or "{}") or {}
local function pick(section, keys)
  local src, out = type(all[section]) == "table" and all[section] or {}, {}
  for _, k in ipairs(keys) do out[k] = src[k] end
  return out
end

local view = {}
for k, v in pairs(cfg) do
  if k ~= "providersJSON" then view[k] = v end
end
view.push = {
  iosPush = pick("iosPush", { "pushSound", "badgeCount", "production" }),
  jpush = pick("jpush", { "pushIntent" }),
  geTui = pick("geTui", { "intent", "channelID", "channelName" }),
}

return setmetatable({}, {
  __index = view,
  __newindex = function(_, k) error("impulse.config is read-only (attempt to set '" .. tostring(k) .. "')", 2) end,
  __metatable = false,
})
