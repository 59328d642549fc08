-- impulse.transport.common: what the providers' transports share
-- (engine-internal). A transport is lua/impulse/transport/<name>.lua:
--
--   prepare(msg, users, ctx, notice) -> true | nil, err     (optional)
--       before the payload module's build: look up what it needs (device
--       tokens into ctx.tokens, badges into ctx.badge)
--   send(requests, users, msg, ctx) -> outcome | nil, err
--       requests as build() returned them, bodies encoded:
--       { path =, body = string, token =, key =, user =, ... }
--       outcome = { sent = n, rejected = n, dead = n (requests),
--                   failed = { userID, ... }, error = the first failure }:
--       the users of requests that failed for good (rejected, or still
--       failing after the retries) go to the dead-letter topic, each once;
--       nil, err when nothing could be sent (settings, auth): every user
--       of the call is dead-lettered
local core = require "impulse.core"
local engine_yield = require("impulse.coroutine").engine_yield
local cjson = require "cjson.safe"

local _M = {}

local settings

-- The sections of an app in impulse.apps (matched regardless of case, as
-- OpenIM's loader matches keys): OpenIM's four, and `providers` with the
-- keys of impulse.providers.
local APP_SECTIONS = { getui = "geTui", fcm = "fcm", jpush = "jpush", iospush = "iosPush", providers = "impulse" }
-- the keys of OpenIM's sections impulse reads, with their types
local APP_KEYS = {
  geTui = { pushUrl = "string", appKey = "string", masterSecret = "string", channelID = "string",
            channelName = "string", intent = "string" },
  fcm = { filePath = "string" },
  jpush = { appKey = "string", masterSecret = "string", pushURL = "string", pushIntent = "string" },
  iosPush = { production = "boolean", pushSound = "string", badgeCount = "boolean" },
}
-- the app's section holding a provider's credentials: present means the
-- app has an account there (checked at start)
local ACCOUNT_OF = { getui = "geTui", fcm = "fcm", jpush = "jpush" }

-- An app of impulse.apps as the default's settings look: { geTui, fcm,
-- jpush, iosPush, impulse (its providers), name }.
local function app_settings(name, raw)
  local out = { name = name, given = {} }
  if type(raw) == "table" then
    for k, v in pairs(raw) do
      local canon = type(k) == "string" and APP_SECTIONS[k:lower()]
      if canon then
        out[canon] = v
        out.given[canon] = k
      end
    end
  end
  for _, k in ipairs { "geTui", "fcm", "jpush", "iosPush", "impulse" } do
    if type(out[k]) ~= "table" then out[k] = {} end
  end
  return out
end

-- The providers' settings: OpenIM's geTui, fcm, jpush and iosPush, and
-- impulse.providers (see README), decoded once per VM; with an app, that
-- app's of impulse.apps (nil when there is no such app).
function _M.settings(app)
  if not settings then
    settings = cjson.decode(core.config().providersJSON or "{}") or {}
    for _, k in ipairs { "geTui", "fcm", "jpush", "iosPush", "impulse" } do
      if type(settings[k]) ~= "table" then settings[k] = {} end
    end
    local apps = {}
    if type(settings.apps) == "table" then
      for name, raw in pairs(settings.apps) do apps[name] = app_settings(name, raw) end
    end
    settings.apps = apps
  end
  if app == nil then return settings end
  return settings.apps[app]
end

-- The apps of impulse.apps, sorted by name.
function _M.apps()
  local out = {}
  for name in pairs(_M.settings().apps) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- How an error names a key of a section: OpenIM's ("openim-push geTui.")
