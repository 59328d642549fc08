-- The status page on the admin listener (issue 15): GET / is a plain HTML
-- page whose script polls /healthz and /metrics. Headless Chromium loads
-- it while messages flow (the figures lie between /metrics before and
-- after, rates are numbers >= 0), then again once everything is handled
-- (every figure equals /metrics and /healthz read right after, gateways
-- and the last reload error included) and saves a screenshot under
-- build/test-output/. A hung gateway shows as skipped while the workers'
-- breakers are open, and healthy once they close. The metrics-only
-- listener does not serve the page, and with impulse.adminToken the page
-- wants the token (?token=).
local h = require "spec.helpers"

local format = string.format

local OUT = (os.getenv("IMPULSE_BUILD") or (h.root .. "/build")) .. "/test-output"
local N, ONLINE_USERS = 300, 40

local runs = 0

-- Loads url in headless Chromium in the background; returns the process
-- and where its DOM will be (read it after h.wait_exit).
local function chromium_start(url, screenshot)
  assert(os.execute("command -v chromium >/dev/null") == 0,
    "chromium is not installed (./dev build installs it: apt-get install chromium)")
  runs = runs + 1
  local dir = format("%s/chromium-%d", h.tmpdir(), runs)
  local cmd = format("chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
    .. "--user-data-dir=%s --virtual-time-budget=10000 --window-size=1280,900 %s--dump-dom %s > %s",
    h.shell_quote(dir), screenshot and ("--screenshot=" .. h.shell_quote(screenshot) .. " ") or "",
    h.shell_quote(url), h.shell_quote(dir .. ".html"))
  return h.spawn("chromium", "sh -c " .. h.shell_quote(cmd)), dir .. ".html"
end

local function chromium(url, screenshot)
  local p, dom = chromium_start(url, screenshot)
  h.wait_exit(p, 90000)
  return assert(h.read_file(dom), "no DOM from chromium; its log:\n" .. (h.read_file(p.log) or ""))
end

