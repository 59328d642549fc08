-- impulse.offline: how the engine runs one toOfflinePush record (the users
-- of one message who get a notification) through the providers.
-- Engine-internal (not for scripts); called by impulse.driver.
--
-- For each user the provider is the policy's provider(user, msg, ctx), or
-- when it answers nil (or there is no such hook) the configured one
-- (openim-push.enable). The users of one provider go to its payload module,
-- scripts/providers/<name>.lua: build(msg, users, notice, ctx) returns the
-- requests, which the engine's transport for that provider sends.
--
-- Several apps (impulse.apps): provider() may answer "fcm@shop" (or
-- { provider = "fcm", app = "shop" }): the payload module and transport
-- of fcm, with app shop's account; ctx.app names the app (nil for the
-- default, OpenIM's sections) while that provider's users are prepared,
-- built and sent. Counters of an app carry the label app.
local core = require "impulse.core"
local engine_yield = require("impulse.coroutine").engine_yield
local encode = require("cjson.safe").encode

local type = type
local tostring = tostring
local ipairs = ipairs

local _M = {}

-- the configured provider ("" = none), fixed for the VM's life
local default_provider = (core.config().offlineProvider or "")
-- impulse run --shadow: tokens and badges read, payloads built and
-- counted, nothing sent
local shadow = core.config().shadow == true

-- offline dedupe (impulse.offlineDedupe): a claim is held for two of the
-- provider's attempts plus 5 s (25 s by default): long enough for a send
-- that goes well, short enough that the replay after a crash waits little
-- for the devices the dead process had claimed
local dedupe = require "impulse.dedupe"
local split = require("impulse.transport.common").split
local function lease_ms(key)
  local opts = require("impulse.transport.common").options(split(key))
  return 2 * (opts.timeout_ms or 10000) + 5000
end

-- The notice payload modules get: the policy's notice(msg) (when push.lua
-- has none, the sandbox gives it scripts/openim.lua's: offlinePushInfo's
-- title and desc, else a title by content type), else offlinePushInfo as
-- is; plus OpenIM's extras.
local function notice_of(msg, policy)
  local info = msg.offlinePushInfo
  local notice = policy.notice and policy.notice(msg)
  if type(notice) ~= "table" then
    notice = { title = info and info.title or "", content = info and info.desc or "" }
  end
  if info then
    notice.ex = info.ex
    notice.sound = info.iOSPushSound
    notice.badge = info.iOSBadgeCount
    notice.signalInfo = info.signalInfo
  end
  return notice
end
_M.notice_of = notice_of

-- Requests as the transports take them: { path = string|nil, body = string,
-- and whatever else build() put in them (token, key, user...) }.
local function encode_requests(name, requests)
  if type(requests) ~= "table" then
    return nil, "providers/" .. name .. ".lua: build() returned a " .. type(requests) ..
      ", expected a list of requests"
  end
  local out = {}
  for i, r in ipairs(requests) do
    local path, body = nil, r
    if type(r) == "table" and r.body ~= nil then path, body = r.path, r.body end
    if type(body) == "table" then
      local s, err = encode(body)
      if not s then
        return nil, "providers/" .. name .. ".lua: request " .. i .. " does not encode: " .. tostring(err)
      end
      body = s
    elseif type(body) ~= "string" then
      return nil, "providers/" .. name .. ".lua: request " .. i .. " is a " .. type(body) ..
        ", expected a table or a string"
    end
    if path ~= nil and type(path) ~= "string" then
      return nil, "providers/" .. name .. ".lua: request " .. i .. " has a non-string path"
    end
    local req = { path = path, body = body }
    if type(r) == "table" and r.body ~= nil then
      for k, v in pairs(r) do if k ~= "path" and k ~= "body" then req[k] = v end end
    end
    out[i] = req
  end
  return out
end

-- The transport of a provider: lua/impulse/transport/<name>.lua.
local transports = {}
local function transport(name)
  local t = transports[name]
  if t == nil then
    local ok, mod = pcall(require, "impulse.transport." .. name)
    t = ok and mod or false
    transports[name] = t
  end
  return t or nil
end

-- users per call of build(): bounds the memory and the Redis commands of a
-- huge group's record (a toOfflinePush record holds up to ~30,000 users)
_M.chunk_users = 1000

-- key: a provider, or provider@app (label app)
local function count_users(key, result, n)
  local provider, app = split(key)
  core.metric("counter", "impulse_offline_push_total", { provider = provider, result = result, app = app }, n)
end

-- OpenIM's msg_offline_push_failed_total counts failed Push calls: one
-- per toOfflinePush record whose push failed
-- (OpenIM@v3.8.3:internal/push/offlinepush_handler.go offlinePushMsg)
local function count_failed_record()
  core.metric("counter", "msg_offline_push_failed_total", nil, 1)
end

