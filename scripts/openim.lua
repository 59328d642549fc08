-- OpenIM's push decisions (openim-wire.md §6), as functions a policy can
-- use as they are, wrap, or replace. scripts/push.lua composes them; the
-- examples in examples/policies change them.
local group = require "impulse.group"
local rpc = require "impulse.rpc"
local json = require "impulse.json"
local metrics = require "impulse.metrics"
local config = require "impulse.config"
local const = require "impulse.msg"
local webhooks = require "webhooks"

local ipairs, type, tostring = ipairs, type, tostring

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

-- Offline pushes for messages older than this are dropped (a call invite
-- two hours late is noise). 0 keeps them all, as OpenIM does.
_M.offline_max_age_ms = 24 * 3600 * 1000

-- The admin user dismissGroup runs as (share.imAdminUserID's first).
_M.admin_user_id = config.imAdminUserID

-- User IDs per GetConversationOfflinePushUserIDs call (OpenIM's servers
-- keep gRPC's 4 MiB limit).
_M.filter_batch = 10000

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

local function group_conversation(group_id)
  return "sg_" .. group_id
end

-- The tips of a group notification: content is {"detail":"<tips JSON>"}.
-- Returns the tips table, or nil (logged) when they do not parse.
function _M.tips(msg, ctx)
  local elem = json.decode(msg.content)
  local detail = type(elem) == "table" and elem.detail
  local tips = type(detail) == "string" and json.decode(detail)
  if type(tips) ~= "table" then
    ctx.log.warn("content type %d: tips do not parse; pushing without the special handling",
      msg.contentType)
    return nil
  end
  return tips
end

-- Members who left (quit or kicked) still get the notification, and their
-- conversation's max seq is set so they do not pull later messages.
local function leaving(msg, ctx, users)
  local cid = group_conversation(msg.groupID)
  local seq, err = rpc.conversation_max_seq(cid)
  if not seq then
    ctx.log.warn("GetConversationMaxSeq %s: %s", cid, err)
  elseif seq > 0 then
    local ok
    ok, err = rpc.set_conversation_max_seq(cid, users, seq)
    if not ok then ctx.log.warn("SetConversationMaxSeq %s: %s", cid, err) end
  end
  return users
end

-- The group way: beforeGroupOnlinePush may name the recipients itself;
-- otherwise the members, plus the special handling of quit, kick and
-- dismiss notifications.
function _M.route_group(msg, ctx)
  if webhooks.enabled("beforeGroupOnlinePush", msg) then
    local body = webhooks.base("beforeGroupOnlinePush", msg, ctx)
    body.seq = msg.seq
    local reply, werr = webhooks.call("beforeGroupOnlinePush", msg, body, ctx)
    if reply == nil then return nil, werr end
    if reply == false then return {} end
    if type(reply.userIDList) == "table" and #reply.userIDList > 0 then
      return reply.userIDList -- and, as in OpenIM, no quit/kick/dismiss handling
    end
  end
  local members, err = group.member_ids(msg.groupID)
  if not members then
    ctx.log.warn("group %s: cannot read members: %s", msg.groupID, err)
    return nil, err
  end
  local ct = msg.contentType
  if ct == C.MEMBER_QUIT or ct == C.MEMBER_KICKED then
    local tips = _M.tips(msg, ctx)
    local gone = {}
    if tips and ct == C.MEMBER_QUIT and type(tips.quitUser) == "table" then
      gone[1] = tips.quitUser.userID
    elseif tips and ct == C.MEMBER_KICKED and type(tips.kickedUserList) == "table" then
      for _, u in ipairs(tips.kickedUserList) do gone[#gone + 1] = u.userID end
    end
    if #gone > 0 then
      leaving(msg, ctx, gone)
      for _, u in ipairs(gone) do members[#members + 1] = u end
    end
  elseif ct == C.GROUP_DISMISSED and msg.options.isNotNotification == false then
    -- dismissed: delete the group with its members; a group already gone
    -- (a replayed record) is success
    local ok, derr, code = group.dismiss(msg.groupID, _M.admin_user_id)
    if not ok and code ~= "1004" then
      ctx.log.warn("dismissGroup %s: %s", msg.groupID, derr)
    end
  end
  return members
end

-- route(msg, ctx) -> users | nil, err: who gets the message.
function _M.route(msg, ctx)
  if msg.sessionType == READ_GROUP then
    return _M.route_group(msg, ctx)
  end
  -- the user way: the receiver, plus the sender's other devices when the
  -- message asks for sender sync
  local users = { msg.recvID }
  if msg.options.senderSync and msg.sendID ~= msg.recvID then
    users[#users + 1] = msg.sendID
  end
  if webhooks.enabled("beforeOnlinePush", msg) then
    local body = webhooks.base("beforeOnlinePush", msg, ctx)
    body.userIDList = users
    local reply, werr = webhooks.call("beforeOnlinePush", msg, body, ctx)
    if reply == nil then return nil, werr end
    if reply == false then return {} end
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

-- Members of a group conversation who have not muted offline pushes
-- (GetConversationOfflinePushUserIDs, in batches).
function _M.filter_group(msg, ctx, users)
  local out = {}
  for first = 1, #users, _M.filter_batch do
    local batch = {}
    for i = first, math.min(first + _M.filter_batch - 1, #users) do batch[#batch + 1] = users[i] end
    local kept, err = rpc.offline_push_user_ids(group_conversation(msg.groupID), batch)
    if not kept then
      -- as OpenIM: no filter answer, no offline push for this batch
      ctx.log.warn("GetConversationOfflinePushUserIDs: %s", tostring(err))
      metrics.inc("offline_push_dropped_total", { reason = "filter_failed" }, #batch)
    else
      for _, u in ipairs(kept) do out[#out + 1] = u end
    end
  end
  return out
end

-- offline(msg, ctx, result) -> users, notice: who gets an offline push
-- (result = { reached = {...}, not_reached = {...} } from the online push).
function _M.offline(msg, ctx, result)
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
  if #users == 0 then return users end
  if _M.offline_max_age_ms > 0 and msg.sendTime > 0
    and ctx.now_ms() - msg.sendTime > _M.offline_max_age_ms then
    ctx.log.info("offline push dropped: the message is older than %d ms", _M.offline_max_age_ms)
    metrics.inc("offline_push_dropped_total", { reason = "too_old" }, #users)
    return {}
  end
  if msg.sessionType == READ_GROUP then
    users = _M.filter_group(msg, ctx, users)
  end
  if #users == 0 then return users end
  local notice = _M.notice(msg)
  if not webhooks.enabled("beforeOfflinePush", msg) then return users, notice end
  -- beforeOfflinePush: the targets and the push info, flattened
  local body = webhooks.base("beforeOfflinePush", msg, ctx)
  body.userIDList = users
  local info = msg.offlinePushInfo
  if info then
    for _, k in ipairs { "title", "desc", "ex", "iOSPushSound", "signalInfo" } do
      if info[k] ~= "" then body[k] = info[k] end
    end
    if info.iOSBadgeCount then body.iOSBadgeCount = true end
  end
  local reply, werr = webhooks.call("beforeOfflinePush", msg, body, ctx)
  if reply == nil then return nil, werr end
  if reply == false then return {} end
  if type(reply.userIDList) == "table" and #reply.userIDList > 0 then users = reply.userIDList end
  if type(reply.offlinePushInfo) == "table" then
    local r = reply.offlinePushInfo
    notice = { title = r.title ~= nil and r.title ~= "" and r.title or notice.title,
               content = r.desc ~= nil and r.desc ~= "" and r.desc or notice.content }
  end
  return users, notice
end

return _M
