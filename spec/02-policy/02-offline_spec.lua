-- The offline decision of the default policy (scripts/openim.lua via
-- scripts/push.lua): options, excluded content types per OpenIM release,
-- the reached-online rule, self chat, old messages, and what the
-- notification says. Each case names the OpenIM line it follows
-- (docs/openim-versions.md).
local testing = require "impulse.testing"

describe("scripts/push.lua offline()", function()
  local policy

  local function load(profile)
    testing.setup { openim = profile }
    policy = testing.load_policy("scripts/push.lua")
  end

  before_each(function() load() end)

  local function offline(fields, reached, not_reached)
    return policy.offline(testing.message(fields), testing.ctx(),
      { reached = reached or {}, not_reached = not_reached or {} })
  end

  it("pushes a single chat offline when the receiver was not reached, leaving msgData as it is", function()
    -- OpenIM@v3.8.3:internal/push/push_handler.go:174-184; the title is
    -- computed where toOfflinePush is consumed (offlinepush_handler.go:69-112)
    local users, info = offline({ sendID = "bob", recvID = "alice" }, { "bob" }, { "alice" })
    assert.same({ "alice" }, users)
    assert.is_nil(info)
  end)

  it("skips a single chat when a recipient other than the sender was reached", function()
    assert.same({}, (offline({ sendID = "bob", recvID = "alice" }, { "alice" }, { "bob" })))
  end)

  it("pushes a self chat to its user, reached online or not (push_handler.go:174-184)", function()
    -- the loop skips results of the sender, who is also the receiver, so
    -- it never returns early, and the target is recvID
    assert.same({ "bob" }, (offline({ sendID = "bob", recvID = "bob" }, {}, { "bob" })))
    assert.same({ "bob" }, (offline({ sendID = "bob", recvID = "bob" }, { "bob" }, {})))
  end)

  it("targets only the receiver in a single chat with sender sync", function()
    assert.same({ "alice" }, (offline({ sendID = "bob", recvID = "alice" }, {}, { "alice", "bob" })))
  end)

  it("pushes the group members not reached, minus the sender (onlinepusher.go:116-133)", function()
    local users = offline({ sessionType = 3, groupID = "g", sendID = "a" }, { "b" }, { "a", "c", "d" })
    assert.same({ "c", "d" }, users)
  end)

  it("respects offlinePush = false", function()
    assert.same({}, (offline({ recvID = "x", options = { offlinePush = false } }, {}, { "x" })))
  end)

  it("keeps 1601 signaling off in v3.8.3 and v3.8.4-alpha.1, and pushes 1602/1603", function()
    -- OpenIM@v3.8.3:internal/push/push_handler.go:210,
    -- OpenIM@v3.8.4-alpha.1:internal/push/push_handler.go:211
    for _, p in ipairs { "v3.8.3", "v3.8.4-alpha.1" } do
      load(p)
      assert.same({}, (offline({ recvID = "x", contentType = 1601 }, {}, { "x" })), p)
      assert.same({ "x" }, (offline({ recvID = "x", contentType = 1602 }, {}, { "x" })), p)
      assert.same({ "x" }, (offline({ recvID = "x", contentType = 1603 }, {}, { "x" })), p)
    end
  end)

  it("keeps 1602/1603 off from patch.3 on, and pushes 1601", function()
    -- OpenIM@v3.8.3-patch.3:internal/push/push_handler.go:212-215,
    -- OpenIM@v3.8.3-patch.5:internal/push/push_handler.go:213-216
    for _, p in ipairs { "v3.8.3-patch.3", "v3.8.3-patch.5" } do
      load(p)
      assert.same({}, (offline({ recvID = "x", contentType = 1602 }, {}, { "x" })), p)
      assert.same({}, (offline({ recvID = "x", contentType = 1603 }, {}, { "x" })), p)
      assert.same({ "x" }, (offline({ recvID = "x", contentType = 1601 }, {}, { "x" })), p)
    end
  end)

  it("pushes old messages, as OpenIM does (push_handler.go:102-108 only counts them)", function()
    local old = { recvID = "x", sendTime = testing.wall_ms - 30 * 24 * 3600 * 1000 }
    assert.same({ "x" }, (offline(old, {}, { "x" })))
    assert.equal(0, #testing.metrics)
  end)

  it("titles by content type, offlinePushInfo first; an @-mention gets no title (push_handler.go:378-421)", function()
    local function notice(fields) return policy.notice(testing.message(fields)) end
    assert.same({ title = "", content = "" }, notice { contentType = 106 })
    assert.equal("[TEXT]", notice({ contentType = 101 }).title)
    assert.equal("[PICTURE]", notice({ contentType = 102 }).title)
    assert.equal("[File]", notice({ contentType = 105 }).title)
    assert.equal("[SIGNALINVITE]", notice({ contentType = 1601 }).title)
    assert.equal("[NEWMSG]", notice({ contentType = 999 }).title)
    assert.same({ title = "Hi", content = "Hi" }, notice { offlinePushInfo = { title = "Hi", desc = "" } })
    assert.same({ title = "Hi", content = "there" }, notice { offlinePushInfo = { title = "Hi", desc = "there" } })
    assert.same({ title = "[TEXT]", content = "there" }, notice { offlinePushInfo = { title = "", desc = "there" } })
  end)
end)

describe("scripts/openim.lua opt-ins", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end)

  after_each(function() os.execute("rm -rf " .. dir) end)

  local function policy_with(lines)
    local f = assert(io.open(dir .. "/push.lua", "w"))
    f:write('local openim = require "openim"\n', lines, '\nreturn { route = openim.route, ',
      'offline = openim.offline, notice = openim.notice }\n')
    f:close()
    testing.setup {}
    return testing.load_policy(dir .. "/push.lua", "scripts")
  end

  it("offline_max_age_ms drops offline pushes for older messages, and counts them", function()
    local policy = policy_with("openim.offline_max_age_ms = 24 * 3600 * 1000")
    local old = testing.message { recvID = "c", sendTime = testing.wall_ms - 24 * 3600 * 1000 - 1 }
    assert.same({}, (policy.offline(old, testing.ctx(), { reached = {}, not_reached = { "c" } })))
    assert.equal("too_old", testing.metrics[1].labels.reason)
    local fresh = testing.message { recvID = "c", sendTime = testing.wall_ms - 1000 }
    assert.same({ "c" }, (policy.offline(fresh, testing.ctx(), { reached = {}, not_reached = { "c" } })))
  end)

  it("titles[106] gives @-mentions a title", function()
    local policy = policy_with('openim.titles[106] = "[@TEXT]"')
    assert.same({ title = "[@TEXT]", content = "[@TEXT]" }, policy.notice(testing.message { contentType = 106 }))
  end)
end)
