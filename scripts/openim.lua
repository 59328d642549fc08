-- OpenIM's push decisions (openim-wire.md §6), as functions a policy can
-- use as they are, wrap, or replace. scripts/push.lua composes them; the
-- examples in examples/policies change them.
local group = require "impulse.group"
local const = require "impulse.msg"

local ipairs = ipairs

local READ_GROUP = const.session.READ_GROUP
local C = const.content

local _M = {}

-- Content types that never get an offline push (v3.8.3-patch.16 and
-- main: room participants connected/disconnected; the original v3.8.3
-- excluded 1601 signaling instead).
_M.no_offline_push = {
  [C.ROOM_PARTICIPANTS_CONNECTED] = true,
  [C.ROOM_PARTICIPANTS_DISCONNECTED] = true,
}

-- Placeholder titles by content type, when offlinePushInfo has none.
_M.titles = {
  [C.TEXT] = "[TEXT]",
  [C.PICTURE] = "[PICTURE]",
  [C.VOICE] = "[VOICE]",
  [C.VIDEO] = "[VIDEO]",
  [C.FILE] = "[File]",
  [C.AT_TEXT] = "[@TEXT]", -- OpenIM leaves this one empty (a bug)
  [C.SIGNALING] = "[SIGNALINVITE]",
}

-- route(msg, ctx) -> users | nil, err: who gets the message.
function _M.route(msg, ctx)
  if msg.sessionType == READ_GROUP then
    -- the group way: every member of the group
    local members, err = group.member_ids(msg.groupID)
    if not members then
      ctx.log.warn("group %s: cannot read members: %s", msg.groupID, err)
      return nil, err
    end
    return members
  end
  -- the user way: the receiver, plus the sender's other devices when the
  -- message asks for sender sync
  local users = { msg.recvID }
  if msg.options.senderSync and msg.sendID ~= msg.recvID then
    users[#users + 1] = msg.sendID
  end
  return users
end

-- notice(msg) -> { title, content }: what the notification says.
function _M.notice(msg)
  local info = msg.offlinePushInfo
  local title = info and info.title ~= "" and info.title or _M.titles[msg.contentType] or "[NEWMSG]"
  local content = info and info.desc ~= "" and info.desc or title
  return { title = title, content = content }
end

-- offline(msg, ctx, result) -> users, notice: who gets an offline push
-- (result = { reached = {...}, not_reached = {...} } from the online push).
function _M.offline(msg, ctx, result) -- luacheck: ignore ctx
  if not msg.options.offlinePush or _M.no_offline_push[msg.contentType] then
    return {}
  end
  if msg.sessionType ~= READ_GROUP then
    -- the user way: only when no recipient but the sender was reached
    for _, u in ipairs(result.reached) do
      if u ~= msg.sendID then return {} end
    end
  end
  local users = {}
  for _, u in ipairs(result.not_reached) do
    if u ~= msg.sendID then users[#users + 1] = u end -- never the sender
  end
  return users, _M.notice(msg)
end

return _M
