-- The JPush v3 payload (openim-push.enable: jpush), as OpenIM builds it,
-- in requests of at most 1000 aliases (JPush's limit; OpenIM sends every
-- user in one request, which JPush refuses above 1000).
--
-- build(msg, users, notice, ctx) -> { request, ... }
--   notice: title, content, ex, sound, badge (iOSBadgeCount), signalInfo
local config = require "impulse.config"

local _M = {}

_M.max_aliases = 1000

local function extras(msg, notice)
  local e = { ex = notice.ex or "" }
  if msg.clientMsgID ~= "" then e.ClientMsgID = msg.clientMsgID end
  return e
end

-- push: the non-secret settings (default: openim-push's; an app's for
-- ctx.app)
function _M.body(msg, aliases, notice, push)
  push = push or config.push
  local intent = push.jpush.pushIntent
  local ios = {
    alert = { title = notice.title, body = notice.content },
    extras = extras(msg, notice),
    ["mutable-content"] = true,
  }
  if notice.sound and notice.sound ~= "" then ios.sound = notice.sound end
  if notice.badge then ios.badge = "+1" end
  return {
    platform = "all",
    audience = { alias = aliases },
    notification = {
      alert = notice.content,
      android = {
        alert = notice.content,
        title = notice.title,
        intent = (intent and intent ~= "") and { url = intent } or {}, -- {} encodes as an object
        extras = extras(msg, notice),
      },
      ios = ios,
    },
    message = { msg_content = notice.content, title = notice.title, extras = extras(msg, notice) },
    options = { apns_production = push.iosPush.production == true },
  }
end

function _M.build(msg, users, notice, ctx) -- luacheck: no unused args
  local requests = {}
  for first = 1, #users, _M.max_aliases do
    local aliases = {}
    for i = first, math.min(#users, first + _M.max_aliases - 1) do aliases[#aliases + 1] = users[i] end
    requests[#requests + 1] = { body = _M.body(msg, aliases, notice, config.app(ctx and ctx.app)), users = aliases }
  end
  return requests
end

return _M
