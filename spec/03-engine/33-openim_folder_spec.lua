-- Replacing openim-push as openim-docker runs it: OpenIM v3.8.3-patch.15's
-- own config folder, unmodified (spec/fixtures/openim-config/, taken from
-- open-im-server's config/ at that tag: enable: geTui with empty keys,
-- autoSetPorts, Prometheus on), with only the addresses set through IMENV_
-- variables as openim-docker and OpenIM's Kubernetes manifests set them,
-- started as `impulse -c <folder> -i 0` with no impulse-specific file
-- (impulse's own admin address and crash journal through IMENV_IMPULSE_*,
-- so parallel runs do not share them). Messages reach the gateways, and the
-- metrics endpoint is where OpenIM's Prometheus discovery looks (issue 14).
-- log.yml's folder (../../../../logs/) is moved to a temporary one and its
-- lines to stdout in JSON through IMENV_LOG_*, as docker sets isStdout, so
-- the spec reads them (the file: spec 34).
local h = require "spec.helpers"
local cjson = require "cjson"

local FOLDER = h.root .. "/spec/fixtures/openim-config/v3.8.3-patch.15"

describe("an unmodified OpenIM v3.8.3-patch.15 config folder #engine", function()
  local env, imp, admin, logdir

  lazy_setup(function()
    env = {}
    env.redis = h.start_redis()
    env.etcd = h.start_etcd()
    env.kafka = h.start_kafka()
    env.services = h.start_services(env.etcd)
    env.gateways = { h.start_gateway(env.etcd) }
    env.producer = h.kafka.producer { bootstrap = env.kafka.bootstrap }
    h.set_online(env, { ann = { 2 } }, env.gateways[1])
    -- redis.yml holds password openIM123, which openim-docker keeps
    h.redis_cli(env.redis, "CONFIG", "SET", "requirepass", "openIM123")
    admin = h.free_port()
    logdir = h.tmpdir() .. "/openim-logs-" .. admin
    local vars = {
      IMENV_LOG_STORAGELOCATION = logdir,
      IMENV_LOG_ISSTDOUT = "true",
      IMENV_LOG_ISJSON = "true",
      IMENV_KAFKA_ADDRESS = env.kafka.bootstrap,
      -- a partition with no commit starts at its first record: with OpenIM's
      -- "latest", a record produced between the assignment and the offset
      -- lookup would be skipped (a race of the test, not of the engine)
      IMENV_IMPULSE_AUTOOFFSETRESET = "earliest",
      IMENV_REDIS_ADDRESS = env.redis.addr,
      IMENV_DISCOVERY_ETCD_ADDRESS = env.etcd.addr,
      IMENV_IMPULSE_ADMIN = "127.0.0.1:" .. admin,
      IMENV_IMPULSE_CRASHJOURNAL = h.tmpdir() .. "/crash-journal-" .. admin,
      IMENV_IMPULSE_DEADLETTERSPOOL = h.tmpdir() .. "/spool-" .. admin,
    }
    local parts = {}
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. h.shell_quote(v) end
    imp = h.spawn("impulse", "env " .. table.concat(parts, " ") .. " " .. h.shell_quote(h.bin)
      .. " -c " .. h.shell_quote(FOLDER) .. " -i 0")
    imp.admin = "http://127.0.0.1:" .. admin
    h.wait_ready(imp, 40000)
  end)

  lazy_teardown(function() h.stop_env(env) end)

  it("starts, naming its release, the IMENV_ keys and the unconfigured provider", function()
    local line = h.log_lines(imp, "openim: behaving as openim-push")[1]
    assert.is_truthy(line)
    assert.matches("detected: redis.redisMode", line.msg, 1, true)
    local env_line = h.log_lines(imp, "config: IMENV_ variables override")[1]
    assert.is_truthy(env_line)
    for _, k in ipairs { "kafka.address", "redis.address", "discovery.etcd.address", "impulse.admin",
      "log.storageLocation", "log.isStdout", "log.isJson" } do
      assert.matches(k, env_line.msg, 1, true)
    end
    assert.is_truthy(h.log_lines(imp, "openim-push.enable: getui:")[1])
  end)

  it("logs as log.yml says: OpenIM's JSON lines to stdout and to today's file, at remainLogLevel 6", function()
    local line = h.log_lines(imp, "log: OpenIM's JSON lines (log.yml) to ")[1]
    assert.is_truthy(line, "no start line about the logs")
    assert.equal("INFO", line.level)
    assert.equal("openim-push", line.logger)
    assert.matches("level debug (log.remainLogLevel 6)", line.msg, 1, true)
    local file = logdir .. "/openim-service-log." .. os.date("%Y-%m-%d")
    local text = h.read_file(file)
    assert.is_truthy(text, "no " .. file .. " (" .. h.run("ls " .. logdir) .. ")")
    local n = 0
    for l in text:gmatch("[^\n]+") do
      local j = cjson.decode(l)
      assert.equal("openim-push", j.logger)
      n = n + 1
    end
    assert.is_true(n > 0)
  end)

  it("pushes to the gateway it finds under openim/messageGateway", function()
    local m = h.push_msg { sendID = "bob", recvID = "ann" }
    h.produce(env, m)
    local seen = h.wait_until(function()
      return h.http_json("GET", env.gateways[1].control .. "/seen")[m.clientMsgID]
    end, 30000, "the push at the gateway")
    assert.same({ "ann" }, seen)
  end)

  it("runs a second process of the same folder as -i 1, as OpenIM's start scripts do", function()
    -- mage start runs openim-push -i 0..7 -c <folder> on one host: the
    -- second takes its own crash journal file (the first holds the lock),
    -- metrics key and admin port (9470 + index by default, c/config; a free
    -- one here, so parallel runs do not meet)
    local admin2 = h.free_port()
    local second = h.spawn("impulse-1", "env IMENV_KAFKA_ADDRESS=" .. env.kafka.bootstrap
      .. " IMENV_IMPULSE_ADMIN=127.0.0.1:" .. admin2
      .. " IMENV_REDIS_ADDRESS=" .. env.redis.addr .. " IMENV_DISCOVERY_ETCD_ADDRESS=" .. env.etcd.addr
      .. " IMENV_IMPULSE_CRASHJOURNAL=" .. h.tmpdir() .. "/crash-journal-" .. admin
      .. " IMENV_IMPULSE_DEADLETTERSPOOL=" .. h.tmpdir() .. "/spool-1-" .. admin
      .. " IMENV_LOG_STORAGELOCATION=" .. logdir .. " IMENV_LOG_ISSTDOUT=true IMENV_LOG_ISJSON=true"
      .. " " .. h.shell_quote(h.bin) .. " -c " .. h.shell_quote(FOLDER) .. " -i 1")
    local value = h.wait_until(function()
      if not h.alive(second) then error("the -i 1 process exited:\n" .. h.run("cat " .. second.log), 0) end
      return h.etcd_keys(env.etcd, "openim/prometheus_discovery/")["openim/prometheus_discovery/push/1"]
    end, 30000, "openim/prometheus_discovery/push/1")
    assert.equal(200, (h.http("GET", "http://" .. cjson.decode(value).target .. "/metrics")))
    h.wait_until(function() return h.http("GET", "http://127.0.0.1:" .. admin2 .. "/readyz") == 200 end,
      30000, "the -i 1 process ready")
    local files = h.run("ls " .. h.tmpdir())
    assert.matches("crash%-journal%-" .. admin .. "%.1\n", files, nil, "its own journal file: " .. files)
    h.stop(second)
  end)

  it("announces its metrics endpoint where OpenIM's Prometheus discovery reads it", function()
    local value = h.wait_until(function()
      return h.etcd_keys(env.etcd, "openim/prometheus_discovery/")["openim/prometheus_discovery/push/0"]
    end, 20000, "openim/prometheus_discovery/push/0")
    local target = cjson.decode(value).target
    local status, body = h.http("GET", "http://" .. target .. "/metrics")
    assert.equal(200, status)
    assert.matches("\nmsg_long_time_push_total ", body, 1, true)
    assert.matches("\nprocess_resident_memory_bytes ", body, 1, true)
  end)
end)
