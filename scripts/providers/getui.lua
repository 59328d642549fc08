-- The Getui RestAPI v2 payload (openim-push.enable: getui or geTui), as
-- OpenIM builds it, minus its bugs: one user is a single alias push; more
-- is one list message and then list alias pushes of at most 1000 aliases,
-- each chunk once (OpenIM pushes every chunk twice above 999 users). The
-- request_id comes from the clientMsgID, so Getui recognises a replay.
--
-- build(msg, users, notice, ctx) -> { request, ... }
--   single: { path = "/push/single/alias", body = ... }
--   list:   { path = "/push/list/message", body = ..., alias_chunks = { {...}, ... } }
--           (the transport posts the message, then each chunk with its taskid)
local config = require "impulse.config"

local _M = {}

_M.max_aliases = 1000
_M.list_ttl_ms = 5 * 60 * 1000 -- OpenIM's settings.ttl of a list message

-- 10 to 32 characters of the clientMsgID (Getui's request_id rule).
function _M.request_id(msg, suffix)
  local id = (msg.clientMsgID or ""):gsub("[^%w_%-]", "") .. (suffix or "")
  if #id > 32 then id = id:sub(#id - 31) end
  if #id < 10 then id = id .. string.rep("0", 10 - #id) end
  return id
end

-- geTui: the app's non-secret settings (default: openim-push's)
function _M.notification(notice, channel, geTui)
  local g = geTui or config.push.geTui
  return {
    title = notice.title,
    body = notice.content,
    channelID = channel and g.channelID or "",
    ChannelName = channel and g.channelName or "", -- sic: OpenIM's key
    click_type = "startapp",
  }
end

function _M.push_channel(notice)
  return {
    ios = { type = "notify", aps = { sound = "default", alert = { title = notice.title, body = notice.content } } },
    android = {
      ups = {
        notification = _M.notification(notice, false),
        options = {
          HW = {
            ["/message/android/notification/default_sound"] = false,
            ["/message/android/notification/channel_id"] = "RingRing4",
            ["/message/android/notification/sound"] = "/raw/ring001",
            ["/message/android/notification/importance"] = "NORMAL",
          },
          XM = { ["/extra.channel_id"] = "high_system" },
          VV = { ["/classification"] = 1 },
        },
      },
    },
  }
end

function _M.build(msg, users, notice, ctx) -- luacheck: no unused args
  -- ctx.app: an app of impulse.apps, whose geTui section this is for
  local push_message = { notification = _M.notification(notice, true, config.app(ctx and ctx.app).geTui) }
  if #users == 1 then
    return { {
      path = "/push/single/alias",
      users = users,
      body = {
        request_id = _M.request_id(msg),
        audience = { alias = { users[1] } },
        push_message = push_message,
        push_channel = _M.push_channel(notice),
      },
    } }
  end
  local chunks = {}
  for first = 1, #users, _M.max_aliases do
    local c = {}
    for i = first, math.min(#users, first + _M.max_aliases - 1) do c[#c + 1] = users[i] end
    chunks[#chunks + 1] = c
  end
  return { {
    path = "/push/list/message",
    users = users,
    alias_chunks = chunks,
    body = {
      request_id = _M.request_id(msg, "L"),
      settings = { ttl = _M.list_ttl_ms },
      push_message = push_message,
      push_channel = _M.push_channel(notice),
    },
  } }
end

return _M
