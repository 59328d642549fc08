-- The JPush v3 transport: POST <jpush.pushURL> (https://api.jpush.cn/v3/push)
-- with Basic auth (appKey:masterSecret). The payload module sends at most
-- 1000 aliases a request (JPush's limit; OpenIM does not split).
local core = require "impulse.core"
local common = require "impulse.transport.common"

local _M = {}

_M.DEFAULT_URL = "https://api.jpush.cn/v3/push"

local function settings()
  local s = common.settings().jpush
  if type(s.appKey) ~= "string" or s.appKey == "" then return nil, "openim-push jpush.appKey is not set" end
  if type(s.masterSecret) ~= "string" or s.masterSecret == "" then
    return nil, "openim-push jpush.masterSecret is not set"
  end
  local url = type(s.pushURL) == "string" and s.pushURL ~= "" and s.pushURL or _M.DEFAULT_URL
  return url, "Authorization: Basic " .. core.b64url(s.appKey .. ":" .. s.masterSecret, true)
end

-- Sorts results: 200 sent; 401/403 (credentials), 429, 5xx and network
-- errors fail the record (a replay after the fix sends it); other 4xx are
-- rejected for good (counted and logged: a replay would fail the same way).
function _M.classify(provider, results, ctx)
  local out, failed = { sent = 0, rejected = 0, dead = 0 }, nil
  for i, r in ipairs(results) do
    local st = r.status
    if st >= 200 and st < 300 then
      out.sent = out.sent + 1
      common.count(provider, "sent")
    elseif st == 0 or st == 401 or st == 403 or st == 429 or st >= 500 then
      failed = failed or common.describe(r)
      common.count(provider, "failed")
    else
      out.rejected = out.rejected + 1
      common.count(provider, "rejected")
      ctx.log.warn("%s rejected request %d: %s", provider, i, common.describe(r))
    end
  end
  if failed then return nil, failed end
  return out
end

function _M.send(requests, users, msg, ctx) -- luacheck: no unused args
  local url, auth = settings()
  if not url then return nil, auth end
  local reqs = {}
  for i, r in ipairs(requests) do
    reqs[i] = { method = "POST", url = url, body = r.body,
                headers = { auth, "Content-Type: application/json" } }
  end
  return _M.classify("jpush", common.batch("jpush", reqs, common.options("jpush")), ctx)
end

return _M
