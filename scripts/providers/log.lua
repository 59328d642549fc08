-- The payload of the "log" provider (openim-push.enable: log): nothing is
-- sent; each request becomes an "offline push" log line. Handy for the
-- demo, for tests, and to see what a policy decides before real
-- credentials are set.
--
-- build(msg, users, notice, ctx) -> { request, ... }
--   msg     the message (read-only), as route() sees it
--   users   the user IDs to notify through this provider
--   notice  { title, content, ex, sound, badge, signalInfo }
--   a request is a body (a table, sent as JSON, or a string), or
--   { path = ..., body = ... }
local _M = {}

function _M.build(msg, users, notice, ctx) -- luacheck: no unused args
  return {
    {
      body = {
        clientMsgID = msg.clientMsgID,
        sendID = msg.sendID,
        sessionType = msg.sessionType,
        title = notice.title,
        content = notice.content,
        users = users,
      },
    },
  }
end

return _M
