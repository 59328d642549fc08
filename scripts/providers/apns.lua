-- The APNs payload (openim-push.enable: apns, or chosen per user by the
-- policy's provider()): one notification per device token.
--
-- build(msg, users, notice, ctx) -> { request, ... }
--   ctx.tokens[user] = { { token, platformID, key }, ... }  (from
--   APNS_TOKEN:<userID>:<1|9>, or the policy's tokens() hook)
--   ctx.badge[user]  = the badge number (as OpenIM counts it for FCM)
--   a request may also set push_type, expiration, priority, topic
local _M = {}

function _M.payload(msg, badge, notice)
  return {
    aps = {
      alert = { title = notice.title, body = notice.content },
      badge = badge,
      sound = (notice.sound and notice.sound ~= "") and notice.sound or "default",
      ["mutable-content"] = 1,
    },
    ex = notice.ex or "",
    clientMsgID = msg.clientMsgID,
  }
end

function _M.build(msg, users, notice, ctx)
  local requests = {}
  for _, u in ipairs(users) do
    for _, t in ipairs(ctx.tokens and ctx.tokens[u] or {}) do
      requests[#requests + 1] = {
        body = _M.payload(msg, ctx.badge and ctx.badge[u] or 1, notice),
        token = t.token, key = t.key, user = u,
      }
    end
  end
  return requests
end

return _M
