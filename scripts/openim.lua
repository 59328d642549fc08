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

-- The OpenIM release impulse behaves as (impulse.openim, or detected from
-- the config layout; `impulse check` prints it): its behaviour group.
_M.profile = config.openimProfile or "v3.8.3"

-- Content types that never get an offline push, by release
-- (docs/openim-versions.md). Stock v3.8.3 and v3.8.4-alpha.1 keep 1601
-- signaling off (OpenIM@v3.8.3:internal/push/push_handler.go:210,
-- OpenIM@v3.8.4-alpha.1:internal/push/push_handler.go:211); from patch.3
-- it is the room participants connected/disconnected notices instead
-- (OpenIM@v3.8.3-patch.3:internal/push/push_handler.go:212-215,
-- OpenIM@v3.8.3-patch.5:internal/push/push_handler.go:213-216).
_M.no_offline_push_by_profile = {
  ["v3.8.3"] = { [C.SIGNALING] = true },
  ["v3.8.3-patch.3"] = { [C.ROOM_PARTICIPANTS_CONNECTED] = true, [C.ROOM_PARTICIPANTS_DISCONNECTED] = true },
  ["v3.8.3-patch.5"] = { [C.ROOM_PARTICIPANTS_CONNECTED] = true, [C.ROOM_PARTICIPANTS_DISCONNECTED] = true },
  ["v3.8.4-alpha.1"] = { [C.SIGNALING] = true },
  -- open-im-server main at 7848d7c7 (OpenIM@main:internal/push/push_handler.go:187-189)
  ["main"] = { [C.ROOM_PARTICIPANTS_CONNECTED] = true, [C.ROOM_PARTICIPANTS_DISCONNECTED] = true },
}
_M.no_offline_push = _M.no_offline_push_by_profile[_M.profile] or _M.no_offline_push_by_profile["v3.8.3"]

-- Offline pushes for messages older than this are dropped (an opt-in: a
-- call invite two hours late is noise). 0, the default, keeps them all,
-- as OpenIM does: it only counts them (msg_long_time_push_total, in the
-- engine; OpenIM@v3.8.3:internal/push/push_handler.go:102-108).
_M.offline_max_age_ms = 0

