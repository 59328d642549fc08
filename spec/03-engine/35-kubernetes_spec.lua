-- Kubernetes discovery (discovery.enable: k8s): impulse finds the gateways
-- and OpenIM's services through the Kubernetes API's Endpoints, with the
-- pod's service-account token and CA, follows pods as they leave, join and
-- become ready, survives an ended watch and a compacted history (410), and
-- registers nothing. With gatewaySelection hash (OpenIM v3.8.3's
-- K8sStaticConsistentHash) each user goes only to the gateway its ID hashes
-- to, checked against the ring computed here independently.
local h = require "spec.helpers"
local bit = require "bit"

local NS = "openim"

describe("kubernetes discovery #engine", function()
  local env, kube

  lazy_setup(function()
    env = {}
    env.redis = h.start_redis()
    env.kafka = h.start_kafka()
    env.services = h.start_services(nil)
    env.gateways = {}
    for i = 1, 3 do env.gateways[i] = h.start_gateway(nil) end
    env.producer = require("spec.helpers.kafka").producer { bootstrap = env.kafka.bootstrap }
    kube = h.start_kube_apiserver(NS)
    local port = function(g) return tonumber(g.grpc:match(":(%d+)$")) end
    for i, g in ipairs(env.gateways) do g.port = port(g); g.pod = "openimserver-openim-msggateway-" .. (i - 1) end
    for _, svc in ipairs { "user", "group", "conversation", "msg" } do
      h.kube_endpoints(kube, svc, { { pod = "openimserver-openim-" .. svc .. "-0", port = port(env.services) } })
    end
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function gw(i, ready) return { pod = env.gateways[i].pod, port = env.gateways[i].port, ready = ready } end

  local function start(opts)
    opts = opts or {}
    local rpc_port = h.free_port()
    local cfg, admin = h.impulse_config(env, {
      discovery_enable = "k8s",
      workers = 2,
      rpc_yaml = "    autoSetPorts: false\n    ports: [" .. rpc_port .. "]",
      impulse = { kubernetesServiceAccount = kube.sa, gatewaySelection = opts.selection },
      yaml = "share:\n  rpcRegisterName:\n    messageGateway: " .. (opts.gateway_name or "msggateway"),
    })
    local p = h.spawn("impulse", "env " .. kube.env .. " " .. h.bin .. " run -c " .. cfg)
    p.admin = "http://127.0.0.1:" .. admin
    if not opts.no_wait then h.wait_ready(p, 60000) end
    return p
  end

  local function stats() return h.http_json("GET", kube.control .. "/stats") end

  -- the addresses impulse last logged for a service
  local function nodes(imp, svc)
    local last
    for _, l in ipairs(h.log_lines(imp, "service nodes changed")) do
      if l.service == svc then last = l.addrs end
    end
    return last
  end

  local function same_set(list, want)
    if not list or #list ~= #want then return false end
    local s = {}
    for _, a in ipairs(list) do s[a] = true end
    for _, a in ipairs(want) do if not s[a] then return false end end
    return true
  end

  local function addr(i) return "127.0.0.1:" .. env.gateways[i].port end

  it("follows gateway pods leaving, joining and becoming ready, losing no message", function()
    h.kube_endpoints(kube, "msggateway", { gw(1), gw(2), gw(3, false) })
    local imp = start()
    finally(function() h.stop(imp) end)
    -- the ready pods only; and nothing registered (no etcd at all here)
    h.wait_until(function() return same_set(nodes(imp, "msggateway"), { addr(1), addr(2) }) end,
      20000, "impulse to list gateways 1 and 2 (3 is not ready)")
    local health = h.http_json("GET", imp.admin .. "/healthz")
    assert.equal("kubernetes", health.discovery)
    assert.is_nil(health.pushService.etcd)
    local s0 = stats()
    assert.is_true(s0.lists >= 1 and s0.openWatches >= 1, "no list and watch: " .. require("cjson").encode(s0))
    assert.equal(0, s0.unauthorized)

    -- ua is online on every gateway, ub only on gateway 2
    h.set_online(env, { ua = { 1 } }, env.gateways[1], true)
    h.set_online(env, { ua = { 1 }, ub = { 2 } }, env.gateways[2], true)
    h.set_online(env, { ua = { 1 } }, env.gateways[3], true)
    local ids, phase = {}, {}
    local n = 0
    local function produce(count, tag)
      for _ = 1, count do
        n = n + 1
        local m = h.push_msg { sendID = "system", recvID = n % 2 == 0 and "ua" or "ub",
                               clientMsgID = "k8s-" .. n, options = { senderSync = false } }
        h.produce(env, m, { no_flush = true })
        ids[#ids + 1] = m.clientMsgID
        phase[m.clientMsgID] = tag
      end
      env.producer:flush(30000)
    end

    produce(100, "two")
    -- gateway 1's pod leaves, gateway 3's becomes ready (a pod joining)
    h.kube_endpoints(kube, "msggateway", { gw(2), gw(3) })
    produce(100, "moving")
    h.wait_until(function() return same_set(nodes(imp, "msggateway"), { addr(2), addr(3) }) end,
      20000, "impulse to follow: gateway 1 gone, gateway 3 ready")
    produce(100, "after")
    -- the watch ends (the server's timeout) and its history is compacted:
    -- impulse watches again, is told 410, lists again and goes on
    local lists_before = stats().lists
    h.http_json("POST", kube.control .. "/compact", {})
    h.http_json("POST", kube.control .. "/close-watches", {})
    h.wait_until(function() return stats().lists > lists_before end, 20000, "a new list after 410")
    h.kube_endpoints(kube, "msggateway", { gw(1), gw(2), gw(3) })
    h.wait_until(function() return same_set(nodes(imp, "msggateway"), { addr(1), addr(2), addr(3) }) end,
      20000, "impulse to follow after the relist: gateway 1 back")
    produce(100, "three")

    -- every message reached a gateway that holds its user
    local seen = {}
    local ok = pcall(h.wait_until, function()
      seen = {}
      for gi, g in ipairs(env.gateways) do
        for _, p in ipairs(h.pushes(g)) do
          local id = p.msgData and p.msgData.clientMsgID
          if id then
            seen[id] = seen[id] or {}
            seen[id][gi] = true
          end
        end
      end
      for _, id in ipairs(ids) do if not seen[id] then return false end end
      return true
    end, 120000, "")
    if not ok then
      local routes, missing = h.routes(imp), {}
      for _, id in ipairs(ids) do
        if not seen[id] then
          missing[#missing + 1] = id .. " (" .. phase[id] .. "): "
            .. require("cjson").encode(routes[id] or "no route line")
        end
      end
      error(#missing .. " of 400 messages never reached a gateway:\n"
        .. table.concat(missing, "\n", 1, math.min(#missing, 10)), 0)
    end
    local routes = h.routes(imp)
    for _, id in ipairs(ids) do
      assert.is_truthy(routes[id], "no route line for " .. id)
      assert.equal(1, #routes[id].reached, id .. " was not reached: " .. require("cjson").encode(routes[id]))
    end
    -- gateway 1 got nothing once impulse had seen it leave, until it came
    -- back; gateway 3 some once it was ready
    local g3_after = 0
    for _, id in ipairs(ids) do
      if phase[id] == "after" then
        assert.is_nil(seen[id][1], id .. " went to gateway 1 after it left")
        if seen[id][3] then g3_after = g3_after + 1 end
      end
    end
    assert.is_true(g3_after > 0, "gateway 3 got none of the messages after it joined")
    assert.equal(400, #ids)
  end)

  it("re-reads the service-account token for every request", function()
    h.kube_endpoints(kube, "msggateway", { gw(1), gw(2) })
    local token_file = kube.sa .. "/token"
    local good = assert(io.open(token_file)):read("*a")
    local f = assert(io.open(token_file, "w"))
    f:write("a-wrong-token\n")
    f:close()
    finally(function()
      local g = assert(io.open(token_file, "w"))
      g:write(good)
      g:close()
    end)
    local before = stats().unauthorized
    local imp = start { no_wait = true }
    finally(function() h.stop(imp) end)
    local ok = pcall(h.wait_until, function() return stats().unauthorized >= before + 2 end, 30000, "")
    assert(ok, "no refused list (401) seen by the API server; impulse's log:\n"
      .. (assert(io.open(imp.log)):read("*a")))
    assert.are_not.equal(200, (h.http("GET", imp.admin .. "/readyz")))
    local lines = h.log_lines(imp, "kubernetes")
    assert.is_true(#lines > 0 and lines[1].msg:find("401", 1, true) ~= nil,
      "no 401 in impulse's log: " .. require("cjson").encode(lines))
    local g = assert(io.open(token_file, "w"))
    g:write(good)
    g:close()
    h.wait_ready(imp, 60000)
  end)

  -- CRC-32/IEEE and stathat/consistent's ring, written here from its
  -- description (20 points "<i><name>" per node; the first point strictly
  -- above the key's hash, wrapping), independently of impulse's C.
  local crc_table = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if bit.band(c, 1) == 1 then c = bit.bxor(0xEDB88320, bit.rshift(c, 1)) else c = bit.rshift(c, 1) end
    end
    crc_table[i] = c
  end
  local function crc32(s)
    local c = 0xFFFFFFFF
    for i = 1, #s do c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8)) end
    c = bit.bxor(c, 0xFFFFFFFF)
    return c < 0 and c + 2 ^ 32 or c
  end
  local function owner(names, user)
    local hsh = crc32(user)
    local best, best_node, low, low_node
    for i, name in ipairs(names) do
      for r = 0, 19 do
        local p = crc32(r .. name)
        if p > hsh and (not best or p <= best) then best, best_node = p, i end
        if not low or p <= low then low, low_node = p, i end
      end
    end
    return best_node or low_node
  end

  it("with gatewaySelection hash sends each user only to the gateway its ID hashes to", function()
    assert.equal(0xCBF43926, crc32("123456789"))
    h.kube_endpoints(kube, "openimserver-openim-msggateway", { gw(1), gw(2), gw(3) })
    -- v3.8.3 (no later layout in this config) with k8s: hash by default
    local imp = start { gateway_name = "openimserver-openim-msggateway:88" }
    finally(function() h.stop(imp) end)
    h.wait_until(function()
      return same_set(nodes(imp, "openimserver-openim-msggateway:88"), { addr(1), addr(2), addr(3) })
    end, 20000, "three gateways")
    assert.is_truthy(h.log_lines(imp, "discovery: Kubernetes")[1].msg:find("K8sStaticConsistentHash", 1, true))
    -- the ring's names, as OpenIM v3.8.3 builds them from its environment
    local names = {}
    for i = 1, 3 do
      names[i] = string.format("%s.openimserver-openim-msggateway-headless.%s.svc.cluster.local:88",
        env.gateways[i].pod, NS)
    end
    local members, online = {}, {}
    for i = 1, 60 do
      members[i] = "hash-user-" .. i
      online[members[i]] = { 1 }
    end
    for i = 1, 3 do
      h.reset_pushes(env.gateways[i])
      h.set_online(env, online, env.gateways[i], i == 1) -- every user on every gateway
    end
    h.set_group(env, "hash-group", members)
    local m = h.push_msg { sendID = "hash-sender", groupID = "hash-group", sessionType = 3,
                           clientMsgID = "k8s-hash-group" }
    h.produce(env, m)
    local got
    h.wait_until(function()
      got = h.delivered(env, "k8s-hash-group")
      local total = 0
      for i = 1, 3 do for _ in pairs(got[i]) do total = total + 1 end end
      return total >= 60
    end, 60000, "the group message at the gateways")
    local per = { 0, 0, 0 }
    for i = 1, 60 do
      local u = members[i]
      local want = owner(names, u)
      per[want] = per[want] + 1
      for g = 1, 3 do
        assert.equal(g == want, got[g][u] == true,
          string.format("%s: expected only gateway %d, gateway %d %s", u, want, g, got[g][u] and "got it" or "did not"))
      end
    end
    for g = 1, 3 do assert.is_true(per[g] > 0, "gateway " .. g .. " owns none of 60 users") end
  end)

  -- Done-when (c) of issue 14: OpenIM v3.8.3-patch.15's own folder as its
  -- Kubernetes deployment runs it (discovery k8s, fixed ports, names of the
  -- Services), set only through IMENV_ variables; last in this file, since
  -- it gives Redis the folder's password.
  it("runs OpenIM's own config folder in Kubernetes mode, set through IMENV_ only", function()
    h.kube_endpoints(kube, "msggateway", { gw(1) })
    h.set_online(env, { kay = { 2 } }, env.gateways[1]) -- loaded at the start
    h.redis_cli(env.redis, "CONFIG", "SET", "requirepass", "openIM123")
    local admin, prom, rpc = h.free_port(), h.free_port(), h.free_port()
    local vars = {
      KUBERNETES_SERVICE_HOST = kube.env:match("KUBERNETES_SERVICE_HOST=(%S+)"),
      KUBERNETES_SERVICE_PORT = kube.env:match("KUBERNETES_SERVICE_PORT=(%S+)"),
      IMENV_DISCOVERY_ENABLE = "k8s",
      IMENV_SHARE_RPCREGISTERNAME_MESSAGEGATEWAY = "msggateway",
      IMENV_OPENIM_PUSH_RPC_AUTOSETPORTS = "false",
      IMENV_OPENIM_PUSH_RPC_PORTS = tostring(rpc),
      IMENV_OPENIM_PUSH_PROMETHEUS_PORTS = tostring(prom),
      IMENV_KAFKA_ADDRESS = env.kafka.bootstrap,
      IMENV_REDIS_ADDRESS = env.redis.addr,
      IMENV_IMPULSE_KUBERNETESSERVICEACCOUNT = kube.sa,
      -- a partition with no commit starts at its first record: with OpenIM's
      -- "latest", a record produced between the assignment and the offset
      -- lookup would be skipped (a race of the test, not of the engine)
      IMENV_IMPULSE_AUTOOFFSETRESET = "earliest",
      -- log.yml's ../../../../logs/ moved aside; its JSON lines on stdout
      IMENV_LOG_STORAGELOCATION = h.tmpdir() .. "/openim-logs",
      IMENV_LOG_ISSTDOUT = "true",
      IMENV_LOG_ISJSON = "true",
      IMENV_IMPULSE_ADMIN = "127.0.0.1:" .. admin,
      IMENV_IMPULSE_CRASHJOURNAL = h.tmpdir() .. "/crash-journal-k8s-" .. admin,
      IMENV_IMPULSE_DEADLETTERSPOOL = h.tmpdir() .. "/spool-k8s-" .. admin,
    }
    local parts = {}
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. h.shell_quote(v) end
    local imp = h.spawn("impulse", "env " .. table.concat(parts, " ") .. " " .. h.shell_quote(h.bin)
      .. " -c " .. h.shell_quote(h.root .. "/spec/fixtures/openim-config/v3.8.3-patch.15") .. " -i 0")
    imp.admin = "http://127.0.0.1:" .. admin
    finally(function() h.stop(imp) end)
    h.wait_ready(imp, 60000)
    local line = h.log_lines(imp, "discovery: Kubernetes")[1]
    assert.is_truthy(line, "no discovery line")
    assert.matches("namespace " .. NS, line.msg, 1, true)
    assert.matches("every gateway gets every push", line.msg, 1, true)
    local m = h.push_msg { sendID = "bob", recvID = "kay" }
    h.produce(env, m)
    local ok, seen = pcall(h.wait_until, function()
      return h.http_json("GET", env.gateways[1].control .. "/seen")[m.clientMsgID]
    end, 60000, "")
    assert(ok, "the push never reached the gateway found through the API; impulse's log:\n"
      .. (h.read_file(imp.log) or ""))
    assert.same({ "kay" }, seen)
    -- where Prometheus looks in Kubernetes (nothing is registered): the
    -- pod's prometheus.ports[0]
    local status, body = h.http("GET", "http://127.0.0.1:" .. prom .. "/metrics")
    assert.equal(200, status)
    assert.matches("\nmsg_offline_push_failed_total ", body, 1, true)
  end)
end)
