-- impulse.sandbox: the environment operator scripts run in, and their
-- loader. Built from an allow-list: no io, no os.execute, no debug, no
-- load/loadstring/dofile, no package.loadlib, no ffi. Writing a global
-- raises. `require` gives the engine's modules (impulse.*, cjson) and
-- other scripts from the scripts folder, loaded into the sandbox too.
--
-- pcall and xpcall are wrapped so a script cannot catch the engine's stop
-- (budget exceeded): the stop is raised again past every script pcall, as
-- it is past a script's coroutine.resume (impulse.coroutine). Strings'
-- shared metatable is the engine's (vm.c gives it a read-only view of the
-- string library without dump, and hides it from getmetatable).
local core = require "impulse.core"
local co = require "impulse.coroutine"

local pairs, type, error, tostring, setmetatable, rawget =
  pairs, type, error, tostring, setmetatable, rawget
local raw_pcall, raw_xpcall, select = pcall, xpcall, select
local loadfile, loadstring, setfenv, require = loadfile, loadstring, setfenv, require
local unpack = unpack
local jit = jit
local vmflags = package.loaded["impulse.vmflags"]
local interpret_scripts = type(vmflags) == "table" and vmflags.interpretScripts == true

local _M = {}

local STOP = core.STOP -- the error object the budget hook raises
-- true once the budget stopped the running message, whatever the script
-- did with the STOP it raised (an error inside an xpcall handler surfaces
-- as "error in error handling")
local stopped = core.stopped or function() return false end

local function copy(t, keys)
  local out = {}
  if keys then
    for _, k in pairs(keys) do out[k] = t[k] end
  else
    for k, v in pairs(t) do out[k] = v end
  end
  return out
end

local function rethrow_stop(ok, ...)
  if not ok and ((...) == STOP or stopped()) then error(STOP, 0) end
  return ok, ...
end

local function safe_pcall(f, ...)
  return rethrow_stop(raw_pcall(f, ...))
end

local function safe_xpcall(f, handler, ...)
  local args, n = { ... }, select("#", ...)
  return rethrow_stop(raw_xpcall(function() return f(unpack(args, 1, n)) end, function(e)
    if e == STOP then return STOP end
    return handler(e)
  end))
end

-- The allowed modules engine code provides to scripts by name.
local ENGINE_MODULES = {
  ["cjson"] = true, ["cjson.safe"] = true,
}

local function base_env(scripts_dir, loaded)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = safe_pcall, xpcall = safe_xpcall, select = select, tonumber = tonumber,
    tostring = tostring, type = type, unpack = unpack, rawequal = rawequal, rawget = rawget,
    rawset = rawset, setmetatable = setmetatable, getmetatable = getmetatable,
    string = copy(string), table = copy(table), math = copy(math), bit = copy(bit),
    os = copy(os, { "time", "date", "clock", "difftime" }),
    coroutine = copy(co.lib),
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      core.log("info", nil, table.concat(parts, "\t"))
    end,
  }
  env.string.dump = nil
  env._VERSION = _VERSION

  -- require: engine modules, or a script of the scripts folder
  env.require = function(name)
    if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected)", 2) end
    if name:sub(1, 8) == "impulse." or ENGINE_MODULES[name] then
      if name == "impulse.core" or name == "impulse.sandbox" or name == "impulse.driver"
        or name == "impulse.snapshot" or name == "impulse.explain" or name == "impulse.offline"
        or name == "impulse.dedupe" then
        error("module '" .. name .. "' is internal to the engine", 2)
      end
      return require(name)
    end
    local m = loaded[name]
    if m ~= nil then return m end
    local path = scripts_dir .. "/" .. name:gsub("%.", "/") .. ".lua"
    m = _M.load_file(path, scripts_dir, loaded)
    loaded[name] = m == nil and true or m
    return loaded[name]
  end
  return env
end

-- A fresh global table for one script file: reads fall through to the
-- allowed globals, writes raise.
local function script_env(base, path)
  return setmetatable({}, {
    __index = base,
    __newindex = function(_, k)
      error("assignment to global '" .. tostring(k) .. "' in " .. path
        .. " (declare it local)", 2)
    end,
    __metatable = false,
  })
end

-- The chunk of a script file: from the snapshot the engine read the
-- scripts folder into (package.loaded["impulse.snapshot"]: every file of
-- one reload read at one moment, so a VM never mixes two versions), else
-- from the disk (impulse test, plain busted).
local function load_chunk(path)
  local snap = package.loaded["impulse.snapshot"]
  if type(snap) == "table" and path:sub(1, #snap.root + 1) == snap.root .. "/" then
    local src = snap.files[path:sub(#snap.root + 2)]
    if not src then return nil, "cannot open " .. path end
    return loadstring(src, "@" .. path)
  end
  return loadfile(path)
end

-- Loads a script file into the sandbox and runs it; returns its result.
function _M.load_file(path, scripts_dir, loaded)
  local chunk, err = load_chunk(path)
  if not chunk then error(err, 0) end -- "path:line: message" as it is
  local base = rawget(loaded, "\0base")
  if not base then
    base = base_env(scripts_dir, loaded)
    loaded["\0base"] = base
  end
  setfenv(chunk, script_env(base, path))
  -- the JIT off for every function of the file (vm.c says why): the
  -- budget's count hook runs only in the interpreter
  if interpret_scripts then jit.off(chunk, true) end
  return chunk()
end

-- Loads a provider payload module, scripts_dir/providers/<name>.lua, which
-- returns { build = function(msg, users, notice, ctx) ... end }.
function _M.load_provider(scripts_dir, name, loaded)
  local path = scripts_dir .. "/providers/" .. name .. ".lua"
  local m = _M.load_file(path, scripts_dir, loaded or {})
  if type(m) ~= "table" or type(m.build) ~= "function" then
    error(path .. ": must return a table with a build function", 0)
  end
  return m
end

-- Loads the policy (path, default scripts_dir/push.lua; the scripts it
-- requires come from scripts_dir); returns its table of hooks, checked, with
-- the defaults of the hooks it leaves out.
function _M.load_policy(scripts_dir, path)
  path = path or (scripts_dir .. "/push.lua")
  local loaded = {}
  local policy = _M.load_file(path, scripts_dir, loaded)
  if type(policy) ~= "table" then
    error(path .. ": must return a table of hooks, returned a " .. type(policy), 0)
  end
  if type(policy.route) ~= "function" then
    error(path .. ": the returned table has no route function", 0)
  end
  for _, hook in pairs { "offline", "check", "notice", "provider", "tokens", "del_push_token" } do
    if policy[hook] ~= nil and type(policy[hook]) ~= "function" then
      error(path .. ": hook '" .. hook .. "' must be a function", 0)
    end
  end
  if policy.notice == nil then
    -- no notice hook: OpenIM's titles (scripts/openim.lua's notice), when that script is there
    local openim = loaded.openim
    if openim == nil then
      local f = io.open(scripts_dir .. "/openim.lua")
      if f then
        f:close()
        openim = _M.load_file(scripts_dir .. "/openim.lua", scripts_dir, loaded)
        loaded.openim = openim
      end
    end
    if type(openim) == "table" and type(openim.notice) == "function" then
      local hooks = {}
      for k, v in pairs(policy) do hooks[k] = v end
      hooks.notice = openim.notice
      return hooks
    end
  end
  return policy
end

return _M
