-- Redis with an ACL user, a password and a database other than 0
-- (redis.username / password / db): the watcher's online_change
-- subscription and the workers' command connection both authenticate, and
-- commands go to the configured database.
local h = require "spec.helpers"

describe("Redis with a username, a password and a db #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1, redis_auth = { user = "impulse", pass = "s3cret pass" } }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    -- redis.db as OpenIM reads it from v3.8.3-patch.7 (before, `storage`:
    -- c/config)
    imp = h.start_impulse(env, { workers = 1, redis_db = 3, impulse = { openim = "v3.8.3-patch.16" } })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("refuses a client without the password (the test's own check)", function()
    local out = h.run("redis-cli -p " .. env.redis.port .. " ping 2>&1")
    assert.matches("NOAUTH", out)
  end)

  it("follows online_change through an authenticated subscription", function()
    h.set_online(env, { carol = { 2 } }, env.gateways[1], env.redis) -- published, as OpenIM does
    h.wait_until(function() return h.http_json("GET", imp.admin .. "/healthz").onlineUsers == 2 end, 10000,
      "carol online")
    local m = h.push_msg { sendID = "bob", recvID = "carol" }
    h.produce(env, m)
    h.wait_until(function() return h.delivered(env, m.clientMsgID)[1]["carol"] end, 15000, "the push to carol")
  end)

  it("sends the workers' commands to the configured db", function()
    local db3 = { port = env.redis.port, auth = env.redis.auth, db = 3 }
    h.redis_cli(db3, "SET", "FCM_TOKEN:tom:2", "tok-db3")
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:tom:2", "tok-db0")
    local reply, err = h.grpc_call(h.push_service_addr(env), "/openim.push.PushMsgService/DelUserPushToken",
      { userID = "tom", platformID = 2 })
    assert.is_nil(err)
    assert.same({}, reply)
    assert.equal("0", h.redis_cli(db3, "EXISTS", "FCM_TOKEN:tom:2"):match("%d+"))
    assert.equal("tok-db0", (h.redis_cli(env.redis, "GET", "FCM_TOKEN:tom:2"):gsub("%s+$", "")))
  end)
end)