-- One provider's users, chunk by chunk: the transport's prepare (tokens,
-- badges), the payload module's build, the transport's send. Users whose
-- sends failed for good are added to dead (with the first error in
-- dead.error); a payload script that fails is an error of the record.
local function send_provider(name, mod, tr, msg, users, notice, ctx, dead)
  local n = #users
  local function lost(list, err)
    count_users(name, "failed", #list)
    dead.error = dead.error or (name .. ": " .. tostring(err))
    for _, u in ipairs(list) do dead[#dead + 1] = u end
  end
  for first = 1, n, _M.chunk_users do
    -- each chunk of users has a message's budget of Lua time: a record of
    -- ~30,000 users takes far more in all (tokens, payloads, JSON)
    if core.budget_renew then core.budget_renew() end
    local chunk = users
    if n > _M.chunk_users then
      chunk = {}
      for i = first, math.min(n, first + _M.chunk_users - 1) do chunk[#chunk + 1] = users[i] end
    end
    local ok, err = true, nil
    if tr.prepare then ok, err = tr.prepare(msg, chunk, ctx, notice) end
    local claim
    if ok and dedupe.enabled then
      -- devices this message was already pushed to are left out
      local before = #chunk
      chunk, claim = dedupe.claim(name, msg, chunk, ctx, tr.per_device == true, lease_ms(name))
      count_users(name, "duplicate", before - #chunk)
    end
    if not ok then
      lost(chunk, err)
    elseif #chunk > 0 then
      local requests
      requests, err = mod.build(msg, chunk, notice, ctx)
      if requests == nil then
        dedupe.settle(claim, chunk, ctx)
        return nil, "providers/" .. split(name) .. ".lua: build() failed: " .. tostring(err)
      end
      requests, err = encode_requests(split(name), requests)
      if not requests then
        dedupe.settle(claim, chunk, ctx)
        return nil, err
      end
      if shadow then
        core.metric("counter", "impulse_shadow_provider_requests_total", { provider = split(name), app = ctx.app },
          #requests)
        count_users(name, "shadow", #chunk)
        ctx.log.info("shadow: would send %d %s request(s) for %d user(s)", #requests, name, #chunk)
        if #requests > 0 then ctx.log.debug("shadow: %s request 1: %s", name, requests[1].body) end
      else
        local out, serr = tr.send(requests, chunk, msg, ctx)
        if not out then
          dedupe.settle(claim, chunk, ctx)
          lost(chunk, serr)
        else
          local failed = type(out.failed) == "table" and out.failed or {}
          dedupe.settle(claim, failed, ctx)
          if #failed > 0 then lost(failed, out.error) end
          count_users(name, "sent", #chunk - #failed)
        end
      end
    end
  end
  return true
end

-- check_provider(name, policy) -> true | nil, err: the settings and
-- credentials of every app's accounts (impulse.apps), of the providers
-- the policy lists in `providers`, and of the configured provider, for
-- the start and `impulse check`. An error names the key; those of the
-- configured provider come last and alone unprefixed (they do not stop
-- the start, as they do not stop openim-push).
function _M.check_provider(name, policy)
  local common = require "impulse.transport.common"
  local ok, err = common.validate()
  if not ok then return nil, err end
  -- every account of every app
  local checked = {}
  for _, app in ipairs(common.apps()) do
    local list = common.app_providers(app)
    for _, p in ipairs(list) do
      local tr = transport(p)
      if tr and tr.check then
        ok, err = tr.check(app)
        if not ok then return nil, err end
      end
    end
    checked[#checked + 1] = app .. " (" .. (#list > 0 and table.concat(list, ", ") or "no account") .. ")"
  end
  -- on success, the second value says what was checked
  local note = #checked > 0 and ("apps: " .. table.concat(checked, "; ") .. ": accounts checked") or nil
  -- those the policy's provider() may answer, when it lists them:
  -- policy.providers = { "fcm", "apns", "fcm@shop" }
  local listed = type(policy) == "table" and policy.providers or nil
  if listed ~= nil then
    if type(listed) ~= "table" then return nil, "push.lua: providers must be a list of provider names" end
    for _, n in ipairs(listed) do
      if type(n) ~= "string" then return nil, "push.lua: providers must be a list of provider names" end
      local p, app = split(n)
      if p ~= "" and p ~= "none" then
        local tr = transport(p)
        if not tr then return nil, "push.lua providers: " .. n .. ": no such provider" end
        if app and not common.settings(app) then
          return nil, "push.lua providers: " .. n .. ": no app " .. app .. " in impulse.apps"
        end
        if tr.check then
          ok, err = tr.check(app)
          if not ok then return nil, "push.lua providers: " .. n .. ": " .. tostring(err) end
        end
      end
    end
  end
  -- the configured one
  if name ~= "" and name ~= "none" then
    local tr = transport(name)
    if not tr then return nil, "provider " .. name .. " has no transport in this build" end
    if tr.check then
      ok, err = tr.check()
      if not ok then return nil, err end
    end
  end
  return true, note
end

-- What provider() answered for user u: "fcm", "fcm@shop", or
-- { provider = "fcm", app = "shop" }, as a key ("fcm@shop"); nil, err for
-- anything else or an app impulse.apps does not have.
local function choice_key(c, u)
  local key
  if type(c) == "table" then
    if type(c.provider) ~= "string" or (c.app ~= nil and type(c.app) ~= "string") then
      return nil, "provider() returned a table for " .. u .. " without a string provider (and app)"
    end
    key = (c.app and c.app ~= "") and (c.provider .. "@" .. c.app) or c.provider
  elseif type(c) == "string" then
    key = c
  else
    return nil, "provider() returned a " .. type(c) .. " for " .. u .. ", expected a name"
  end
  local _, app = split(key)
  if app and not require("impulse.transport.common").settings(app) then
    return nil, "provider() returned " .. key .. " for " .. u .. ": no app " .. app .. " in impulse.apps"
  end
  return key
end

-- The message's priority lane for the providers' rate limits: the
-- policy's lane(msg, ctx) when it has one ("direct", "group", "bulk", or
-- 1-3), else by session type: single chats direct, groups group, OpenIM's
-- notification session (4) bulk. Lanes only order what waits: a higher
-- lane's request goes first whenever a provider's rate or concurrency is
-- spent.
local LANES = { direct = 1, group = 2, bulk = 3 }
local BY_SESSION = { [1] = 1, [2] = 2, [3] = 2, [4] = 3 }
local function lane_of(policy, msg, ctx)
  if policy.lane then
    local l = policy.lane(msg, ctx)
    if l ~= nil then
      l = LANES[l] or l
      if l ~= 1 and l ~= 2 and l ~= 3 then
        return nil, "lane() returned " .. tostring(l) .. ", expected direct, group, bulk or 1-3"
      end
      return l
    end
  end
  return BY_SESSION[msg.sessionType] or 2
end
_M.lane_of = lane_of

-- handle(policy, msg, ctx, call) -> result | nil, err
-- call = { users = {...}, providers = { name = module } }
function _M.handle(policy, msg, ctx, call)
  local users = call.users
  local res = { offline = #users, providers = {} }
  if #users == 0 then return res end
  -- users by provider, in the order providers first appear
  local by, order = {}, {}
  local choose = policy.provider
  for _, u in ipairs(users) do
    local p = default_provider
    if choose then
      local c = choose(u, msg, ctx)
      if c ~= nil then
        local err
        p, err = choice_key(c, u)
        if not p then return nil, err end
      end
    end
    local list = by[p]
    if not list then
      list = {}
      by[p] = list
      order[#order + 1] = p
    end
    list[#list + 1] = u
  end
  local notice = notice_of(msg, policy)
  local lane, lerr = lane_of(policy, msg, ctx)
  if not lane then return nil, lerr end
  ctx.lane = lane
  local dead = {}
  -- the policy's tokens(provider, users, msg, ctx) replaces the transports'
  -- own device-token lookups (FCM_TOKEN:..., APNS_TOKEN:...)
  ctx.tokens_hook = policy.tokens
  for _, key in ipairs(order) do
    local list = by[key]
    -- key: the provider, or provider@app (ctx.app for the transports)
    local name, app = split(key)
    if name == "" or name == "none" then
      core.provider_skip(#list)
      res.providers.none = (res.providers.none or 0) + #list
    else
      local mod = call.providers[name]
      if not mod then
        return nil, "no payload module scripts/providers/" .. name .. ".lua for provider " .. name
      end
      local tr = transport(name)
      if not tr then
        count_users(key, "failed", #list)
        count_failed_record()
        return nil, "provider " .. name .. " has no transport in this build"
      end
      ctx.app = app
      local ok, err = send_provider(key, mod, tr, msg, list, notice, ctx, dead)
      ctx.app = nil
      if not ok then return nil, err end
      res.providers[key] = #list
    end
  end
  if #dead > 0 and shadow then
    res.dead_lettered = #dead
    ctx.log.warn("shadow: offline push would fail for %d of %d users: %s", #dead, #users, dead.error)
  elseif #dead > 0 then
    -- only these users go to the dead-letter topic (a replay sends them
    -- alone); the record's offset waits for that write
    res.dead_lettered = #dead
    count_failed_record()
    ctx.log.warn("offline push failed for %d of %d users, dead-lettered: %s", #dead, #users, dead.error)
    local waiting, ok, err = core.offline_dead_letter(dead, "push_failed", dead.error)
    if waiting then ok, err = engine_yield() end
    if not ok then return nil, "dead letter: " .. tostring(err) end
  end
  return res
end

return _M
