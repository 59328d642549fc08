-- Fault: the Kafka broker. The mock cluster's only broker goes down for
-- some seconds in the middle of a stream (impulse-kafka-mock's control
-- port: rd_kafka_mock_broker_set_down / set_up), then requests fail:
-- Fetch and OffsetCommit errors while messages flow, and Produce errors
-- that the dead-letter producer meets when it writes a bad record to
-- toPush.dlq. Nothing may be lost, the dead letter is written, and
-- /readyz is 200 once the broker is back.
local h = require "spec.helpers"
local F = require "spec.helpers.faults"

local DOWN_MS = 5000
local MAX_INFLIGHT = 1024 -- impulse.maxInflight's default, per worker

-- How many times a worker of imp lost its toPush partitions (log lines).
local function revocations(imp)
  local n = 0
  for _, l in ipairs(h.log_lines(imp, "kafka: ")) do
    if l.msg:match("^kafka: %d+ partitions of toPush revoked") then n = n + 1 end
  end
  return n
end

describe("Kafka broker faults #faults", function()
  local env, imp
  local users = {}

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    local online = {}
    for i = 1, 100 do
      users[i] = "bk" .. i
      online[users[i]] = { 1 }
    end
    h.set_online(env, online, env.gateways[1])
    imp = h.start_impulse(env, { workers = 2, ready_timeout_ms = 60000 })
  end)

  lazy_teardown(function()
    if env then pcall(F.kafka_ctl, env.kafka, "broker_up -1") end
    h.stop_env(env)
  end)

  local function counts() return F.gateway_counts(env.gateways[1]) end

  local function ready() return (h.http("GET", imp.admin .. "/readyz")) == 200 end

  it("loses nothing while the broker is down for seconds, and is ready again after", function()
    local s = F.stream(env, "down", users)
    s:produce(1000)
    -- down while impulse works on the first 1,000: fetches, commits fail
    h.wait_until(function() return F.count_delivered(counts(), s.ids) >= 100 end, 60000, "the first pushes")
    F.kafka_ctl(env.kafka, "broker_down 1")
    local down_at = h.now_ms()
    local at_down = F.count_delivered(counts(), s.ids)
    -- 1,000 more produced while it is down: librdkafka holds them
    for i = 1, 1000 do
      local m = h.push_msg { sendID = "system", recvID = users[(i - 1) % #users + 1],
                             clientMsgID = "down-late-" .. i, options = { senderSync = false } }
      h.produce(env, m, { no_flush = true })
      s.ids[#s.ids + 1] = m.clientMsgID
    end
    local not_ready = false
    while h.now_ms() - down_at < DOWN_MS do
      if not ready() then not_ready = true end
      h.sleep_ms(200)
    end
    local during = F.count_delivered(counts(), s.ids)
    F.kafka_ctl(env.kafka, "broker_up 1")
    local up_at = h.now_ms()
    h.wait_until(ready, 60000, "/readyz after the broker came back")
    local ready_ms = h.now_ms() - up_at
    env.producer:flush(60000)
    local got = F.wait_all(counts, s.ids, 120000, "all 2,000 messages after the outage")
    local all_ms = h.now_ms() - up_at
    local fig = F.figures(got, s.ids)
    -- each revocation (a worker losing its toPush partitions: the session
    -- timed out, or the group rebalanced as members came back) replays at
    -- most that worker's window: maxInflight, plus a commit interval
    local revokes = revocations(imp)
    print(string.format("\n    broker down %d ms: %d of 2000 delivered when it went down, %d when it came "
      .. "back; /readyz %s during the outage, 200 %d ms after it; all delivered %d ms after it; "
      .. "%d lost, %d duplicates (max %d per message) after %d revocations of toPush partitions; "
      .. "%d records of revoked partitions not run",
      DOWN_MS, at_down, during, not_ready and "503 at times" or "200 throughout", ready_ms, all_ms, fig.missing,
      fig.dups, fig.max, revokes,
      h.metric(imp, "impulse_messages_total", 'topic="toPush",result="revoked"')))
    assert.equal(0, fig.missing)
    assert.is_true(during < 2000, "the outage came after the whole stream was delivered")
    assert.is_true(fig.dups <= revokes * MAX_INFLIGHT + 1000,
      fig.dups .. " duplicates: more than " .. revokes .. " in-flight windows")
    assert.is_true(h.alive(imp))
  end)

  it("loses nothing when Fetch and OffsetCommit requests fail, and dead-letters through Produce errors",
    function()
      local log_before = #(h.read_file(imp.log) or "")
      local s = F.stream(env, "reqerr", users)
      -- errors the consumers meet while the stream flows (nobody else
      -- fetches or commits on this cluster)
      F.kafka_ctl(env.kafka, "request_errors Fetch NOT_LEADER_FOR_PARTITION*10 UNKNOWN_TOPIC_OR_PART*10")
      F.kafka_ctl(env.kafka, "request_errors OffsetCommit COORDINATOR_NOT_AVAILABLE*3 NOT_COORDINATOR*3 "
        .. "REQUEST_TIMED_OUT*3")
      s:produce(1000)
      -- a bad record, whose dead letter is the next Produce request: impulse
      -- is stopped (SIGSTOP) while the test's producer writes it, so the
      -- Produce errors queued next are met by impulse's dead-letter
      -- producer alone. TOPIC_AUTHORIZATION_FAILED is not retried inside
      -- librdkafka: impulse sees each failure and retries the write itself.
      h.signal(imp, h.SIGSTOP)
      local stopped = true
      finally(function() if stopped then h.signal(imp, h.SIGCONT) end end)
      local bad = h.push_msg { sendID = "system", recvID = users[1], clientMsgID = "reqerr-bad" }
      h.produce(env, bad, { raw = "\255\255not a PushMsgReq" })
      s:produce(200)
      F.kafka_ctl(env.kafka, "request_errors Produce TOPIC_AUTHORIZATION_FAILED*2")
      h.signal(imp, h.SIGCONT)
      stopped = false
      local dl = h.wait_until(function()
        for _, r in ipairs(h.kafka.read_all { bootstrap = env.kafka.bootstrap, topic = "toPush.dlq",
                                              timeout_ms = 3000 }) do
          for _, hd in ipairs(r.headers) do
            if hd[1] == "operationID" and hd[2] == "op-reqerr-bad" then return r end
          end
        end
      end, 60000, "the bad record's dead letter in toPush.dlq")
      assert.equal("\255\255not a PushMsgReq", dl.value)
      s:produce(800)
      local got = F.wait_all(counts, s.ids, 120000, "all 2,000 messages")
      local fig = F.figures(got, s.ids)
      h.wait_until(ready, 60000, "/readyz after the request errors")
      local log = (h.read_file(imp.log) or ""):sub(log_before + 1)
      local _, dl_retries = log:gsub("dead letter to toPush.dlq failed", "")
      local _, commit_fails = log:gsub("COMMITFAIL", "")
      local _, fetch_errs = log:gsub("Unknown topic or partition", "")
      print(string.format("\n    Fetch x20, OffsetCommit x9, Produce x2 errors: %d lost, %d duplicates; the dead "
        .. "letter written after %d failed writes; %d commit failures and %d fetch errors logged; /readyz 200",
        fig.missing, fig.dups, dl_retries, commit_fails, fetch_errs))
      assert.equal(0, fig.missing)
      assert.is_true(dl_retries >= 1, "the dead-letter producer never met the Produce errors")
      assert.is_true(fig.dups <= MAX_INFLIGHT * (revocations(imp) + 1), fig.dups .. " duplicates")
      assert.is_true(h.alive(imp))
    end)
end)
