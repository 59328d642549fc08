-- impulse explain (issue 17, item 1): one record through the whole policy
-- in dry run, each decision with the script file and line that made it.
-- Most cases answer every read from --offline-data (no server); one starts
-- the OpenIM stand-ins and Kafka to read live and to read a record by
-- offset, and checks that nothing was sent, written or committed.
local h = require "spec.helpers"
local pb = require "spec.helpers.pb"
local cjson = require "cjson"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

-- The line `at` ("file:line") names, read from the file.
local function line_at(at)
  local file, n = at:match("^(.-):(%d+)$")
  assert(file, "not file:line: " .. tostring(at))
  if file:sub(1, 1) ~= "/" then file = h.root .. "/" .. file end
  local i = 0
  for l in io.lines(file) do
    i = i + 1
    if i == tonumber(n) then return l end
  end
  error("no line " .. n .. " in " .. file)
end

local function steps_of(out, kind)
  local found = {}
  for _, s in ipairs(out.steps) do
    if s.kind == kind then found[#found + 1] = s end
  end
  return found
end

local function one(out, kind, pred)
  for _, s in ipairs(out.steps) do
    if s.kind == kind and (not pred or pred(s)) then return s end
  end
  error("no " .. kind .. " step in " .. cjson.encode(out.steps))
end

local function set(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

-- Every side effect was recorded as not made.
local function nothing_sent(out)
  for _, s in ipairs(out.steps) do
    if s.kind == "online_push" or s.kind == "handoff" or s.kind == "send" or s.kind == "dead_letter" then
      assert.equal(false, s.sent, cjson.encode(s))
    end
    if s.kind == "call" and not (s.source == "live" or s.source == "offline data") then
      assert.equal(false, s.sent, cjson.encode(s))
    end
  end
end

local DATA = {
  groups = { g1 = { "alice", "bob", "carol", "dave", "ceo" } },
  online = { alice = { 1 }, carol = { 5 }, ceo = { 1 } },
  muted = { sg_g1 = { "dave" } },
  redis = { ["FCM_TOKEN:bob:2"] = "tok-bob-android", ["FCM_TOKEN:ceo:1"] = "tok-ceo-ios",
            ["USER_BADGE_UNREAD_COUNT_SUM:bob"] = "4" },
}

local function kick_content(kicked)
  local list = {}
  for i, u in ipairs(kicked) do list[i] = { userID = u } end
  return cjson.encode { detail = cjson.encode { group = { groupID = "g1" }, kickedUserList = list } }
end

describe("impulse explain, reads from --offline-data #engine", function()
  local dir, cfg, data

  lazy_setup(function()
    dir = h.tmpdir() .. "/explain-" .. h.free_port()
    os.execute("mkdir -p " .. h.shell_quote(dir))
    cfg = dir .. "/impulse.yml"
    -- nothing listens on these: a read that went live would fail
    h.write_file(cfg, "kafka: {address: [127.0.0.1:9]}\nredis: {address: [127.0.0.1:9]}\n"
      .. "discovery: {etcd: {address: [127.0.0.1:9]}}\nopenim-push: {enable: fcm}\n"
      .. "impulse: {scripts: " .. h.root .. "/scripts, crashJournal: '', logLevel: warn}\n")
    data = dir .. "/data.json"
    h.write_file(data, cjson.encode(DATA))
  end)

  local function explain(record, extra)
    local path = dir .. "/record-" .. h.free_port()
    h.write_file(path, record)
    local rc, out = run(string.format("cd %s && %s explain -c %s %s --offline-data %s --json %s",
      h.shell_quote(h.root), h.shell_quote(h.bin), h.shell_quote(cfg), h.shell_quote(path),
      h.shell_quote(data), extra or ""))
    local ok, doc = pcall(cjson.decode, out:match("([^\n]+)\n?$") or "")
    assert(ok and type(doc) == "table", "not JSON (rc " .. tostring(rc) .. "): " .. out)
    return doc, rc
  end

  it("a single chat, protobuf: route, online lookup, offline, the FCM payload, each at its line", function()
    local bytes = pb.encode("openim.push.PushMsgReq", { msgData = {
      sendID = "alice", recvID = "bob", clientMsgID = "c-single", sessionType = 1, contentType = 101,
      content = '{"content":"hi bob"}', status = 1,
    }, conversationID = "si_alice_bob" })
    local out, rc = explain(bytes)
    assert.equal(0, rc, cjson.encode(out))
    assert.equal("toPush", out.record.leg)
    assert.equal("c-single", out.record.msgData.clientMsgID)
    local route = one(out, "route")
    -- senderSync defaults to true: the sender's other devices too
    assert.same({ "bob", "alice" }, route.users)
    assert.matches("scripts/openim.lua:%d+$", route.at)
    assert.matches("return users", line_at(route.at), 1, true)
    local online = one(out, "online")
    assert.same({ 1 }, online.online.alice)
    assert.is_nil(online.online.bob)
    local push = one(out, "online_push")
    assert.same({ "alice" }, push.reached)
    assert.same({ "bob" }, push.not_reached)
    local off = one(out, "offline")
    assert.same({ "bob" }, off.users)
    assert.matches("return", line_at(off.at), 1, true)
    assert.same({ "bob" }, one(out, "handoff").users)
    local tokens = one(out, "call", function(s) return s.call == "redis MGET" end)
    assert.equal("offline data", tokens.source)
    local payload = one(out, "payload")
    assert.equal("fcm", payload.provider)
    assert.matches("scripts/providers/fcm.lua:%d+$", payload.at)
    assert.equal(1, #payload.requests)
    assert.equal("tok-bob-android", payload.requests[1].body.message.token)
    assert.equal("c-single", payload.requests[1].body.message.android.collapse_key)
    assert.equal(4, payload.requests[1].body.message.apns.payload.aps.badge)
    assert.equal(1, one(out, "send").requests)
    nothing_sent(out)
  end)

  it("a group, JSON: members from the group, the muted member left out of the offline push", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", groupID = "g1", clientMsgID = "c-group", sessionType = 3, contentType = 101,
      content = '{"content":"hello all"}',
    }, conversationID = "sg_g1" })
    assert.equal(0, rc, cjson.encode(out))
    local members = one(out, "call", function(s) return s.call == "group members" end)
    assert.same({ groupID = "g1" }, members.args)
    assert.same(DATA.groups.g1, members.answer)
    assert.matches("member_ids", line_at(members.at), 1, true)
    assert.same(DATA.groups.g1, one(out, "route").users)
    local push = one(out, "online_push")
    assert.same(set { "bob", "dave" }, set(push.not_reached))
    local filter = one(out, "call", function(s) return s.call:match("GetConversationOfflinePushUserIDs") end)
    assert.same({ "bob" }, filter.answer.userIDs)
    assert.matches("offline_push_user_ids", line_at(filter.at), 1, true)
    assert.same({ "bob" }, one(out, "offline").users)
    assert.same({ "bob" }, one(out, "payload").users)
    nothing_sent(out)
  end)

  it("a kick: the kicked member still gets it, the max-seq write is not made", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", groupID = "g1", clientMsgID = "c-kick", sessionType = 3, contentType = 1508,
      content = kick_content { "erin" }, options = { isNotNotification = false },
    }, conversationID = "sg_g1" })
    assert.equal(0, rc, cjson.encode(out))
    assert.truthy(set(one(out, "route").users).erin)
    -- the members as the group service answered, before the policy added erin
    assert.same(DATA.groups.g1, one(out, "call", function(s) return s.call == "group members" end).answer)
    local read = one(out, "call", function(s) return s.call:match("GetConversationMaxSeq") end)
    assert.equal("offline data", read.source)
    local write = one(out, "call", function(s) return s.call:match("SetConversationMaxSeq") end)
    assert.equal(false, write.sent)
    assert.same({ "erin" }, write.args.ownerUserID)
    assert.matches("set_conversation_max_seq", line_at(write.at), 1, true)
    assert.truthy(set(one(out, "offline").users).erin)
    nothing_sent(out)
  end)

  it("a custom policy from examples/policies: the VIP gets an offline push though online", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", groupID = "g1", clientMsgID = "c-vip", sessionType = 3, contentType = 101,
      content = '{"content":"board meeting"}',
    }, conversationID = "sg_g1" }, "--policy examples/policies/vip.lua")
    assert.equal(0, rc, cjson.encode(out))
    assert.truthy(set(one(out, "online_push").reached).ceo)
    local off = one(out, "offline")
    assert.same(set { "bob", "ceo" }, set(off.users))
    assert.matches("^examples/policies/vip.lua:%d+$", off.at)
    assert.matches("return users", line_at(off.at), 1, true)
    local payload = one(out, "payload")
    local tokens = {}
    for _, r in ipairs(payload.requests) do tokens[r.body.message.token] = true end
    assert.same({ ["tok-bob-android"] = true, ["tok-ceo-ios"] = true }, tokens)
    nothing_sent(out)
  end)

  it("examples/policies/tenant_provider.lua: each user's provider with the line that chose it", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", recvID = "cn-li", clientMsgID = "c-tenant", sessionType = 1, contentType = 101,
      options = { senderSync = false },
    } }, "--policy examples/policies/tenant_provider.lua")
    assert.equal(0, rc, cjson.encode(out))
    local choice = one(out, "provider_choice")
    assert.equal("cn-li", choice.user)
    assert.equal("getui", choice.provider)
    assert.matches("^examples/policies/tenant_provider.lua:%d+$", choice.at)
    assert.matches("return p.provider", line_at(choice.at), 1, true)
    local payload = one(out, "payload")
    assert.equal("getui", payload.provider)
    assert.matches("scripts/providers/getui.lua:%d+$", payload.at)
    assert.equal("getui", one(out, "send").provider)
    nothing_sent(out)
  end)

  it("a toOfflinePush record (userIDs) runs the offline leg alone", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", recvID = "bob", clientMsgID = "c-off", sessionType = 1, contentType = 101,
      offlinePushInfo = { title = "Alice", desc = "hi" },
    }, userIDs = { "bob" } })
    assert.equal(0, rc, cjson.encode(out))
    assert.equal("toOfflinePush", out.record.leg)
    assert.equal(0, #steps_of(out, "route"))
    local payload = one(out, "payload")
    assert.equal("Alice", payload.requests[1].body.message.notification.title)
    assert.equal("hi", payload.requests[1].body.message.notification.body)
  end)

  it("a group the group service does not know: the failure explained, exit 1", function()
    local out, rc = explain(cjson.encode { msgData = {
      sendID = "alice", groupID = "nosuch", clientMsgID = "c-fail", sessionType = 3, contentType = 101,
    } })
    assert.equal(1, rc, cjson.encode(out))
    local route = one(out, "route")
    assert.matches("record not found", route.error, 1, true)
    assert.matches("return nil, err", line_at(route.at), 1, true)
    assert.matches("cannot read members", one(out, "log").text, 1, true)
    assert.matches("route() failed", out.error, 1, true)
    assert.equal(0, #steps_of(out, "online"))
  end)

  it("prints text by default; refuses a record that is not one", function()
    local path = dir .. "/text.json"
    h.write_file(path, cjson.encode { msgData = { sendID = "alice", recvID = "bob", sessionType = 1,
      contentType = 101, clientMsgID = "c-text" } })
    local rc, out = run(string.format("cd %s && %s explain -c %s --offline-data %s < %s",
      h.shell_quote(h.root), h.shell_quote(h.bin), h.shell_quote(cfg), h.shell_quote(data), h.shell_quote(path)))
    assert.equal(0, rc, out)
    assert.matches("toPush record from stdin: clientMsgID c-text", out, 1, true)
    assert.matches("scripts/openim.lua:%d+%s+route%(%): 2 recipients: bob, alice", out)
    assert.matches("dry run: nothing was sent, nothing committed", out, 1, true)
    h.write_file(path, "not a record")
    rc, out = run(string.format("%s explain -c %s --offline-data %s %s", h.shell_quote(h.bin),
      h.shell_quote(cfg), h.shell_quote(data), h.shell_quote(path)))
    assert.equal(2, rc, out)
    assert.matches("neither JSON nor a PushMsgReq", out, 1, true)
    rc, out = run(string.format("%s explain -c %s --from nocolon", h.shell_quote(h.bin), h.shell_quote(cfg)))
    assert.equal(2, rc, out)
    assert.matches("not topic:partition:offset", out, 1, true)
  end)
end)

