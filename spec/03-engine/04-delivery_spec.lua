-- Delivery guarantees: per-key order, at-least-once across a crash, and a
-- drain on SIGTERM that commits what it handled.
local h = require "spec.helpers"

local function seen(gateway)
  return h.http_json("GET", gateway.control .. "/seen")
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Waits until every id in the lists is in the gateway's /seen; returns it.
local function wait_all(gateway, lists, timeout_ms, what)
  return h.wait_until(function()
    local s = seen(gateway)
    for _, list in ipairs(lists) do
      for _, id in ipairs(list) do if not s[id] then return false end end
    end
    return s
  end, timeout_ms, what)
end

-- IDs in seen that are not in the lists (replays from earlier tests).
local function extras(s, lists)
  local want = {}
  for _, list in ipairs(lists) do for _, id in ipairs(list) do want[id] = true end end
  local out = {}
  for id in pairs(s) do if not want[id] then out[#out + 1] = id end end
  table.sort(out)
  return out
end

describe("delivery #engine", function()
  local env
  local users = {}

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    local online = {}
    for i = 1, 20 do
      users[i] = "user" .. i
      online[users[i]] = { 1 }
    end
    h.set_online(env, online, env.gateways[1])
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  before_each(function()
    h.reset_pushes(env.gateways[1])
  end)

  -- n messages spread over the 20 users (one conversation each).
  local function produce_stream(n, tag)
    local ids = {}
    for i = 1, n do
      local u = users[(i - 1) % #users + 1]
      local msg = h.push_msg { sendID = "system", recvID = u, clientMsgID = tag .. "-" .. i,
                               options = { senderSync = false } }
      h.produce(env, msg, { no_flush = true })
      ids[#ids + 1] = msg.clientMsgID
      if i % 500 == 0 then env.producer:flush(30000) end
    end
    env.producer:flush(30000)
    return ids
  end

  it("handles messages of one key in order while keys run concurrently", function()
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "slow", delayMs = 20 })
    finally(function() h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "ok" }) end)
    local imp = h.start_impulse(env, { workers = 2 })
    finally(function() h.stop(imp) end)
    produce_stream(400, "order")
    local pushes = h.wait_until(function()
      local p = h.pushes(env.gateways[1])
      return #p >= 400 and p
    end, 60000, "400 pushes")
    local last, out_of_order, max_conc = {}, 0, 0
    for _, p in ipairs(pushes) do
      local n = tonumber(p.msgData.clientMsgID:match("%-(%d+)$"))
      local u = p.pushToUserIDs[1]
      if last[u] and n < last[u] then out_of_order = out_of_order + 1 end
      last[u] = n
    end
    assert.equal(0, out_of_order)
    -- concurrency across keys: pushes of different users overlapped in time
    local times = {}
    for _, p in ipairs(pushes) do times[#times + 1] = p.at end
    table.sort(times)
    for i = 1, #times do
      local inflight = 0
      for j = i, #times do
        if times[j] - times[i] < 20 then inflight = inflight + 1 else break end
      end
      if inflight > max_conc then max_conc = inflight end
    end
    assert.is_true(max_conc > 1, "pushes never overlapped")
  end)

  it("pauses its partitions when full and resumes, losing nothing", function()
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "slow", delayMs = 20 })
    finally(function() h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "ok" }) end)
    local imp = h.start_impulse(env, { workers = 1, impulse = { maxInflight = 4 } })
    finally(function() h.stop(imp) end)
    local ids = produce_stream(200, "pause")
    wait_all(env.gateways[1], { ids }, 60000, "all 200 messages")
    assert.is_true(h.metric(imp, "impulse_consumer_pauses_total") > 0, "the consumer never paused")
    -- the gateway records a push when the call arrives: wait for the replies
    h.wait_until(function()
      return h.http_json("GET", imp.admin .. "/healthz").workers[1].inflight == 0
    end, 10000, "the worker to finish every message")
  end)

  it("loses nothing when killed with SIGKILL in the middle of 10,000 messages", function()
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "slow", delayMs = 3 })
    finally(function() h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "ok" }) end)
    local imp = h.start_impulse(env, { workers = 2 })
    local first = produce_stream(5000, "crash-a")
    h.wait_until(function() return count(seen(env.gateways[1])) >= 1000 end, 60000, "1000 pushes")
    h.signal(imp, h.SIGKILL)
    h.wait_until(function() return not h.alive(imp) end, 5000, "impulse to die")
    imp.stopped = true
    local at_kill = count(seen(env.gateways[1]))
    local second = produce_stream(5000, "crash-b")
    local again = h.start_impulse(env, { workers = 2, ready_timeout_ms = 60000 })
    finally(function() h.stop(again) end)
    local got = wait_all(env.gateways[1], { first, second }, 180000, "all 10,000 messages at the gateway")
    assert.same({}, extras(got, { first, second }))
    assert.is_true(at_kill < 10000, "the kill happened mid-stream")
    -- replays are expected (at least once); report how many
    local pushes = #h.pushes(env.gateways[1])
    print(string.format("\n    killed after %d of 10000; %d pushes for 10000 messages (%d replayed)",
      at_kill, pushes, pushes - 10000))
  end)

  it("drains on SIGTERM, commits, exits 0, and nothing is delivered twice after restart", function()
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "slow", delayMs = 30 })
    local imp = h.start_impulse(env, { workers = 2 })
    local ids = produce_stream(300, "drain")
    h.wait_until(function() return count(seen(env.gateways[1])) >= 20 end, 30000, "the first pushes")
    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, 35000)
    local log = h.read_file(imp.log)
    assert.matches('impulse stopped %(exit 0%)', log)
    assert.matches("worker 0 stopped %(0 messages abandoned%)", log)
    h.http_json("POST", env.gateways[1].control .. "/mode", { mode = "ok" })
    local again = h.start_impulse(env, { workers = 2, ready_timeout_ms = 60000 })
    finally(function() h.stop(again) end)
    local got = wait_all(env.gateways[1], { ids }, 60000, "all 300 messages")
    assert.same({}, extras(got, { ids }))
    -- the drained messages were committed: none is pushed a second time
    local per = {}
    for _, p in ipairs(h.pushes(env.gateways[1])) do
      per[p.msgData.clientMsgID] = (per[p.msgData.clientMsgID] or 0) + 1
    end
    local dup = 0
    for _, n in pairs(per) do if n > 1 then dup = dup + 1 end end
    assert.equal(0, dup)
  end)
end)
