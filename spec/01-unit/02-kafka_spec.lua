-- spec/helpers/kafka.lua against librdkafka's in-process mock cluster:
-- produce with ordered headers, fnv1a partitioning as OpenIM computes it,
-- read everything back group-less, and consume through a group.

package.path = "./?.lua;" .. package.path

local kafka = require "spec.helpers.kafka"
local pb = require "spec.helpers.pb"
local bit = require "bit"

local tohex = bit.tohex
local format = string.format

local PARTITIONS = 8

local fnv1a32 = kafka.fnv1a32
local openim_partition = kafka.openim_partition

local HEADER_NAMES = { "operationID", "opUserID", "platform", "connID" }

-- OpenIM-style toPush keys: group IDs and sorted user pairs.
local function key_for(i)
  if i % 3 == 0 then
    return format("%d", 3000000000 + i * 7919)
  elseif i % 3 == 1 then
    local a, b = format("u%04d", i), format("u%04d", (i * 37) % 101)
    if b < a then
      a, b = b, a
    end
    return a .. "_" .. b
  end
  return "g-" .. i
end

local function headers_for(i)
  return {
    { "operationID", "op-" .. i },
    { "opUserID", "u" .. i },
    { "platform", tostring(i % 9 + 1) },
    { "connID", i % 10 == 0 and "" or "conn-" .. i },
  }
end

local function value_for(i, key)
  return pb.encode("openim.push.PushMsgReq", {
    msgData = { sendID = "u" .. i, recvID = key, seq = i, sessionType = 1,
                contentType = 101, content = "hello " .. i },
    conversationID = "si_" .. key,
  })
end

