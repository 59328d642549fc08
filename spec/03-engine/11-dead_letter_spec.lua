-- Dead letters: a failed message goes to toPush.dlq with its key, value
-- and headers plus the failure; its offset is stored once that is
-- acknowledged; `impulse replay` moves it back with exactly four headers.
local h = require "spec.helpers"

local function policy(boom)
  return ([[
local _M = {}
function _M.route(msg, ctx)
  if %s and msg.recvID == "boom" then error("kaboom") end
  return { msg.recvID }
end
return _M
]]):format(boom and "true" or "false")
end

describe("dead letters #engine", function()
  local env, imp, scripts

  local function dlq() return h.dead_letters(env, "toPush.dlq") end

  local header = h.header

  local function run_impulse(args)
    local out = h.run(h.shell_quote(h.bin) .. " " .. args .. " 2>&1; echo \"rc=$?\"")
    local text, rc = out:match("^(.*)rc=(%d+)%s*$")
    return tonumber(rc), text
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 }, boom = { 1 } }, env.gateways[1])
    scripts = h.tmpdir() .. "/dlq-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", policy(true))
    imp = h.start_impulse(env, { workers = 1, scripts = scripts })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  local boom

  it("dead-letters a failing message with its key, value, headers and the failure", function()
    boom = h.push_msg { sendID = "x", recvID = "boom", options = { senderSync = false } }
    local opid = h.produce(env, boom, { key = "conv-1" })
    h.produce(env, boom, { key = "conv-2", raw = "\255not a record", operationID = "op-garbage" })
    local recs = h.wait_until(function()
      local r = dlq()
      return #r >= 2 and r
    end, 15000, "two dead letters")
    local by = {}
    for _, r in ipairs(recs) do by[header(r, "impulse-reason")] = r end
    local s = by.script_error
    assert.equal("conv-1", s.key)
    assert.equal(h.pb.encode("openim.push.PushMsgReq", { msgData = boom }), s.value)
    assert.same({ "operationID", opid }, s.headers[1])
    assert.same({ "opUserID", "x" }, s.headers[2])
    assert.same({ "platform", "iOS" }, s.headers[3])
    assert.same({ "connID", "c1" }, s.headers[4])
    assert.matches("kaboom", header(s, "impulse-error"))
    assert.matches("^toPush/%d+/%d+$", header(s, "impulse-origin"))
    assert.equal("\255not a record", by.bad_record.value)
    assert.equal("op-garbage", by.bad_record.headers[1][2])
    assert.equal(2, h.metric(imp, "impulse_dead_letters_total", 'topic="toPush.dlq",result="ok"'))
    -- a benchmark's wait for ok messages stops at once on these, naming them
    local ok, err = pcall(h.wait_ok, imp, 1000, 60000, "the benchmark")
    assert.is_false(ok)
    assert.matches("the benchmark: 2 message%(s%) ended other than ok %(bad_record 1, script_error 1%)", err)
  end)

  it("stores the offset after the dead letter: a restart does not dead-letter again", function()
    h.stop(imp)
    imp = h.start_impulse(env, { workers = 1, scripts = scripts, ready_timeout_ms = 60000 })
    local after = h.push_msg { sendID = "x", recvID = "alice", options = { senderSync = false } }
    h.produce(env, after, { key = "conv-1" })
    h.wait_until(function() return h.routes(imp)[after.clientMsgID] end, 15000, "the next message")
    assert.equal(2, #dlq())
  end)

  it("lists dead letters with their reason, error and origin (impulse dlq ls), moving nothing", function()
    local rc, out = run_impulse("dlq ls -c " .. imp.config)
    assert.equal(0, rc, out)
    assert.matches("toPush%.dlq%[%d+%]@%d+  %d%d%d%d%-%d%d%-%d%dT[%d:]+Z  script_error  from toPush/%d+/%d+  op op%-"
      .. boom.clientMsgID:gsub("%p", "%%%0") .. "  key conv%-1", out)
    assert.matches("\n    [^\n]*kaboom", out)
    assert.matches("bad_record  from toPush/%d+/%d+  op op%-garbage  key conv%-2", out)
    assert.matches("2 dead letters in toPush.dlq %(by reason: [%w_ ,]+%)\n$", out)
    assert.matches("script_error 1", out, 1, true)
    assert.matches("bad_record 1", out, 1, true)
    rc, out = run_impulse("dlq ls --json --max 1 -c " .. imp.config)
    assert.equal(0, rc, out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = require("cjson").decode(l) end
    assert.equal(1, #lines, out)
    assert.matches("^toPush%.dlq%[%d+%]@%d+$", lines[1].record)
    assert.is_truthy(lines[1].reason == "script_error" or lines[1].reason == "bad_record", out)
    assert.matches("^toPush/", lines[1].origin)
    -- reading moved nothing: the replay below still finds both
    assert.equal(2, #dlq())
    rc, out = run_impulse("dlq -c " .. imp.config)
    assert.equal(2, rc, out)
  end)

  it("replays dead letters to their topic with exactly the four original headers", function()
    h.write_file(scripts .. "/push.lua", policy(false)) -- the fix
    h.wait_until(function()
      return h.http_json("GET", imp.admin .. "/healthz").scripts.reloads >= 1
    end, 5000, "the fix to load")
    local rc, out = run_impulse("replay -c " .. imp.config)
    assert.equal(0, rc, out)
    assert.matches("replayed 2 records from toPush.dlq", out)
    -- the fixed message now reaches the gateway
    h.wait_until(function()
      local seen = h.http_json("GET", env.gateways[1].control .. "/seen")
      return seen[boom.clientMsgID]
    end, 15000, "the replayed message at the gateway")
    -- what went back to toPush carries the four headers, nothing more
    local back = {}
    for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toPush", timeout_ms = 10000 }) do
      if r.key == "conv-1" and r.value == h.pb.encode("openim.push.PushMsgReq", { msgData = boom }) then
        back[#back + 1] = r
      end
    end
    assert.equal(2, #back) -- the original and the replayed copy
    for _, r in ipairs(back) do
      assert.equal(4, #r.headers)
      assert.same({ "operationID", "opUserID", "platform", "connID" },
        { r.headers[1][1], r.headers[2][1], r.headers[3][1], r.headers[4][1] })
    end
    -- a second replay has nothing left but the garbage record dead-lettered
    -- again (once: a replay stops at the topic's end as of its start, so a
    -- record that keeps failing does not loop)
    h.wait_until(function() return #dlq() == 3 end, 15000, "the garbage record dead-lettered again")
    rc, out = run_impulse("replay -c " .. imp.config)
    assert.equal(0, rc, out)
    assert.matches("replayed 1 records", out)
  end)

  it("checks that the topics exist", function()
    local rc, out = run_impulse("check -c " .. imp.config)
    assert.equal(0, rc, out)
    assert.matches("topics present", out)
    local cfg = h.read_file(imp.config):gsub("impulse:\n", "impulse:\n  deadLetterTopic: missing.dlq\n")
    local path = h.tmpdir() .. "/missing-dlq.yml"
    h.write_file(path, cfg)
    rc, out = run_impulse("check -c " .. path)
    assert.equal(2, rc, out)
    assert.matches("config: impulse.deadLetterTopic: topic 'missing.dlq' does not exist", out)
  end)
end)
