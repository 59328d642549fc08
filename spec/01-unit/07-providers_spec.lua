-- Provider payload modules load into the sandbox and must have build().
local testing = require "impulse.testing"

describe("provider modules", function()
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. "/providers")
  end)

  teardown(function()
    os.execute("rm -rf " .. dir)
  end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/providers/" .. name .. ".lua", "w"))
    f:write(text)
    f:close()
  end

  it("loads a module with build and refuses one without", function()
    testing.setup {}
    local sandbox = require "impulse.sandbox"
    write("good", "return { build = function(msg, users, notice, ctx) return { #users } end }")
    local m = sandbox.load_provider(dir, "good")
    assert.same({ 2 }, m.build({}, { "a", "b" }, {}, {}))
    write("bad", "return { build = 'nope' }")
    assert.has_error(function() sandbox.load_provider(dir, "bad") end,
      dir .. "/providers/bad.lua: must return a table with a build function")
    write("evil", "return { build = function() return io end }")
    assert.is_nil(sandbox.load_provider(dir, "evil").build())
  end)
end)