-- The admin user dismissGroup runs as (share.imAdminUserID's first).
_M.admin_user_id = config.imAdminUserID

-- GetConversationOfflinePushUserIDs sends every candidate in one call, as
-- OpenIM does (OpenIM@v3.8.3:internal/push/push_handler.go:369-376); only a
-- list whose request would pass this many bytes is split, where OpenIM's
-- call would fail on gRPC's 4 MiB limit (a deliberate difference).
_M.filter_max_bytes = 3 * 1024 * 1024

-- Placeholder titles by content type, when offlinePushInfo has none
-- (OpenIM@v3.8.3:internal/push/push_handler.go:378-421, the strings of
-- protocol constant.ContentType2PushContent). OpenIM leaves an @-mention
-- (106) without a title; set titles[106] = "[@TEXT]" to give it one.
_M.titles = {
  [C.TEXT] = "[TEXT]",
  [C.PICTURE] = "[PICTURE]",
  [C.VOICE] = "[VOICE]",
  [C.VIDEO] = "[VIDEO]",
  [C.FILE] = "[File]",
  [C.AT_TEXT] = "",
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
-- conversation's max seq is set so they do not pull later messages:
-- GetConversationMaxSeq, then SetConversationMaxSeq with what it returned,
-- 0 included; only a failed Get skips the Set, and an empty user list
-- skips it (OpenIM@v3.8.3:internal/push/push_handler.go:423-430,
-- pkg/rpcli/conversation.go:17-23). Failures are logged; the push goes on.
local function leaving(msg, ctx, users)
  local cid = group_conversation(msg.groupID)
  local seq, err = rpc.conversation_max_seq(cid)
  if not seq then
    ctx.log.warn("GetConversationMaxSeq %s: %s", cid, err)
  elseif #users > 0 then
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
  -- OpenIM@v3.8.3:internal/push/push_handler.go:308-349: tips that do not
  -- parse leave the members as they are and skip the special handling
  local ct = msg.contentType
  if ct == C.MEMBER_QUIT or ct == C.MEMBER_KICKED then
    local tips = _M.tips(msg, ctx)
    local gone
    if tips and ct == C.MEMBER_QUIT then
      -- OpenIM dereferences quitUser unchecked (a panic without it); here
      -- a tips without one is logged and pushed to the members
      if type(tips.quitUser) == "table" and type(tips.quitUser.userID) == "string" then
        gone = { tips.quitUser.userID }
      else
        ctx.log.warn("member quit tips without quitUser.userID: pushing to the members only")
      end
    elseif tips and ct == C.MEMBER_KICKED then
      gone = {}
      if type(tips.kickedUserList) == "table" then
        for _, u in ipairs(tips.kickedUserList) do
          if type(u) == "table" and type(u.userID) == "string" then gone[#gone + 1] = u.userID end
        end
      end
    end
    if gone then
      leaving(msg, ctx, gone)
      for _, u in ipairs(gone) do members[#members + 1] = u end
    end
  elseif ct == C.GROUP_DISMISSED and msg.options.isNotNotification == false
    and _M.tips(msg, ctx) then
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

-- notice(msg) -> { title, content }: what the notification says. It is
-- computed where a toOfflinePush record is consumed, as OpenIM does
-- (OpenIM@v3.8.3:internal/push/offlinepush_handler.go:69-112).
function _M.notice(msg)
  local info = msg.offlinePushInfo
  local title = info and info.title ~= "" and info.title or _M.titles[msg.contentType] or "[NEWMSG]"
  local content = info and info.desc ~= "" and info.desc or title
  return { title = title, content = content }
end

-- Members of a group conversation who have not muted offline pushes
-- (GetConversationOfflinePushUserIDs: one call, split only past
-- filter_max_bytes).
function _M.filter_group(msg, ctx, users)
  local out = {}
  local batch, bytes = {}, 0
  local function flush()
    if #batch == 0 then return end
    local kept, err = rpc.offline_push_user_ids(group_conversation(msg.groupID), batch)
    if not kept then
      -- as OpenIM: no filter answer, no offline push for these users
      ctx.log.warn("GetConversationOfflinePushUserIDs: %s", tostring(err))
      metrics.inc("offline_push_dropped_total", { reason = "filter_failed" }, #batch)
    else
      for _, u in ipairs(kept) do out[#out + 1] = u end
    end
    batch, bytes = {}, 0
  end
  for _, u in ipairs(users) do
    local add = #u + 4 -- tag, length, and room
    if bytes + add > _M.filter_max_bytes then flush() end
    batch[#batch + 1] = u
    bytes = bytes + add
  end
  flush()
  return out
end

-- offline(msg, ctx, result) -> users[, info]: who gets an offline push
-- (result = { reached = {...}, not_reached = {...} } from the online push).
-- The message goes to toOfflinePush as it came (status 1 → 2), as OpenIM
-- writes it; info, when returned, replaces its offlinePushInfo there (as a
-- beforeOfflinePush reply does in OpenIM). A custom offline() may return
-- { title =, content = } to set the notification's text itself.
function _M.offline(msg, ctx, result)
  if not msg.options.offlinePush or _M.no_offline_push[msg.contentType] then
    return {}
  end
  local users
  if msg.sessionType ~= READ_GROUP then
    -- the user way: only when no recipient but the sender was reached,
    -- and then the receiver, who is the sender in a self chat
    -- (OpenIM@v3.8.3:internal/push/push_handler.go:174-184)
    for _, u in ipairs(result.reached) do
      if u ~= msg.sendID then return {} end
    end
    users = { msg.recvID }
  else
    -- the group way: every recipient not reached, never the sender
    -- (OpenIM@v3.8.3:internal/push/onlinepusher.go:116-133)
    users = {}
    for _, u in ipairs(result.not_reached) do
      if u ~= msg.sendID then users[#users + 1] = u end
    end
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
  if not webhooks.enabled("beforeOfflinePush", msg) then return users end
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
    -- the reply's offlinePushInfo replaces the message's whole
    -- (OpenIM@v3.8.3:internal/push/callback.go:63-65)
    local r = reply.offlinePushInfo
    local function str(v) return type(v) == "string" and v or "" end
    return users, { offlinePushInfo = {
      title = str(r.title), desc = str(r.desc), ex = str(r.ex), iOSPushSound = str(r.iOSPushSound),
      iOSBadgeCount = r.iOSBadgeCount == true, signalInfo = str(r.signalInfo) } }
  end
  return users
end

return _M
