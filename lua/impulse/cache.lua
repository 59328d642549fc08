-- impulse.cache: named LRU caches for scripts, with TTLs and a fetch
-- function that may yield (call the engine: RPCs, Redis, HTTP).
--
--   local cache = require "impulse.cache"
--   local vip = cache.new("vip", {
--     size = 10000,         -- entries (LRU beyond that); with slots, per slot
--     slots = 1,            -- as OpenIM's slotNum: capacity is size × slots
--     ttl = 300,            -- seconds a fetched value is kept
--     failed_ttl = 5,       -- seconds a fetch failure is kept (0: not cached)
--     wait_timeout = 5,     -- seconds a getter waits for another's fetch
--     fetch = function(key, ctx) ... return value end,   -- or nil, err
--   })
--   local v, err = vip:get(key, ctx)
--
-- A cache lives in its worker's Lua VM: values are any Lua data, nothing is
-- shared between workers, and the cache is dropped with the VM (on reload).
-- Names are per VM: new() with a name already in use returns that cache
-- (keeping its first fetch function) when size and TTLs are the same, and
-- raises when they differ. Create caches when the script loads.
--
-- Single flight: while a key is being fetched, other messages asking for
-- it wait for that one fetch (their coroutines yield; the worker runs other
-- messages meanwhile). A fetch that raises or returns nil, err is a failure
-- for every waiter, cached for failed_ttl.
local core = require "impulse.core"
local engine_yield = require("impulse.coroutine").engine_yield

local type, error, pcall, tostring, pairs, setmetatable =
  type, error, pcall, tostring, pairs, setmetatable
local now_ms = core.now_ms

local _M = {}

local caches = {}

local mt = {}
mt.__index = mt

local function unlink(self, node)
  if node.prev then node.prev.next = node.next else self.head = node.next end
  if node.next then node.next.prev = node.prev else self.tail = node.prev end
  node.prev, node.next = nil, nil
end

local function push_front(self, node)
  node.next = self.head
  node.prev = nil
  if self.head then self.head.prev = node end
  self.head = node
  if not self.tail then self.tail = node end
end

local function remove(self, node)
  unlink(self, node)
  self.map[node.key] = nil
  self.count = self.count - 1
end

local function store(self, key, value, err, ttl_ms)
  local node = self.map[key]
  if node then
    unlink(self, node)
  else
    node = { key = key }
    self.map[key] = node
    self.count = self.count + 1
  end
  node.value, node.err, node.expires = value, err, now_ms() + ttl_ms
  push_front(self, node)
  while self.count > self.size do
    remove(self, self.tail)
  end
end

-- The fresh entry for key (moved to the front), or nil.
local function lookup(self, key, touch)
  local node = self.map[key]
  if not node then return nil end
  if node.expires <= now_ms() then
    remove(self, node)
    return nil
  end
  if touch and node ~= self.head then
    unlink(self, node)
    push_front(self, node)
  end
  return node
end

-- get(key, ctx) -> value | nil, err
function mt:get(key, ctx)
  if key == nil then error("bad argument #1 to 'get' (key expected)", 2) end
  local node = lookup(self, key, true)
  if node then
    self.hits = self.hits + 1
    if node.err ~= nil then return nil, node.err end
    return node.value
  end
  self.misses = self.misses + 1
  local flight = self.flights[key]
  if flight then
    -- another message is fetching this key: wait for it
    local ok, werr = core.wait(flight.event, self.wait_timeout_ms)
    if ok then ok, werr = engine_yield() end
    if not ok then
      return nil, "waiting for the fetch of '" .. tostring(key) .. "': " .. tostring(werr)
    end
    if flight.err ~= nil then return nil, flight.err end
    return flight.value
  end
  flight = { event = core.event() }
  self.flights[key] = flight
  local ok, value, err = pcall(self.fetch, key, ctx)
  if not ok then
    value, err = nil, "fetch raised: " .. tostring(value)
  elseif value == nil and err == nil then
    err = "fetch returned nothing"
  end
  self.flights[key] = nil
  flight.value, flight.err = value, err
  if self.deleted[key] then
    self.deleted[key] = nil -- deleted while fetching: do not cache
  elseif err == nil then
    store(self, key, value, nil, self.ttl_ms)
  elseif self.failed_ttl_ms > 0 then
    store(self, key, nil, err, self.failed_ttl_ms)
  end
  core.signal(flight.event)
  if err ~= nil then return nil, err end
  return value
end

-- peek(key) -> value | nil: no fetch, no LRU move
function mt:peek(key)
  local node = lookup(self, key, false)
  if node and node.err == nil then return node.value end
  return nil
end

-- set(key, value[, ttl_seconds])
function mt:set(key, value, ttl)
  if key == nil or value == nil then error("bad argument to 'set' (key and value expected)", 2) end
  store(self, key, value, nil, ttl and ttl * 1000 or self.ttl_ms)
end

-- del(key): removes it; a fetch in flight for it will not be cached
function mt:del(key)
  local node = self.map[key]
  if node then remove(self, node) end
  if self.flights[key] then self.deleted[key] = true end
end

function mt:flush()
  self.map, self.head, self.tail, self.count = {}, nil, nil, 0
  for key in pairs(self.flights) do self.deleted[key] = true end
end

function mt:stats()
  return { count = self.count, size = self.size, hits = self.hits, misses = self.misses }
end

local function number_opt(opts, name, default, min)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v < min then
    error("bad option '" .. name .. "' to 'impulse.cache.new' (number >= " .. min .. " expected)", 3)
  end
  return v
end

-- new(name, opts) -> cache
function _M.new(name, opts)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'new' (cache name expected)", 2)
  end
  if type(opts) ~= "table" or type(opts.fetch) ~= "function" then
    error("bad argument #2 to 'new' (options with a fetch function expected)", 2)
  end
  local size = number_opt(opts, "size", 1000, 1) * number_opt(opts, "slots", 1, 1)
  local ttl = number_opt(opts, "ttl", 60, 0)
  local failed_ttl = number_opt(opts, "failed_ttl", 5, 0)
  local wait_timeout = number_opt(opts, "wait_timeout", 5, 0)
  local old = caches[name]
  if old then
    if old.size ~= size or old.ttl_ms ~= ttl * 1000 or old.failed_ttl_ms ~= failed_ttl * 1000 then
      error("cache '" .. name .. "' already exists with other options", 2)
    end
    return old
  end
  local c = setmetatable({
    name = name, size = size, ttl_ms = ttl * 1000, failed_ttl_ms = failed_ttl * 1000,
    wait_timeout_ms = wait_timeout * 1000, fetch = opts.fetch,
    map = {}, count = 0, flights = {}, deleted = {}, hits = 0, misses = 0,
  }, mt)
  caches[name] = c
  return c
end

-- get(name) -> the cache of that name in this VM, or nil
function _M.get(name)
  return caches[name]
end

return _M
