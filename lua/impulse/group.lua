-- impulse.group: OpenIM's group service, as straight-line calls that yield
-- the message's coroutine while the RPC is in flight.
local core = require "impulse.core"
local engine_yield = require("impulse.coroutine").engine_yield

local type = type

local _M = {}

-- member_ids(groupID) -> { userID, ... } | nil, err
-- Calls /openim.group.group/getGroupMemberUserIDs with the message's
-- operationID. An unknown group is an error (OpenIM returns 1004).
function _M.member_ids(group_id)
  if type(group_id) ~= "string" or group_id == "" then
    error("bad argument #1 to 'member_ids' (non-empty string expected, got " .. type(group_id) .. ")", 2)
  end
  local pending, ids, err = core.group_member_ids(group_id)
  if pending then
    return engine_yield()
  end
  return ids, err
end

-- dismiss(groupID[, adminUserID]) -> true | nil, err, code: dismissGroup
-- with deleteMember, as OpenIM's push service does for 1511 notifications.
function _M.dismiss(group_id, admin_user_id)
  return require("impulse.rpc").dismiss_group(group_id, true, admin_user_id)
end

return _M
