-- A record that stops the engine costs that record only. Here route()
-- runs one C call no budget can interrupt (pattern backtracking over a
-- long string: the budget's hook never runs inside it). The watchdog finds
-- the worker stuck after impulse.workerStuckMs of its CPU time: logged with
-- the record, counted, /readyz 503; by default impulse exits (code 3) for
-- its supervisor to restart it. The crash journal counts a death against
-- the record each time; after impulse.poisonDeaths (2) the record is
-- dead-lettered on replay without running the scripts, and the records
-- behind it are pushed.
local h = require "spec.helpers"

local POLICY = [[
local _M = {}
function _M.route(msg)
  if msg.recvID == "stuck" then
    local s = string.rep("a", 30000)
    s:find(".-.-.-.-b") -- years of backtracking inside one C call
  end
  return { msg.recvID }
end
return _M
]]

describe("a record that gets a worker stuck #engine", function()
  local env, imp, scripts, journal, stuck_msg, after

  local function dlq() return h.dead_letters(env, "toPush.dlq") end

  local header = h.header

  local function start(extra)
    local opts = { workers = 1, scripts = scripts, drain_timeout_ms = 2000, ready_timeout_ms = 60000,
                   impulse = { workerStuckMs = 1000, crashJournal = journal } }
    for k, v in pairs(extra or {}) do opts.impulse[k] = v end
    return h.start_impulse(env, opts)
  end

  local function log_has(p, text)
    return (h.read_file(p.log) or ""):find(text, 1, true) ~= nil
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    h.set_online(env, { alice = { 1 } }, env.gateways[1])
    scripts = h.tmpdir() .. "/stuck-scripts"
    os.execute("mkdir -p " .. scripts)
    h.write_file(scripts .. "/push.lua", POLICY)
    journal = h.tmpdir() .. "/journal/crash-journal"
    stuck_msg = h.push_msg { sendID = "x", recvID = "stuck", options = { senderSync = false } }
    after = h.push_msg { sendID = "x", recvID = "alice", options = { senderSync = false } }
    h.produce(env, stuck_msg, { key = "conv-stuck", operationID = "op-stuck" })
    h.produce(env, after, { key = "conv-stuck" }) -- behind it on its key
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("is found stuck: logged with its record, counted, not ready; SIGTERM still exits", function()
    imp = start { workerStuckExit = false }
    local line = h.wait_until(function() return h.log_lines(imp, "worker 0 is stuck")[1] end,
      60000, "the watchdog's line")
    assert.matches("one step on toPush%[%d+%]@%d+ has run %d+ ms of CPU time", line.msg)
    assert.equal("op-stuck", line.operationID)
    local status, body = h.http("GET", imp.admin .. "/readyz")
    assert.equal(503, status, body)
    assert.matches("1 worker stuck in one step", body)
    assert.equal(1, h.metric(imp, "impulse_worker_stuck_total"))
    assert.is_nil(h.routes(imp)[after.clientMsgID], "the stuck worker pushed nothing more")
    -- its thread never comes back; the shutdown does not wait for it
    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, 30000)
    assert.is_true(log_has(imp, "impulse stopped (exit 3: 1 worker stuck)"), h.read_file(imp.log))
  end)

  it("exits for a restart by default; the journal counts each death against the record", function()
    imp = start()
    h.wait_until(function() return log_has(imp, "impulse stopped (exit 3: 1 worker stuck)") end,
      60000, "impulse to stop itself: " .. tostring(h.read_file(imp.log)))
    h.wait_exit(imp, 30000)
    assert.matches("crash journal: the last process died while handling toPush%[%d+%]@%d+ %(1 death%)",
      h.read_file(imp.log))
  end)

  it("dead-letters it unrun after two deaths, and pushes the records behind it", function()
    imp = start()
    assert.matches("%(2 deaths; it will be dead%-lettered without running the scripts%)", h.read_file(imp.log))
    local rec = h.wait_until(function() return dlq()[1] end, 30000, "the dead letter")
    assert.equal("poison_record", header(rec, "impulse-reason"))
    h.wait_until(function() return h.routes(imp)[after.clientMsgID] end, 30000, "the next record")
    assert.equal(1, h.metric(imp, "impulse_poison_records_total"))
    assert.equal(1, h.metric(imp, "impulse_crash_journal_deaths"))
    assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
    assert.is_false(log_has(imp, "is stuck"))
    -- handled: forgiven, and a clean stop leaves no death behind
    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, 35000)
    assert.matches("impulse stopped %(exit 0%)", h.read_file(imp.log))
    imp = start()
    assert.equal(0, h.metric(imp, "impulse_crash_journal_deaths"))
    assert.is_false(log_has(imp, "crash journal:"))
  end)
end)
