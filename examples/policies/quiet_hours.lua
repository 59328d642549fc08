-- Example policy: quiet hours. No offline push between 23:00 and 07:00 in
-- the receiver's time zone, except for messages that @-mention them.
-- Copy to scripts/push.lua to use it.
local openim = require "openim"

local floor = math.floor

local QUIET_FROM, QUIET_TO = 23, 7 -- local hours, [from, to)
local DEFAULT_ZONE = 8             -- UTC+8
-- Users' zones, as hours from UTC. A real deployment would look them up
-- (an engine call in a cache) instead.
local ZONES = {
  alice = 1,
  bob = -5,
}

local _M = {}

_M.route = openim.route

-- The local hour at the message's send time for user.
local function local_hour(msg, user)
  local zone = ZONES[user] or DEFAULT_ZONE
  return floor((msg.sendTime / 1000 + zone * 3600) / 3600) % 24
end
_M.local_hour = local_hour

local function quiet(hour)
  if QUIET_FROM > QUIET_TO then return hour >= QUIET_FROM or hour < QUIET_TO end
  return hour >= QUIET_FROM and hour < QUIET_TO
end

function _M.offline(msg, ctx, result)
  local users, notice = openim.offline(msg, ctx, result)
  local mentioned = {}
  for _, u in ipairs(msg.atUserIDList) do mentioned[u] = true end
  local out = {}
  for _, u in ipairs(users) do
    if mentioned[u] or not quiet(local_hour(msg, u)) then
      out[#out + 1] = u
    else
      ctx.log.info("quiet hours: no offline push to %s", u)
    end
  end
  return out, notice
end

return _M
