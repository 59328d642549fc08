-- engine/tools/layers.lua, the include check ctest runs on engine/ (test
-- `layers`): here against small fixture trees, each with its own LAYERS,
-- so it is seen to fail on an upward include, a circle and a folder that
-- is no layer, and to pass a tree that keeps the rules.
local FIX = "spec/fixtures/layers/"

-- the check's output (stdout and stderr) and its exit code
local function check(tree)
  local p = assert(io.popen("luajit engine/tools/layers.lua " .. tree .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), code
end

describe("the layer check", function()
  it("passes a tree that includes only downward, ignoring tests/ and outside headers", function()
    local out, code = check(FIX .. "ok")
    assert.equal(0, code, out)
    assert.matches("layers: ok: 4 files in 2 layers %(low < high%), 4 includes", out)
  end)

  it("fails on an upward include, naming the file, the line and the include", function()
    local out, code = check(FIX .. "upward")
    assert.equal(1, code, out)
    assert.matches('upward/low/a.c:3: includes "high/b.h": layer low may not include layer high',
      out, 1, true)
  end)

  it("fails on a circle inside one layer, naming each edge", function()
    local out, code = check(FIX .. "circle")
    assert.equal(1, code, out)
    assert.matches("include circle of 2 modules: low/a -> low/b (" .. FIX .. "circle/low/a.c:2), "
      .. "low/b -> low/a (" .. FIX .. "circle/low/b.c:2)", out, 1, true)
  end)

  it("fails on a folder that is not a listed layer", function()
    local out, code = check(FIX .. "unlisted")
    assert.equal(1, code, out)
    assert.matches("unlisted/extra/x.c: 'extra' is not a layer listed in", out, 1, true)
  end)

  it("fails when the tree has no LAYERS file", function()
    local out, code = check(FIX .. "ok/low")
    assert.equal(2, code, out)
    assert.matches("LAYERS: cannot be read", out, 1, true)
  end)

  it("passes the engine itself", function()
    local out, code = check("engine")
    assert.equal(0, code, out)
    assert.matches("no upward include, no circle", out, 1, true)
  end)
end)
