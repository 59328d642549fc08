-- Example policy: VIP users always get an offline push, even when the
-- online push reached them and even for messages OpenIM would not push
-- offline (except from themselves). Copy to scripts/push.lua to use it.
local openim = require "openim"

-- Your VIPs. A real deployment would read them with an engine call in a
-- cache (impulse.cache), or generate this file.
local VIP = {
  ceo = true,
  ["vip-0001"] = true,
}

local _M = {}

_M.route = openim.route

function _M.offline(msg, ctx, result)
  local users, notice = openim.offline(msg, ctx, result)
  local seen = {}
  for _, u in ipairs(users) do seen[u] = true end
  for _, list in ipairs { result.reached, result.not_reached } do
    for _, u in ipairs(list) do
      if VIP[u] and not seen[u] and u ~= msg.sendID then
        users[#users + 1] = u
        seen[u] = true
      end
    end
  end
  -- notice is nil unless a beforeOfflinePush reply replaced the push info:
  -- the text is computed where toOfflinePush is consumed (openim.notice)
  return users, notice
end

function _M.check()
  if next(VIP) == nil then return nil, "the VIP list is empty" end
  return true
end

return _M
