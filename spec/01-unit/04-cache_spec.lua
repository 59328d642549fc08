-- lua/impulse/cache.lua: LRU order, TTLs, failures, names (engine stubbed;
-- concurrent single flight is covered in spec/03-engine).
local testing = require "impulse.testing"

describe("impulse.cache", function()
  local cache, fetched

  before_each(function()
    testing.setup {}
    cache = require "impulse.cache"
    fetched = {}
  end)

  local function new(name, opts)
    opts = opts or {}
    opts.fetch = opts.fetch or function(key)
      fetched[#fetched + 1] = key
      return "v:" .. key
    end
    return cache.new(name, opts)
  end

  it("fetches a miss once, then serves hits", function()
    local c = new("a")
    assert.equal("v:k", c:get("k"))
    assert.equal("v:k", c:get("k"))
    assert.same({ "k" }, fetched)
    assert.same({ count = 1, size = 1000, hits = 1, misses = 1 }, c:stats())
  end)

  it("evicts the least recently used entry", function()
    local c = new("b", { size = 2 })
    c:get("x")
    c:get("y")
    c:get("x")      -- x is now the most recent
    c:get("z")      -- evicts y
    assert.equal("v:x", c:peek("x"))
    assert.is_nil(c:peek("y"))
    assert.equal("v:z", c:peek("z"))
    assert.same({ "x", "y", "z" }, fetched)
  end)

  it("expires values after ttl and failures after failed_ttl", function()
    local fail = true
    local c = new("c", { ttl = 10, failed_ttl = 2, fetch = function(key)
      fetched[#fetched + 1] = key
      if fail then return nil, "down" end
      return "ok"
    end })
    assert.same({ nil, "down" }, { c:get("k") })
    testing.advance(1999)
    assert.same({ nil, "down" }, { c:get("k") }) -- cached failure
    assert.equal(1, #fetched)
    testing.advance(1)
    fail = false
    assert.equal("ok", c:get("k"))
    testing.advance(9999)
    assert.equal("ok", c:get("k"))
    testing.advance(1)
    assert.equal("ok", c:get("k"))
    assert.equal(3, #fetched)
  end)

  it("does not cache failures when failed_ttl is 0, and reports a raising fetch", function()
    local c = new("d", { failed_ttl = 0, fetch = function(key)
      fetched[#fetched + 1] = key
      error("boom")
    end })
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("fetch raised: .*boom", err)
    c:get("k")
    assert.equal(2, #fetched)
  end)

  it("sets, deletes and flushes", function()
    local c = new("e")
    c:set("k", "mine")
    assert.equal("mine", c:get("k"))
    c:del("k")
    assert.equal("v:k", c:get("k"))
    c:flush()
    assert.is_nil(c:peek("k"))
    assert.equal(0, c:stats().count)
  end)

  it("sizes a cache as size × slots, as OpenIM's slot LRUs", function()
    local c = new("s", { size = 2, slots = 2 })
    for _, k in ipairs { "a", "b", "c", "d", "e" } do c:get(k) end
    assert.equal(4, c:stats().count)
    assert.is_nil(c:peek("a"))
  end)

  it("returns the cache of a name, and refuses other options for it", function()
    local c = new("f", { size = 5 })
    assert.equal(c, new("f", { size = 5 }))
    assert.equal(c, cache.get("f"))
    assert.has_error(function() new("f", { size = 6 }) end, "cache 'f' already exists with other options")
    assert.has_error(function() cache.new("", { fetch = print }) end)
    assert.has_error(function() cache.new("g", {}) end)
    assert.has_error(function() cache.new("g", { fetch = print, ttl = -1 }) end)
  end)
end)
