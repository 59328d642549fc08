-- impulse.explain: `impulse explain`, one record through the whole policy
-- in dry run. Engine-internal (not for scripts): engine/daemon/explain.c
-- reads the record and calls main() in an engine coroutine of a VM without
-- the sandbox; the policy and the payload modules are loaded into the
-- sandbox as in production, and driver.handle runs them as it does for a
-- consumed record.
--
-- Before any other engine module is loaded, main() replaces the functions
-- of impulse.core that act on the world (the online fan-out, the hand-off
-- to toOfflinePush, provider requests, HTTP, produce, dead letters, Redis
-- writes, RPCs that are not reads) with ones that record what would have
-- been done and answer as a success would. Reads (group members, user
-- status, the conversations' offline-push filter, tokens, badges) go to
-- the live services, or to the data of --offline-data FILE:
--
--   { "groups":  { "<groupID>": ["<userID>", ...] },
--     "online":  { "<userID>": [<platformID>, ...] },   -- who is online, on what
--     "muted":   { "<conversationID>": ["<userID>", ...] }, -- offline pushes off
--     "maxSeq":  { "<conversationID>": <seq> },
--     "redis":   { "<key>": "<value>" },   -- FCM_TOKEN:<user>:<platform>, badges...
--     "rpc":     { "<method path>": { reply } | { "error": "...", "code": "..." } } }
--
-- Each decision is recorded with the script file and line that made it:
-- for an engine call, the nearest caller frame in a script file; for a
-- hook's answer, the last script line run before it returned (a line hook
-- follows the scripts, the JIT off). Nothing is sent, nothing committed.
local core = require "impulse.core"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local debug, jit, io, os = debug, jit, io, os
local pairs, ipairs, type, tostring, tonumber, select, next = pairs, ipairs, type, tostring, tonumber, select, next
local pcall, xpcall, setmetatable, unpack = pcall, xpcall, setmetatable, unpack
local concat, sort = table.concat, table.sort
local format = string.format

local _M = {}

local steps = {}       -- the decisions, in order
local roots = {}       -- path prefixes of script files ("scripts/")
local files = {}       -- single script files (--policy)
local last_src, last_line -- the last script line run (the line hook)
local data             -- --offline-data, or nil: live
local real = {}        -- impulse.core as it was

