-- Done-when (b) of issue 14: open-im-server main's own config folder (the
-- layout after v3.8.4-alpha.1: discovery.rpcService names, getui:,
-- share.imAdminUser, empty rpc.ports and prometheus.ports, prometheus.enable
-- false which main never reads), unmodified (spec/fixtures/openim-config/
-- main), with only addresses through IMENV_ variables, started as
-- `impulse -c <folder> -i 0`. Messages reach the gateway registered under
-- messagegateway-rpc-service, and the metrics endpoint is announced where
-- main's Prometheus discovery reads it:
-- <rootDirectory>/prometheus_discovery/push-rpc-service/<index> under a
-- lease (OpenIM@main:pkg/common/prommetrics/prommetrics.go:102-108).
local h = require "spec.helpers"
local cjson = require "cjson"

local FOLDER = h.root .. "/spec/fixtures/openim-config/main"

describe("an unmodified OpenIM main config folder #engine", function()
  local env, imp

  lazy_setup(function()
    env = {}
    env.redis = h.start_redis()
    env.etcd = h.start_etcd()
    env.kafka = h.start_kafka()
    env.services = h.start_services(env.etcd, "--user user-rpc-service --group group-rpc-service "
      .. "--conversation conversation-rpc-service --msg msg-rpc-service")
    env.gateways = { h.start_gateway(env.etcd, "--service messagegateway-rpc-service") }
    env.producer = h.kafka.producer { bootstrap = env.kafka.bootstrap }
    h.set_online(env, { mia = { 2 } }, env.gateways[1])
    h.redis_cli(env.redis, "CONFIG", "SET", "requirepass", "openIM123") -- redis.yml's password
    local admin = h.free_port()
    local vars = {
      IMENV_KAFKA_ADDRESS = env.kafka.bootstrap,
      -- a partition with no commit starts at its first record: with OpenIM's
      -- "latest", a record produced between the assignment and the offset
      -- lookup would be skipped (a race of the test, not of the engine)
      IMENV_IMPULSE_AUTOOFFSETRESET = "earliest",
      -- log.yml's ../../../../logs/ moved aside; its JSON lines on stdout
      IMENV_LOG_STORAGELOCATION = h.tmpdir() .. "/openim-logs",
      IMENV_LOG_ISSTDOUT = "true",
      IMENV_LOG_ISJSON = "true",
      IMENV_REDIS_ADDRESS = env.redis.addr,
      IMENV_DISCOVERY_ETCD_ADDRESS = env.etcd.addr,
      IMENV_IMPULSE_ADMIN = "127.0.0.1:" .. admin,
      IMENV_IMPULSE_CRASHJOURNAL = h.tmpdir() .. "/crash-journal-main-" .. admin,
      IMENV_IMPULSE_DEADLETTERSPOOL = h.tmpdir() .. "/spool-main-" .. admin,
      -- outside a pod, whatever this machine has mounted
      IMENV_IMPULSE_KUBERNETESSERVICEACCOUNT = h.tmpdir() .. "/no-service-account",
    }
    local parts = {}
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. h.shell_quote(v) end
    imp = h.spawn("impulse", "env " .. table.concat(parts, " ") .. " " .. h.shell_quote(h.bin)
      .. " -c " .. h.shell_quote(FOLDER) .. " -i 0")
    imp.admin = "http://127.0.0.1:" .. admin
    h.wait_ready(imp, 40000)
  end)

  lazy_teardown(function() h.stop_env(env) end)

  it("starts as main, with no warning about its keys", function()
    local line = h.log_lines(imp, "openim: behaving as openim-push main")[1]
    assert.is_truthy(line, "no start line naming main")
    assert.matches("share.imAdminUser", line.msg, 1, true)
    for _, l in ipairs(h.log_lines(imp, "config:")) do
      assert.is_nil(l.msg:find("belongs to", 1, true), "a layout warning: " .. l.msg)
      assert.is_nil(l.msg:find("is ignored", 1, true), "a layout warning: " .. l.msg)
    end
  end)

  it("pushes to the gateway it finds under openim/messagegateway-rpc-service", function()
    local m = h.push_msg { sendID = "bob", recvID = "mia" }
    h.produce(env, m)
    local seen = h.wait_until(function()
      return h.http_json("GET", env.gateways[1].control .. "/seen")[m.clientMsgID]
    end, 30000, "the push at the gateway")
    assert.same({ "mia" }, seen)
    -- the calls run as the record's opUserID... and the user service was
    -- reached under its -rpc-service name (the online table loaded)
    assert.is_true(h.http_json("GET", imp.admin .. "/healthz").etcdSynced)
  end)

  it("runs every toPush record's calls as main's temporary admin (customheader ctxImTempAdminKey)", function()
    -- main's group service answers GetGroupMemberUserIDs only for a member
    -- or an admin; main's push sends the temp-admin pair on every call of the
    -- toPush path (OpenIM@main:internal/push/push.go:111)
    h.set_group(env, "main-group", { "mia", "max" })
    local m = h.push_msg { sendID = "max", groupID = "main-group", sessionType = 3, clientMsgID = "main-group-1" }
    h.produce(env, m)
    local push = h.wait_until(function()
      for _, p in ipairs(h.pushes(env.gateways[1])) do
        if p.msgData and p.msgData.clientMsgID == m.clientMsgID then return p end
      end
    end, 30000, "the group push at the gateway")
    local calls = h.http_json("GET", env.services.control .. "/calls")
    local members
    for _, c in ipairs(calls) do
      if c.method:find("getGroupMemberUserIDs", 1, true) and c.request.groupID == "main-group" then members = c end
    end
    assert.is_truthy(members, "no getGroupMemberUserIDs call")
    for what, md in pairs { gateway = push.metadata, group = members.metadata } do
      assert.equal("1", md.ctximtempadminkey, what .. ": " .. cjson.encode(md))
      assert.equal("ctxImTempAdminKey", md.customheader, what .. ": " .. cjson.encode(md))
      assert.equal("op-" .. m.clientMsgID, md.operationid, what)
      assert.equal("max", md.opuserid, what) -- main does not run records as the admin
    end
  end)

  it("announces its metrics under <rootDirectory>/prometheus_discovery/push-rpc-service/0", function()
    local key = "openim/prometheus_discovery/push-rpc-service/0"
    local value = h.wait_until(function()
      return h.etcd_keys(env.etcd, "openim/prometheus_discovery/")[key]
    end, 20000, key)
    local v = cjson.decode(value)
    assert.same({ namespace = "default" }, v.labels)
    local status, body = h.http("GET", "http://" .. v.target .. "/metrics")
    assert.equal(200, status)
    assert.matches("\nmsg_long_time_push_total ", body, 1, true)
    -- under a lease, as main puts it
    local lease = h.run(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s get %s -w json", env.etcd.url, key))
    assert.matches('"lease":%d+', lease)
    assert.is_nil(lease:find('"lease":0[,}]'), "no lease: " .. lease)
  end)
end)
