-- The engine API scripts call, for real: OpenIM RPCs by method path, Redis,
-- HTTP, Kafka produce and metrics, each yielding the message's coroutine.
local h = require "spec.helpers"

local POLICY = [[
local rpc = require "impulse.rpc"
local redis = require "impulse.redis"
local http = require "impulse.http"
local kafka = require "impulse.kafka"
local metrics = require "impulse.metrics"
local json = require "impulse.json"
local group = require "impulse.group"

local CONTROL = "@CONTROL@"

local _M = {}
function _M.route(msg, ctx)
  if msg.recvID == "api" then
    local seq = assert(rpc.conversation_max_seq("sg_g1"))
    assert(redis.call("SET", "impulse:test:" .. msg.clientMsgID, seq))
    local back = assert(redis.call("GET", "impulse:test:" .. msg.clientMsgID))
    local missing = redis.call("GET", "impulse:test:nothing")
    local res = assert(http.request { url = CONTROL .. "/state" })
    local state = json.decode(res.body)
    assert(kafka.produce("toOfflinePush", msg.clientMsgID, "hello", { { "operationID", ctx.operationID } }))
    metrics.inc("script_api_calls_total", { kind = "all" })
    metrics.observe("script_api_ms", nil, 3)
    ctx.log.info("api: seq=%s back=%s null=%s http=%d groups=%s", seq, back,
      tostring(missing == redis.null), res.status, tostring(state.groups ~= nil))
    return { "alice" }
  end
  if msg.recvID == "dismiss" then
    assert(group.dismiss(msg.groupID, "imAdmin"))
    local again, err, code = group.dismiss(msg.groupID, "imAdmin")
    ctx.log.info("second dismiss: %s %s", tostring(again), tostring(code))
    return { "alice" }
  end
  if msg.recvID == "badreq" then
    return rpc.call("/openim.msg.msg/GetConversationMaxSeq", { conversationId = "typo" })
  end
  if msg.recvID == "redis_err" then
    local ok, err, code = redis.call("INCR", "impulse:test:str")
    ctx.log.info("redis error: %s %s", tostring(err), tostring(code))
    return { "alice" }
  end
  return { msg.recvID }
end
return _M
]]

describe("engine API for scripts #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    h.http_json("POST", env.services.control .. "/maxseq", { sg_g1 = 42 })
    h.set_group(env, "g9", { "alice" })
    local scripts = h.tmpdir() .. "/api-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", (POLICY:gsub("@CONTROL@", env.services.control)))
    imp = h.start_impulse(env, { workers = 1, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local function route_of(m)
    return h.wait_until(function() return h.routes(imp)[m.clientMsgID] end, 15000, "a route")
  end

  local function log_of(m, prefix)
    return h.wait_until(function()
      for _, l in ipairs(h.log_lines(imp, prefix)) do
        if l.operationID == "op-" .. m.clientMsgID then return l end
      end
    end, 15000, prefix)
  end

  it("calls OpenIM, Redis, HTTP and Kafka from a script, with the message's operationID", function()
    local m = h.push_msg { sendID = "x", recvID = "api", options = { senderSync = false } }
    local opid = h.produce(env, m)
    route_of(m)
    assert.equal("api: seq=42 back=42 null=true http=200 groups=true", log_of(m, "api:").msg)
    local calls = h.http_json("GET", env.services.control .. "/calls")
    local found
    for _, c in ipairs(calls) do
      if c.method == "/openim.msg.msg/GetConversationMaxSeq" and c.metadata.operationid == opid then
        found = c
      end
    end
    assert.equal("sg_g1", found.request.conversationID)
    assert.equal("42\n", h.redis_cli(env.redis, "GET", "impulse:test:" .. m.clientMsgID))
    local recs = h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toOfflinePush", timeout_ms = 10000 }
    local rec
    for _, r in ipairs(recs) do if r.key == m.clientMsgID then rec = r end end
    assert.equal("hello", rec.value)
    assert.same({ { "operationID", opid } }, rec.headers)
    assert.equal(1, h.metric(imp, "script_api_calls_total", 'kind="all"'))
    assert.equal(1, h.metric(imp, "script_api_ms_count"))
  end)

  it("dismisses a group as the admin user; dismissing it again reports OpenIM's code", function()
    local m = h.push_msg { sendID = "x", recvID = "dismiss", groupID = "g9", options = { senderSync = false } }
    h.produce(env, m)
    route_of(m)
    assert.equal("second dismiss: nil 1004", log_of(m, "second dismiss").msg)
    local call
    for _, c in ipairs(h.http_json("GET", env.services.control .. "/calls")) do
      if c.method == "/openim.group.group/dismissGroup" then call = call or c end
    end
    assert.equal("g9", call.request.groupID)
    assert.is_true(call.request.deleteMember)
    assert.equal("imAdmin", call.metadata.opuserid)
  end)

  it("refuses a request with a field the message does not have", function()
    local m = h.push_msg { sendID = "x", recvID = "badreq", options = { senderSync = false } }
    h.produce(env, m)
    local l = h.wait_until(function()
      for _, x in ipairs(h.log_lines(imp, "script error")) do
        if x.clientMsgID == m.clientMsgID then return x end
      end
    end, 15000, "the script error")
    assert.matches("has no field 'conversationId'", l.error)
  end)

  it("returns Redis error replies as nil, err, code", function()
    h.redis_cli(env.redis, "SET", "impulse:test:str", "abc")
    local m = h.push_msg { sendID = "x", recvID = "redis_err", options = { senderSync = false } }
    h.produce(env, m)
    route_of(m)
    assert.matches("redis error: ERR value is not an integer.* REDIS_ERROR", log_of(m, "redis error").msg)
  end)
end)