-- or an app's ("impulse.apps.shop.geTui."); section "impulse" is
-- impulse.providers (an app's `providers`).
function _M.key_prefix(app, section)
  if app == nil then
    return section == "impulse" and "impulse.providers." or ("openim-push " .. section .. ".")
  end
  local s = _M.settings(app)
  local given = s and s.given[section] or (section == "impulse" and "providers" or section)
  return "impulse.apps." .. app .. "." .. given .. "."
end

-- "fcm@shop" -> "fcm", "shop"; "fcm" -> "fcm", nil
function _M.split(key)
  local name, app = key:match("^([^@]*)@(.+)$")
  if name then return name, app end
  return key, nil
end

-- The providers an app has an account for (those it has a section for),
-- for the start and `impulse check`.
function _M.app_providers(app)
  local s = _M.settings(app)
  local out = {}
  if not s then return out end
  for _, p in ipairs { "getui", "fcm", "jpush" } do
    if s.given[ACCOUNT_OF[p]] then out[#out + 1] = p end
  end
  if type(s.impulse.apns) == "table" then out[#out + 1] = "apns" end
  return out
end

local COMMON_KEYS = { caFile = "string", concurrency = "number", timeoutMs = "number", attempts = "number",
                      backoffMs = "number", maxBackoffMs = "number", deadlineMs = "number",
                      ratePerSecond = "number", burst = "number", perDeviceMax = "number",
                      perDeviceIntervalS = "number" }

-- Requests a second a provider takes from the whole process unless
-- impulse.providers.<name>.ratePerSecond says otherwise (0: no limit).
-- FCM documents its quota: 600,000 messages a minute per project by
-- default (firebase.google.com/docs/cloud-messaging/throttling-and-quotas),
-- so 9,800 a second with a burst of 10,000 (598,000 in any minute at
-- most). Getui, JPush and APNs publish no quota that holds for every
-- account (JPush's depends on the plan; APNs has none): no limit unless set.
_M.DEFAULT_RATE = { fcm = { 9800, 10000 } }
local OWN_KEYS = {
  fcm = { sendURL = "string", tokenURL = "string", projectId = "string" },
  apns = { keyFile = "string", keyId = "string", teamId = "string", topic = "string", url = "string",
           pushType = "string", ttlS = "number" },
  getui = {}, jpush = {}, log = {},
}

-- impulse.providers (or an app's providers, named by prefix) as written:
-- unknown keys and wrong types refused, with the key named.
local function validate_providers(all, prefix)
  for k, v in pairs(all) do
    local own = OWN_KEYS[k]
    if own then
      if type(v) ~= "table" then return nil, prefix .. k .. " must be a map" end
      for k2, v2 in pairs(v) do
        local want = own[k2] or COMMON_KEYS[k2]
        if not want then return nil, prefix .. k .. "." .. k2 .. ": unknown key" end
        if type(v2) ~= want then return nil, prefix .. k .. "." .. k2 .. ": expected a " .. want end
      end
    elseif COMMON_KEYS[k] then
      if type(v) ~= COMMON_KEYS[k] then return nil, prefix .. k .. ": expected a " .. COMMON_KEYS[k] end
    else
      return nil, prefix .. tostring(k) .. ": unknown key"
    end
  end
  return true
end

-- One app of impulse.apps as written: a name a provider() answer can
-- carry, known sections, known keys of the right types.
local function validate_app(name, raw)
  local at = "impulse.apps." .. tostring(name)
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
    return nil, at .. ": an app's name is letters, digits, '_', '-' and '.'"
  end
  if type(raw) ~= "table" or raw[1] ~= nil then return nil, at .. " must be a map of provider settings" end
  local seen = {}
  for k, v in pairs(raw) do
    local canon = type(k) == "string" and APP_SECTIONS[k:lower()]
    if not canon then
      return nil, at .. "." .. tostring(k) .. ": unknown key (expected geTui, fcm, jpush, iosPush, providers)"
    end
    if seen[canon] then return nil, at .. "." .. k .. ": given twice (as " .. seen[canon] .. ")" end
    seen[canon] = k
    if type(v) ~= "table" or v[1] ~= nil then return nil, at .. "." .. k .. " must be a map" end
    if canon == "impulse" then
      local ok, err = validate_providers(v, at .. "." .. k .. ".")
      if not ok then return nil, err end
    else
      for k2, v2 in pairs(v) do
        local want = APP_KEYS[canon][k2]
        if not want then return nil, at .. "." .. k .. "." .. tostring(k2) .. ": unknown key" end
        if type(v2) ~= want then return nil, at .. "." .. k .. "." .. k2 .. ": expected a " .. want end
      end
    end
  end
  return true
end

-- impulse.providers and impulse.apps as written: unknown keys and wrong
-- types refused, with the key named (the start and `impulse check`).
function _M.validate()
  local ok, err = validate_providers(_M.settings().impulse, "impulse.providers.")
  if not ok then return nil, err end
  local raw = cjson.decode(core.config().providersJSON or "{}")
  raw = type(raw) == "table" and raw.apps or nil
  if raw ~= nil and raw ~= cjson.null then
    if type(raw) ~= "table" or raw[1] ~= nil then return nil, "impulse.apps must be a map of apps" end
    local names = {}
    for name in pairs(raw) do names[#names + 1] = tostring(name) end
    table.sort(names)
    for _, name in ipairs(names) do
      ok, err = validate_app(name, raw[name])
      if not ok then return nil, err end
    end
  end
  return true
end

-- The credentials keys of impulse.providers.<name>: an app never takes
-- the default's (its own account or none).
local CREDENTIALS = { fcm = { projectId = true }, apns = { keyFile = true, keyId = true, teamId = true, topic = true } }

-- impulse.providers.<name> merged over impulse.providers' common keys;
-- with an app, the app's providers.<name> and providers' common keys
-- first, then impulse.providers' (all but the credentials); with ctx, the
-- message's lane (ctx.lane: 1 direct, 2 groups, 3 bulk). The rate is the
-- pool's (an app's pool is its own, as FCM's quota is per project).
function _M.options(name, app, ctx)
  local all = _M.settings().impulse
  local own = type(all[name]) == "table" and all[name] or {}
  local s = app ~= nil and _M.settings(app) or nil
  if s then
    local mine = type(s.impulse[name]) == "table" and s.impulse[name] or {}
    local merged = {}
    for k, v in pairs(own) do
      if not (CREDENTIALS[name] and CREDENTIALS[name][k]) then merged[k] = v end
    end
    for k in pairs(COMMON_KEYS) do
      if merged[k] == nil and all[k] ~= nil then merged[k] = all[k] end
      if s.impulse[k] ~= nil then merged[k] = s.impulse[k] end
    end
    for k, v in pairs(mine) do merged[k] = v end
    own, all = merged, {}
  end
  local def = _M.DEFAULT_RATE[name] or {}
  local rate = tonumber(own.ratePerSecond or all.ratePerSecond) or def[1] or 0
  local burst = tonumber(own.burst or all.burst) or (own.ratePerSecond or all.ratePerSecond) and rate or def[2]
  return {
    lane = ctx and ctx.lane or nil,
    rate = rate > 0 and rate or nil,
    burst = rate > 0 and burst or nil,
    device_max = tonumber(own.perDeviceMax or all.perDeviceMax),
    device_interval_s = tonumber(own.perDeviceIntervalS or all.perDeviceIntervalS),
    ca_file = own.caFile or all.caFile,
    concurrency = tonumber(own.concurrency or all.concurrency) or 64,
    timeout_ms = tonumber(own.timeoutMs or all.timeoutMs) or 10000,
    attempts = tonumber(own.attempts or all.attempts) or 8,
    backoff_ms = tonumber(own.backoffMs or all.backoffMs) or 500,
    max_backoff_ms = tonumber(own.maxBackoffMs or all.maxBackoffMs) or 30000,
    deadline_ms = tonumber(own.deadlineMs or all.deadlineMs) or 60000,
    app = app,
  }, own
end

-- Sends a batch of requests ({method, url, headers = {"N: v"}, body});
-- returns the results ({status, body, error, attempts, retry_after_s}).
function _M.batch(pool, requests, opts)
  local o = {
    pool = opts.app and (pool .. "@" .. opts.app) or pool, ca_file = opts.ca_file, concurrency = opts.concurrency,
    timeout_ms = opts.timeout_ms, attempts = opts.attempts, backoff_ms = opts.backoff_ms,
    max_backoff_ms = opts.max_backoff_ms, deadline_ms = opts.deadline_ms,
    lane = opts.lane, rate = opts.rate, burst = opts.burst,
    device_max = opts.device_max, device_interval_s = opts.device_interval_s,
  }
  local pending, results = core.http_batch(requests, o)
  if pending then results = engine_yield() end
  return results
end

-- Sends items with an auth token, once more with a new token for those the
-- provider answers "token expired" (FCM 401, APNs 403, Getui 10001):
--   auth.token(round) -> tok | nil, err     (round 2: after such an answer)
--   auth.request(item, tok) -> request as for batch()
--   auth.expired(result) -> true when that answer means "new token"
--   auth.drop(tok)                           (optional, before round 2)
-- Returns the results aligned with items (an item still answered
-- "expired" after the new token keeps that answer; one for which no new
-- token could be had fails with why: status 0, error), or nil, err when no
-- token could be had at all (nothing was sent).
function _M.send_with_token(pool, items, opts, auth)
  local results, todo = {}, {}
  for i = 1, #items do todo[i] = i end
  for round = 1, 2 do
    local tok, err = auth.token(round)
    if not tok and round == 1 then return nil, err end
    if not tok then
      -- the others were answered: theirs stand (a nil here dead-lettered
      -- every user of the call, those already pushed too)
      for _, i in ipairs(todo) do
        results[i] = { status = 0, body = "", error = err, attempts = results[i].attempts }
      end
      break
    end
    local reqs = {}
    for k, i in ipairs(todo) do reqs[k] = auth.request(items[i], tok) end
    local again = {}
    for k, r in ipairs(_M.batch(pool, reqs, opts)) do
      results[todo[k]] = r
      if round == 1 and auth.expired(r) then again[#again + 1] = todo[k] end
    end
    if #again == 0 then break end
    if auth.drop then auth.drop(tok) end
    todo = again
  end
  return results
end

-- One request, for auth endpoints: result as in batch(); outside the
-- provider's rate, lanes and device limits.
function _M.one(pool, request, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.rate, o.burst, o.lane, o.device_max = nil, nil, nil, nil
  return _M.batch(pool, { request }, o)[1]
end

-- A request the engine did not send on purpose: a newer notification to
-- the same device superseded it while it waited for the device's limit
-- (impulse.providers.<name>.perDeviceMax), or the limit held it past the
-- deadline. Counted; its user is not dead-lettered.
function _M.collapsed(provider, r)
  if not r.collapsed then return false end
  _M.count(provider, "collapsed")
  return true
end

-- What a failed result says, for errors and logs (never the request).
function _M.describe(r)
  if r.error then return r.error end
  local body = r.body or ""
  if #body > 200 then body = body:sub(1, 200) .. "..." end
  return "HTTP " .. tostring(r.status) .. " " .. body
end

-- Counts one request's outcome (an app's with label app).
function _M.count(provider, result, n, app)
  core.metric("counter", "impulse_provider_requests_total", { provider = provider, result = result, app = app },
    n or 1)
end

-- A fresh outcome for send() (of app, nil for the default).
function _M.outcome(app)
  return { sent = 0, rejected = 0, dead = 0, failed = {}, seen = {}, app = app }
end

-- Records that req failed for good: counted (result "rejected" or
-- "failed"), its users (req.user, or the list req.users) marked for the
-- dead-letter topic, the first error kept.
function _M.fail(out, provider, req, result, why)
  _M.count(provider, result, 1, out.app)
  -- and by reason: the HTTP status, the provider's code, or the network
  local w = tostring(why)
  local reason = w:match("^HTTP (%d+)") and ("http_" .. w:match("^HTTP (%d+)"))
    or w:match("^code (%-?%d+)") and ("code_" .. w:match("^code (%-?%d+)"))
    or "network"
  core.metric("counter", "impulse_provider_failures_total", { provider = provider, reason = reason, app = out.app }, 1)
  if result == "rejected" then out.rejected = out.rejected + 1 end
  out.error = out.error or why
  local list = req.users or { req.user }
  for _, u in ipairs(list) do
    if u and not out.seen[u] then
      out.seen[u] = true
      out.failed[#out.failed + 1] = u
    end
  end
end

-- t's string settings keys are all set; else nil, "<prefix><key> is not set".
function _M.need(t, prefix, keys)
  for _, k in ipairs(keys) do
    if type(t[k]) ~= "string" or t[k] == "" then return nil, prefix .. k .. " is not set" end
  end
  return true
end

-- The file a setting names, read whole; a clear error naming the key.
function _M.read_file(key, path)
  if type(path) ~= "string" or path == "" then
    return nil, key .. " is not set"
  end
  local f, err = io.open(path, "rb")
  if not f then return nil, key .. ": cannot read " .. path .. " (" .. tostring(err) .. ")" end
  local data = f:read("*a")
  f:close()
  return data
end

-- Wall-clock milliseconds.
function _M.now_ms() return core.wall_ms() end

-- Redis, for tokens and badges (the engine's connection).
function _M.redis(...)
  return require("impulse.redis").call(...)
end

-- Deletes key only if it still holds token (a token the user registered
-- meanwhile survives). Returns the number of keys deleted.
local CAD = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
function _M.delete_token(key, token)
  return _M.redis("EVAL", CAD, 1, key, token)
end

-- Device tokens of users from keys <prefix>:<userID>:<platformID>, one
-- MGET for the whole batch: ctx.tokens[user] = { {token, platformID, key} }.
function _M.lookup_tokens(prefix, users, platforms)
  local keys, owners = {}, {}
  for _, u in ipairs(users) do
    for _, p in ipairs(platforms) do
      keys[#keys + 1] = prefix .. ":" .. u .. ":" .. p
      owners[#keys] = { u, p }
    end
  end
  local out = {}
  if #keys == 0 then return out end
  local vals, err = _M.redis("MGET", unpack(keys))
  if not vals then return nil, "redis MGET " .. prefix .. ": " .. tostring(err) end
  for i, v in ipairs(owners) do
    local tok = vals[i]
    if type(tok) == "string" and tok ~= "" then
      local list = out[v[1]]
      if not list then list = {}; out[v[1]] = list end
      list[#list + 1] = { token = tok, platformID = v[2], key = keys[i] }
    end
  end
  return out
end

-- prepare() of the transports that send per device (fcm, apns): the
-- users' tokens (the policy's tokens() hook, else <prefix>:<userID>:<p>
-- for p in platforms) into ctx.tokens, and the badges of those who have
-- one into ctx.badge.
function _M.prepare_devices(provider, prefix, platforms, msg, users, ctx, notice)
  local tokens, err
  if ctx.tokens_hook then
    tokens, err = ctx.tokens_hook(provider, users, msg, ctx)
  else
    tokens, err = _M.lookup_tokens(prefix, users, platforms)
  end
  if type(tokens) ~= "table" then return nil, err or "tokens() returned no table" end
  ctx.tokens = tokens
  local with = {}
  for _, u in ipairs(users) do if tokens[u] then with[#with + 1] = u end end
  local badge
  badge, err = _M.badges(with, msg.clientMsgID, notice.badge == true)
  if not badge then return nil, err end
  ctx.badge = badge
  return true
end

-- A device token the provider says is dead: counted, and deleted from
-- Redis if it still holds that token.
function _M.dead_token(out, provider, req, ctx)
  out.dead = out.dead + 1
  _M.count(provider, "dead_token", 1, out.app)
  if req.key and req.token then
    local _, err = _M.delete_token(req.key, req.token)
    if err then ctx.log.warn("%s: could not delete the dead token of %s: %s", provider, tostring(req.user), err) end
  end
end

-- Badges as OpenIM computes them (USER_BADGE_UNREAD_COUNT_SUM:<user>:
-- INCR when the message asks for a badge count, else GET; missing or 0
-- gives 1), in one EVAL; the increment is guarded per (clientMsgID, user)
-- for a day, so a replayed record does not count twice.
local BADGE = [[
local out = {}
for i, k in ipairs(KEYS) do
  local v
  if ARGV[1] == '1' and redis.call('SET', 'IMPULSE_BADGE_SEEN:' .. ARGV[2] .. ':' .. k, '1', 'NX', 'EX', 86400) then
    v = redis.call('INCR', k)
  else
    v = tonumber(redis.call('GET', k) or '0')
  end
  out[i] = v
end
return out
]]
function _M.badges(users, client_msg_id, incr)
  local keys = {}
  for i, u in ipairs(users) do keys[i] = "USER_BADGE_UNREAD_COUNT_SUM:" .. u end
  local out = {}
  if #keys == 0 then return out end
  if core.config().shadow then
    -- impulse run --shadow writes nothing: the counts read, and what the
    -- increment would make of them
    local vals, err = _M.redis("MGET", unpack(keys))
    if vals == nil then return nil, "redis badge: " .. tostring(err) end
    for i, u in ipairs(users) do
      local v = (tonumber(vals[i]) or 0) + (incr and 1 or 0)
      out[u] = v > 0 and v or 1
    end
    return out
  end
  local args = { "EVAL", BADGE, #keys }
  for _, k in ipairs(keys) do args[#args + 1] = k end
  args[#args + 1] = incr and "1" or "0"
  args[#args + 1] = client_msg_id or ""
  local vals, err = _M.redis(unpack(args))
  if vals == nil then return nil, "redis badge: " .. tostring(err) end
  for i, u in ipairs(users) do
    local v = tonumber(vals[i]) or 0
    out[u] = v > 0 and v or 1
  end
  return out
end

return _M
