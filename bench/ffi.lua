-- bench/ffi.lua: a C function through the Lua C API versus an FFI call,
-- JIT off and on (why the engine calls are lua_CFunctions: see README).
--   luajit bench/ffi.lua
local ffi = require "ffi"
ffi.cdef "int abs(int);"
local C = ffi.C
local lpeg = require "lpeg"
local N = 1e7
for _, mode in ipairs { "off", "on" } do
  if mode == "off" then jit.off() else jit.on() end
  jit.flush()
  local f = lpeg.version
  local t0 = os.clock()
  for _ = 1, N do f() end
  local t1 = os.clock()
  for i = 1, N do C.abs(i) end
  local t2 = os.clock()
  print(string.format("JIT %-3s lua_CFunction (lpeg.version) %.1f ns/call, FFI abs() %.1f ns/call",
    mode, (t1 - t0) / N * 1e9, (t2 - t1) / N * 1e9))
end
