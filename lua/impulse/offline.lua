-- impulse.offline: how the engine runs one toOfflinePush record (the users
-- of one message who get a notification) through the providers.
-- Engine-internal (not for scripts); called by impulse.driver.
--
-- For each user the provider is the policy's provider(user, msg, ctx), or
-- when it answers nil (or there is no such hook) the configured one
-- (openim-push.enable). The users of one provider go to its payload module,
-- scripts/providers/<name>.lua: build(msg, users, notice, ctx) returns the
-- requests, which the engine's transport for that provider sends.
local core = require "impulse.core"
local encode = require("cjson.safe").encode

local type = type
local tostring = tostring
local ipairs = ipairs

local _M = {}

-- the configured provider ("" = none), fixed for the VM's life
local default_provider = (core.config().offlineProvider or "")

-- The notice payload modules get: the policy's notice(msg) when it has one
-- (the default: offlinePushInfo's title and desc, which the toPush leg
-- filled in, else a title by content type), else offlinePushInfo as is;
-- plus OpenIM's extras.
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

local function count_users(provider, result, n)
  core.metric("counter", "impulse_offline_push_total", { provider = provider, result = result }, n)
  if result == "failed" then core.metric("counter", "msg_offline_push_failed_total", nil, n) end
end

-- One provider's users, chunk by chunk: the transport's prepare (tokens,
-- badges), the payload module's build, the transport's send.
local function send_provider(name, mod, tr, msg, users, notice, ctx)
  local n = #users
  for first = 1, n, _M.chunk_users do
    local chunk = users
    if n > _M.chunk_users then
      chunk = {}
      for i = first, math.min(n, first + _M.chunk_users - 1) do chunk[#chunk + 1] = users[i] end
    end
    if tr.prepare then
      local ok, err = tr.prepare(msg, chunk, ctx, notice)
      if not ok then
        count_users(name, "failed", #chunk)
        return nil, name .. ": " .. tostring(err)
      end
    end
    local requests, err = mod.build(msg, chunk, notice, ctx)
    if requests == nil then
      return nil, "providers/" .. name .. ".lua: build() failed: " .. tostring(err)
    end
    requests, err = encode_requests(name, requests)
    if not requests then return nil, err end
    local out, serr = tr.send(requests, chunk, msg, ctx)
    if not out then
      count_users(name, "failed", #chunk)
      return nil, name .. ": " .. tostring(serr)
    end
    count_users(name, "sent", #chunk)
  end
  return true
end

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
        if type(c) ~= "string" then
          return nil, "provider() returned a " .. type(c) .. " for " .. u .. ", expected a name"
        end
        p = c
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
  -- the policy's tokens(provider, users, msg, ctx) replaces the transports'
  -- own device-token lookups (FCM_TOKEN:..., APNS_TOKEN:...)
  ctx.tokens_hook = policy.tokens
  for _, name in ipairs(order) do
    local list = by[name]
    if name == "" or name == "none" then
      core.provider_skip(#list)
      res.providers.none = #list
    else
      local mod = call.providers[name]
      if not mod then
        return nil, "no payload module scripts/providers/" .. name .. ".lua for provider " .. name
      end
      local tr = transport(name)
      if not tr then
        count_users(name, "failed", #list)
        return nil, "provider " .. name .. " has no transport in this build"
      end
      local ok, err = send_provider(name, mod, tr, msg, list, notice, ctx)
      if not ok then return nil, err end
      res.providers[name] = #list
    end
  end
  return res
end

return _M
