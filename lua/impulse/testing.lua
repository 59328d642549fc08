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

local pairs, ipairs, type, error, setmetatable = pairs, ipairs, type, error, setmetatable


_M.calls = {}
_M.logs = {}
_M.clock_ms = 1000000

-- Moves the stubs' clock forward.
function _M.advance(ms)
  _M.clock_ms = _M.clock_ms + ms
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
  function core.push_online(users)
    _M.calls[#_M.calls + 1] = { "push_online", copy(users) }
    return false, { recipients = #users, reached = copy(users), not_reached = {} }
  end
  return core
end

-- Installs the stubs and forgets every engine module loaded before, so the
-- next require sees them. opts.groups = { groupID = {members} | "error" }.
function _M.setup(opts)
  opts = opts or {}
  _M.calls = {}
  _M.logs = {}
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
  local sandbox = require "impulse.sandbox"
  local dir, file = path:match("^(.*)/([^/]+)%.lua$")
  if not dir then dir, file = path, "push" end
  if file == "push" and not scripts_dir then return sandbox.load_policy(dir) end
  local policy = sandbox.load_file(dir .. "/" .. file .. ".lua", scripts_dir or dir, {})
  if type(policy) ~= "table" or type(policy.route) ~= "function" then
    error(path .. ": must return a table with a route function", 2)
  end
  return policy
end

-- A read-only message as the engine hands it to hooks: MsgData fields with
-- defaults (empty strings, zeros); options default to true when missing.
function _M.message(fields)
  local driver = require "impulse.driver"
  local f = {
    sendID = "", recvID = "", groupID = "", clientMsgID = "cmsg-1", serverMsgID = "",
    senderPlatformID = 0, senderNickname = "", senderFaceURL = "", sessionType = 1,
    msgFrom = 100, contentType = 101, content = "", seq = 0, sendTime = 0, createTime = 0,
    status = 2, isRead = false, options = {}, atUserIDList = {}, attachedInfo = "", ex = "",
    conversationID = "",
  }
  for k, v in pairs(fields or {}) do f[k] = v end
  return driver.message_view(f)
end

function _M.ctx(opid)
  return require("impulse.driver").new_ctx(opid or "op-test")
end

return _M
