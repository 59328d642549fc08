-- Example policy: one IM platform serving several apps (tenants) and
-- regions. The engine asks provider(user, msg, ctx) for every offline
-- user; nil means the configured default (openim-push.enable).
--
-- The region, by user-ID prefix, picks the provider: cn- Getui, jp-
-- JPush, ios- APNs, eu- FCM. A user ID "<app>.<rest>" whose <app> is in
-- impulse.apps belongs to that app: its users are pushed with that app's
-- own accounts ("fcm@shop": FCM with impulse.apps.shop's service account);
-- the others with openim-push's (the default app). Without impulse.apps
-- every user is in the default app. Copy to scripts/push.lua; the config
-- beside it is in README.md, "Several apps".
local openim = require "openim"
local config = require "impulse.config"

local PROVIDERS = {                -- region prefix → provider
  { prefix = "cn-", provider = "getui" },
  { prefix = "jp-", provider = "jpush" },
  { prefix = "ios-", provider = "apns" },
  { prefix = "eu-", provider = "fcm" },
}

local _M = {}

_M.route = openim.route
_M.offline = openim.offline

-- The app of a user ("shop" for "shop.eu-42" when impulse.apps has shop)
-- and the rest of the ID; nil and the whole ID for the default app.
function _M.app_of(user)
  local app, rest = user:match("^([%w_-]+)%.(.+)$")
  if app and config.apps[app] then return app, rest end
  return nil, user
end

function _M.provider(user, msg, ctx) -- luacheck: no unused args
  local app, rest = _M.app_of(user)
  for _, p in ipairs(PROVIDERS) do
    if rest:sub(1, #p.prefix) == p.prefix then
      if app then return p.provider .. "@" .. app end
      return p.provider
    end
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
