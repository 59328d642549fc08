-- layers.lua: the engine's include rules, checked from its #include lines.
--
--   luajit engine/tools/layers.lua [ROOT]        (ROOT defaults to engine)
--
-- ROOT/LAYERS lists the layers, lowest first: a top-level folder of ROOT
-- (base, net, ...) or a top-level file (main.c). A file may include
-- headers of its own layer and of lower layers only. Modules (a .c, its .h
-- and its internal x_int.h, named by their path without the extension)
-- may not include each other in a circle, within a layer or across
-- layers. Folders named tests and tools are not layered and not read.
--
-- A quoted include is looked up as the compiler does with ROOT as the only
-- include folder: beside the including file first, then under ROOT; one
-- found in neither (generated protobuf headers, system headers) is
-- outside the engine and not checked. Prints one line per problem, naming
-- the file, the line and the include, and exits 1 when there is any;
-- prints a summary and exits 0 otherwise.
local root = (arg[1] or "engine"):gsub("/+$", "")

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function read_layers()
  local f = io.open(root .. "/LAYERS", "r")
  if not f then
    io.stderr:write(("layers: %s/LAYERS: cannot be read\n"):format(root))
    os.exit(2)
  end
  local order, rank = {}, {}
  for line in f:lines() do
    local name = line:gsub("#.*", ""):match("^%s*(%S+)%s*$")
    if name then
      order[#order + 1] = name
      rank[name] = #order
    end
  end
  f:close()
  return order, rank
end

local function list_files()
  local p = io.popen(("find '%s' \\( -name tests -o -name tools \\) -prune -o "
    .. "-type f \\( -name '*.c' -o -name '*.h' \\) -print | LC_ALL=C sort"):format(root))
  local files = {}
  for line in p:lines() do files[#files + 1] = line:sub(#root + 2) end
  p:close()
  return files
end

local function dirname(rel)
  return rel:match("^(.*)/[^/]*$") or ""
end

-- normalise "a/./b/../c" to "a/c"
local function clean(path)
  local out = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      out[#out] = nil
    elseif part ~= "." then
      out[#out + 1] = part
    end
  end
  return table.concat(out, "/")
end

local function resolve(from, inc)
  local dir = dirname(from)
  local beside = clean((dir ~= "" and dir .. "/" or "") .. inc)
  if exists(root .. "/" .. beside) then return beside end
  local under = clean(inc)
  if exists(root .. "/" .. under) then return under end
  return nil
end

local function layer_of(rel)
  return rel:match("^([^/]+)/") or rel
end

-- x.c, x.h and x's internal header x_int.h are one module
local function module_of(rel)
  return (rel:gsub("%.[ch]$", ""):gsub("_int$", ""))
end

local order, rank = read_layers()
local files = list_files()
local problems = {}
local edges = {} -- module -> { module -> "file:line: #include" }
local modules = {}
local nincludes = 0

local function problem(fmt, ...)
  problems[#problems + 1] = fmt:format(...)
end

for _, rel in ipairs(files) do
  local layer = layer_of(rel)
  local mine = rank[layer]
  local mod = module_of(rel)
  modules[mod] = true
  edges[mod] = edges[mod] or {}
  if not mine then
    problem("%s/%s: '%s' is not a layer listed in %s/LAYERS", root, rel, layer, root)
  end
  local n = 0
  for line in io.lines(root .. "/" .. rel) do
    n = n + 1
    local inc = line:match('^%s*#%s*include%s*"([^"]+)"')
    local target = inc and resolve(rel, inc)
    if target then
      nincludes = nincludes + 1
      local theirs = rank[layer_of(target)]
      if mine and theirs and theirs > mine then
        problem("%s/%s:%d: includes \"%s\": layer %s may not include layer %s (above it)",
          root, rel, n, inc, layer, layer_of(target))
      elseif mine and not theirs then
        problem("%s/%s:%d: includes \"%s\", which is in no layer of %s/LAYERS",
          root, rel, n, inc, root)
      end
      local to = module_of(target)
      if to ~= mod and not edges[mod][to] then
        edges[mod][to] = ("%s/%s:%d"):format(root, rel, n)
      end
    end
  end
end

-- circles: Tarjan's strongly connected components over modules
local index, low, onstack, stack, counter = {}, {}, {}, {}, 0
local names = {}
for m in pairs(modules) do names[#names + 1] = m end
table.sort(names)

local function sorted_targets(m)
  local t = {}
  for to in pairs(edges[m] or {}) do t[#t + 1] = to end
  table.sort(t)
  return t
end

-- one circle through the component, for the message: from its first
-- module, follow edges inside the component until a module repeats
local function describe(comp)
  local inside = {}
  for _, m in ipairs(comp) do inside[m] = true end
  table.sort(comp)
  local path, seen, m = {}, {}, comp[1]
  while not seen[m] do
    seen[m] = #path + 1
    path[#path + 1] = m
    local nxt
    for _, to in ipairs(sorted_targets(m)) do
      if inside[to] then nxt = to break end
    end
    m = nxt
  end
  local parts = {}
  for i = seen[m], #path do
    local a, b = path[i], path[i + 1] or m
    parts[#parts + 1] = ("%s -> %s (%s)"):format(a, b, edges[a][b])
  end
  return table.concat(parts, ", ")
end

local function strongconnect(v)
  counter = counter + 1
  index[v], low[v] = counter, counter
  stack[#stack + 1] = v
  onstack[v] = true
  for _, w in ipairs(sorted_targets(v)) do
    if modules[w] then
      if not index[w] then
        strongconnect(w)
        low[v] = math.min(low[v], low[w])
      elseif onstack[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      onstack[w] = nil
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      problem("%s: include circle of %d modules: %s", root, #comp, describe(comp))
    end
  end
end

for _, m in ipairs(names) do
  if not index[m] then strongconnect(m) end
end

if #problems > 0 then
  for _, p in ipairs(problems) do io.stderr:write("layers: ", p, "\n") end
  io.stderr:write(("layers: %d problem%s\n"):format(#problems, #problems == 1 and "" or "s"))
  os.exit(1)
end
print(("layers: ok: %d files in %d layers (%s), %d includes inside the engine, no upward "
  .. "include, no circle"):format(#files, #order, table.concat(order, " < "), nincludes))