local function unescape(s)
  return (s:gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&"))
end

local function attr(tag, name)
  local v = tag:match("%s" .. name:gsub("%-", "%%-") .. '="([^"]*)"')
  return v and unescape(v)
end

-- data-value of the element with this id
local function value(dom, id)
  local tag = dom:match('<[^>]-%sid="' .. id:gsub("%-", "%%-") .. '"[^>]*>')
  assert(tag, "no element #" .. id .. " in the page")
  return attr(tag, "data-value")
end

local function number(dom, id)
  local v = value(dom, id)
  local n = tonumber(v)
  assert(n, format("#%s shows %q, not a number", id, tostring(v)))
  return n
end

-- table rows with data-series: series -> { total =, rate = }
local function rows(dom)
  local out = {}
  for tag in dom:gmatch("<tr%s[^>]*>") do
    local series = attr(tag, "data-series")
    if series then out[series] = { total = tonumber(attr(tag, "data-total")), rate = attr(tag, "data-rate") } end
  end
  return out
end

-- /metrics as series -> value
local function metrics(imp)
  local status, body = h.http("GET", imp.admin .. "/metrics")
  assert.equal(200, status)
  local out = {}
  for line in body:gmatch("[^\n]+") do
    local k, v = line:match("^([^#][^ ]*) (%S+)$")
    if k then out[k] = tonumber(v) end
  end
  return out
end

local function sum(m, name, pred)
  local n = 0
  for k, v in pairs(m) do
    if k == name or k:sub(1, #name + 1) == name .. "{" then
      if not pred or pred(k) then n = n + v end
    end
  end
  return n
end

local TABLES = { "impulse_messages_total", "impulse_gateway_calls_total", "impulse_dead_letters_total",
                 "impulse_offline_push_total" }

describe("status page #engine", function()
  local env, imp, scripts, prom

  lazy_setup(function()
    env = h.start_env { gateways = 2 }
    local on1, on2 = {}, {}
    for i = 1, ONLINE_USERS do (i % 2 == 0 and on2 or on1)["u" .. i] = { 1 } end
    h.set_online(env, on1, env.gateways[1])
    h.set_online(env, on2, env.gateways[2])
    scripts = h.tmpdir() .. "/status-scripts"
    os.execute("mkdir -p " .. scripts .. " && cp -r " .. h.root .. "/scripts/. " .. scripts)
    prom = h.free_port()
    imp = h.start_impulse(env, { workers = 2, scripts = scripts, provider = "log",
      push_yaml = "  prometheus:\n    enable: true\n    ports: [" .. prom .. "]",
      rpc_yaml = "    autoSetPorts: false\n    ports: [" .. h.free_port() .. "]" })
    h.wait_until(function()
      return h.http_json("GET", imp.admin .. "/healthz").onlineUsers == ONLINE_USERS
    end, 20000, "the online table loaded")
  end)

  lazy_teardown(function()
    if env then h.signal(env.gateways[2], h.SIGCONT) end
    h.stop_env(env)
  end)

  it("shows what /metrics and /healthz say, while messages flow and after", function()
    -- N records: mostly online users, every 10th an offline user (the log
    -- provider), every 50th garbage (a dead letter)
    local bad, offline = 0, 0
    local function send(i)
      if i % 50 == 0 then
        bad = bad + 1
        env.producer:produce("toPush", "k-bad-" .. i, "\255garbage", {
          { "operationID", "op-bad-" .. i }, { "opUserID", "x" }, { "platform", "iOS" }, { "connID", "c" } })
      else
        local to = i % 10 == 0 and ("off" .. i % 7) or ("u" .. (i % ONLINE_USERS + 1))
        if i % 10 == 0 then offline = offline + 1 end
        h.produce(env, h.push_msg { sendID = "s" .. i, recvID = to, options = { senderSync = false } },
          { no_flush = true })
      end
    end
    local before, page, dom
    for batch = 0, 14 do
      for i = batch * 20 + 1, batch * 20 + 20 do send(i) end
      env.producer:flush(10000)
      if batch == 3 then -- the page loads while the rest flows
        before = metrics(imp)
        page, dom = chromium_start(imp.admin .. "/")
      end
      h.sleep_ms(400)
    end
    h.wait_exit(page, 90000)
    local after = metrics(imp)
    local flowing = assert(h.read_file(dom), "no DOM from chromium")

    assert.equal("ok", flowing:match('<body[^>]-data%-state="(%w+)"'), "the page's polls failed")
    assert.is_true(tonumber(flowing:match('data%-polls="(%d+)"')) >= 2, "fewer than two polls")
    local ok_of = function(m) return sum(m, "impulse_messages_total", function(k) return k:match('result="ok"') end) end
    local shown = number(flowing, "msg-ok")
    assert.is_true(shown >= ok_of(before) and shown <= ok_of(after),
      format("messages ok: the page shows %d, /metrics had %d before and %d after", shown, ok_of(before),
        ok_of(after)))
    assert.is_true(number(flowing, "msg-rate") >= 0)
    local flowing_rows = rows(flowing)
    assert.is_not_nil(next(flowing_rows), "no table rows")
    for series, r in pairs(flowing_rows) do
      local rate = tonumber(r.rate)
      assert.is_true(rate ~= nil and rate >= 0, format("%s: rate %q", series, tostring(r.rate)))
      assert.is_true(r.total >= (before[series] or 0) and r.total <= after[series],
        format("%s: the page shows %d, /metrics had %s before and %s after", series, r.total,
          tostring(before[series]), tostring(after[series])))
    end
    print(format("\n    while messages flowed: %d messages ok shown (%d before, %d after), %s messages/s",
      shown, ok_of(before), ok_of(after), value(flowing, "msg-rate")))

    -- everything handled: toPush records, the offline leg, the dead letters
    h.wait_until(function()
      local m = metrics(imp)
      return m['impulse_messages_total{topic="toPush",result="ok"}'] == N - bad
        and m['impulse_messages_total{topic="toPush",result="bad_record"}'] == bad
        and m['impulse_messages_total{topic="toOfflinePush",result="ok"}'] == offline
        and m['impulse_dead_letters_total{topic="toPush.dlq",result="ok"}'] == bad
    end, 60000, "every message handled")
    -- a broken script: kept out, its error shown
    h.write_file(scripts .. "/push.lua", "return {\n")
    local st = h.wait_until(function()
      local s = h.http_json("GET", imp.admin .. "/healthz")
      return s.scripts.lastError and s
    end, 20000, "the reload error")

    os.execute("mkdir -p " .. h.shell_quote(OUT))
    local png = OUT .. "/status.png"
    os.remove(png)
    local final = chromium(imp.admin .. "/status", png)
    local m = metrics(imp)
    local hz = h.http_json("GET", imp.admin .. "/healthz")
    h.write_file(OUT .. "/status.html", final)

    assert.equal("ok", final:match('<body[^>]-data%-state="(%w+)"'))
    assert.equal(m.impulse_online_users, number(final, "online-users"))
    assert.equal(ONLINE_USERS, number(final, "online-users"))
    assert.equal(sum(m, "impulse_messages_total", function(k) return k:match('result="ok"') end),
      number(final, "msg-ok"))
    assert.equal(sum(m, "impulse_messages_total", function(k) return not k:match('result="ok"') end),
      number(final, "msg-failed"))
    assert.equal(bad, number(final, "dead-letters"))
    assert.equal(sum(m, "impulse_offline_push_total", function(k) return k:match('result="sent"') end),
      number(final, "offline-sent"))
    assert.is_true(number(final, "offline-sent") >= offline)
    assert.equal(m.msg_offline_push_failed_total, number(final, "offline-failed"))
    assert.equal(#hz.workers, number(final, "workers"))
    -- every row equals its series, every series counted so far has its row
    local final_rows = rows(final)
    for series, r in pairs(final_rows) do
      assert.equal(m[series], r.total, series)
      assert.is_true(tonumber(r.rate) >= 0, series)
    end
    for _, name in ipairs(TABLES) do
      for k, v in pairs(m) do
        if k:sub(1, #name + 1) == name .. "{" and v > 0 then
          assert.is_truthy(final_rows[k], "the page has no row for " .. k)
        end
      end
    end
    assert.equal(N - bad, final_rows['impulse_messages_total{topic="toPush",result="ok"}'].total)
    assert.is_truthy(final_rows['impulse_offline_push_total{provider="log",result="sent"}'])
    -- gateways: both, healthy
    local gws = {}
    for tag in final:gmatch("<tr%s[^>]*data%-addr=[^>]*>") do
      gws[attr(tag, "data-addr")] = { health = attr(tag, "data-health"),
                                      open = tonumber(attr(tag, "data-breakers-open")) }
    end
    assert.same({ [env.gateways[1].grpc] = { health = "ok", open = 0 },
                  [env.gateways[2].grpc] = { health = "ok", open = 0 } }, gws)
    -- scripts: the version still active, the last reload's error
    assert.equal(st.scripts.active, hz.scripts.active)
    assert.equal(hz.scripts.active, value(final, "scripts-version"))
    assert.equal(hz.scripts.lastError, value(final, "scripts-error"))
    assert.matches("push%.lua", value(final, "scripts-error"))
    assert.equal(hz.scripts.reloadFailures, number(final, "scripts-failures"))
    assert.equal(m['impulse_script_reload_total{result="error"}'], hz.scripts.reloadFailures)

    local size = #(h.read_file(png) or "")
    assert.is_true(size > 10000, "screenshot " .. png .. ": " .. size .. " bytes")
    print(format("    screenshot: %s (%d bytes); DOM: %s/status.html", png, size, OUT))
  end)

  it("shows a hung gateway skipped by the workers' breakers, and healthy again", function()
    local hung = env.gateways[2]
    local function open_of(st)
      for _, n in ipairs(st.gateways.nodes) do if n.addr == hung.grpc then return n.breakersOpen end end
    end
    h.signal(hung, h.SIGSTOP)
    local i = 1000
    local st = h.wait_until(function() -- calls time out; three in a row open a worker's breaker
      for _ = 1, 8 do
        i = i + 1
        h.produce(env, h.push_msg { sendID = "b" .. i, recvID = "u2", options = { senderSync = false } },
          { no_flush = true })
      end
      env.producer:flush(10000)
      h.sleep_ms(500)
      local s = h.http_json("GET", imp.admin .. "/healthz")
      return open_of(s) > 0 and s
    end, 60000, "a breaker open for the hung gateway")
    -- no message comes in while the page loads: no probe, no change
    local dom = chromium(imp.admin .. "/")
    local after = h.http_json("GET", imp.admin .. "/healthz")
    local open = open_of(after)
    assert.is_true(open >= 1 and open <= #after.workers)
    assert.equal(open_of(st), open)
    assert.equal(open, h.metric(imp, "impulse_gateway_breakers_open", 'gateway="' .. hung.grpc .. '"'))
    local tag = dom:match('<tr%s[^>]*data%-addr="' .. hung.grpc:gsub("%p", "%%%0") .. '"[^>]*>')
    assert.is_truthy(tag, "no row for the hung gateway")
    assert.equal(open, tonumber(attr(tag, "data-breakers-open")))
    assert.equal(open == #after.workers and "bad" or "warn", attr(tag, "data-health"))
    tag = dom:match('<tr%s[^>]*data%-addr="' .. env.gateways[1].grpc:gsub("%p", "%%%0") .. '"[^>]*>')
    assert.equal("ok", attr(tag, "data-health"))

    h.signal(hung, h.SIGCONT)
    h.wait_until(function() -- probes go through and close the breakers
      i = i + 1
      h.produce(env, h.push_msg { sendID = "b" .. i, recvID = "u2", options = { senderSync = false } })
      h.sleep_ms(200)
      return open_of(h.http_json("GET", imp.admin .. "/healthz")) == 0
    end, 60000, "the breakers closed")
    dom = chromium(imp.admin .. "/")
    tag = dom:match('<tr%s[^>]*data%-addr="' .. hung.grpc:gsub("%p", "%%%0") .. '"[^>]*>')
    assert.equal("ok", attr(tag, "data-health"))
    assert.equal(0, tonumber(attr(tag, "data-breakers-open")))
  end)

  it("is not served on the metrics-only listener", function()
    local base = "http://127.0.0.1:" .. prom
    assert.equal(200, (h.http("GET", base .. "/metrics")))
    for _, path in ipairs { "/", "/status", "/?token=x" } do
      local status, body = h.http("GET", base .. path)
      assert.equal(404, status, path)
      assert.not_matches("<html", body)
    end
    local status, body = h.http("GET", imp.admin .. "/")
    assert.equal(200, status)
    assert.matches("<title>impulse status</title>", body, 1, true)
  end)

  it("asks for the token when one is set, and takes it as ?token=", function()
    local port = h.free_port()
    local token = "p@ss+w/rd"
    local imp2 = h.start_impulse(env, { workers = 1, admin_port = port, no_wait = true,
      impulse = { admin = "0.0.0.0:" .. port, adminToken = token } })
    local url = "http://127.0.0.1:" .. port
    local function get(path, bearer)
      local hdr = bearer and (" -H " .. h.shell_quote("Authorization: Bearer " .. bearer)) or ""
      local out = h.run("curl -s -m 5 -w '\\n%{http_code} %{content_type}'" .. hdr .. " " .. h.shell_quote(url .. path))
      local body, code, ctype = out:match("^(.*)\n(%d+) (.*)$")
      return tonumber(code), body, ctype
    end
    h.wait_until(function() return get("/readyz", token) == 200 end, 30000, "/readyz with the token")
    local q = "?token=p%40ss%2Bw%2Frd"

    local status, body, ctype = get("/")
    assert.equal(401, status)
    assert.matches("text/html", ctype)
    assert.matches('name="token"', body) -- the form
    assert.equal(401, (get("/?token=wrong")))
    assert.equal(401, (get("/?token=p%40ss%2Bw%2Fr")))
    assert.equal(401, (get("/healthz" .. q))) -- the query token opens the page only
    status, body, ctype = get("/" .. q)
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", ctype)
    assert.matches("<title>impulse status</title>", body, 1, true)
    assert.equal(200, (get("/status", token)))

    -- in the browser: the page's script sends the token on
    local dom = chromium(url .. "/" .. q)
    assert.equal("ok", dom:match('<body[^>]-data%-state="(%w+)"'))
    assert.equal(ONLINE_USERS, number(dom, "online-users"))
    -- and without it, the form
    dom = chromium(url .. "/")
    assert.matches('name="token"', dom)
    assert.is_nil(dom:match("data%-polls"))
    h.stop(imp2)
  end)
end)