describe("kafka helper", function()
  it("computes FNV-1a-32 test vectors", function()
    assert.are.equal("811c9dc5", tohex(fnv1a32("")))
    assert.are.equal("e40c292c", tohex(fnv1a32("a")))
    assert.are.equal("bf9cf968", tohex(fnv1a32("foobar")))
    -- int32 view (0xe40c292c - 2^32) and Go's truncated remainder:
    -- -468965076 % 8 = -4, abs -> 4
    assert.are.equal(-468965076, fnv1a32("a"))
    assert.are.equal(4, openim_partition("a", 8))
  end)

  it("reports librdkafka's version", function()
    assert.matches("^%d+%.%d+%.%d+$", kafka.version())
  end)

  describe("with a mock cluster", function()
    local mock

    lazy_setup(function()
      mock = kafka.mock_cluster {
        brokers = 1,
        topics = { { "toPush", PARTITIONS }, { "toOfflinePush", PARTITIONS },
                   { "misc", 2 } },
      }
    end)

    lazy_teardown(function()
      if mock then
        mock.close()
      end
    end)

    it("knows the partition counts", function()
      assert.are.equal(PARTITIONS, kafka.partitions {
        bootstrap = mock.bootstrap, topic = "toPush" })
    end)

    describe("100 keyed records with 4 headers", function()
      local N = 100
      local reports, records

      lazy_setup(function()
        local p = kafka.producer { bootstrap = mock.bootstrap,
                                   partitioner = "fnv1a" }
        local ok, err = pcall(function()
          for i = 1, N do
            local key = key_for(i)
            p:produce("toPush", key, value_for(i, key), headers_for(i))
          end
          reports = p:flush(10000)
        end)
        p:close()
        assert(ok, err)
        records = kafka.read_all { bootstrap = mock.bootstrap,
                                   topic = "toPush", timeout_ms = 15000 }
      end)

      it("get a delivery report each", function()
        assert.are.equal(N, #reports)
        for _, r in ipairs(reports) do
          assert.are.equal("toPush", r.topic)
          assert.is_nil(r.err)
          assert.is_true(r.offset >= 0)
        end
      end)

      it("land where OpenIM's FNV-1a formula puts them", function()
        local negatives, used, n = 0, {}, 0
        for _, r in ipairs(reports) do
          assert.are.equal(openim_partition(r.key, PARTITIONS), r.partition,
                           "key " .. r.key)
          if fnv1a32(r.key) < 0 then
            negatives = negatives + 1
          end
          if not used[r.partition] then
            used[r.partition] = true
            n = n + 1
          end
        end
        -- the abs() branch and the spread are both exercised
        assert.is_true(negatives > 0, "no key with a negative int32 hash")
        assert.is_true(n >= 4, "keys used only " .. n .. " partitions")
      end)

      it("are all read back by read_all with key, value and headers in order",
         function()
        assert.are.equal(N, #records)
        local seen, next_offset = {}, {}
        for _, rec in ipairs(records) do
          assert.are.equal("toPush", rec.topic)
          assert.are.equal(openim_partition(rec.key, PARTITIONS),
                           rec.partition)
          -- per partition, offsets arrive in order with no gap
          local expect = next_offset[rec.partition] or 0
          assert.are.equal(expect, rec.offset)
          next_offset[rec.partition] = expect + 1

          local msg = pb.decode("PushMsgReq", rec.value)
          local i = msg.msgData.seq
          assert.is_nil(seen[i], "duplicate record " .. tostring(i))
          seen[i] = true
          assert.are.equal(key_for(i), rec.key)
          assert.are.equal(value_for(i, rec.key), rec.value)
          assert.are.same(headers_for(i), rec.headers)
          for k, h in ipairs(rec.headers) do
            assert.are.equal(HEADER_NAMES[k], h[1])
          end
          assert.is_number(rec.timestamp)
        end
        for i = 1, N do
          assert.is_true(seen[i], "record " .. i .. " missing")
        end
      end)

      it("are consumed by a group consumer", function()
        local c = kafka.consumer { bootstrap = mock.bootstrap, group = "push",
                                   topics = { "toPush" },
                                   offset_reset = "earliest" }
        finally(function() c:close() end)
        local got, count = {}, 0
        local deadline = kafka.now_ms() + 30000
        while count < N and kafka.now_ms() < deadline do
          local rec = c:poll(200)
          if rec then
            local id = rec.partition .. ":" .. rec.offset
            assert.is_nil(got[id], "delivered twice: " .. id)
            got[id] = rec
            count = count + 1
          end
        end
        assert.are.equal(N, count)
        for _, rec in ipairs(records) do
          local g = got[rec.partition .. ":" .. rec.offset]
          assert.is_not_nil(g)
          assert.are.equal(rec.key, g.key)
          assert.are.equal(rec.value, g.value)
          assert.are.same(rec.headers, g.headers)
        end
        -- nothing more arrives
        assert.is_nil(c:poll(300))
      end)
    end)

    describe("a producer", function()
      local p

      before_each(function()
        p = kafka.producer { bootstrap = mock.bootstrap,
                             partitioner = "murmur2_random" }
      end)

      after_each(function()
        p:close()
      end)

      it("honours an explicit partition, null key and null header value",
         function()
        p:produce("toOfflinePush", nil, "v", { { "operationID", "op" },
                                              { "empty" } }, 5)
        local r = p:flush(10000)
        assert.are.equal(1, #r)
        assert.are.equal(5, r[1].partition)
        local recs = kafka.read_all { bootstrap = mock.bootstrap,
                                      topic = "toOfflinePush" }
        assert.are.equal(1, #recs)
        assert.are.equal(5, recs[1].partition)
        assert.is_nil(recs[1].key)
        assert.are.equal("v", recs[1].value)
        assert.are.equal(2, #recs[1].headers)
        assert.are.same({ "operationID", "op" }, recs[1].headers[1])
        assert.are.equal("empty", recs[1].headers[2][1])
        assert.is_nil(recs[1].headers[2][2])
      end)

      it("raises librdkafka's error for a partition that does not exist",
         function()
        p:produce("misc", "k", "v")
        p:flush(10000) -- the topic's metadata is known from here on
        local ok, err = pcall(p.produce, p, "misc", "k", "v",
                              { { "operationID", "op" } }, 99)
        assert.is_false(ok)
        assert.matches("Unknown partition", err, 1, true)
        -- the producer still works (headers of the failed call were freed)
        p:produce("misc", "k", "v", { { "operationID", "op" } })
        assert.are.equal(1, #p:flush(10000))
      end)

      it("rejects bad arguments", function()
        assert.has_error(function() p:produce("", "k", "v") end,
                         "bad argument #1 to 'produce' (topic: non-empty "
                         .. "string expected)")
        assert.has_error(function() p:produce("t", 1, "v") end)
        assert.has_error(function() p:produce("t", "k", "v", { "x" }) end)
        assert.has_error(function() p:produce("t", "k", "v", nil, 1.5) end)
      end)

      it("raises 'closed' after close", function()
        p:close()
        assert.has_error(function() p:produce("toPush", "k", "v") end,
                         "produce: closed")
        p:close() -- twice is harmless
      end)
    end)
  end)

  it("flush raises when a delivery fails", function()
    -- Nothing listens on port 1: every delivery times out.
    local p = kafka.producer { bootstrap = "127.0.0.1:1",
                               config = { ["message.timeout.ms"] = 300,
                                          ["log_level"] = 0 } }
    finally(function() p:close() end)
    p:produce("toPush", "k", "v", { { "operationID", "op" } })
    local ok, err = pcall(p.flush, p, 10000)
    assert.is_false(ok)
    assert.matches("1 of 1 deliveries failed", err, 1, true)
    assert.matches("timed out", err, 1, true)
  end)

  it("raises on a bad configuration with librdkafka's message", function()
    local ok, err = pcall(kafka.producer, { bootstrap = "127.0.0.1:1",
                                            partitioner = "nope" })
    assert.is_false(ok)
    assert.matches("partitioner", err, 1, true)
  end)
end)
