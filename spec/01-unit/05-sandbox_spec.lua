-- lua/impulse/sandbox.lua: what a script can and cannot reach.
local testing = require "impulse.testing"

describe("impulse.sandbox", function()
  local sandbox, dir

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end

  -- Runs code as a script file; returns ok, result-or-error.
  local function run(code)
    write("probe.lua", code)
    return pcall(sandbox.load_file, dir .. "/probe.lua", dir, {})
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)

  teardown(function()
    os.execute("rm -rf " .. dir)
  end)

  before_each(function()
    testing.setup {}
    sandbox = require "impulse.sandbox"
  end)

  for _, name in ipairs { "io", "debug", "package", "load", "loadstring", "dofile", "loadfile",
                          "setfenv", "getfenv", "module", "collectgarbage", "jit", "newproxy" } do
    it("hides " .. name, function()
      local ok, v = run("return " .. name)
      assert.is_true(ok)
      assert.is_nil(v)
    end)
  end

  it("keeps only the harmless parts of os and string", function()
    assert.same({ true, "nil nil nil function function" },
      { run("return tostring(os.execute) .. ' ' .. tostring(os.exit) .. ' ' .. tostring(string.dump) .. ' '"
        .. " .. type(os.time) .. ' ' .. type(string.format)") })
  end)

  it("refuses to load ffi or the engine's internals", function()
    for _, m in ipairs { "ffi", "impulse.core", "impulse.sandbox", "impulse.driver", "impulse.explain",
                         "nonexistent" } do
      local ok, err = run("return require('" .. m .. "')")
      assert.is_false(ok, m)
      assert.is_string(err)
    end
  end)

  it("raises on a write to a global, naming it and the file", function()
    local ok, err = run("counter = 1")
    assert.is_false(ok)
    assert.matches("assignment to global 'counter' in .*probe%.lua", err)
  end)

  it("lets a script require the engine's modules and other scripts, sandboxed too", function()
    write("helper.lua", "return { double = function(x) return x * 2 end, io = io }")
    local ok, v = run("local h = require 'helper'; local msg = require 'impulse.msg'; "
      .. "return { h.double(21), msg.session.READ_GROUP, h.io }")
    assert.is_true(ok, v)
    assert.same({ 42, 3 }, v)
  end)

  it("does not let pcall swallow the engine's stop", function()
    local core = require "impulse.core"
    write("stop.lua", "return function() return pcall(function() error(require_stop) end) end")
    local ok, f = pcall(sandbox.load_file, dir .. "/stop.lua", dir, {})
    assert.is_true(ok)
    -- the engine raises core.STOP; a script's pcall re-raises it
    local env = getfenv(f)
    rawset(env, "require_stop", core.STOP)
    local ok2, err = pcall(f)
    assert.is_false(ok2)
    assert.equal(core.STOP, err)
    -- any other error is caught as usual
    rawset(env, "require_stop", "plain")
    assert.same({ false }, { (f()) })
  end)

  it("gives scripts a coroutine library that cannot yield the engine's marker", function()
    local ENGINE = require("impulse.coroutine").ENGINE
    write("co.lua", "return function(m) return coroutine.yield(m) end")
    local ok, f = pcall(sandbox.load_file, dir .. "/co.lua", dir, {})
    assert.is_true(ok)
    local c = coroutine.create(f)
    local ok2, err = coroutine.resume(c, ENGINE)
    assert.is_false(ok2)
    assert.matches("cannot yield the engine's marker", err)
  end)
end)
