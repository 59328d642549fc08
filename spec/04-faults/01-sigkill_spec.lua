-- Fault: impulse SIGKILLed five times during a 20,000-message stream and
-- restarted each time, at points drawn from a fixed seed (the same points
-- every run). Once for the online path (every message counted at the
-- gateway) and once for the offline path (toPush, then toOfflinePush, then
-- the fake JPush: every message's request counted there). Nothing may be
-- lost; the replays (duplicates) must stay within what was in flight when
-- each kill hit; /readyz comes back after every restart. The figures are
-- printed.
local h = require "spec.helpers"
local F = require "spec.helpers.faults"

local MESSAGES = 20000
local KILLS = 5
local BATCH = 250
local BURST = 1000
local SEED = 20240612
local WORKERS = 2
local MAX_INFLIGHT = 1024 -- impulse.maxInflight's default, per worker
-- A restarted impulse is ready once its group has rebalanced, which waits
-- for the killed members' sessions to time out: a short session keeps the
-- ten restarts within the suite's time.
local GROUP = { sessionTimeoutMs = 3500, heartbeatIntervalMs = 500 }

describe("SIGKILL x5 during a stream #faults", function()
  local env, fake

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    fake = h.start_providers()
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  -- The kill points, in messages produced: KILLS draws in [1000, 18000],
  -- sorted. At a point a burst of BURST messages is produced and impulse
  -- is killed once it has delivered some of it (so each kill hits a
  -- working engine with messages in flight); BATCH more are produced while
  -- it is down, then it is restarted.
  local function kill_points()
    local r = F.rng(SEED)
    local pts = {}
    for i = 1, KILLS do pts[i] = r(1000, MESSAGES - 2000) end
    table.sort(pts)
    return pts
  end

  -- Runs the stream with the kills; counts_fn() -> {clientMsgID: n} where
  -- the path ends. Returns the stream, one record per kill, the figures
  -- and the first start's time to ready.
  local function run(users, tag, opts, counts_fn)
    local s = F.stream(env, tag, users)
    local imp, ready_ms = F.start_timed(env, opts)
    local kills, pts = {}, kill_points()
    local function delivered() return F.count_delivered(counts_fn(), s.ids) end
    while s.n < MESSAGES do
      if #kills < KILLS and s.n >= pts[#kills + 1] then
        local before = delivered()
        s:produce(math.min(BURST, MESSAGES - s.n))
        h.wait_until(function() return delivered() >= before + 100 end, 120000, "impulse to work on the burst")
        F.kill(imp)
        local k = { produced = s.n, delivered = delivered() }
        if s.n < MESSAGES then s:produce(math.min(BATCH, MESSAGES - s.n)) end -- while it is down
        imp, k.ready_ms = F.start_timed(env, opts)
        kills[#kills + 1] = k
      else
        s:produce(math.min(BATCH, MESSAGES - s.n))
      end
      if not h.alive(imp) then error("impulse exited by itself; log:\n" .. (h.read_file(imp.log) or "")) end
    end
    F.wait_all(counts_fn, s.ids, 300000, "all " .. MESSAGES .. " messages")
    -- /readyz is still 200 after the last restart, once the stream is done
    assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
    h.stop(imp)
    -- counted after the stop: a push still in flight is counted too
    return s, kills, F.figures(counts_fn(), s.ids), ready_ms
  end

  local function report(path, kills, fig, first_ready)
    local parts = {}
    for i, k in ipairs(kills) do
      parts[i] = string.format("#%d at %d produced/%d delivered, ready in %d ms", i, k.produced, k.delivered,
        k.ready_ms)
    end
    print(string.format("\n    %s: %d messages, %d SIGKILLs (seed %d), %d lost, %d duplicates (max %d per "
      .. "message); sessionTimeoutMs 3500; first start ready in %d ms\n      %s", path, MESSAGES, #kills, SEED,
      fig.missing, fig.dups, fig.max, first_ready, table.concat(parts, "\n      ")))
  end

  -- legs: the consumers a message goes through (offline: toPush, then
  -- toOfflinePush), each with its own in-flight window per worker
  local function check(kills, fig, legs)
    assert.equal(KILLS, #kills)
    for i, k in ipairs(kills) do
      assert.is_true(k.delivered < MESSAGES, "kill " .. i .. " came after the stream was delivered")
    end
    assert.equal(0, fig.missing)
    -- loose: each kill replays at most what was started and not yet
    -- committed: every worker's window, plus a commit interval's worth
    assert.is_true(fig.dups <= KILLS * legs * (WORKERS * MAX_INFLIGHT + 1000),
      fig.dups .. " duplicates: more than " .. KILLS .. " in-flight windows")
  end

  it("online path: every message reaches the gateway", function()
    local users, online = {}, {}
    for i = 1, 200 do
      users[i] = "on" .. i
      online[users[i]] = { 1 }
    end
    h.set_online(env, online, env.gateways[1])
    local opts = { workers = WORKERS, ready_timeout_ms = 90000, impulse = GROUP }
    local _, kills, fig, first = run(users, "kill-on", opts, function() return F.gateway_counts(env.gateways[1]) end)
    report("online", kills, fig, first)
    check(kills, fig, 1)
  end)

  it("offline path: every message's notification reaches the provider", function()
    local k = h.test_pki()
    local users = {}
    for i = 1, 200 do users[i] = "off" .. i end -- never online: each message goes offline
    local opts = {
      workers = WORKERS, ready_timeout_ms = 90000, provider = "jpush", impulse = GROUP,
      push_yaml = h.jpush_yaml(fake.base),
      impulse_yaml = table.concat({
        "  providers:",
        "    caFile: " .. k.ca,
        "    backoffMs: 200",
        "    maxBackoffMs: 1000",
      }, "\n"),
    }
    local _, kills, fig, first = run(users, "kill-off", opts, function() return F.jpush_counts(fake) end)
    report("offline", kills, fig, first)
    check(kills, fig, 2)
  end)
end)