describe("impulse explain, live services and --from #engine", function()
  local env, cfg

  lazy_setup(function()
    env = {}
    env.redis = h.start_redis()
    env.etcd = h.start_etcd()
    env.kafka = h.start_kafka { partitions = 1 }
    env.services = h.start_services(env.etcd)
    env.producer = require("spec.helpers.kafka").producer { bootstrap = env.kafka.bootstrap }
    cfg = h.impulse_config(env, { provider = "fcm", log_level = "warn" })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("reads group members and presence live, sends nothing, commits nothing", function()
    h.set_group(env, "g-live", { "ann", "ben", "cid" })
    h.set_online(env, { ann = { 1 } })
    h.redis_cli(env.redis, "SET", "FCM_TOKEN:ben:2", "tok-ben")
    -- a dismissal: the policy would dismiss the group in the group service
    local msg = h.push_msg { sendID = "ann", groupID = "g-live", sessionType = 3, contentType = 1511,
      clientMsgID = "c-live", content = cjson.encode { detail = cjson.encode { group = { groupID = "g-live" } } },
      options = { isNotNotification = false } }
    h.produce(env, msg, { operationID = "op-explain" })
    local rc, text = run(string.format("cd %s && %s explain -c %s --from toPush:0:0 --json",
      h.shell_quote(h.root), h.shell_quote(h.bin), h.shell_quote(cfg)))
    local ok, out = pcall(cjson.decode, text:match("([^\n]+)\n?$") or "")
    assert(ok and type(out) == "table", "not JSON: " .. text)
    assert.equal(0, rc, text)
    assert.equal("toPush", out.record.topic)
    assert.equal(0, out.record.offset)
    assert.equal("op-explain", out.record.operationID)
    local members = one(out, "call", function(s) return s.call == "group members" end)
    assert.equal("live", members.source)
    assert.same({ "ann", "ben", "cid" }, members.answer)
    local online = one(out, "online")
    assert.equal("live", online.source)
    assert.same({ 1 }, online.online.ann)
    local dismiss = one(out, "call", function(s) return s.call:match("dismissGroup") end)
    assert.equal(false, dismiss.sent)
    local tokens = one(out, "call", function(s) return s.call == "redis MGET" end)
    assert.equal("live", tokens.source)
    nothing_sent(out)
    -- the group still exists: the dismissal was not made
    local again = h.grpc_call(env.services.grpc, "/openim.group.group/getGroupMemberUserIDs", { groupID = "g-live" })
    assert.same({ "ann", "ben", "cid" }, again.userIDs)
    -- nothing produced: toOfflinePush is empty
    assert.equal(0, #h.dead_letters(env, "toOfflinePush"))
  end)
end)
