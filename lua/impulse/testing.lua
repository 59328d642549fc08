-- impulse.testing: the engine's API as stubs, so policy specs run under
-- plain busted without any server. A spec installs the stubs, loads the
-- policy the way the engine does, and calls its hooks with messages and
-- contexts built like the engine's:
--
--   local testing = require "impulse.testing"
--   testing.setup { groups = { g1 = { "alice", "bob" } } }
--   local policy = testing.load_policy("scripts/push.lua")
--   local users = policy.route(testing.message { sessionType = 3, groupID = "g1" }, testing.ctx())
--
-- testing.calls records every engine call ({ name, args... }); testing.logs
-- every log line ({ level, operationID, text }).
local _M = {}

local pairs, ipairs, type, setmetatable = pairs, ipairs, type, setmetatable
local tostring, tonumber, unpack = tostring, tonumber, unpack


_M.calls = {}
_M.logs = {}
_M.clock_ms = 1000000
_M.wall_ms = 1764000000000 -- 2025-11-24T16:00:00Z: "now" for messages built by testing.message

-- Moves the stubs' clock forward.
function _M.advance(ms)
  _M.clock_ms = _M.clock_ms + ms
  _M.wall_ms = _M.wall_ms + ms
end

local function copy(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = v end
  return out
end

-- The stub of the C module "impulse.core". Each function answers the way
-- the real one does when it completes at once (no yield).
local function make_core(opts)
  local groups = opts.groups or {}
  local core = {}
  core.STOP = setmetatable({}, { __tostring = function() return "script budget exceeded" end })
  function core.adopt() end
  function core.log(level, opid, text)
    _M.logs[#_M.logs + 1] = { level = level, operationID = opid, text = text }
  end
  function core.log_fields(level, opid, text, json)
    _M.logs[#_M.logs + 1] = { level = level, operationID = opid, text = text, fields = json }
  end
  function core.group_member_ids(group_id)
    _M.calls[#_M.calls + 1] = { "group_member_ids", group_id }
    local members = groups[group_id]
    if type(members) == "string" then -- an error to return
      return false, nil, members
    end
    if not members then
      return false, nil, "group service: 1004: record not found"
    end
    return false, copy(members)
  end
  -- time stands still unless a spec moves it with testing.advance(ms)
  function core.now_ms()
    return _M.clock_ms
  end
  function core.wall_ms()
    return _M.wall_ms
  end
  function core.config()
    local off = { enable = false, timeout = 5, failedContinue = true }
    -- opts.openim: the OpenIM behaviour group (as impulse.openim gives it)
    return opts.config or { imAdminUserID = "imAdmin", toPushTopic = "toPush",
                            openim = opts.openim or "v3.8.3", openimProfile = opts.openim or "v3.8.3",
                            toOfflinePushTopic = "toOfflinePush", fullUserCache = true, rpcTimeoutMs = 5000,
                            offlineProvider = opts.offline_provider or "",
                            providersJSON = require("cjson").encode(opts.providers or {}),
                            webhooks = { url = "", beforeOnlinePush = off, beforeGroupOnlinePush = off,
                                         beforeOfflinePush = off } }
  end
  function core.offline_handoff(users, notice)
    _M.handed_off[#_M.handed_off + 1] = { users = copy(users), notice = notice }
    return false, true
  end
  local events = 0
  function core.event()
    events = events + 1
    return events
  end
  function core.wait()
    -- one message at a time here: nothing can be in flight to wait for
    return nil, "no other message runs under the stubs"
  end
  function core.signal()
    return 0
  end
  -- OpenIM RPCs: opts.rpc = { [method] = function(request) -> reply | nil, err, code };
  -- without one, the calls of the default policy answer as a plain
  -- deployment would (nobody muted, max seq 0, dismiss succeeds)
  local defaults = {
    -- nobody muted offline pushes
    ["/openim.conversation.conversation/GetConversationOfflinePushUserIDs"] = function(req)
      return { userIDs = copy(req.userIDs or {}) }
    end,
    ["/openim.msg.msg/GetConversationMaxSeq"] = function() return { maxSeq = 0 } end,
    ["/openim.conversation.conversation/SetConversationMaxSeq"] = function() return {} end,
    ["/openim.group.group/dismissGroup"] = function() return {} end,
  }
  function core.rpc(method, request, opuserid)
    _M.calls[#_M.calls + 1] = { "rpc", method, request, opuserid }
    local h = (opts.rpc or {})[method] or defaults[method]
    if not h then return false, nil, "no stub for " .. method, "UNAVAILABLE" end
    return false, h(request, opuserid)
  end
  -- Redis: a small in-memory store (GET, SET, DEL, INCR, EXISTS), or
  -- opts.redis(cmd, ...) for anything else
  local store = {}
  function core.redis(cmd, ...)
    local args = { ... }
    _M.calls[#_M.calls + 1] = { "redis", cmd, unpack(args) }
    local c = cmd:upper()
    if opts.redis then return false, opts.redis(cmd, ...) end
    if c == "GET" then
      local v = store[args[1]]
      if v == nil then return false, require("cjson").null end
      return false, v
    elseif c == "SET" then store[args[1]] = tostring(args[2]); return false, "OK"
    elseif c == "DEL" then
      local n = store[args[1]] ~= nil and 1 or 0
      store[args[1]] = nil
      return false, n
    elseif c == "INCR" then
      store[args[1]] = tostring((tonumber(store[args[1]]) or 0) + 1)
      return false, tonumber(store[args[1]])
    elseif c == "EXISTS" then return false, store[args[1]] ~= nil and 1 or 0
    end
    return false, nil, "the redis stub has no " .. c, "REDIS_ERROR"
  end
  _M.redis_store = store
  -- HTTP: opts.http(request) -> { status, body } | nil, err, code
  function core.http(request)
    _M.calls[#_M.calls + 1] = { "http", request }
    if not opts.http then return false, nil, "no http stub", "HTTP_CONNECTION" end
    return false, opts.http(request)
  end
  function core.produce(topic, key, value, headers)
    _M.produced[#_M.produced + 1] = { topic = topic, key = key, value = value, headers = headers }
    return false, true
  end
  function core.metric(kind, name, labels, v)
    _M.metrics[#_M.metrics + 1] = { kind = kind, name = name, labels = labels, value = v }
  end
  -- providers' HTTP: testing.batches records each batch ({requests,
  -- opts}); opts.http_batch(request, opts) -> result ({status, body, ...})
  -- answers each request (default: 200 "{}")
  function core.http_batch(requests, o)
    _M.batches[#_M.batches + 1] = { requests = requests, opts = o }
    local results = {}
    for i, r in ipairs(requests) do
      results[i] = opts.http_batch and opts.http_batch(r, o) or { status = 200, body = "{}", attempts = 1 }
      results[i].attempts = results[i].attempts or 1
    end
    return false, results
  end
  -- the users of a toOfflinePush record dead-lettered: testing.dead_letters
  function core.offline_dead_letter(users, reason, err)
    _M.dead_letters[#_M.dead_letters + 1] = { users = copy(users), reason = reason, error = err }
    return false, true
  end
  function core.provider_skip(nusers)
    _M.skipped = _M.skipped + nusers
  end
  -- crypto stand-ins: not real signatures (the engine specs check those
  -- against an independent implementation)
  function core.jwt_sign(alg, _, input) return "sig(" .. alg .. "," .. input .. ")" end
  function core.sha256_hex(s) return "sha256(" .. s .. ")" end
  local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  function core.b64url(s, standard)
    local out = {}
    for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local q = {}
      for k = 3, 0, -1 do q[#q + 1] = B64:sub(math.floor(n / 64 ^ k) % 64 + 1, math.floor(n / 64 ^ k) % 64 + 1) end
      if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
      out[#out + 1] = table.concat(q)
    end
    local r = table.concat(out)
    if standard then return r end
    return (r:gsub("=", ""):gsub("+", "-"):gsub("/", "_"))
  end
  local tokens = {}
  function core.token_get(name)
    local t = tokens[name]
    if t then return t[1], t[2] end
  end
  function core.token_set(name, value, expires)
    tokens[name] = value and { value, expires } or nil
  end
  function core.push_online(users)
    _M.calls[#_M.calls + 1] = { "push_online", copy(users) }
    return false, { recipients = #users, reached = copy(users), not_reached = {} }
  end
  return core
end

-- Installs the stubs and forgets every engine module loaded before, so the
-- next require sees them. opts.groups = { groupID = {members} | "error" },
-- opts.rpc = { [method] = handler }, opts.http = handler, opts.redis =
-- handler (see make_core). testing.calls, .logs, .produced and .metrics
-- record what the policy asked of the engine.
function _M.setup(opts)
  opts = opts or {}
  _M.calls = {}
  _M.logs = {}
  _M.produced = {}
  _M.metrics = {}
  _M.handed_off = {}
  _M.batches = {}
  _M.dead_letters = {}
  _M.skipped = 0
  for name in pairs(package.loaded) do
    if name:match("^impulse%.") and name ~= "impulse.testing" then
      package.loaded[name] = nil
    end
  end
  package.loaded["impulse.core"] = make_core(opts)
end

-- Loads a policy as the engine does, into the sandbox: scripts/push.lua,
-- the push.lua of a folder, or any file. Other scripts it requires come
-- from scripts_dir (default: the file's own folder) — examples kept
-- outside scripts/ pass "scripts" to find openim.lua there.
function _M.load_policy(path, scripts_dir)
  local dir, file = path:match("^(.*)/([^/]+)%.lua$")
  if not dir then dir, file = path, "push" end
  return require("impulse.sandbox").load_policy(scripts_dir or dir, dir .. "/" .. file .. ".lua")
end

-- MsgData fields with defaults (empty strings, zeros), overridden by fields.
local function default_fields(fields)
  local f = {
    sendID = "", recvID = "", groupID = "", clientMsgID = "cmsg-1", serverMsgID = "",
    senderPlatformID = 0, senderNickname = "", senderFaceURL = "", sessionType = 1,
    msgFrom = 100, contentType = 101, content = "", seq = 0, sendTime = _M.wall_ms, createTime = _M.wall_ms,
    status = 2, isRead = false, options = {}, atUserIDList = {}, attachedInfo = "", ex = "",
    conversationID = "",
  }
  for k, v in pairs(fields or {}) do f[k] = v end
  return f
end

-- Loads scripts_dir/providers/<name>.lua (default scripts_dir: "scripts")
-- as the engine does, into the sandbox.
function _M.load_provider(name, scripts_dir)
  return require("impulse.sandbox").load_provider(scripts_dir or "scripts", name)
end

-- Runs a toOfflinePush record through the offline leg as the engine does:
-- fields as for testing.message, users the record's userIDs, providers
-- { name = payload module } (default: every module under scripts/providers
-- that is asked for, loaded on demand). Returns the result or nil, err;
-- testing.batches holds what the transports sent (the "log" transport
-- logs instead: testing.logs).
function _M.offline(policy, fields, users, providers)
  local driver = require "impulse.driver"
  local f = default_fields(fields)
  providers = providers or setmetatable({}, { __index = function(t, name)
    local ok, m = pcall(_M.load_provider, name)
    if ok then rawset(t, name, m) return m end
  end })
  return driver.handle(policy, f, "op-test", { op = "offline", users = users, providers = providers })
end

-- A read-only message as the engine hands it to hooks: MsgData fields with
-- defaults (empty strings, zeros); options default to true when missing.
function _M.message(fields)
  local driver = require "impulse.driver"
  local f = default_fields(fields)
  return driver.message_view(f)
end

function _M.ctx(opid)
  return require("impulse.driver").new_ctx(opid or "op-test")
end

return _M
