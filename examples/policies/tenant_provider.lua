-- Example policy: choose the offline provider per tenant, by user-ID
-- prefix (one IM platform serving several apps or regions). The engine
-- asks provider(user, msg, ctx) for every offline user; nil means the
-- configured default (openim-push.enable). Copy to scripts/push.lua.
local openim = require "openim"

local PROVIDERS = {                -- prefix → provider
  { prefix = "cn-", provider = "getui" },
  { prefix = "jp-", provider = "jpush" },
  { prefix = "ios-", provider = "apns" },
  { prefix = "eu-", provider = "fcm" },
}

local _M = {}

_M.route = openim.route
_M.offline = openim.offline

function _M.provider(user, msg, ctx) -- luacheck: no unused args
  for _, p in ipairs(PROVIDERS) do
    if user:sub(1, #p.prefix) == p.prefix then return p.provider end
  end
  return nil
end

function _M.check()
  local known = { getui = true, fcm = true, jpush = true, apns = true, log = true }
  for _, p in ipairs(PROVIDERS) do
    if not known[p.provider] then return nil, "unknown provider " .. p.provider end
  end
  return true
end

return _M
