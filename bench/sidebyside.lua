-- bench/sidebyside.lua: impulse against OpenIM's own Go code paths (the
-- anchors of ../shared/anchors) and against the floor program, alternated
-- in one run, printing same-run ratios (issue 16, Build 1). This machine's
-- speed drifts 1.5-2x from hour to hour: only ratios of one run mean
-- anything.
--
--   MIRRORS=/work/.mirror [ROUNDS=3] luajit bench/sidebyside.lua [cache] [push]
--
-- cache: OpenIM's pkg/localcache (golang-lru v2.0.7 under it) and the
--        sync.Map of fullUserCache on workloads W1-W4, against
--        build/bench_cache on the same workloads.
-- push:  per-message CPU. OpenIM: `grpc-call-cpu fanout` (grpc-go unary
--        SuperGroupOnlineBatchPushOneMsg to 2 gateways in openim-push's
--        shape) for single chat; for groups `grouppath N` (Push2Group's data
--        work) plus `fanout` of 2 requests the size of the online half's
--        IDs. Both are lower bounds of openim-push (no Kafka, decode,
--        interceptors, logs). impulse: bench/cpu.lua with the C gateway
--        stand-ins (whole process, everything included). The floor:
--        bench/cpu.lua with ENGINE=floor, when build/bench_floor exists.
--        impulse runs with its defaults (impulse.grpcClient h2); TRANSPORT=core
--        in the environment reaches bench/cpu.lua.
-- Writes bench/plots/cpu.dat (push) and bench/plots/go-w3.txt (cache) for
-- bench/plot.sh cpu / rss.
--
-- The anchors are built from the public repositories' git copies under
-- MIRRORS (<owner>+<name>/repo) with Debian's golang-go, by the setup.sh
-- of each anchor, copied to a temporary folder first: the shared copies
-- quote "repositories'" inside ${MIRRORS:?...}, which no shell parses, so
-- that apostrophe is dropped in the copy. Nothing of OpenIM, golang-lru or
-- grpc-go is kept in this repository.
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"
local format = string.format

local ROUNDS = tonumber(os.getenv("ROUNDS")) or 3
local SINGLE = tonumber(os.getenv("SINGLE")) or 20000
local SCALE = tonumber(os.getenv("SCALE")) or 0.5
local MIRRORS = os.getenv("MIRRORS") or "/work/.mirror"
local OUT = os.getenv("ANCHORS_OUT") or "/tmp/anchors"
local parts = {}
for _, a in ipairs(arg) do parts[a] = true end
if not next(parts) then parts = { cache = true, push = true } end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

local function fail(msg)
  io.stderr:write("sidebyside: " .. msg .. "\n")
  os.exit(1)
end

local function anchors_dir()
  for _, d in ipairs { os.getenv("ANCHORS") or "", h.root .. "/../shared/anchors", "/work/shared/anchors" } do
    if d ~= "" and h.read_file(d .. "/README.md") then return d end
  end
  fail("no anchors folder: set ANCHORS to ../shared/anchors")
end

local LOCALCACHE = OUT .. "/localcache-go/localcache-bench"
local GRPC = OUT .. "/openim-grpc/bench/grpc-call-cpu"

local function build_anchors()
  if os.getenv("REBUILD") ~= "1" and h.read_file(LOCALCACHE) and h.read_file(GRPC) then return end
  local _, has_go = sh("command -v go")
  if not has_go then
    local out, ok = sh("DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go")
    if not ok then fail("apt-get install golang-go failed:\n" .. out) end
  end
  local src = h.tmpdir() .. "/anchors-src"
  sh(format("rm -rf %s && mkdir -p %s && cp -r %s/. %s && chmod -R u+w %s", src, src, anchors_dir(), src, src))
  sh(format("sed -i \"s/repositories' git/repositories git/\" %s/*/setup.sh", src))
  for _, a in ipairs { "localcache", "openim-grpc" } do
    local out, ok = sh(format("cd %s && MIRRORS=%s TMPDIR=%s bash %s/%s/setup.sh", OUT:match("^(.*)/"), MIRRORS,
      OUT:match("^(.*)/"), src, a))
    if not ok then fail(a .. " anchor did not build:\n" .. out) end
    io.write(out:match("(built[^\n]*)") or "", "\n")
  end
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local function list(t, fmt)
  local s = {}
  for i, v in ipairs(t) do s[i] = format(fmt or "%.1f", v) end
  return table.concat(s, ", ")
