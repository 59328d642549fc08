-- bench/latency.lua: latency and capacity of single chat (issue 16).
--
--   [ENGINE=impulse] [FETCH_WAIT_MS=5] [MAX_INFLIGHT=1000000] [TRANSPORT=core|h2]
--   [PHASES=intake,rate,latency] [RATE_MAX=n] [INTAKE_N=50000] [USERS=1000]
--   luajit bench/latency.lua
--
-- Starts the local stand-ins (Redis, etcd, the Kafka mock cluster, the
-- Node services) with two C gateways (build/bench_gwstub --latency, every
-- user reported online, registered in etcd as OpenIM's gateways are) and
-- drives single-chat toPush records from build/bench_loadgen (produce time
-- in MsgData.ex, CLOCK_REALTIME µs; the stubs take receipt − produce time
-- per request). The engine under test runs with 2 workers and
-- impulse.fetchWaitMs 5: librdkafka's mock broker holds every fetch for
-- the whole fetch.wait.max.ms, even when records arrive meanwhile (a real
-- broker answers as soon as there is a record), so with the default 50 ms
-- every message would wait 25 ms on average (bench/README.md, "Where the
-- idle 20+ ms go").
--
-- Phases:
--   intake   the Kafka intake ceiling: a backlog of INTAKE_N records on
--            toPush, read by a plain librdkafka consumer (bench_loadgen
--            --consume: poll and count), then by the engine with 1 worker
--            and a policy that routes every message to nobody (no lookups,
--            no gateway call): records/s from the first record done to the
--            last, for each.
--   rate     the maximum sustainable single-chat rate (defined above
--            `trial` below): the offered rate doubles from 1,000/s
--            until a trial fails, then bisects to 5%. Each trial, and each
--            latency run, starts on a new, empty Kafka mock and a new
--            engine (`fresh`: the mock's cost grows with its log).
--   latency  at 25/50/75/90% of that rate: 2 s of warm-up (not counted),
--            then 10 s measured: p50/p99/p99.9/max of produce → gateway
--            receipt, the samples of both gateways pooled (each message is
--            pushed to both, as OpenIM does in etcd mode: two samples a
--            message). Written to bench/plots/latency.dat; bench/plot.sh
--            draws bench/plots/latency.png from it.
--
-- A message that ends other than ok stops the bench at once with a line
-- naming the outcome (spec.helpers.wait_ok's rule).
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"
local format = string.format

local ENGINE = os.getenv("ENGINE") or "impulse"
local FETCH_WAIT = tonumber(os.getenv("FETCH_WAIT_MS")) or 5
local USERS = tonumber(os.getenv("USERS")) or 1000
local INTAKE_N = tonumber(os.getenv("INTAKE_N")) or 50000 -- the mock keeps ~5 MiB a partition
local PHASES = {}
for p in (os.getenv("PHASES") or "intake,rate,latency"):gmatch("[^,]+") do PHASES[p] = true end
local RATE_MAX = tonumber(os.getenv("RATE_MAX")) -- skip the search: use this rate
-- impulse.maxInflight (per worker; the engine's default is 1024): at that
-- many messages held a worker pauses its partitions, resuming at half
-- (1,000,000 here: a pause costs librdkafka 2.0.2 up to a second before it
-- fetches again, which the intake phase shows; see bench/README.md)
local MAX_INFLIGHT = tonumber(os.getenv("MAX_INFLIGHT")) or 1000000
local WINDOW_S = 5 -- a rate trial
local WARM_S, MEASURE_S = 2, 10 -- a latency run
local LOADS = { 0.25, 0.50, 0.75, 0.90 }
-- DAT=...: the data file elsewhere (the floor: bench/plots/latency-floor.dat)
local DAT = os.getenv("DAT") or (h.root .. "/bench/plots/latency.dat")
local LOADGEN = h.root .. "/build/bench_loadgen"

-- The wall clock in ms (CLOCK_REALTIME; spec/helpers/kafka.lua declares
-- clock_gettime), to compare with impulse's log times.
local ffi = require "ffi"
local tsbuf = ffi.new("struct timespec")
local function wall_ms()
  ffi.C.clock_gettime(0, tsbuf)
  return tonumber(tsbuf.tv_sec) * 1000 + tonumber(tsbuf.tv_nsec) / 1e6
end

-- A log line's "ts" (2026-12-05T02:18:01.123Z) in ms since the epoch.
local function log_ms(ts)
  local y, mo, d, hh, mi, ss, ms = ts:match("(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z")
  if not y then return nil end
  -- days since the epoch (civil from days, inverted: Howard Hinnant's)
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo + (mo > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return ((days * 24 + tonumber(hh)) * 60 + tonumber(mi)) * 60000 + tonumber(ss) * 1000 + tonumber(ms)
end

-- ---------------------------------------------------------------- engines
-- An engine is { start = function(env, gws, o) -> e }, o = { workers = n,
-- scripts = folder or nil (the default policy), trivial = N (the scripts
-- route every message to nobody and mark the 1st and the Nth), no_wait
-- (return before it is ready), impulse = { config overrides } },
-- gws = the gateway stubs ({ addr = "h:p" }).
-- e.completed() returns how many toPush messages the engine finished,
-- raising at once when one ended other than ok; e.stop() stops it;
-- e.intake_window() (optional; o.trivial) the wall-clock ms at which the
-- first and the last of o.trivial's count of messages were taken up
-- (else the intake phase times completed() from outside).
local engines = {}

engines.impulse = {
  start = function(env, _, o)
    local over = { maxInflight = MAX_INFLIGHT, fetchWaitMs = FETCH_WAIT, grpcClient = os.getenv("TRANSPORT") }
    for k, v in pairs(o.impulse or {}) do over[k] = v end
    local imp = h.start_impulse(env, { workers = o.workers, log_level = "warn", scripts = o.scripts,
                                       impulse = over, no_wait = o.no_wait })
    return {
      proc = imp,
      -- the trivial policy's log lines: when the first and the last
      -- message of the backlog reached route() (wall ms)
      intake_window = function()
        local first, last
        for _, l in ipairs(h.log_lines(imp)) do
          if l.msg == "intake: first" then first = log_ms(l.ts) end
          if l.msg == "intake: last" then last = log_ms(l.ts) end
        end
        return first, last
      end,
      completed = function()
        local r, bad = h.results(imp), {}
        if next(r) == nil and not h.alive(imp) then error("impulse exited; its log: " .. imp.log, 0) end
        for result, n in pairs(r) do
          if result ~= "ok" and n > 0 then bad[#bad + 1] = result .. " " .. n end
        end
        if #bad > 0 then
          table.sort(bad)
          error(format("impulse: message(s) ended other than ok (%s); its log: %s",
            table.concat(bad, ", "), imp.log), 0)
        end
        return r.ok or 0
      end,
      stop = function() h.stop(imp, 30000) end,
      -- how often its consumers paused so far (maxInflight reached)
      pauses = function() return h.metric(imp, "impulse_consumer_pauses_total") end,
    }
  end,
}

-- ENGINE=floor: build/bench_floor (bench/floor.c), the least work a push
-- needs, on the same broker and gateways: every "chat<i>" online in its
-- table, no groups; finished messages from its status file. It has no
-- trivial policy: in the intake phase it pushes each record to the
-- gateways (timed from outside).
local floor_n = 0
engines.floor = {
  start = function(env, gws, o)
    floor_n = floor_n + 1
    local dir = h.tmpdir()
    local online = format("%s/floor-online-%d.txt", dir, floor_n)
    local status = format("%s/floor-status-%d.json", dir, floor_n)
    local lines = {}
    for i = 1, USERS do lines[i] = "chat" .. i .. " 1" end
    h.write_file(online, table.concat(lines, "\n") .. "\n")
    h.write_file(dir .. "/floor-groups.txt", "\n")
    local args = {}
    for _, g in ipairs(gws) do args[#args + 1] = "--gateway " .. g.addr end
    local p = h.spawn("floor", format("%s/build/bench_floor --brokers %s %s --online %s --group %s --status %s "
      .. "--offset-reset earliest --max-inflight %d --fetch-wait-ms %d", h.root, env.kafka.bootstrap,
      table.concat(args, " "), online, dir .. "/floor-groups.txt", status, math.min(MAX_INFLIGHT, 1000000), FETCH_WAIT))
    local function read()
      local t = h.read_file(status) or ""
      return tonumber(t:match('"done":(%d+)')) or 0, tonumber(t:match('"failed":(%d+)')) or 0,
        tonumber(t:match('"assigned":(%d+)')) or 0
    end
    if not o.no_wait then
      h.wait_until(function()
        if not h.alive(p) then error("bench_floor exited during start-up; its log: " .. p.log, 0) end
        return select(3, read()) > 0
      end, 30000, "bench_floor to join the consumer group")
    end
    return {
      proc = p,
      completed = function()
        local done, failed = read()
        if failed > 0 then error(format("bench_floor: %d message(s) failed; its log: %s", failed, p.log), 0) end
        if not h.alive(p) then error("bench_floor exited; its log: " .. p.log, 0) end
        return done
      end,
      stop = function() h.stop(p, 30000) end,
      pauses = function() return 0 end,
    }
  end,
}

local engine = engines[ENGINE] or error("unknown ENGINE " .. ENGINE .. " (impulse, floor)")

-- ---------------------------------------------------------------- helpers

local TICK = tonumber((h.run("getconf CLK_TCK"):gsub("%s+", ""))) or 100

-- CPU seconds (user + system) of a process so far
local function cpu_s(pid)
  local text = pid and h.read_file("/proc/" .. pid .. "/stat")
  if not text then return 0 end
  local f = {}
  for x in text:match("%) (.*)$"):gmatch("%S+") do f[#f + 1] = x end
  return (tonumber(f[12]) + tonumber(f[13])) / TICK
end

local function pct(t, p)
  return t[math.max(1, math.ceil(#t * p))] or 0
end

-- The last "progress <ms> <produced> <delivered>" line of a loadgen's log.
local function progress(lg)
  local text = h.read_file(lg.log) or ""
  local ms, n
  for a, b in text:gmatch("progress (%d+) (%d+) %d+") do ms, n = a, b end
  return tonumber(ms) or 0, tonumber(n) or 0
end

local function loadgen(env, args)
  return h.spawn("loadgen", format("%s --brokers %s --users %d %s", LOADGEN, env.kafka.bootstrap, USERS,
    args))
end

-- The loadgen's closing line: produced, seconds, achieved rate.
local function loadgen_report(lg)
  h.wait_until(function() return not h.alive(lg) end, 60000, "the load generator to finish")
  lg.stopped = true
  local text = h.read_file(lg.log) or ""
  local n, s, r = text:match("produced (%d+) in ([%d.]+) s: (%d+) msg/s")
  if not n then error("the load generator failed: " .. text:sub(-500), 0) end
  if text:match("failed [1-9]") then error("the load generator's records were not all delivered: "
    .. text:match("produced[^\n]*"), 0) end
  return tonumber(n), tonumber(s), tonumber(r)
end

-- Samples (µs) the stubs took since their last dump, all gateways pooled,
-- sorted; and the requests they saw in all.
local function dump(gws)
  for _, g in ipairs(gws) do
    os.remove(g.lat)
    h.signal(g.proc, 10) -- SIGUSR1
  end
  local all = {}
  for _, g in ipairs(gws) do
    local text = h.wait_until(function() return h.read_file(g.lat) end, 10000, "the gateway's latency dump")
    for v in text:gmatch("\n(%-?%d+)") do all[#all + 1] = tonumber(v) end
  end
  table.sort(all)
  return all
end

local total = 0 -- messages produced so far (all phases)

local function drain(e, what, timeout_ms)
  h.wait_until(function() return e.completed() >= total end, timeout_ms or 60000, what)
end

-- ---------------------------------------------------------------- phases

-- Whether the engine sustains `rate` single-chat messages/s (the
-- definition of "sustainable"). The trial:
-- the loadgen offers `rate` for WINDOW_S seconds; every 250 ms the lag,
-- produced (the loadgen's count of records handed to librdkafka) minus
-- completed (messages the engine finished ok), is sampled. Sustainable
-- means all of:
--   1. the loadgen achieved at least 97% of the offered rate;
--   2. the lag never exceeded max(100, rate × 0.2 s): the engine was never
--      more than 200 ms of traffic behind (a rate above capacity grows the
--      lag linearly: 5% too much shows as 0.25 s worth after 5 s);
--   3. every message was finished within 1 s of the loadgen's end.
-- A trial whose lag passes 4 × the bound is stopped early (the mock keeps
-- only ~5 MiB a partition: a large backlog would lose records).
-- A new Kafka mock cluster (an empty log) and a new engine on it: the
-- mock finds a fetch's offset by walking its partition's message sets
-- in a list, so its cost per fetch grows with what it holds (up to its
-- ~5 MiB a partition); every trial and latency run starts from the same
-- empty broker instead of after everything produced before it.
local function fresh(env, e, gws)
  if e then e.stop() end
  if env.producer then -- start_env's producer, on the old cluster (unused here)
    pcall(env.producer.close, env.producer)
    env.producer = nil
  end
  h.stop(env.kafka)
  env.kafka = h.start_kafka()
  total = 0
  e = engine.start(env, gws, { workers = 2 })
  -- the consumers' group join (a few seconds) is over when a first
  -- message comes through
  local lg = loadgen(env, "--rate 0 --count 1 --progress-ms 0")
  total = total + loadgen_report(lg)
  drain(e, "the engine's first message", 60000)
  return e
end

local function trial(env, e, rate)
  local bound = math.max(100, rate * 0.2)
  local base = e.completed()
  local p0 = e.pauses and e.pauses()
  local lg = loadgen(env, format("--rate %d --seconds %d --progress-ms 100", rate, WINDOW_S))
  local maxlag, samples, aborted = 0, 0, false
  while h.alive(lg) do
    h.sleep_ms(250)
    local _, produced = progress(lg)
    local lag = produced - (e.completed() - base)
    samples = samples + 1
    if lag > maxlag then maxlag = lag end
    if lag > 4 * bound then
      h.signal(lg, h.SIGTERM)
      aborted = true
      break
    end
  end
  local n, _, achieved = loadgen_report(lg)
  total = total + n
  local t_end = h.now_ms()
  local drained = pcall(drain, e, "", 1000)
  local drain_ms = h.now_ms() - t_end
  if not drained then drain(e, format("the engine to catch up after a trial at %d/s", rate), 120000) end
  local ok = not aborted and achieved >= 0.97 * rate and maxlag <= bound and drained
  print(format("  trial %6d msg/s: achieved %6d/s, max lag %6d (bound %d, %d samples), %s%s%s -> %s",
    rate, achieved, maxlag, bound, samples, aborted and "stopped early, " or "",
    p0 and format("%d consumer pauses, ", e.pauses() - p0) or "",
    drained and format("drained in %d ms", drain_ms) or "not drained in 1 s",
    ok and "sustainable" or "NOT sustainable"))
  io.stdout:flush()
  return ok, achieved
end

local function find_rate(env, e, gws)
  local lo, hi, rate = nil, nil, 1000
  local function try(r)
    e = fresh(env, e, gws)
    return trial(env, e, r)
  end
  while not hi do
    if try(rate) then lo = rate; rate = rate * 2 else hi = rate end
    if rate > 256000 then error("sustained 256,000/s: raise the search's cap") end
  end
  if not lo then error("not even 1,000 msg/s is sustainable") end
  while (hi - lo) / lo > 0.05 do
    local mid = math.floor((lo + hi) / 2 / 10) * 10
    if try(mid) then lo = mid else hi = mid end
  end
  return lo, e
end

local function latency_at(env, e, gws, rate)
  local p0 = e.pauses and e.pauses()
  local epid = e.proc and e.proc.pid
  local lg = loadgen(env, format("--rate %d --seconds %d --progress-ms 100", rate, WARM_S + MEASURE_S))
  h.wait_until(function()
    if not h.alive(lg) then return true end
    e.completed() -- fails fast
    return progress(lg) >= WARM_S * 1000
  end, 30000, "the warm-up")
  dump(gws) -- the warm-up's samples, dropped
  local c0, k0, w0 = cpu_s(epid), cpu_s(env.kafka.pid), h.now_ms()
  local n, _, achieved = loadgen_report(lg)
  total = total + n
  drain(e, format("every message of the run at %d/s", rate), 120000)
  local wall = (h.now_ms() - w0) / 1000
  local ecpu, kcpu = (cpu_s(epid) - c0) / wall * 100, (cpu_s(env.kafka.pid) - k0) / wall * 100
  local s = dump(gws)
  local function ms(v) return v / 1000 end
  local r = { rate = rate, achieved = achieved, n = #s, p50 = ms(pct(s, 0.5)), p99 = ms(pct(s, 0.99)),
              p999 = ms(pct(s, 0.999)), max = ms(s[#s] or 0), ecpu = ecpu, kcpu = kcpu }
  print(format("  %6d msg/s offered (%6d achieved): %7d samples  p50 %7.2f ms  p99 %7.2f ms  "
    .. "p99.9 %7.2f ms  max %7.2f ms; CPU: %s %3.0f%%, Kafka mock %3.0f%%%s", rate, achieved, r.n, r.p50, r.p99,
    r.p999, r.max, ENGINE, ecpu, kcpu, p0 and format(" (%d consumer pauses)", e.pauses() - p0) or ""))
  io.stdout:flush()
  return r
end

local function backlog(env)
  local n = loadgen_report(loadgen(env, format("--rate 0 --count %d --progress-ms 0", INTAKE_N)))
  total = total + n
end

-- The backlog phase, first, on an empty topic: INTAKE_N records read by
-- the plain consumer, then (a new backlog each) by the engine with 1
-- worker and a policy that routes every message to nobody, with
-- impulse.maxInflight 4096 (the benches' setting: the consumer pauses at
-- 4096 in flight and resumes at 2048) and 1,000,000 (never paused).
-- records/s from the first record taken up (polled; reaching route()) to
-- the last; the plain consumer also from its partitions' assignment (its
-- first fetch brings whole partitions, so first-to-last is polling alone).
local function intake(env, gws)
  local out = {}
  backlog(env)
  local c = h.spawn("consume", format("%s --consume --brokers %s --count %d --fetch-wait-ms %d",
    LOADGEN, env.kafka.bootstrap, INTAKE_N, FETCH_WAIT))
  h.wait_until(function() return not h.alive(c) end, 120000, "the plain consumer")
  c.stopped = true
  local text = h.read_file(c.log) or ""
  local got, raw, araw = text:match("consumed (%d+) records .- (%d+) records/s.- (%d+) records/s")
  if tonumber(got) ~= INTAKE_N then
    error(format("the plain consumer read %s of %d records (the mock keeps ~5 MiB a partition: "
      .. "lower INTAKE_N): %s", tostring(got), INTAKE_N, text), 0)
  end
  out.raw, out.raw_assigned = tonumber(raw), tonumber(araw)
  print(format("  plain librdkafka consumer: %d records/s first record to last, %d records/s from the "
    .. "assignment", out.raw, out.raw_assigned))
  local scripts = h.tmpdir() .. "/trivial-scripts"
  os.execute("mkdir -p " .. scripts)
  h.write_file(scripts .. "/push.lua", table.concat({
    "local N, n = " .. INTAKE_N .. ", 0",
    "local _M = {}",
    "function _M.route(_, ctx)",
    "  n = n + 1",
    "  if n == 1 then ctx.log.warn('intake: first') elseif n == N then ctx.log.warn('intake: last') end",
    "  return {}",
    "end",
    "function _M.offline() return nil end",
    "function _M.notice() return { title = '', content = '' } end",
    "return _M", "" }, "\n"))
  for i, inflight in ipairs { 4096, 1000000 } do
    if i > 1 then backlog(env) end
    local e = engine.start(env, gws, { workers = 1, scripts = scripts, trivial = INTAKE_N, no_wait = true,
                                       impulse = { maxInflight = inflight } })
    local t1, t2
    h.wait_until(function()
      local done = e.completed()
      local now = wall_ms()
      if done > 0 and not t1 then t1 = now end
      if done >= INTAKE_N then t2 = now; return true end
    end, 120000, "the engine to read the backlog")
    local w1, w2 = nil, nil
    if e.intake_window then w1, w2 = e.intake_window() end
    e.stop()
    if w1 and w2 then t1, t2 = w1, w2 end
    local rate = (INTAKE_N - 1) / math.max(1, t2 - t1) * 1000
    print(format("  %s, 1 worker, route to nobody, maxInflight %d: %d records/s (%d records in %.3f s, %s)",
      ENGINE, inflight, rate, INTAKE_N, (t2 - t1) / 1000,
      w1 and "the policy's first to last" or "first seen done to last, sampled every 20-100 ms"))
    out[#out + 1] = { inflight = inflight, rate = rate }
  end
  total = 0 -- all committed by the intake's engines: the next one counts from 0
  return out
end

-- ---------------------------------------------------------------- main

local env
local ok, err = pcall(function()
  env = h.start_env { gateways = 0 }
  local gws = {}
  for i = 1, 2 do
    local info = format("%s/gwstub-%d.json", h.tmpdir(), i)
    local lat = format("%s/gwstub-%d.lat", h.tmpdir(), i)
    local p = h.spawn("gwstub", format("%s/build/bench_gwstub --info %s --latency %s", h.root, info, lat))
    local addr = h.wait_until(function()
      local t = h.read_file(info)
      return t and t:match('"grpc":"([^"]+)"')
    end, 10000, "the C gateway stand-in")
    h.run(format("ETCDCTL_API=3 etcdctl --endpoints=%s put openim/messageGateway/%s "
      .. "'{\"Op\":0,\"Addr\":\"%s\",\"Metadata\":null}'", env.etcd.url, addr, addr))
    gws[i] = { proc = p, addr = addr, lat = lat }
  end
  local online = {}
  for i = 1, USERS do online["chat" .. i] = { 1 } end
  h.http_json("POST", env.services.control .. "/online", online)
  print(format("engine %s, fetchWaitMs %d, maxInflight %d, %d users, %s", ENGINE, FETCH_WAIT, MAX_INFLIGHT, USERS,
    os.date("!%Y-%m-%d %H:%M UTC")))

  local ik
  if PHASES.intake then
    print(format("intake ceiling (backlog of %d records):", INTAKE_N))
    ik = intake(env, gws)
  end
  if not (PHASES.rate or PHASES.latency) then return end
  local e
  local max = RATE_MAX
  if PHASES.rate and not max then
    print(format("maximum sustainable rate (%d s trials):", WINDOW_S))
    max, e = find_rate(env, nil, gws)
    print(format("  maximum sustainable single-chat rate: %d msg/s", max))
  end
  if PHASES.latency then
    if not max then error("PHASES=latency needs the rate phase or RATE_MAX") end
    print(format("latency, produce -> gateway receipt (%d s measured after %d s warm-up):", MEASURE_S, WARM_S))
    local rows = {}
    for _, load in ipairs(LOADS) do
      e = fresh(env, e, gws)
      local r = latency_at(env, e, gws, math.floor(max * load))
      r.load = load
      rows[#rows + 1] = r
    end
    os.execute("mkdir -p " .. h.root .. "/bench/plots")
    local out = {
      format("# bench/latency.lua %s: engine %s, 2 workers, fetchWaitMs %d, maxInflight %d, 2 C gateways, %d users",
        os.date("!%Y-%m-%d %H:%M UTC"), ENGINE, FETCH_WAIT, MAX_INFLIGHT, USERS),
      format("# maximum sustainable rate %d msg/s", max),
      ik and format("# intake ceiling, records/s: plain consumer %d (from its assignment %d); "
        .. "%s 1 worker, maxInflight 4096: %d, maxInflight 1000000: %d", ik.raw, ik.raw_assigned, ENGINE,
        ik[1].rate, ik[2].rate) or "# intake not run",
      "# load offered_msg_s achieved_msg_s samples p50_ms p99_ms p99.9_ms max_ms engine_cpu_pct broker_cpu_pct",
    }
    for _, r in ipairs(rows) do
      out[#out + 1] = format("%.2f %d %d %d %.3f %.3f %.3f %.3f %.0f %.0f", r.load, r.rate, r.achieved, r.n, r.p50,
        r.p99, r.p999, r.max, r.ecpu, r.kcpu)
    end
    h.write_file(DAT, table.concat(out, "\n") .. "\n")
    print("wrote " .. DAT)
  end
  if e then e.stop() end
end)
h.stop_env(env)
if not ok then
  io.stderr:write("bench failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
