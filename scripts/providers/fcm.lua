-- The FCM HTTP v1 payload (openim-push.enable: fcm): one message per
-- device token, as OpenIM builds it (notification title and body, data
-- "ex", the APNs sound and badge), plus a collapse key from the
-- clientMsgID, so a replayed notification replaces the first instead of
-- showing twice.
--
-- build(msg, users, notice, ctx) -> { request, ... }
--   ctx.tokens[user] = { { token, platformID, key }, ... }  (the transport
--   read them from FCM_TOKEN:<userID>:<1|2|5>)
--   ctx.badge[user]  = OpenIM's badge number
local _M = {}

function _M.message(msg, token, badge, notice)
  local m = {
    token = token,
    notification = { title = notice.title, body = notice.content },
    data = { ex = notice.ex or "" },
    apns = { payload = { aps = { badge = badge } } },
  }
  -- as the Go SDK OpenIM uses: an empty sound is left out
  if notice.sound and notice.sound ~= "" then m.apns.payload.aps.sound = notice.sound end
  if msg.clientMsgID ~= "" then
    m.android = { collapse_key = msg.clientMsgID }
    m.apns.headers = { ["apns-collapse-id"] = msg.clientMsgID:sub(1, 64) }
  end
  return { message = m }
end

function _M.build(msg, users, notice, ctx)
  local requests = {}
  for _, u in ipairs(users) do
    for _, t in ipairs(ctx.tokens and ctx.tokens[u] or {}) do
      requests[#requests + 1] = {
        body = _M.message(msg, t.token, ctx.badge and ctx.badge[u] or 1, notice),
        token = t.token, key = t.key, user = u,
      }
    end
  end
  return requests
end

return _M
