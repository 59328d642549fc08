-- OpenIM's push webhooks (webhooks.yml), byte for byte as openim-push
-- sends them: POST <url>/<command>, headers operationID and Content-Type,
-- a JSON body; a reply { actionCode = 0, nextCode = 1 } stops the push.
-- impulse also honours failedContinue (OpenIM ignores it): a webhook that
-- cannot be reached lets the push go on when it is true.
local http = require "impulse.http"
local json = require "impulse.json"
local config = require "impulse.config"
local metrics = require "impulse.metrics"
local const = require "impulse.msg"

local type, tostring = type, tostring

local _M = {}

_M.COMMANDS = {
  beforeOnlinePush = "callbackBeforeOnlinePushCommand",
  beforeGroupOnlinePush = "callbackBeforeGroupOnlinePushCommand",
  beforeOfflinePush = "callbackBeforeOfflinePushCommand",
}

-- OpenIM's platform names (constant.PlatformID2Name).
local PLATFORMS = { "IOS", "Android", "Windows", "OSX", "Web", "MiniWeb", "Linux", "APad", "IPad", "Admin" }

-- The content OpenIM sends: a notification's detail (content types
-- 1000-5000), else the content as it is.
function _M.content(msg)
  if msg.contentType >= 1000 and msg.contentType <= 5000 then
    local elem = json.decode(msg.content)
    return type(elem) == "table" and type(elem.detail) == "string" and elem.detail or ""
  end
  return msg.content
end

-- The fields every push callback starts with.
function _M.base(name, msg, ctx)
  return {
    callbackCommand = _M.COMMANDS[name],
    operationID = ctx.operationID,
    platformID = msg.senderPlatformID,
    platform = PLATFORMS[msg.senderPlatformID] or "",
    clientMsgID = msg.clientMsgID,
    sendID = msg.sendID,
    groupID = msg.groupID,
    contentType = msg.contentType,
    sessionType = msg.sessionType,
    atUserIDList = #msg.atUserIDList > 0 and msg.atUserIDList or json.null,
    content = _M.content(msg),
  }
end

-- call(name, body, ctx) -> reply | false (the webhook stopped the push) |
-- nil, err (it failed and failedContinue is false). A webhook that is off,
-- or skipped (typing messages), answers {}.
-- Whether the webhook is to be called for this message (enabled, and not
-- a typing message); callers skip building the body when it is not.
function _M.enabled(name, msg)
  local hook = config.webhooks[name]
  return hook and hook.enable and msg.contentType ~= const.content.TYPING or false
end

function _M.call(name, msg, body, ctx)
  local hook = config.webhooks[name]
  if not _M.enabled(name, msg) then
    return {}
  end
  local command = _M.COMMANDS[name]
  if config.shadow then
    -- impulse run --shadow sends nothing: the push goes on as if the
    -- webhook had answered "no change"
    metrics.inc("webhook_calls_total", { command = command, result = "shadow" })
    return {}
  end
  local res, err = http.request {
    method = "POST",
    url = config.webhooks.url .. "/" .. command,
    headers = { operationID = ctx.operationID, ["Content-Type"] = "application/json; charset=utf-8" },
    body = json.encode(body) .. "\n", -- Go's json.Encoder ends with a newline
    timeout_ms = (hook.timeout > 0 and hook.timeout or 15) * 1000,
  }
  local reply = res and json.decode(res.body)
  if type(reply) ~= "table" then
    err = err or ("HTTP " .. tostring(res and res.status) .. ", not a JSON object")
    metrics.inc("webhook_calls_total", { command = command, result = "failed" })
    if hook.failedContinue then
      ctx.log.warn("webhook %s failed (%s); the push goes on (failedContinue)", command, err)
      return {}
    end
    return nil, "webhook " .. command .. " failed: " .. err
  end
  if reply.actionCode == 0 and reply.nextCode == 1 then
    metrics.inc("webhook_calls_total", { command = command, result = "stop" })
    ctx.log.info("webhook %s stopped the push (errCode %s: %s)", command, tostring(reply.errCode),
      tostring(reply.errMsg))
    return false
  end
  metrics.inc("webhook_calls_total", { command = command, result = "ok" })
  return reply
end

return _M
