-- The push policy impulse runs: who gets a message, and who gets an
-- offline push. It starts as OpenIM's own decisions (scripts/openim.lua);
-- edit the hooks below to change them. Saving this file reloads it on the
-- running engine.
--
-- route(msg, ctx) -> { userID, ... } | nil, err
--   msg  read-only view of the message (MsgData fields: sendID, recvID,
--        groupID, sessionType, contentType, options, offlinePushInfo...;
--        options default to true when missing)
--   ctx  ctx.operationID, and ctx.log.info/warn/error(fmt, ...)
-- offline(msg, ctx, result) -> { userID, ... }, { title, content }
--   result.reached / result.not_reached: who the online push reached
-- notice(msg) -> { title, content }: the text of an offline notification
-- del_push_token(userID, platformID, ctx) -> true | nil, err (optional):
--   replaces the engine's DEL FCM_TOKEN:<userID>:<platformID> for the
--   push service's DelUserPushToken
-- check() -> true | nil, err: run before the scripts go live (optional)
local openim = require "openim"

local _M = {}

function _M.route(msg, ctx)
  return openim.route(msg, ctx)
end

function _M.offline(msg, ctx, result)
  return openim.offline(msg, ctx, result)
end

-- The title and text of an offline notification, for the providers'
-- payloads (scripts/providers/*.lua).
function _M.notice(msg)
  return openim.notice(msg)
end

return _M