local function is_script(src)
  if type(src) ~= "string" or src:sub(1, 1) ~= "@" then return false end
  local path = src:sub(2)
  if files[path] then return true end
  for _, r in ipairs(roots) do
    if path:sub(1, #r) == r then return true end
  end
  return false
end

-- "a/b/../c" → "a/c"; relative to the working directory when inside it
local cwd_prefix
local function shown(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  path = (path:sub(1, 1) == "/" and "/" or "") .. concat(parts, "/")
  if cwd_prefix and path:sub(1, #cwd_prefix) == cwd_prefix then return path:sub(#cwd_prefix + 1) end
  return path
end

-- The nearest frame in a script file: "file:line", or nil (engine code).
local function caller()
  for level = 3, 80 do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if is_script(info.source) then return shown(info.source:sub(2)) .. ":" .. info.currentline end
  end
end

local function line_hook(_, line)
  local info = debug.getinfo(2, "S")
  if info and is_script(info.source) then last_src, last_line = info.source, line end
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

local function record(step)
  steps[#steps + 1] = step
  return step
end

local function pack(...) return { n = select("#", ...), ... } end

-- Calls a policy hook, recording its answer with the line that gave it.
local function traced(fn, on_return)
  return function(...)
    last_src = nil
    local r = pack(fn(...))
    local at
    if last_src then
      at = shown(last_src:sub(2)) .. ":" .. last_line
    else
      local info = debug.getinfo(fn, "S")
      at = info and shown(info.source:sub(2)) .. ":" .. info.linedefined or nil
    end
    on_return(at, r, ...)
    return unpack(r, 1, r.n)
  end
end

local engine_yield

-- A real engine call: (pending, value, err, code) made plain.
local function await(pending, ...)
  if pending then return engine_yield() end
  return ...
end

-- ---------- reads: live, or the --offline-data file ----------

local function is_read_method(method)
  local name = method:match("/([^/]+)$") or method
  return name:match("^[Gg]et") ~= nil
end

local READ_COMMANDS = {
  GET = true, MGET = true, EXISTS = true, HGET = true, HMGET = true, HGETALL = true, HEXISTS = true,
  SMEMBERS = true, SISMEMBER = true, SCARD = true, LRANGE = true, LLEN = true, ZRANGE = true,
  ZSCORE = true, ZCARD = true, TTL = true, PTTL = true, STRLEN = true, TYPE = true,
}

local function stub_rpc(method, req)
  local d = data.rpc and data.rpc[method]
  if d ~= nil then
    if type(d) == "table" and d.error then return nil, tostring(d.error), tostring(d.code or "UNKNOWN") end
    return copy(d)
  end
  if method == "/openim.user.user/getUserStatus" then
    local list = {}
    for i, u in ipairs(req.userIDs or {}) do
      local p = data.online and data.online[u]
      list[i] = { userID = u, status = p and 1 or 0, platformIDs = p and copy(p) or {} }
    end
    return { statusList = list }
  elseif method == "/openim.conversation.conversation/GetConversationOfflinePushUserIDs" then
    local muted = {}
    for _, u in ipairs(data.muted and data.muted[req.conversationID] or {}) do muted[u] = true end
    local out = {}
    for _, u in ipairs(req.userIDs or {}) do if not muted[u] then out[#out + 1] = u end end
    return { userIDs = out }
  elseif method == "/openim.msg.msg/GetConversationMaxSeq" then
    return { maxSeq = data.maxSeq and data.maxSeq[req.conversationID] or 0 }
  elseif method == "/openim.group.group/getGroupMemberUserIDs" then
    local m = data.groups and data.groups[req.groupID]
    if not m then return nil, "group service: 1004: record not found", "1004" end
    return { userIDs = copy(m) }
  end
  return nil, "no answer for " .. method .. " in the offline data", "UNAVAILABLE"
end

local function read_rpc(method, req, opuser, timeout)
  if data then return stub_rpc(method, req) end
  return await(real.rpc(method, req, opuser, timeout))
end

local function stub_redis(cmd, ...)
  local store = data.redis or {}
  local args = { ... }
  local function val(k)
    local v = store[k]
    if v == nil then return cjson.null end
    return tostring(v)
  end
  if cmd == "GET" then return val(args[1]) end
  if cmd == "MGET" then
    local out = {}
    for i, k in ipairs(args) do out[i] = val(k) end
    return out
  end
  if cmd == "EXISTS" then
    local n = 0
    for _, k in ipairs(args) do if store[k] ~= nil then n = n + 1 end end
    return n
  end
  return nil, "no answer for redis " .. cmd .. " in the offline data", "REDIS_ERROR"
end

local function read_redis(cmd, ...)
  if data then return stub_redis(cmd, ...) end
  return await(real.redis(cmd, ...))
end

-- ---------- the engine calls, recorded ----------

local function source_name()
  return data and "offline data" or "live"
end

local wrapped = {}

function wrapped.group_member_ids(group_id)
  local at = caller()
  local ids, err
  if data then
    local m = data.groups and data.groups[group_id]
    if m then ids = copy(m) else err = "group service: 1004: record not found" end
  else
    ids, err = await(real.group_member_ids(group_id))
  end
  record { kind = "call", call = "group members", at = at, source = source_name(),
           args = { groupID = group_id }, answer = copy(ids), error = err }
  return false, ids, err
end

function wrapped.rpc(method, req, opuser, timeout)
  local at = caller()
  if is_read_method(method) then
    local reply, err, code = read_rpc(method, req, opuser, timeout)
    record { kind = "call", call = "rpc " .. method, at = at, source = source_name(),
             args = copy(req), answer = copy(reply), error = err, code = code }
    return false, reply, err, code
  end
  record { kind = "call", call = "rpc " .. method, at = at, sent = false, args = copy(req),
           answer = {}, note = "not sent (dry run): answered as a success" }
  return false, {}
end

-- Redis: reads as they are; writes not made, answered as they would be.
function wrapped.redis(cmd, ...)
  local at = caller()
  local c = tostring(cmd):upper()
  local args = { ... }
  if READ_COMMANDS[c] then
    local v, err, code = read_redis(c, ...)
    record { kind = "call", call = "redis " .. c, at = at, source = source_name(), args = args,
             answer = copy(v), error = err }
    return false, v, err, code
  end
  local answer, note = "OK", "not sent (dry run)"
  if c == "EVAL" and type(args[3]) == "string" and args[3]:match("^USER_BADGE_UNREAD_COUNT_SUM:") then
    -- the transports' badge script: the counts read, the increment not made
    local n = tonumber(args[2]) or 0
    local keys = {}
    for i = 1, n do keys[i] = args[2 + i] end
    local incr = args[3 + n] == "1"
    local vals = read_redis("MGET", unpack(keys)) or {}
    answer = {}
    for i = 1, n do answer[i] = (tonumber(vals[i]) or 0) + (incr and 1 or 0) end
    note = incr and "badges read; the increment is not made (dry run)" or "badges read"
    args = { "(badge script)", unpack(keys) }
  elseif c == "EVAL" then
    answer, args = 0, { "(script)", unpack(args, 2) }
  elseif c == "INCR" or c == "INCRBY" then
    local v = read_redis("GET", args[1])
    answer = (tonumber(v) or 0) + (c == "INCR" and 1 or tonumber(args[2]) or 0)
  elseif c == "DEL" or c == "UNLINK" or c == "EXPIRE" or c == "SREM" or c == "HDEL" then
    answer = 1
  end
  record { kind = "call", call = "redis " .. c, at = at, sent = false, args = args, answer = answer,
           note = note }
  return false, answer
end

function wrapped.http(req)
  record { kind = "call", call = "http " .. tostring(req.method or "POST"), at = caller(), sent = false,
           args = { url = req.url, body = req.body }, note = "not sent (dry run): answered as unreachable" }
  return false, nil, "not sent (impulse explain is a dry run)", "HTTP_CONNECTION"
end

function wrapped.http_batch(requests, opts)
  record { kind = "call", call = "http_batch", at = caller(), sent = false,
           args = { pool = opts and opts.pool, requests = #requests }, note = "not sent (dry run)" }
  local out = {}
  for i = 1, #requests do out[i] = { status = 200, body = "{}", attempts = 1 } end
  return false, out
end

function wrapped.produce(topic, key, value)
  record { kind = "call", call = "produce", at = caller(), sent = false,
           args = { topic = topic, key = key, bytes = value and #value or 0 }, note = "not produced (dry run)" }
  return false, true
end

function wrapped.offline_dead_letter(users, reason, err)
  record { kind = "dead_letter", at = caller(), sent = false, users = copy(users), reason = reason,
           error = err, note = "not written (dry run)" }
  return false, true
end

function wrapped.provider_skip(n)
  record { kind = "provider", provider = "none", count = n,
           note = "no offline provider: counted, not sent" }
end

function wrapped.metric() end

function wrapped.log(level, _, text)
  record { kind = "log", level = level, text = text, at = caller() }
end

function wrapped.log_fields(level, _, text, fields)
  local at = caller()
  if at then record { kind = "log", level = level, text = text, fields = cjson_safe.decode(fields or ""), at = at } end
end

-- ---------- the online push and the hand-off ----------

local run -- the state of this explanation: policy, providers, fields, opid

-- core.push_online: who of the recipients is online (the user service's
-- getUserStatus, or the offline data); nothing goes to the gateways.
function wrapped.push_online(given)
  -- the recipients once each, in order, as the engine's set keeps them
  local users, seen = {}, {}
  for _, u in ipairs(given) do
    if not seen[u] then
      seen[u] = true
      users[#users + 1] = u
    end
  end
  local reached, not_reached, platforms = {}, {}, {}
  local reply, err = read_rpc("/openim.user.user/getUserStatus", { userIDs = copy(users) })
  local online = {}
  for _, s in ipairs(reply and reply.statusList or {}) do
    if s.status == 1 then online[s.userID] = s.platformIDs or {} end
  end
  for _, u in ipairs(users) do
    if online[u] then
      reached[#reached + 1] = u
      platforms[u] = online[u]
    else
      not_reached[#not_reached + 1] = u
    end
  end
  record { kind = "online", source = source_name(), lookup = "/openim.user.user/getUserStatus",
           users = copy(users), online = platforms, error = err }
  record { kind = "online_push", sent = false, reached = reached, not_reached = not_reached,
           note = "not sent to the gateways (dry run): the online count as reached" }
  return false, { recipients = #users, reached = reached, not_reached = not_reached }
end

-- The msgData a toOfflinePush record would carry: the notice's
-- offlinePushInfo (push/handoff.c msgdata_with_notice).
local function with_notice(fields, notice)
  local f = copy(fields)
  if type(notice) ~= "table" then return f end
  local function str(v) return type(v) == "string" and v or nil end
  if type(notice.offlinePushInfo) == "table" then
    local o = notice.offlinePushInfo
    f.offlinePushInfo = { title = str(o.title) or "", desc = str(o.desc) or "", ex = str(o.ex) or "",
                          iOSPushSound = str(o.iOSPushSound) or "", signalInfo = str(o.signalInfo) or "",
                          iOSBadgeCount = o.iOSBadgeCount and true or false }
  else
    local o = copy(f.offlinePushInfo) or { title = "", desc = "", ex = "", iOSPushSound = "",
                                           signalInfo = "", iOSBadgeCount = false }
    o.title = str(notice.title) or o.title
    o.desc = str(notice.content) or o.desc
    f.offlinePushInfo = o
  end
  return f
end

-- The offline leg of a toOfflinePush record, as the engine's consumer runs it.
local function offline_leg(fields, users)
  local driver = require "impulse.driver"
  local ctx = driver.new_ctx(run.opid)
  local res, err = require("impulse.offline").handle(run.policy, driver.message_view(fields), ctx,
    { users = users, providers = run.providers })
  record { kind = "offline_result", result = copy(res), error = err }
  return res, err
end

-- core.offline_handoff: the record is not produced; the offline leg it
-- would start runs here, on the fields that record would carry.
function wrapped.offline_handoff(users, notice)
  record { kind = "handoff", sent = false, users = copy(users), notice = copy(notice),
           note = "not produced to toOfflinePush (dry run); its offline leg follows" }
  local _, err = offline_leg(with_notice(run.fields, notice), copy(users))
  if err then return false, nil, err end
  return false, true
end

-- ---------- the policy and the payload modules, traced ----------

local function list(users)
  if type(users) ~= "table" then return users end
  return copy(users)
end

local function trace_policy(policy)
  local p = {}
  for k, v in pairs(policy) do p[k] = v end
  if policy.route then
    p.route = traced(policy.route, function(at, r)
      record { kind = "route", at = at, users = list(r[1]), error = r[1] == nil and tostring(r[2]) or nil }
    end)
  end
  if policy.offline then
    p.offline = traced(policy.offline, function(at, r)
      record { kind = "offline", at = at, users = list(r[1]), notice = copy(r[2]) }
    end)
  end
  if policy.notice then
    p.notice = traced(policy.notice, function(at, r)
      record { kind = "notice", at = at, notice = copy(r[1]) }
    end)
  end
  if policy.provider then
    p.provider = traced(policy.provider, function(at, r, user)
      record { kind = "provider_choice", at = at, user = user, provider = r[1] }
    end)
  end
  if policy.tokens then
    p.tokens = traced(policy.tokens, function(at, r, provider, users)
      record { kind = "tokens", at = at, provider = provider, users = list(users), tokens = copy(r[1]) }
    end)
  end
  return p
end

local function trace_payloads(scripts_dir)
  local sandbox = require "impulse.sandbox"
  return setmetatable({}, { __index = function(t, name)
    local ok, mod = pcall(sandbox.load_provider, scripts_dir, name)
    if not ok then return nil end
    local m = {}
    for k, v in pairs(mod) do m[k] = v end
    m.build = traced(mod.build, function(at, r, _, users, _, ctx)
      local reqs = {}
      for i, q in ipairs(type(r[1]) == "table" and r[1] or {}) do
        reqs[i] = type(q) == "table" and q.body ~= nil and { path = q.path, body = copy(q.body), user = q.user }
          or { body = copy(q) }
      end
      record { kind = "payload", at = at, provider = name, app = type(ctx) == "table" and ctx.app or nil,
               users = list(users), requests = reqs,
               error = r[1] == nil and tostring(r[2]) or nil }
    end)
    rawset(t, name, m)
    return m
  end })
end

-- Each transport's send() records instead of sending; its prepare()
-- (tokens, badges) runs, through the recorded engine calls.
local function stub_transports()
  for _, name in ipairs { "apns", "fcm", "getui", "jpush", "log" } do
    local mod_name = "impulse.transport." .. name
    local ok, t = pcall(require, mod_name)
    if ok and type(t) == "table" then
      package.loaded[mod_name] = setmetatable({
        send = function(requests, users, _, ctx)
          record { kind = "send", provider = name, app = ctx and ctx.app, sent = false, requests = #requests,
                   users = list(users), note = "not sent (dry run)" }
          return { failed = {}, dead = 0, sent = #requests }
        end,
      }, { __index = t })
    end
  end
end

-- ---------- output ----------

local function users_text(u)
  if type(u) ~= "table" then return tostring(u) end
  local shown_users = {}
  for i = 1, math.min(#u, 20) do shown_users[i] = tostring(u[i]) end
  local s = concat(shown_users, ", ")
  if #u > 20 then s = s .. format(", ... (%d in all)", #u) end
  return s
end

local function plural(n, one) return format("%d %s%s", n, one, n == 1 and "" or "s") end

-- Lists that may be empty: written [] (cjson writes an empty table {}).
local LISTS = { users = true, reached = true, not_reached = true, requests = true, userIDs = true,
                atUserIDList = true, statusList = true, platformIDs = true, ownerUserID = true }
local EMPTY = "\1[]\1"
local function mark_lists(t, depth)
  if depth > 8 then return end
  for k, v in pairs(t) do
    if type(v) == "table" then
      if LISTS[k] and next(v) == nil then t[k] = EMPTY else mark_lists(v, depth + 1) end
    end
  end
end

-- JSON with "/" left as it is (cjson writes "\/") and empty lists as [].
local function encode(v)
  if type(v) == "table" then
    v = copy(v)
    mark_lists(v, 0)
  end
  local s = cjson_safe.encode(v)
  return s and (s:gsub("\\/", "/"):gsub('"\\u0001%[%]\\u0001"', "[]"))
end

local function compact(v)
  return encode(v) or tostring(v)
end

local function step_text(s)
  local k = s.kind
  if k == "route" then
    if s.error then return "route(): failed: " .. s.error end
    if type(s.users) ~= "table" then return "route(): returned " .. tostring(s.users) end
    return format("route(): %s: %s", plural(#s.users, "recipient"), users_text(s.users))
  elseif k == "call" then
    local t = s.call .. " " .. compact(s.args)
    if s.sent == false then return t .. ": " .. (s.note or "not sent") .. " → " .. compact(s.answer) end
    if s.error then return format("%s → error: %s (%s)", t, s.error, s.source) end
    return format("%s → %s (%s)", t, compact(s.answer), s.source)
  elseif k == "online" then
    local parts = {}
    for _, u in ipairs(s.users) do
      local p = s.online[u]
      parts[#parts + 1] = p and format("%s online (platforms %s)", u, concat(p, ",")) or (u .. " offline")
    end
    local t = format("online lookup (%s, %s): %s", s.lookup:match("[^/]+$"), s.source, concat(parts, "; "))
    if s.error then t = t .. " [error: " .. s.error .. "; counted as offline]" end
    return t
  elseif k == "online_push" then
    return format("online push: not sent to the gateways (dry run): %d reached, %d not reached%s",
      #s.reached, #s.not_reached, #s.not_reached > 0 and (" (" .. users_text(s.not_reached) .. ")") or "")
  elseif k == "offline" then
    if type(s.users) ~= "table" then return "offline(): returned " .. tostring(s.users) end
    local t = format("offline(): %s %s an offline push%s", plural(#s.users, "user"), #s.users == 1 and "gets" or "get",
      #s.users > 0 and (": " .. users_text(s.users)) or "")
    if s.notice ~= nil then t = t .. "; notice " .. compact(s.notice) end
    return t
  elseif k == "handoff" then
    return format("hand-off to toOfflinePush: not produced (dry run): %s", users_text(s.users))
  elseif k == "notice" then
    return "notice(): " .. compact(s.notice)
  elseif k == "provider_choice" then
    if s.provider == nil then
      local d = core.config().offlineProvider or ""
      return format("provider(%s): nil: the configured one (%s)", s.user, d ~= "" and d or "none")
    end
    local c = s.provider
    if type(c) == "table" then c = tostring(c.provider) .. (c.app and ("@" .. tostring(c.app)) or "") end
    return format("provider(%s): %s", s.user, tostring(c))
  elseif k == "tokens" then
    return format("tokens(%s): %s", s.provider, compact(s.tokens))
  elseif k == "provider" then
    return format("provider none: %s not sent (%s)", plural(s.count, "user"), s.note)
  elseif k == "payload" then
    local p = s.provider .. (s.app and ("@" .. s.app) or "")
    if s.error then return format("payload %s: build() failed: %s", p, s.error) end
    local t = format("payload %s for %s: %s", p, users_text(s.users), plural(#s.requests, "request"))
    for i, q in ipairs(s.requests) do
      t = t .. format("\n      [%d]%s %s", i, q.path and (" " .. q.path) or "", compact(q.body))
    end
    return t
  elseif k == "send" then
    return format("%s%s: %s not sent (dry run)", s.provider, s.app and ("@" .. s.app) or "",
      plural(s.requests, "request"))
  elseif k == "dead_letter" then
    return format("dead letter (%s) for %s: not written (dry run): %s", tostring(s.reason),
      users_text(s.users), tostring(s.error))
  elseif k == "offline_result" then
    if s.error then return "offline leg failed: " .. tostring(s.error) end
    local parts = {}
    for name, n in pairs(s.result and s.result.providers or {}) do parts[#parts + 1] = name .. " " .. n end
    sort(parts)
    return format("offline leg: %s by provider: %s", plural(s.result and s.result.offline or 0, "user"),
      #parts > 0 and concat(parts, ", ") or "none")
  elseif k == "log" then
    return format("log %s: %s", s.level, tostring(s.text))
  elseif k == "error" then
    return "error: " .. tostring(s.error)
  end
  return compact(s)
end

local SESSION = { [1] = "single chat", [2] = "group (write)", [3] = "group", [4] = "notification" }

local function summary(fields, args, leg)
  local where = args.topic and format("%s[%d]@%d", args.topic, args.partition, args.offset)
    or (args.input == "-" and "stdin" or args.input)
  local who
  if fields.sessionType == 3 or fields.sessionType == 2 then
    who = format("%s in group %s", fields.sendID, fields.groupID)
  else
    who = format("%s → %s", fields.sendID, fields.recvID)
  end
  return format("%s record from %s: clientMsgID %s, %s, %s, contentType %s", leg, tostring(where),
    tostring(fields.clientMsgID), SESSION[fields.sessionType] or ("sessionType " .. tostring(fields.sessionType)),
    who, tostring(fields.contentType))
end

local function print_text(out)
  local w = io.stdout
  w:write(out.summary, "\n")
  local width = 0
  for _, s in ipairs(out.steps) do
    local at = s.at or "(engine)"
    if #at > width then width = #at end
  end
  for i, s in ipairs(out.steps) do
    w:write(format("%2d  %-" .. width .. "s  %s\n", i, s.at or "(engine)", step_text(s)))
  end
  if out.error then w:write("the policy failed: ", out.error, "\n") end
  w:write("dry run: nothing was sent, nothing committed\n")
end

-- ---------- main ----------

local function fail(code, text)
  io.stderr:write("impulse explain: ", text, "\n")
  io.stderr:flush()
  io.stdout:flush()
  os.exit(code)
end

-- The MsgData fields as the worker hands them to driver.handle
-- (push/worker.c push_fields), from a PushMsgReq table or a MsgData alone.
local function fields_of(rec)
  local req = rec
  if type(rec.msgData) ~= "table" then req = { msgData = rec, conversationID = rec.conversationID } end
  local m = req.msgData
  local f = {
    sendID = "", recvID = "", groupID = "", clientMsgID = "", serverMsgID = "", senderPlatformID = 0,
    senderNickname = "", senderFaceURL = "", sessionType = 0, msgFrom = 0, contentType = 0, content = "",
    seq = 0, sendTime = 0, createTime = 0, status = 0, isRead = false, options = {}, atUserIDList = {},
    attachedInfo = "", ex = "",
  }
  for k, v in pairs(m) do if v ~= cjson.null then f[k] = copy(v) end end
  if type(f.offlinePushInfo) ~= "table" then f.offlinePushInfo = nil end
  if f.status == 1 then f.status = 2 end -- sending → sent, as the engine does
  f.conversationID = type(req.conversationID) == "string" and req.conversationID or ""
  local users = type(req.userIDs) == "table" and req.userIDs or {}
  return f, users
end

function _M.main(args)
  if args.error then fail(2, args.error) end
  local rec = args.record
  if args.json then
    local err
    rec, err = cjson_safe.decode(args.json)
    if type(rec) ~= "table" then fail(2, "the record is not valid JSON: " .. tostring(err)) end
  end
  if type(rec.msgData) ~= "table" and rec.sendID == nil and rec.sessionType == nil then
    fail(2, "the record has no msgData (a PushMsgReq) nor MsgData fields")
  end
  if args.offline_data then
    local f = io.open(args.offline_data)
    if not f then fail(2, "--offline-data: cannot open " .. args.offline_data) end
    local text = f:read("*a")
    f:close()
    local err
    data, err = cjson_safe.decode(text)
    if type(data) ~= "table" then fail(2, "--offline-data " .. args.offline_data .. ": " .. tostring(err)) end
  end

  -- the engine's calls, replaced before any module captures them
  for k, v in pairs(core) do real[k] = v end
  for k, v in pairs(wrapped) do core[k] = v end
  engine_yield = require("impulse.coroutine").engine_yield
  -- offline dedupe: which devices were pushed already is read, nothing claimed
  require("impulse.dedupe").read_only = true

  local scripts_dir = args.scripts_dir or "scripts"
  local pwd = os.getenv("PWD")
  if pwd and pwd ~= "" then cwd_prefix = pwd:gsub("/$", "") .. "/" end
  roots[1] = scripts_dir:gsub("/$", "") .. "/"
  if args.policy then files[args.policy] = true end

  local sandbox = require "impulse.sandbox"
  stub_transports()
  local ok, policy = pcall(sandbox.load_policy, scripts_dir, args.policy)
  if not ok then fail(2, "policy: " .. tostring(policy)) end
  if policy.check then -- as before the scripts go live
    local good, cerr = policy.check()
    if not good then fail(2, "policy: check() failed: " .. tostring(cerr)) end
  end

  local fields, users = fields_of(rec)
  local opid = args.operationID or ("explain-" .. tostring(fields.clientMsgID))
  local leg = (args.topic and args.topic == core.config().toOfflinePushTopic or (not args.topic and #users > 0))
    and "toOfflinePush" or "toPush"
  run = { policy = trace_policy(policy), providers = trace_payloads(scripts_dir), fields = copy(fields),
          opid = opid }

  -- the scripts run interpreted, so the line hook sees every line
  jit.off()
  jit.flush()
  debug.sethook(line_hook, "l")
  local res, err
  local done, raised = xpcall(function()
    if leg == "toOfflinePush" then
      res, err = offline_leg(copy(fields), copy(users))
    else
      res, err = require("impulse.driver").handle(run.policy, copy(fields), opid)
    end
  end, function(e)
    local at = caller()
    return { text = tostring(e), at = at, trace = debug.traceback(tostring(e), 2) }
  end)
  debug.sethook()
  if not done then
    record { kind = "error", at = raised.at, error = raised.text }
    err = raised.text
  end
  local out = {
    summary = summary(fields, args, leg),
    record = { leg = leg, topic = args.topic, partition = args.partition, offset = args.offset,
               operationID = opid, msgData = fields, userIDs = leg == "toOfflinePush" and users or nil },
    steps = steps,
    error = err and tostring(err) or nil,
    dry_run = true,
  }
  if res == nil and err == nil and done then out.error = "the policy returned nothing" end
  if args.json_out then
    local s = encode(out)
    io.stdout:write(s or cjson.encode { error = "explain: the explanation does not encode" }, "\n")
  else
    print_text(out)
  end
  io.stdout:flush()
  os.exit(out.error and 1 or 0)
end

return _M
