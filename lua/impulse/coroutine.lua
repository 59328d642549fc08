-- impulse.coroutine: engine yields, and the coroutine library scripts see.
--
-- An engine call (an RPC, waiting for another message's fetch...) yields
-- the message's coroutine with the ENGINE marker; the worker resumes it
-- with the answer. A script may run its own coroutines: the library given
-- to scripts passes an engine yield from inside them up to the worker and
-- the answer back down, so a script's coroutine can call the engine and
-- cannot swallow (or fake) the engine's yields.
local core = require "impulse.core"

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running
local select, error, setmetatable = select, error, setmetatable
local unpack = unpack

local _M = {}

local STOP = core.STOP -- the budget's stop: a script's coroutine cannot keep it
local stopped = core.stopped or function() return false end

local ENGINE = setmetatable({}, { __tostring = function() return "impulse engine yield" end })
_M.ENGINE = ENGINE

-- Yields the current message's coroutine until the engine resumes it;
-- returns what the engine resumed it with.
function _M.engine_yield()
  return co_yield(ENGINE)
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Resumes co; while co is parked in an engine call, parks this coroutine
-- too (passing the yield up) and hands the engine's answer back down. A
-- budget stop inside co is raised again here: the script that resumed co
-- does not get it back as a value.
local function resume(co, ...)
  local r = pack(co_resume(co, ...))
  while r[1] and r[2] == ENGINE and co_status(co) == "suspended" do
    r = pack(co_resume(co, co_yield(ENGINE)))
  end
  if not r[1] and (r[2] == STOP or stopped()) then error(STOP, 0) end
  return unpack(r, 1, r.n)
end

local lib = {}

function lib.create(f)
  local co = co_create(f)
  core.adopt(co) -- engine calls inside co belong to the current message
  return co
end

lib.resume = resume

function lib.yield(...)
  if (...) == ENGINE then error("scripts cannot yield the engine's marker", 2) end
  return co_yield(...)
end

function lib.wrap(f)
  local co = lib.create(f)
  return function(...)
    local r = pack(resume(co, ...))
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

lib.status = co_status
lib.running = co_running

_M.lib = lib

return _M
