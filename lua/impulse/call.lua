-- impulse.call: turns the engine's "start it, then yield" C calls into
-- straight-line Lua functions (internal; the modules scripts use are built
-- on it).
local engine_yield = require("impulse.coroutine").engine_yield

local _M = {}

-- wrap(f) -> function(...) -> value | nil, err, code
function _M.wrap(f)
  return function(...)
    local pending, value, err, code = f(...)
    if pending then return engine_yield() end
    return value, err, code
  end
end

return _M
