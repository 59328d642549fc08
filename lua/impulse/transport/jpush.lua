-- The JPush v3 transport: POST <jpush.pushURL> (https://api.jpush.cn/v3/push)
-- with Basic auth (appKey:masterSecret). The payload module sends at most
-- 1000 aliases a request (JPush's limit; OpenIM does not split). An app of
-- impulse.apps (ctx.app) uses its own jpush section.
local core = require "impulse.core"
local common = require "impulse.transport.common"

local _M = {}

_M.DEFAULT_URL = "https://api.jpush.cn/v3/push"

local function settings(app)
  local all = common.settings(app)
  if not all then return nil, "no app " .. tostring(app) .. " in impulse.apps" end
  local s = all.jpush
  local ok, err = common.need(s, common.key_prefix(app, "jpush"), { "appKey", "masterSecret" })
  if not ok then return nil, err end
  local url = type(s.pushURL) == "string" and s.pushURL ~= "" and s.pushURL or _M.DEFAULT_URL
  return url, "Authorization: Basic " .. core.b64url(s.appKey .. ":" .. s.masterSecret, true)
end

function _M.check(app)
  local url, err = settings(app)
  if not url then return nil, err end
  return true
end

-- Sorts results: 2xx sent; 401/403 (credentials), 429, 5xx and network
-- errors (after the retries) failed; other 4xx rejected (logged). The
-- users of both go to the dead-letter topic.
function _M.classify(provider, requests, results, ctx)
  local out = common.outcome(ctx.app)
  for i, r in ipairs(results) do
    local st = r.status
    if st >= 200 and st < 300 then
      out.sent = out.sent + 1
      common.count(provider, "sent", 1, ctx.app)
    elseif st == 0 or st == 401 or st == 403 or st == 429 or st >= 500 then
      common.fail(out, provider, requests[i], "failed", common.describe(r))
    else
      common.fail(out, provider, requests[i], "rejected", common.describe(r))
      ctx.log.warn("%s rejected request %d: %s", provider, i, common.describe(r))
    end
  end
  return out
end

function _M.send(requests, users, msg, ctx) -- luacheck: no unused args
  local url, auth = settings(ctx.app)
  if not url then return nil, auth end
  local reqs = {}
  for i, r in ipairs(requests) do
    reqs[i] = { method = "POST", url = url, body = r.body,
                headers = { auth, "Content-Type: application/json" } }
  end
  return _M.classify("jpush", requests,
    common.batch("jpush", reqs, common.options("jpush", ctx.app, ctx)), ctx)
end

return _M
