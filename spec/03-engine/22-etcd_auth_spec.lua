-- etcd with authentication (discovery.etcd.username / password): the
-- discovery watch and the push service's registration both authenticate,
-- and a wrong password is reported and retried, never taken for an empty
-- service list.
local h = require "spec.helpers"
local format = string.format

describe("etcd with authentication #engine", function()
  local env

  local function etcdctl(args, user)
    return (h.run(format("ETCDCTL_API=3 etcdctl --endpoints=%s %s %s 2>&1", env.etcd.url,
      user and ("--user " .. user) or "", args)))
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    -- the stand-ins registered without a password; from here on etcd wants one
    assert.matches("User root created", etcdctl("user add root:secret"))
    etcdctl("role add root")
    etcdctl("user grant-role root root")
    assert.matches("Authentication Enabled", etcdctl("auth enable"))
    assert.matches("user name is empty", etcdctl("get --prefix openim/ --keys-only"))
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("discovers the gateways and registers the push service with a username and password", function()
    local imp = h.start_impulse(env, { workers = 1, etcd_user = "root", etcd_password = "secret" })
    local m = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, m)
    h.wait_until(function() return h.delivered(env, m.clientMsgID)[1]["alice"] end, 15000, "the push to alice")
    local keys = h.wait_until(function()
      local out = etcdctl("get --prefix openim/push/ --keys-only", "root:secret")
      return out:match("openim/push/127%.0%.0%.1:%d+") and out
    end, 15000, "the push service's key")
    assert.matches("openim/push/", keys)
    h.stop(imp)
  end)

  it("reports a wrong password and retries, without starting on an empty service list", function()
    local imp = h.start_impulse(env, { workers = 1, etcd_user = "root", etcd_password = "wrong", no_wait = true })
    local warned = h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp)) do
        if (l.msg or ""):match("authenticate failed") then return l.msg end
      end
    end, 15000, "the authentication failure in the log")
    assert.matches("retrying in %d+ ms", warned)
    assert.is_true(h.alive(imp))
    local status = h.http("GET", imp.admin .. "/readyz")
    assert.are_not.equal(200, status)
    h.stop(imp)
  end)
end)

-- Credentials configured, but the etcd has authentication disabled: as
-- OpenIM's clientv3 (which ignores ErrAuthNotEnabled), impulse goes on
-- without a token instead of retrying for ever.
describe("etcd credentials against an etcd without authentication #engine", function()
  local env

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("becomes ready, discovers the gateways and registers the push service", function()
    local imp = h.start_impulse(env, { workers = 1, etcd_user = "root", etcd_password = "secret" })
    local m = h.push_msg { sendID = "bob", recvID = "alice" }
    h.produce(env, m)
    h.wait_until(function() return h.delivered(env, m.clientMsgID)[1]["alice"] end, 15000, "the push to alice")
    h.wait_until(function()
      local out = h.run(format("ETCDCTL_API=3 etcdctl --endpoints=%s get --prefix openim/push/ --keys-only 2>&1",
        env.etcd.url))
      return out:match("openim/push/127%.0%.0%.1:%d+")
    end, 15000, "the push service's key")
    assert.is_true(#h.log_lines(imp, "etcd") > 0)
    local warned = false
    for _, l in ipairs(h.log_lines(imp)) do
      if l.msg:match("authentication is not enabled") then warned = true end
    end
    assert.is_true(warned, "no log line says etcd has authentication disabled")
  end)
end)
