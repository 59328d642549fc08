-- Discovery through etcd: the watch survives an etcd restart and resumes.
local h = require "spec.helpers"

describe("discovery #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    imp = h.start_impulse(env, { workers = 1 })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function gateways_seen()
    local last
    for _, l in ipairs(h.log_lines(imp, "service nodes changed")) do
      if l.service == "messageGateway" then last = l.addrs end
    end
    return last or {}
  end

  local function etcd_synced()
    return h.http_json("GET", imp.admin .. "/healthz").etcdSynced
  end

  it("resumes the watch after etcd restarts and sees gateways registered since", function()
    local cmd = env.etcd.cmd
    assert.is_true(etcd_synced())
    h.stop(env.etcd)
    -- /healthz says so while etcd is gone (the registry keeps its last list)
    h.wait_until(function() return etcd_synced() == false end, 15000, "etcdSynced false")
    local restarted = h.spawn("etcd-again", cmd)
    restarted.port, restarted.url, restarted.addr = env.etcd.port, env.etcd.url, env.etcd.addr
    env.etcd = restarted
    h.wait_until(function()
      local st, body = h.http("GET", env.etcd.url .. "/health")
      return st == 200 and body:match('"health":"true"')
    end, 15000, "etcd to come back")
    local g2 = h.start_gateway(env.etcd)
    env.gateways[2] = g2
    h.wait_until(function() return #gateways_seen() == 2 end, 20000, "impulse to see the new gateway")
    h.wait_until(function() return etcd_synced() == true end, 15000, "etcdSynced true again")
    h.http_json("POST", g2.control .. "/conns", { alice = { 2 } })
    local msg = h.push_msg { sendID = "x", recvID = "alice", options = { senderSync = false } }
    h.produce(env, msg)
    local r = h.wait_until(function() return h.routes(imp)[msg.clientMsgID] end, 15000, "the route")
    assert.equal(2, #r.gateways)
    local d = h.delivered(env, msg.clientMsgID)
    assert.is_true(d[1].alice and d[2].alice)
    assert.is_true(#h.log_lines(imp, "etcd ") > 0)
  end)

  it("drops a gateway whose key is deleted", function()
    local g2 = env.gateways[2]
    h.run(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s del %s", env.etcd.url, h.shell_quote(g2.key)))
    h.wait_until(function() return #gateways_seen() == 1 end, 10000, "impulse to drop the gateway")
    assert.same({ env.gateways[1].grpc }, gateways_seen())
  end)

  it("lists again when the revision its watch resumes from was compacted meanwhile", function()
    local function etcdctl(args)
      return (h.run(string.format("ETCDCTL_API=3 etcdctl --endpoints=%s %s 2>&1", env.etcd.url, args)))
    end
    local key, addr = "openim/messageGateway/127.0.0.1:9", "127.0.0.1:9" -- a node nobody serves
    -- impulse is stopped while etcd restarts (its watch breaks unseen), a node
    -- registers and etcd compacts past the revision the watch will resume from
    h.signal(imp, h.SIGSTOP)
    local cmd = env.etcd.cmd
    h.stop(env.etcd)
    local restarted = h.spawn("etcd-again", cmd)
    restarted.port, restarted.url, restarted.addr = env.etcd.port, env.etcd.url, env.etcd.addr
    restarted.data_dir = env.etcd.data_dir
    env.etcd = restarted
    h.wait_until(function()
      local st, body = h.http("GET", env.etcd.url .. "/health")
      return st == 200 and body:match('"health":"true"')
    end, 15000, "etcd to come back")
    etcdctl("put " .. key .. " " .. h.shell_quote('{"Op":0,"Addr":"' .. addr .. '","Metadata":null}'))
    etcdctl("put openim/scratch x")
    local rev = tonumber(etcdctl("get openim/scratch -w json"):match('"revision":(%d+)'))
    assert.matches("compacted revision", etcdctl("compact " .. rev))
    h.signal(imp, h.SIGCONT)
    h.wait_until(function()
      for _, a in ipairs(gateways_seen()) do if a == addr then return true end end
    end, 20000, "impulse to list the node registered while it was stopped")
    assert.is_true(#h.log_lines(imp, "etcd: watch revision") > 0, "the compaction was not what made it list")
    etcdctl("del " .. key)
    h.wait_until(function() return #gateways_seen() == 1 end, 10000, "impulse to drop the node again")
  end)
end)
