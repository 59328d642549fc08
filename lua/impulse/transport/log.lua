-- The "log" transport: sends nothing; each request becomes an
-- "offline push" log line (provider, clientMsgID, users, the request), for
-- the demo, tests, and trying a policy before real credentials are set.
local core = require "impulse.core"
local common = require "impulse.transport.common"
local cjson = require "cjson.safe"

local _M = {}

function _M.send(requests, users, msg, ctx)
  for i, r in ipairs(requests) do
    local body = r.body
    local decoded = (body:sub(1, 1) == "{" or body:sub(1, 1) == "[") and cjson.decode(body)
    core.log_fields("info", ctx.operationID, "offline push", cjson.encode {
      provider = "log",
      app = ctx.app,
      clientMsgID = msg.clientMsgID,
      users = #users,
      request = i,
      requests = #requests,
      path = r.path,
      body = decoded or body,
    })
  end
  common.count("log", "sent", #requests, ctx.app)
  local out = common.outcome(ctx.app)
  out.sent = #requests
  return out
end

return _M
