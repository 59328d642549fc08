-- The Grafana dashboard (deploy/grafana/impulse-dashboard.json) against a
-- real Prometheus: Debian's `prometheus` scrapes a running impulse every
-- second while it handles every kind of traffic the panels show (single and
-- group chats online and offline, a provider refusing and retrying, a
-- failing script, dead letters, reloads), and every expression of the
-- dashboard's panels, read from the JSON itself, must return data through
-- Prometheus's HTTP API. A panel naming a metric impulse does not export
-- fails this spec.
local h = require "spec.helpers"
local cjson = require "cjson"

local DASHBOARD = h.root .. "/deploy/grafana/impulse-dashboard.json"

-- jp- users go to JPush (the fake), "boom" breaks the policy
local POLICY = [[
local openim = require "openim"
local _M = {}
function _M.route(msg, ctx)
  if msg.recvID == "boom" then error("kaboom") end
  return openim.route(msg, ctx)
end
function _M.offline(msg, ctx, result) return openim.offline(msg, ctx, result) end
function _M.notice(msg) return openim.notice(msg) end
function _M.provider(user) if user:sub(1, 3) == "jp-" then return "jpush" end end
return _M
]]

-- Every target expression of the dashboard's panels (and of panels inside
-- collapsed rows), with the panel's title.
local function expressions(dash)
  local out = {}
  local function walk(panels)
    for _, p in ipairs(panels or {}) do
      for _, t in ipairs(p.targets or {}) do
        if t.expr and t.expr ~= "" then out[#out + 1] = { title = p.title, expr = t.expr } end
      end
      walk(p.panels)
    end
  end
  walk(dash.panels)
  return out
end

-- Grafana's variables as Prometheus reads them here.
local VARS = { __rate_interval = "1m", __interval = "1m", __range = "1h", instance = ".*" }

local function promql(expr)
  return (expr:gsub("%$%{?([%w_]+)%}?", function(name)
    return VARS[name] or error("unknown dashboard variable $" .. name)
  end))
end

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- The sum of a metric's series on impulse's /metrics whose labels contain
-- the given text.
local function metric_sum(imp, name, labels_part)
  local _, body = h.http("GET", imp.admin .. "/metrics")
  local sum, n = 0, 0
  for line in body:gmatch("[^\n]+") do
    local labels, v = line:match("^" .. name .. "{(.-)} (%S+)$")
    if labels and labels:find(labels_part, 1, true) then
      sum, n = sum + tonumber(v), n + 1
    end
  end
  return sum, n
end

describe("the Grafana dashboard against Prometheus #engine", function()
  local env, imp, fake, prom, dash, scripts

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  local function single(to, from)
    local m = h.push_msg { sendID = from or "zed", recvID = to, options = { senderSync = false } }
    h.produce(env, m, { no_flush = true })
    return m
  end

  -- a little of the everyday traffic: online, offline (log and JPush), a group
  local function traffic()
    single("alice")
    single("jp-bob")
    single("carol")
    h.produce(env, h.push_msg { sendID = "zed", recvID = "", groupID = "g-dash", sessionType = 3 }, { no_flush = true })
    env.producer:flush(10000)
  end

  local function query(expr)
    local status, body = h.http("GET", prom.url .. "/api/v1/query?query=" .. urlencode(expr))
    if status ~= 200 then return nil, "HTTP " .. status .. " " .. body end
    local j = cjson.decode(body)
    return j.data.result
  end

  lazy_setup(function()
    local text = assert(h.read_file(DASHBOARD), "no " .. DASHBOARD)
    dash = cjson.decode(text)
    env = h.start_env { gateways = 2 }
    fake = h.start_providers()
    local k = h.test_pki()
    scripts = h.tmpdir() .. "/prometheus-scripts"
    os.execute("mkdir -p " .. scripts .. " && cp -r " .. h.root .. "/scripts/. " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    h.set_online(env, { dave = { 2 } }, env.gateways[2])
    h.set_group(env, "g-dash", { "zed", "alice", "dave", "jp-bob", "carol" })
    imp = h.start_impulse(env, {
      workers = 2, scripts = scripts, provider = "log",
      push_yaml = h.jpush_yaml(fake.base),
      impulse_yaml = table.concat({
        "  providers:",
        "    caFile: " .. k.ca,
        "    backoffMs: 200",
        "    maxBackoffMs: 1000",
        "    attempts: 5",
        "    deadlineMs: 10000",
      }, "\n"),
    })
    -- Prometheus scraping impulse's /metrics every second
    local dir = h.tmpdir() .. "/prometheus-" .. h.free_port()
    os.execute("mkdir -p " .. dir .. "/data")
    h.write_file(dir .. "/prometheus.yml", table.concat({
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: impulse",
      "    static_configs:",
      "      - targets: ['" .. imp.admin:gsub("^http://", "") .. "']",
    }, "\n") .. "\n")
    local port = h.free_port()
    prom = h.spawn("prometheus", string.format(
      "prometheus --config.file=%s --storage.tsdb.path=%s --web.listen-address=127.0.0.1:%d",
      h.shell_quote(dir .. "/prometheus.yml"), h.shell_quote(dir .. "/data"), port))
    prom.data_dir = dir
    prom.url = "http://127.0.0.1:" .. port
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("is a Grafana dashboard with a Prometheus data source input", function()
    assert.equal("DS_PROMETHEUS", dash.__inputs[1].name)
    assert.equal("prometheus", dash.__inputs[1].pluginId)
    local exprs = expressions(dash)
    assert.is_true(#exprs >= 20, "only " .. #exprs .. " expressions")
    for _, p in ipairs(dash.panels) do
      if p.type ~= "row" then
        assert.equal("${DS_PROMETHEUS}", p.datasource.uid, p.title)
        assert.is_true(#p.targets > 0, p.title)
      end
    end
  end)

  it("reports the consumer lag, and 0 once caught up", function()
    -- gateway 1 hangs: alice's messages (one conversation) wait in turn
    -- alice's gateway connected first, so that calls to it wait for the timeout
    local warm = single("alice")
    env.producer:flush(10000)
    h.wait_until(function() return h.routes(imp)[warm.clientMsgID] end, 15000, "the first push")
    h.signal(env.gateways[1], h.SIGSTOP)
    for _ = 1, 6 do single("alice", "lagger") end
    env.producer:flush(10000)
    local ok, err = pcall(h.wait_until, function()
      return metric_sum(imp, "impulse_consumer_lag", 'topic="toPush"') >= 3
    end, 15000, "a lag of 3 or more on toPush")
    h.signal(env.gateways[1], h.SIGCONT)
    assert(ok, err)
    h.wait_until(function()
      local sum, n = metric_sum(imp, "impulse_consumer_lag", 'topic="toPush"')
      return n > 0 and sum == 0
    end, 60000, "the lag back to 0")
  end)

  it("gives data for every expression of the dashboard", function()
    -- once: a failing script, refused and retried provider sends, reloads
    control("POST", "/faults", {
      { provider = "jpush", bodyContains = "jp-bad", status = 400, times = -1,
        body = '{"error":{"code":1011,"message":"cannot find user by this audience"}}' },
      { provider = "jpush", bodyContains = "jp-retry", status = 503, times = 1 },
    })
    single("boom")
    single("jp-bad")
    single("jp-retry")
    traffic()
    local ok = pcall(h.wait_until, function()
      return h.metric(imp, "impulse_dead_letters_total", 'topic="toPush.dlq",result="ok"') >= 1
        and metric_sum(imp, "impulse_dead_letters_total", 'topic="toOfflinePush.dlq"') >= 1
        and metric_sum(imp, "impulse_provider_retries_total", "") >= 1
    end, 30000)
    if not ok then
      local _, body = h.http("GET", imp.admin .. "/metrics")
      local seen = {}
      for line in body:gmatch("[^\n]+") do
        if line:match("^impulse_dead_letters") or line:match("^impulse_provider") then seen[#seen + 1] = line end
      end
      error("timed out waiting for the dead letters and the retry:\n" .. table.concat(seen, "\n"))
    end
    h.write_file(scripts .. "/push.lua", POLICY .. "-- touched\n")
    h.wait_until(function() return h.metric(imp, "impulse_script_reload_total", 'result="ok"') >= 1 end,
      10000, "a reload")
    h.write_file(scripts .. "/push.lua", "return {")
    h.wait_until(function() return h.metric(imp, "impulse_script_reload_total", 'result="error"') >= 1 end,
      10000, "a failed reload")
    h.write_file(scripts .. "/push.lua", POLICY)

    h.wait_until(function() return h.http("GET", prom.url .. "/-/ready") == 200 end, 60000, "Prometheus ready")
    h.wait_until(function()
      local _, body = h.http("GET", prom.url .. "/api/v1/targets")
      local j = cjson.decode(body)
      local t = j and j.data and j.data.activeTargets and j.data.activeTargets[1]
      return t and t.health == "up"
    end, 30000, "the impulse target up")

    -- each expression until it returns a sample that is a number, traffic
    -- flowing meanwhile so that rates and ratios have something to divide
    local missing, last_traffic = {}, 0
    for _, e in ipairs(expressions(dash)) do
      local expr = promql(e.expr)
      local deadline, got, why = h.now_ms() + 60000, false, "no result"
      repeat
        if h.now_ms() - last_traffic > 2000 then
          traffic()
          last_traffic = h.now_ms()
        end
        local result, err = query(expr)
        if not result then
          why = err
        else
          for _, s in ipairs(result) do
            local v = tonumber(s.value[2])
            if v and v == v then got = true end
          end
          if not got then why = #result == 0 and "no result" or "only NaN" end
        end
        if not got then h.sleep_ms(500) end
      until got or h.now_ms() > deadline
      if not got then missing[#missing + 1] = string.format("%s: %s (%s)", e.title, expr, why) end
    end
    assert.same({}, missing)
  end)
end)
