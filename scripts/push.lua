-- The push policy: who gets a message. OpenIM's decisions, in Lua, for an
-- operator to read and change (openim-wire.md §6).
--
-- route(msg, ctx) returns the list of user IDs to push the message to.
--   msg  read-only view of the message (MsgData fields: sendID, recvID,
--        groupID, sessionType, contentType, options, ...; options default
--        to true when missing)
--   ctx  ctx.operationID, and ctx.log.info/warn/error(fmt, ...)
-- Return nil, err to give up on the message (logged and counted).
local group = require "impulse.group"
local const = require "impulse.msg"

local READ_GROUP = const.session.READ_GROUP

local _M = {}

function _M.route(msg, ctx)
  if msg.sessionType == READ_GROUP then
    -- The group way: every member of the group.
    local members, err = group.member_ids(msg.groupID)
    if not members then
      ctx.log.warn("group %s: cannot read members: %s", msg.groupID, err)
      return nil, err
    end
    return members
  end

  -- The user way: the receiver, plus the sender's other devices when the
  -- message asks for sender sync.
  local users = { msg.recvID }
  if msg.options.senderSync and msg.sendID ~= msg.recvID then
    users[#users + 1] = msg.sendID
  end
  return users
end

return _M
