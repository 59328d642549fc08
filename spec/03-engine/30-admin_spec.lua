-- The admin endpoints stay off the network: openim-push's metrics port
-- (prometheus.ports, bound on 0.0.0.0 as OpenIM does) serves /metrics and
-- nothing else; the admin listener (/healthz, /readyz, /admin/reload)
-- refuses a non-loopback address without impulse.adminToken, and with a
-- token answers 401 to a request without it; /metrics has the standard
-- process_* metrics (issue 14).
local h = require "spec.helpers"

describe("admin endpoints #engine", function()
  local env

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("serves only /metrics on the metrics port", function()
    local prom, rpc = h.free_port(), h.free_port()
    local imp = h.start_impulse(env, {
      workers = 1,
      push_yaml = "  prometheus:\n    enable: true\n    ports: [" .. prom .. "]",
      rpc_yaml = "    autoSetPorts: false\n    ports: [" .. rpc .. "]",
    })
    local base = "http://127.0.0.1:" .. prom
    local status, body = h.http("GET", base .. "/metrics")
    assert.equal(200, status)
    assert.matches("impulse_messages_total", body)
    -- the standard process_* metrics, as OpenIM's Go services export them
    local function value(name) return tonumber(body:match("\n" .. name .. " ([^\n]+)")) end
    assert.is_true(value("process_resident_memory_bytes") > 1e6, "process_resident_memory_bytes")
    assert.is_true(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"))
    assert.is_true(value("process_open_fds") > 5, "process_open_fds")
    assert.is_true(value("process_max_fds") >= value("process_open_fds"))
    assert.is_true(value("process_cpu_seconds_total") >= 0)
    local started = value("process_start_time_seconds")
    assert.is_true(started > os.time() - 600 and started <= os.time() + 2, "process_start_time_seconds " .. started)
    assert.equal(404, (h.http("GET", base .. "/healthz")))
    assert.equal(404, (h.http("GET", base .. "/readyz")))
    assert.equal(404, (h.http("POST", base .. "/admin/reload", "")))
    -- the admin listener still has them
    assert.equal(200, (h.http("GET", imp.admin .. "/healthz")))
    h.stop(imp)
  end)

  -- rpc.autoSetPorts (OpenIM's default): /metrics on a free port, announced
  -- in etcd where OpenIM's Prometheus discovery (openim-api) reads it
  for _, case in ipairs {
    { openim = "v3.8.3", key = "openim/prometheus_discovery/push", lease = false },
    { openim = "v3.8.3-patch.15", key = "openim/prometheus_discovery/push/0", lease = true },
  } do
    it("announces its metrics endpoint in etcd as openim-push " .. case.openim .. " does", function()
      local imp = h.start_impulse(env, { workers = 1, impulse = { openim = case.openim },
        push_yaml = "  prometheus:\n    enable: true\n    ports: [ 12170 ]" })
      local value = h.wait_until(function() return h.etcd_keys(env.etcd, "openim/prometheus_discovery/")[case.key] end,
        20000, case.key)
      local v = require("cjson").decode(value)
      assert.same({ namespace = "default" }, v.labels)
      local status, body = h.http("GET", "http://" .. v.target .. "/metrics")
      assert.equal(200, status)
      assert.matches("\nmsg_offline_push_failed_total 0\n", body, 1, true)
      assert.equal(404, (h.http("GET", "http://" .. v.target .. "/healthz")))
      local lease = h.run(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s get %s -w json",
        env.etcd.url, case.key))
      assert.equal(case.lease, lease:match('"lease":%d+') ~= nil, lease)
      h.stop(imp)
      h.run(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s del --prefix openim/prometheus_discovery/",
        env.etcd.url))
    end)
  end

  it("does not start with a non-loopback admin address and no token", function()
    local port = h.free_port()
    local cfg = h.impulse_config(env, { admin_port = port, impulse = { admin = "0.0.0.0:" .. port } })
    local out = io.popen(h.bin .. " run -c " .. cfg .. " 2>&1; echo rc=$?"):read("*a")
    assert.matches("rc=2", out)
    assert.matches("config: impulse%.admin: '0%.0%.0%.0:%d+' is not a loopback address", out)
    local check = io.popen(h.bin .. " check --skip-kafka -c " .. cfg .. " 2>&1; echo rc=$?"):read("*a")
    assert.matches("impulse%.admin", check)
    assert.matches("rc=2", check)
  end)

  it("asks for the token on every request when one is set", function()
    local port = h.free_port()
    local imp = h.start_impulse(env, { workers = 1, admin_port = port, no_wait = true,
      impulse = { admin = "0.0.0.0:" .. port, adminToken = "s3cret" } })
    local url = "http://127.0.0.1:" .. port
    local function get(path, token)
      local hdr = token and (" -H 'Authorization: Bearer " .. token .. "'") or ""
      return tonumber(io.popen("curl -s -o /dev/null -w '%{http_code}'" .. hdr .. " " .. url .. path):read("*a"))
    end
    h.wait_until(function() return get("/readyz", "s3cret") == 200 end, 30000, "/readyz with the token")
    assert.equal(401, get("/readyz"))
    assert.equal(401, get("/healthz", "wrong"))
    assert.equal(401, get("/metrics"))
    assert.equal(200, get("/healthz", "s3cret"))
    h.stop(imp)
  end)
end)
