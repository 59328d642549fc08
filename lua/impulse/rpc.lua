-- impulse.rpc: OpenIM's gRPC services, by method path, with requests and
-- replies as Lua tables (the .proto field names). The call carries the
-- message's operationID (and opUserID, platform, connID); the message
-- waits for the answer, the worker does not.
--
--   local rpc = require "impulse.rpc"
--   local reply, err, code = rpc.call("/openim.msg.msg/GetConversationMaxSeq",
--                                     { conversationID = "sg_" .. groupID })
--
-- On failure: nil, "<service> service: <CODE>: <details>", "<CODE>" (the
-- gRPC status name, or OpenIM's own number such as "1004").
local core = require "impulse.core"
local call = require "impulse.call"

local type, error = type, error

local raw = call.wrap(core.rpc)

local _M = {}

-- call(method, request[, opts]) -> reply | nil, err, code
-- opts.opuserid: the opUserID to send (admin calls); opts.timeout_ms.
function _M.call(method, request, opts)
  if type(method) ~= "string" then error("bad argument #1 to 'call' (method path expected)", 2) end
  if type(request) ~= "table" then error("bad argument #2 to 'call' (table expected)", 2) end
  opts = opts or {}
  return raw(method, request, opts.opuserid, opts.timeout_ms)
end

-- The calls OpenIM's push service makes (openim-wire.md §3).

function _M.conversation_max_seq(conversation_id)
  local r, err, code = _M.call("/openim.msg.msg/GetConversationMaxSeq", { conversationID = conversation_id })
  if not r then return nil, err, code end
  return r.maxSeq or 0 -- proto3 leaves a 0 off the wire
end

function _M.set_conversation_max_seq(conversation_id, owner_user_ids, max_seq)
  local r, err, code = _M.call("/openim.conversation.conversation/SetConversationMaxSeq",
    { conversationID = conversation_id, ownerUserID = owner_user_ids, maxSeq = max_seq })
  if not r then return nil, err, code end
  return true
end

function _M.dismiss_group(group_id, delete_member, admin_user_id)
  local r, err, code = _M.call("/openim.group.group/dismissGroup",
    { groupID = group_id, deleteMember = delete_member and true or false },
    { opuserid = admin_user_id })
  if not r then return nil, err, code end
  return true
end

function _M.offline_push_user_ids(conversation_id, user_ids)
  local r, err, code = _M.call("/openim.conversation.conversation/GetConversationOfflinePushUserIDs",
    { conversationID = conversation_id, userIDs = user_ids })
  if not r then return nil, err, code end
  return r.userIDs
end

-- user_status(userIDs) -> { [userID] = { platformIDs } (online ones only) }
function _M.user_status(user_ids)
  local r, err, code = _M.call("/openim.user.user/getUserStatus", { userIDs = user_ids })
  if not r then return nil, err, code end
  local out = {}
  for _, s in ipairs(r.statusList) do
    if s.status == 1 then out[s.userID] = s.platformIDs end
  end
  return out
end

return _M
