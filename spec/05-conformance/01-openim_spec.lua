-- Conformance with OpenIM's openim-push, once per version profile
-- (docs/openim-versions.md). The peer is independent of impulse: the OpenIM
-- stand-in (grpc-js and protobufjs, examples/openim-standin) loading
-- OpenIM's own .proto files of the protocol tag that release pins
-- (spec/fixtures/openim-protocol), and refusing calls as OpenIM's server
-- interceptor does. It encodes each toPush record as msgtransfer writes it
-- (PushMsgDataToMQ{msgData, conversationID}, the four headers), and records
-- what the gateways, the group/user/conversation/msg services and
-- toOfflinePush receive; each family's expectation below is what that
-- release's openim-push sends for the same input, with the line it follows.
-- OpenIM@TAG is github:openimsdk/open-im-server; the push path is
-- byte-identical inside each profile.
--
-- The one deliberate difference these cases see: openim-push calls the
-- provider inline for a single chat, impulse hands the same users and
-- msgData to toOfflinePush (docs/openim-versions.md, "Deliberate
-- differences"); and a record with no operationID header, which OpenIM
-- cannot push at all, is pushed with an empty operationid.
local h = require "spec.helpers"
local cjson = require "cjson"

local format, concat = string.format, table.concat

local ADMIN = "openimAdmin"
local FIXTURES = h.root .. "/spec/fixtures/openim-protocol/"
local MEMBERS = "/openim.group.group/getGroupMemberUserIDs"
local DISMISS = "/openim.group.group/dismissGroup"
local GETSEQ = "/openim.msg.msg/GetConversationMaxSeq"
local SETSEQ = "/openim.conversation.conversation/SetConversationMaxSeq"
local FILTER = "/openim.conversation.conversation/GetConversationOfflinePushUserIDs"

local V383_NAMES = { gateway = "messageGateway", user = "user", group = "group",
                     conversation = "conversation", msg = "msg" }

local PROFILES = {
  { -- v3.8.3, patch.1, patch.2: 1601 never offline (OpenIM@v3.8.3:internal/push/push_handler.go:210)
    openim = "v3.8.3", version = "v3.8.3", pin = "v0.0.72-alpha.71",
    no_offline = { [1601] = true }, admin_op = false, names = V383_NAMES },
  { -- patch.3, patch.4: 1602/1603 instead (OpenIM@v3.8.3-patch.3:internal/push/push_handler.go:212-215)
    openim = "v3.8.3-patch.4", version = "v3.8.3-patch.4", pin = "v0.0.72-alpha.78",
    no_offline = { [1602] = true, [1603] = true }, admin_op = false, names = V383_NAMES },
  { -- patch.5 … patch.16: and every record runs as imAdminUserID[0]
    -- (OpenIM@v3.8.3-patch.5:internal/push/push_handler.go:143-146)
    openim = "v3.8.3-patch", version = "v3.8.3-patch.16", pin = "v0.0.73-alpha.12",
    no_offline = { [1602] = true, [1603] = true }, admin_op = true, names = V383_NAMES },
  { -- v3.8.4-alpha.1: 1601 (OpenIM@v3.8.4-alpha.1:internal/push/push_handler.go:211), the
    -- *-rpc-service names of discovery.yml (OpenIM@v3.8.4-alpha.1:config/discovery.yml:8-17);
    -- not named in impulse.openim: detected from that layout
    openim = nil, version = "v3.8.4-alpha.1", pin = "v0.0.72-alpha.71",
    no_offline = { [1601] = true }, admin_op = false,
    names = { gateway = "messagegateway-rpc-service", user = "user-rpc-service", group = "group-rpc-service",
              conversation = "conversation-rpc-service", msg = "msg-rpc-service" } },
  { -- open-im-server main at 7848d7c7: 1602/1603 (OpenIM@main:internal/push/push_handler.go:187-189),
    -- the records' own opUserID, every toPush call as a temporary admin
    -- (OpenIM@main:internal/push/push.go:111, pkg/authverify/token.go:93-111). It pins protocol
    -- v0.0.73-alpha.19 (not public in the mirror read); alpha.12's messages are the ones it uses
    -- (docs/research/openim-push-main.md)
    openim = "main", version = "main", pin = "v0.0.73-alpha.12",
    no_offline = { [1602] = true, [1603] = true }, admin_op = false, temp_admin = true,
    names = { gateway = "messagegateway-rpc-service", user = "user-rpc-service", group = "group-rpc-service",
              conversation = "conversation-rpc-service", msg = "msg-rpc-service" } },
}

local function b64(s) return h.base64_encode(s) end

local function tips(t) return cjson.encode { detail = cjson.encode(t) } end

-- The first field of a protobuf message, when it is field 1 (length-
-- delimited): msgData inside PushMsgReq and OnlineBatchPushOneMsgReq.
local function field1(bytes)
  assert(bytes:byte(1) == 0x0a, "field 1 (msgData) does not come first")
  local len, shift, i = 0, 0, 2
  repeat
    local b = bytes:byte(i)
    len = len + (b % 128) * 2 ^ shift
    shift, i = shift + 7, i + 1
  until b < 128
  return bytes:sub(i, i + len - 1)
end

local function sorted(list)
  local c = {}
  for i, v in ipairs(list or {}) do c[i] = v end
  table.sort(c)
  return c
end

local function describe_profile(P)
  describe(format("openim-push %s (profile, protocol %s) #conformance", P.version, P.pin), function()
    local env, imp
    local n, now = 0, nil
    local huge, huge_offline = {}, {}
    for i = 1, 100000 do huge[i] = "h" .. i end
    huge[#huge + 1] = "u_ios"
    for i = 2, 100000 do huge_offline[#huge_offline + 1] = huge[i] end

    local function control(path, body)
      return h.http_json("POST", env.services.control .. path, body)
    end

    local function encode(type_name, value)
      local r = control("/encode", { type = type_name, value = value })
      return h.base64_decode(r.base64)
    end

    local function decode(type_name, bytes)
      return control("/decode", { type = type_name, base64 = b64(bytes) }).value
    end

    -- MsgData as msgtransfer writes it (fields as protobufjs takes them)
    local OPTIONS = { history = true, persistent = true, senderSync = true, offlinePush = true, unreadCount = true }
    local function msgdata(f)
      n = n + 1
      local m = {
        sendID = "", recvID = "", groupID = "", clientMsgID = format("conf-%s-%d", P.version, n),
        serverMsgID = format("srv-%s-%d", P.version, n), senderPlatformID = 2, senderNickname = "Sam",
        senderFaceURL = "https://example.com/sam.png", sessionType = 1, msgFrom = 100, contentType = 101,
        content = b64('{"content":"hello"}'), seq = tostring(4294967296 + n), sendTime = tostring(now),
        createTime = tostring(now - 5), status = 1, options = OPTIONS, ex = "",
      }
      for k, v in pairs(f) do m[k] = v end
      if type(m.content) == "string" and f.content then m.content = b64(f.content) end
      -- Go's proto3 encoder (msgtransfer) leaves zero values off the wire;
      -- protobufjs writes every field set, so zero values are not set
      for k, v in pairs(m) do
        if v == "" or v == 0 or v == false then m[k] = nil end
      end
      return m
    end

    -- The families: input (m, headers) and what openim-push sends for it:
    -- push = the users every gateway is asked to push (nil: no call),
    -- calls = the service calls in order, offline = who gets an offline push.
    local function families()
      now = math.floor(os.time() * 1000)
      local opuser = function(sender) return P.admin_op and ADMIN or sender end
      local F = {
        { name = "single chat, receiver offline (push_handler.go:115-122, 174-184)",
          m = msgdata { sendID = "u_web", recvID = "u_off" }, push = { "u_web" }, offline = { "u_off" } },
        { name = "single chat, receiver online on iOS: no offline push",
          m = msgdata { sendID = "u_web", recvID = "u_ios" }, push = { "u_ios", "u_web" } },
        { name = "single chat, receiver on the web only (OnlinePush false)",
          m = msgdata { sendID = "u_off2", recvID = "u_web" }, push = { "u_web" }, offline = { "u_web" } },
        { name = "single chat without sender sync",
          m = msgdata { sendID = "u_ios", recvID = "u_off",
                        options = { history = true, senderSync = false, offlinePush = true } },
          offline = { "u_off" } },
        { name = "self chat: online and offline to the user (push_handler.go:174-184)",
          m = msgdata { sendID = "u_self", recvID = "u_self" }, push = { "u_self" }, offline = { "u_self" } },
        { name = "notification chat (sessionType 4)",
          m = msgdata { sessionType = 4, contentType = 1201, sendID = "u_sys", recvID = "u_off" },
          offline = { "u_off" } },
        { name = "signaling 1601",
          m = msgdata { contentType = 1601, sendID = "u_off2", recvID = "u_off" },
          offline = not P.no_offline[1601] and { "u_off" } or nil },
        { name = "room participants connected 1602",
          m = msgdata { contentType = 1602, sendID = "u_off2", recvID = "u_off" },
          offline = not P.no_offline[1602] and { "u_off" } or nil },
        { name = "an hour-old message: counted, still pushed (push_handler.go:102-108)",
          m = msgdata { sendID = "u_off2", recvID = "u_off", sendTime = tostring(now - 3600 * 1000) },
          offline = { "u_off" } },
        { name = "empty operationID and connID: sent empty (rpc_client_interceptor.go:78-112)",
          m = msgdata { sendID = "u_web", recvID = "u_off" }, push = { "u_web" }, offline = { "u_off" },
          headers = { { "operationID", "" }, { "opUserID", "u_web" }, { "platform", "iOS" }, { "connID", "" } },
          md = { operationid = "", opuserid = opuser("u_web"), platform = "iOS", connid = "" } },
        { name = "no operationID header: pushed with an empty one (a deliberate difference)",
          m = msgdata { sendID = "u_web", recvID = "u_off" }, push = { "u_web" }, offline = { "u_off" },
          headers = { { "opUserID", "u_web" }, { "platform", "iOS" }, { "connID", "c1" } },
          md = { operationid = "", opuserid = opuser("u_web"), platform = "iOS", connid = "c1" } },
        { name = "group text (push_handler.go:242-284, onlinepusher.go:116-133)",
          group = { "g-text", { "u_send", "u_ios", "u_web", "u_off", "u_muted" } }, muted = { "u_muted" },
          m = msgdata { sessionType = 3, groupID = "g-text", sendID = "u_send" }, push = { "u_ios", "u_web" },
          calls = { { MEMBERS, { groupID = "g-text" } },
                    { FILTER, { conversationID = "sg_g-text", userIDs = { "u_web", "u_off", "u_muted" } } } },
          offline = { "u_web", "u_off" } },
        { name = "member quit, max seq 0: Get then Set (push_handler.go:314-322, 423-430)",
          group = { "g-quit", { "u_a", "u_off" } },
          m = msgdata { sessionType = 3, groupID = "g-quit", sendID = "u_a", contentType = 1504,
                        content = tips { quitUser = { userID = "u_q" }, group = { groupID = "g-quit" } } },
          calls = { { MEMBERS, { groupID = "g-quit" } }, { GETSEQ, { conversationID = "sg_g-quit" } },
                    { SETSEQ, { conversationID = "sg_g-quit", ownerUserID = { "u_q" }, maxSeq = "0" } },
                    { FILTER, { conversationID = "sg_g-quit", userIDs = { "u_off", "u_q" } } } },
          offline = { "u_off", "u_q" } },
        { name = "members kicked (push_handler.go:323-333)",
          group = { "g-kick", { "u_a", "u_ios" } }, maxseq = { ["sg_g-kick"] = 42 },
          m = msgdata { sessionType = 3, groupID = "g-kick", sendID = "u_a", contentType = 1508,
                        content = tips { kickedUserList = { { userID = "k1" }, { userID = "k2" } } } },
          push = { "u_ios" },
          calls = { { MEMBERS, { groupID = "g-kick" } }, { GETSEQ, { conversationID = "sg_g-kick" } },
                    { SETSEQ, { conversationID = "sg_g-kick", ownerUserID = { "k1", "k2" }, maxSeq = "42" } },
                    { FILTER, { conversationID = "sg_g-kick", userIDs = { "k1", "k2" } } } },
          offline = { "k1", "k2" } },
        { name = "group dismissed, as the admin (push_handler.go:334-349)",
          group = { "g-dis", { "u_a", "u_off" } },
          m = msgdata { sessionType = 3, groupID = "g-dis", sendID = "u_a", contentType = 1511,
                        options = { history = true, offlinePush = true, isNotNotification = false },
                        content = tips { group = { groupID = "g-dis" } } },
          calls = { { MEMBERS, { groupID = "g-dis" } },
                    { DISMISS, { groupID = "g-dis", deleteMember = true }, { opuserid = ADMIN } },
                    { FILTER, { conversationID = "sg_g-dis", userIDs = { "u_off" } } } },
          offline = { "u_off" } },
        { name = "a 100,001-member group: one filter call, every member not reached",
          group = { "g-huge", huge },
          m = msgdata { sessionType = 3, groupID = "g-huge", sendID = "h1" }, push = { "u_ios" },
          calls = { { MEMBERS, { groupID = "g-huge" } }, { FILTER, { conversationID = "sg_g-huge" } } },
          offline = huge_offline, huge = true },
      }
      for _, f in ipairs(F) do
        f.gid, f.send, f.recv = f.m.groupID or "", f.m.sendID or "", f.m.recvID or ""
        f.opid = f.headers and "" or ("op-" .. f.m.clientMsgID)
        f.md = f.md or { operationid = f.opid, opuserid = opuser(f.m.sendID), platform = "iOS", connid = "c1" }
        f.headers = f.headers or { { "operationID", f.opid }, { "opUserID", f.m.sendID }, { "platform", "iOS" },
                                   { "connID", "c1" } }
      end
      return F
    end

    local function check_md(got, want, what)
      for _, k in ipairs { "operationid", "opuserid", "platform", "connid" } do
        assert.are.equal(want[k], got[k], format("%s: metadata %s (got %s)", what, k, cjson.encode(got)))
      end
      -- main's temporary admin, and only there
      assert.are.equal(P.temp_admin and "1" or nil, got.ctximtempadminkey,
        format("%s: metadata ctximtempadminkey (got %s)", what, cjson.encode(got)))
      assert.are.equal(P.temp_admin and "ctxImTempAdminKey" or nil, got.customheader,
        format("%s: metadata customheader (got %s)", what, cjson.encode(got)))
    end

    lazy_setup(function()
      env = {}
      env.redis = h.start_redis()
      env.etcd = h.start_etcd()
      env.kafka = h.start_kafka()
      local protos = "--proto-dir " .. FIXTURES .. P.pin
      local N = P.names
      env.services = h.start_services(env.etcd, format("%s --user %s --group %s --conversation %s --msg %s",
        protos, N.user, N.group, N.conversation, N.msg))
      env.gateways = { h.start_gateway(env.etcd, protos .. " --service " .. N.gateway),
                       h.start_gateway(env.etcd, protos .. " --service " .. N.gateway) }
      env.producer = h.kafka.producer { bootstrap = env.kafka.bootstrap }
      h.set_online(env, { u_ios = { 1 }, u_self = { 1 } }, env.gateways[1])
      h.set_online(env, { u_web = { 5 } }, env.gateways[2])
      local opts = {
        workers = 2,
        yaml = "share:\n  imAdminUserID: [" .. ADMIN .. "]",
        impulse = { openim = P.openim },
        rpc_timeout_ms = 10000,
      }
      if P.version == "v3.8.4-alpha.1" then
        local lines = { "  rpcService:" }
        for k, v in pairs { user = N.user, group = N.group, conversation = N.conversation, msg = N.msg,
                            messageGateway = N.gateway, push = "push-rpc-service" } do
          lines[#lines + 1] = format("    %s: %s", k, v)
        end
        opts.discovery_yaml = concat(lines, "\n")
      end
      imp = h.start_impulse(env, opts)
    end)

    lazy_teardown(function() h.stop_env(env) end)

    it("is the profile impulse reports, at start and in `impulse check`", function()
      local line = h.log_lines(imp, "openim: behaving as openim-push")[1]
      assert.is_truthy(line, "no start line naming the OpenIM release")
      local want = "behaving as openim-push " .. P.version .. " "
      assert.is_truthy(line.msg:find(want, 1, true), line.msg)
      local out = io.popen(format("%s check -c %s --skip-kafka 2>&1", h.bin, imp.config)):read("*a")
      assert.is_truthy(out:find(want, 1, true), out)
      if not P.openim then assert.is_truthy(out:find("detected: discovery.rpcService", 1, true), out) end
    end)

    it("exports OpenIM's push metrics at 0 from the start (prommetrics/grpc_push.go:22-29)", function()
      local _, body = h.http("GET", imp.admin .. "/metrics")
      assert.matches("\nmsg_offline_push_failed_total 0\n", body, 1, true)
      assert.matches("\nmsg_long_time_push_total 0\n", body, 1, true)
    end)

    it("sends what openim-push sends, for every family", function()
      local F = families()
      for _, f in ipairs(F) do
        if f.group then h.set_group(env, f.group[1], f.group[2]) end
        if f.muted then control("/offlinepush", { ["sg_" .. f.group[1]] = f.muted }) end
        if f.maxseq then control("/maxseq", f.maxseq) end
      end
      for _, f in ipairs(F) do
        local value = encode("openim.msg.PushMsgDataToMQ", { msgData = f.m,
          conversationID = f.gid ~= "" and ("sg_" .. f.gid) or ("si_" .. f.send .. "_" .. f.recv) })
        env.producer:produce("toPush", f.gid ~= "" and f.gid or h.key_of(f.m), value, f.headers)
      end
      env.producer:flush(10000)
      h.wait_until(function()
        return h.metric(imp, "impulse_messages_total", 'topic="toPush",result="ok"') >= #F
      end, 120000, #F .. " messages handled")

      -- what each gateway received, by clientMsgID
      local pushes = {}
      for gi, g in ipairs(env.gateways) do
        for _, p in ipairs(h.pushes(g)) do
          local id = p.msgData.clientMsgID
          pushes[id] = pushes[id] or {}
          pushes[id][gi] = p
        end
      end
      local calls = h.http_json("GET", env.services.control .. "/calls")
      local records = {}
      for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush",
                                            timeout_ms = 20000 }) do
        local req = decode("openim.push.PushMsgReq", r.value)
        local id = req.msgData.clientMsgID
        records[id] = records[id] or {}
        table.insert(records[id], { rec = r, req = req })
      end

      for _, f in ipairs(F) do
        local id, what = f.m.clientMsgID, f.name
        -- msgData as OpenIM hands it on: the input, status 1 → 2 (push_handler.go:217-219)
        local sent = {}
        for k, v in pairs(f.m) do sent[k] = v end
        sent.status = 2
        local want_md = encode("openim.sdkws.MsgData", sent)

        -- the gateways: every one gets the online recipients (onlinepusher.go:61-114)
        for gi = 1, 2 do
          local p = (pushes[id] or {})[gi]
          if not f.push then
            assert.is_nil(p, format("%s: gateway %d was called", what, gi))
          else
            assert.is_truthy(p, format("%s: gateway %d was not called; route %s", what, gi,
              cjson.encode(h.routes(imp)[id] or {})))
            assert.same(f.push, p.pushToUserIDs, what .. ": pushToUserIDs")
            assert.are.equal(want_md, field1(h.base64_decode(p.raw)), what .. ": msgData bytes at the gateway")
            check_md(p.metadata, f.md, what .. ": gateway")
          end
        end

        -- the services, in order
        local mine = {}
        for _, c in ipairs(calls) do
          if (c.metadata.operationid or "") == f.opid and c.request and (c.request.groupID == f.gid
            or (c.request.conversationID == "sg_" .. f.gid)) and f.gid ~= "" then
            mine[#mine + 1] = c
          end
        end
        local want_calls = f.calls or {}
        local got_methods, want_methods = {}, {}
        for i, c in ipairs(mine) do got_methods[i] = c.method end
        for i, c in ipairs(want_calls) do want_methods[i] = c[1] end
        assert.same(want_methods, got_methods, what .. ": service calls")
        for i, c in ipairs(want_calls) do
          for k, v in pairs(c[2]) do
            assert.same(v, mine[i].request[k], format("%s: %s %s", what, c[1], k))
          end
          local md = {}
          for k, v in pairs(f.md) do md[k] = v end
          for k, v in pairs(c[3] or {}) do md[k] = v end
          check_md(mine[i].metadata, md, what .. ": " .. c[1])
        end
        if f.huge then
          local filt = mine[2].request.userIDs
          assert.equal(100000 - 1, #filt, what .. ": the filter call holds every member not reached")
        end

        -- toOfflinePush: msgData unchanged, OpenIM's key and four headers
        -- (controller/push.go:58, mq/kafka/util.go:14-25)
        local recs = records[id] or {}
        if not f.offline then
          assert.equal(0, #recs, what .. ": an offline push was handed over")
        else
          assert.is_true(#recs > 0, what .. ": no toOfflinePush record")
          local users = {}
          for _, r in ipairs(recs) do
            assert.is_true(#r.rec.value < 1000000, what .. ": a record of 1,000,000 bytes or more")
            local a, b = f.send, f.recv
            if a > b then a, b = b, a end
            assert.equal(a .. "_" .. b, r.rec.key, what .. ": key")
            assert.same({ { "operationID", f.md.operationid }, { "opUserID", f.md.opuserid },
                          { "platform", f.md.platform }, { "connID", f.md.connid } }, r.rec.headers,
                        what .. ": headers")
            assert.are.equal(want_md, field1(r.rec.value), what .. ": msgData bytes on toOfflinePush")
            for _, u in ipairs(r.req.userIDs) do users[#users + 1] = u end
          end
          if f.huge then
            assert.same(sorted(f.offline), sorted(users), what .. ": offline users")
          else
            assert.same(f.offline, users, what .. ": offline users")
          end
        end
      end

      -- nothing OpenIM's interceptor would refuse
      assert.same({}, h.http_json("GET", env.services.control .. "/refused"))
      for _, g in ipairs(env.gateways) do assert.same({}, h.http_json("GET", g.control .. "/refused")) end
      -- the old message was counted (push_handler.go:105-108)
      assert.is_true(h.metric(imp, "msg_long_time_push_total") >= 1)
    end)
  end)
end

for _, P in ipairs(PROFILES) do describe_profile(P) end