end

-- ---- caches ----------------------------------------------------------------

-- figure name -> { pattern on a line of the Go program, on bench_cache's, better = "low"|"high" }
local CACHE = {
  { "W1 1 thread, ns/op", "^W1 1 thread%s+([%d.]+) ns/op", "^W1 1 thread%s+([%d.]+) ns/op", "low" },
  { "W1 2 threads, Mops/s aggregate", "^W1 2 threads.- ([%d.]+) Mops/s aggregate",
    "^W1 2 threads.- ([%d.]+) Mops/s aggregate", "high" },
  { "W2, ns/op", "^W2 1 thread%s+([%d.]+) ns/op", "^W2 1 thread%s+([%d.]+) ns/op", "low" },
  { "W3 memory, bytes/user", "^W3 memory%s+([%d.]+) bytes/user", "^W3 memory%s+([%d.]+) bytes/user", "low" },
  { "W3 lookup, ns/op", "^W3 lookup%s+([%d.]+) ns/op", "^W3 lookup%s+([%d.]+) ns/op", "low" },
  { "W4, ns/user", "^W4 batch%s+([%d.]+) ns/user", "^W4 batch%s+([%d.]+) ns/user", "low" },
}

local function scan(out, col)
  local got = {}
  for line in out:gmatch("[^\n]+") do
    for i, c in ipairs(CACHE) do
      local v = line:match(c[col])
      if v and not got[i] then got[i] = tonumber(v) end
    end
  end
  return got
end

local function run_cache()
  local go, imp = {}, {}
  for i = 1, #CACHE do go[i], imp[i] = {}, {} end
  for r = 1, ROUNDS do
    local order = r % 2 == 1 and { "go", "impulse" } or { "impulse", "go" }
    for _, who in ipairs(order) do
      local out, ok
      if who == "go" then
        out, ok = sh(LOCALCACHE .. " W1 W2 W3 W4")
      else
        out, ok = sh(h.root .. "/build/bench_cache W1 W2 W3 W4")
      end
      if not ok then fail(who .. " cache run failed:\n" .. out) end
      local got = scan(out, who == "go" and 2 or 3)
      for i = 1, #CACHE do
        if not got[i] then fail(format("%s: no figure for %s in:\n%s", who, CACHE[i][1], out)) end
        table.insert(who == "go" and go[i] or imp[i], got[i])
      end
      io.write(format("round %d %s done (load %s)\n", r, who, h.read_file("/proc/loadavg"):match("^%S+")))
    end
  end
  print("\n| cache figure | OpenIM's Go localcache | impulse | impulse's advantage per round | median |")
  print("|---|---|---|---|---|")
  for i, c in ipairs(CACHE) do
    local adv = {}
    for r = 1, ROUNDS do
      adv[r] = c[4] == "low" and go[i][r] / imp[i][r] or imp[i][r] / go[i][r]
    end
    print(format("| %s | %s | %s | %s | **%.2f×** |", c[1], list(go[i]), list(imp[i]), list(adv, "%.2f"),
      median(adv)))
  end
  -- OpenIM's bytes per online user, for bench/plot.sh rss
  h.write_file(h.root .. "/bench/plots/go-w3.txt", format("%.1f\n", median(go[4])))
end

-- ---- per-message CPU ----------------------------------------------------------

local SIZES = { 1000, 10000, 100000 }
local WORKLOADS = { "single chat", "group 1000", "group 10000", "group 100000" }

local function run_cpu_lua(engine)
  local env = "GATEWAY=c" .. (engine == "floor" and " ENGINE=floor" or "")
  local out, ok = sh(format("cd %s && %s luajit bench/cpu.lua %d %s", h.root, env, SINGLE, tostring(SCALE)))
  if not ok then fail(engine .. ": bench/cpu.lua failed:\n" .. out) end
  local got = {}
  for line in out:gmatch("[^\n]+") do
    local name, us = line:match("^(%a[%a ]-%d*)%s+%d+ msgs in .- = +([%d.]+) us/msg")
    if name then got[name:gsub("%s+$", "")] = tonumber(us) end
  end
  for _, w in ipairs(WORKLOADS) do
    if not got[w] then fail(format("%s: no figure for %s in:\n%s", engine, w, out)) end
  end
  return got
end

local function go_push(addr)
  local got = {}
  local n = math.max(2000, math.floor(SINGLE / 2))
  local out, ok = sh(format("%s fanout %s 2 %d 300", GRPC, addr, n))
  local us = out:match("([%d.]+) us CPU/msg")
  if not ok or not us then fail("go fanout failed:\n" .. out) end
  got["single chat"] = tonumber(us)
  for _, size in ipairs(SIZES) do
    local msgs = math.max(10, math.floor(200000 / size))
    local gout, gok = sh(format("%s grouppath %d %d", GRPC, size, msgs))
    local gus = gout:match("([%d.]+) us CPU/msg")
    if not gok or not gus then fail("go grouppath failed:\n" .. gout) end
    -- the online half's IDs as the request: "g<N>-member<6 digits>" + 2 bytes of framing each
    local rsz = math.floor(size / 2) * (#format("g%d-member%06d", size, 1) + 2)
    local fout, fok = sh(format("%s fanout %s 2 %d %d", GRPC, addr, msgs * 2, rsz))
    local fus = fout:match("([%d.]+) us CPU/msg")
    if not fok or not fus then fail("go fanout failed:\n" .. fout) end
    got["group " .. size] = tonumber(gus) + tonumber(fus)
  end
  return got
end

local function run_push()
  local has_floor = h.read_file(h.root .. "/build/bench_floor") ~= nil
  local port = h.free_port()
  local addr = "127.0.0.1:" .. port
  local srv = h.spawn("go-gateway", format("%s server %s", GRPC, addr))
  h.wait_until(function() return select(2, sh(format("bash -c '</dev/tcp/127.0.0.1/%d'", port))) end, 20000,
    "the Go gateway")
  local res = { go = {}, impulse = {}, floor = {} }
  for _, w in ipairs(WORKLOADS) do res.go[w], res.impulse[w], res.floor[w] = {}, {}, {} end
  for r = 1, ROUNDS do
    local order = { "go", "impulse" }
    if has_floor then order[3] = "floor" end
    if r % 2 == 0 then order = { order[#order], order[2], order[1] } end
    for _, who in ipairs(order) do
      local got = who == "go" and go_push(addr) or run_cpu_lua(who)
      for _, w in ipairs(WORKLOADS) do table.insert(res[who][w], got[w]) end
      io.write(format("round %d %s done (load %s)\n", r, who, h.read_file("/proc/loadavg"):match("^%S+")))
    end
  end
  h.stop(srv)
  print("\n| µs of CPU per message | OpenIM's Go path (lower bound) | impulse | impulse / OpenIM per round | median |"
    .. (has_floor and " floor | impulse / floor, median |" or ""))
  print("|---|---|---|---|---|" .. (has_floor and "---|---|" or ""))
  for _, w in ipairs(WORKLOADS) do
    local ratio, fratio = {}, {}
    for r = 1, ROUNDS do
      ratio[r] = res.impulse[w][r] / res.go[w][r]
      if has_floor then fratio[r] = res.impulse[w][r] / res.floor[w][r] end
    end
    print(format("| %s | %s | %s | %s | **%.2f** |", w, list(res.go[w]), list(res.impulse[w]), list(ratio, "%.2f"),
      median(ratio)) .. (has_floor and format(" %s | **%.2f** |", list(res.floor[w]), median(fratio)) or ""))
  end
  -- medians by recipients, for bench/plot.sh cpu
  local rows = { format("# bench/sidebyside.lua %s, %d rounds: recipients openim impulse floor (us CPU/msg)",
    os.date("!%Y-%m-%d"), ROUNDS) }
  local recipients = { ["single chat"] = 1, ["group 1000"] = 1000, ["group 10000"] = 10000, ["group 100000"] = 100000 }
  for _, w in ipairs(WORKLOADS) do
    rows[#rows + 1] = format("%d %.1f %.1f %s", recipients[w], median(res.go[w]), median(res.impulse[w]),
      has_floor and format("%.1f", median(res.floor[w])) or "?")
  end
  h.write_file(h.root .. "/bench/plots/cpu.dat", table.concat(rows, "\n") .. "\n")
end

build_anchors()
print(format("# %s, %d rounds, impulse %s", os.date("!%Y-%m-%d %H:%M UTC"), ROUNDS,
  (sh("git -C " .. h.root .. " rev-parse --short HEAD")):gsub("%s+", "")))
if parts.cache then run_cache() end
if parts.push then run_push() end
