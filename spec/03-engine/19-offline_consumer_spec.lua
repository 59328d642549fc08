-- The offline leg: toOfflinePush consumed in group offlinePush by every
-- worker, each record's users sent through the provider the config or the
-- policy chose (here the "log" provider, whose requests become log lines);
-- bad records and failed sends dead-lettered to toOfflinePush.dlq.
local h = require "spec.helpers"

local POLICY = [[
local openim = require "openim"
local _M = {}
function _M.route(msg, ctx) return openim.route(msg, ctx) end
function _M.offline(msg, ctx, result) return openim.offline(msg, ctx, result) end
function _M.notice(msg) return openim.notice(msg) end
-- users "mi-*" go to mipush, which has no payload module
function _M.provider(user) if user:sub(1, 3) == "mi-" then return "mipush" end end
return _M
]]

describe("offline consumer #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { bob = { 1 } }, env.gateways[1])
    h.set_group(env, "g-off", { "zed", "bob", "amy", "carl" })
    local scripts = h.tmpdir() .. "/offline-scripts"
    os.execute("mkdir -p " .. scripts .. " && cp -r " .. h.root .. "/scripts/. " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    imp = h.start_impulse(env, { workers = 2, scripts = scripts, provider = "log" })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  -- the "offline push" log lines of a message
  local function sent(m, n)
    return h.wait_until(function()
      local out = {}
      for _, l in ipairs(h.log_lines(imp, "offline push")) do
        if l.msg == "offline push" and l.clientMsgID == m.clientMsgID then out[#out + 1] = l end
      end
      return #out >= (n or 1) and out
    end, 20000, "the offline push of " .. m.clientMsgID)
  end

  local function dlq() return h.dead_letters(env, "toOfflinePush.dlq") end

  local header = h.header

  it("joins group offlinePush on every worker", function()
    local st = h.http_json("GET", imp.admin .. "/healthz")
    local parts = 0
    for _, w in ipairs(st.workers) do
      assert.is_true(w.offlinePartitions >= 0)
      parts = parts + w.offlinePartitions
    end
    assert.equal(8, parts) -- the mock cluster's partitions of toOfflinePush, split over 2 workers
  end)

  it("sends a single chat's offline push through the configured provider", function()
    local m = h.push_msg { sendID = "zed", recvID = "amy", options = { senderSync = false } }
    local opid = h.produce(env, m)
    local l = sent(m)[1]
    assert.equal("log", l.provider)
    assert.equal(opid, l.operationID) -- the headers travelled through toOfflinePush
    assert.equal(1, l.users)
    assert.same({ clientMsgID = m.clientMsgID, sendID = "zed", sessionType = 1, title = "[TEXT]",
                  content = "[TEXT]", users = { "amy" } }, l.body)
    h.wait_until(function()
      return h.metric(imp, "impulse_messages_total", 'topic="toOfflinePush",result="ok"') >= 1
    end, 5000, "the record counted")
    assert.is_true(h.metric(imp, "impulse_offline_push_total", 'provider="log",result="sent"') >= 1)
  end)

  it("sends a group's offline members, not the sender nor those reached online", function()
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-off", sessionType = 3 }
    h.produce(env, m)
    local l = sent(m)[1]
    table.sort(l.body.users)
    assert.same({ "amy", "carl" }, l.body.users)
    assert.equal(2, l.users)
  end)

  it("dead-letters a bad record and a failed send, and goes on with the next", function()
    -- garbage straight on toOfflinePush
    env.producer:produce("toOfflinePush", "k-bad", "\255garbage", {
      { "operationID", "op-bad" }, { "opUserID", "x" }, { "platform", "iOS" }, { "connID", "c" },
    })
    env.producer:flush(10000)
    -- a user whose provider (mipush) has no payload module
    local m = h.push_msg { sendID = "zed", recvID = "mi-1", options = { senderSync = false } }
    h.produce(env, m)
    local recs = h.wait_until(function()
      local r = dlq()
      return #r >= 2 and r
    end, 20000, "two dead letters")
    local by = {}
    for _, r in ipairs(recs) do by[header(r, "impulse-reason")] = r end
    assert.equal("\255garbage", by.bad_record.value)
    assert.equal("op-bad", by.bad_record.headers[1][2])
    assert.matches("^toOfflinePush/%d+/%d+$", header(by.bad_record, "impulse-origin"))
    local f = by.push_failed
    assert.equal("mi-1_zed", f.key)
    assert.matches("no payload module scripts/providers/mipush.lua", header(f, "impulse-error"))
    local req = h.pb.decode("openim.push.PushMsgReq", f.value)
    assert.same({ "mi-1" }, req.userIDs)
    -- the consumer goes on
    local after = h.push_msg { sendID = "zed", recvID = "amy", options = { senderSync = false } }
    h.produce(env, after)
    sent(after)
    assert.equal(1, h.metric(imp, "impulse_messages_total", 'topic="toOfflinePush",result="bad_record"'))
    assert.equal(1, h.metric(imp, "impulse_messages_total", 'topic="toOfflinePush",result="push_failed"'))
  end)
end)
