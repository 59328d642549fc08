-- spec/helpers/pb.lua: the test-side protobuf codec. Expected bytes are
-- computed by hand from the wire-format spec (tag = number << 3 | wire type).

package.path = "./?.lua;" .. package.path

local pb = require "spec.helpers.pb"

local byte, rep, format = string.byte, string.rep, string.format
local floor = math.floor
local sort = table.sort

-- "\255" x 9 .. "\1": the 10-byte varint tail of a negative value.
local NEG1 = rep("\255", 9) .. "\1"

local function hexeq(expected, actual)
  assert.are.equal(pb.hex(expected), pb.hex(actual))
end

-- Field numbers of the top-level fields in wire order.
local function field_numbers(s)
  local nums, pos = {}, 1
  local function varint()
    local n, mul = 0, 1
    repeat
      local b = byte(s, pos)
      pos = pos + 1
      n = n + (b % 128) * mul
      mul = mul * 128
    until b < 128
    return n
  end
  while pos <= #s do
    local tag = varint()
    local wt = tag % 8
    nums[#nums + 1] = floor(tag / 8)
    if wt == 0 then
      varint()
    elseif wt == 2 then
      pos = pos + varint()
    else
      error("unexpected wire type " .. wt)
    end
  end
  return nums
end

-- A value exercising every field of a schema with non-default values.
local function sample(name, depth)
  depth = depth or 0
  local out = {}
  for _, f in ipairs(pb.schemas[name]) do
    local num, fname, t, msg = f[1], f[2], f[3], f[4]
    if t == "string" then
      out[fname] = fname .. "-\u{4e2d}\u{6587}-" .. num
    elseif t == "bytes" then
      out[fname] = "\0\1\255{\"detail\":\"x\"}"
    elseif t == "bool" then
      out[fname] = true
    elseif t == "int32" then
      out[fname] = (num % 2 == 0) and -num * 1000 or 2147483647
    elseif t == "int64" then
      out[fname] = (num % 2 == 0) and "-9223372036854775808"
          or "9007199254740993"
    elseif t == "uint64" then
      out[fname] = "18446744073709551615"
    elseif t == "map<string,bool>" then
      out[fname] = { offlinePush = false, history = true, [""] = false }
    elseif t == "repeated string" then
      out[fname] = { "u1", "", "u3" }
    elseif t == "repeated int32" then
      out[fname] = { 0, 1, -1, 2147483647, -2147483648 }
    elseif t == "message" then
      out[fname] = depth < 3 and sample(msg, depth + 1) or {}
    elseif t == "repeated message" then
      out[fname] = depth < 3 and { sample(msg, depth + 1), {} } or { {} }
    end
  end
  return out
end

describe("pb helper", function()
  describe("exact bytes", function()
    it("encodes MsgData{sendID='a', sessionType=1}", function()
      hexeq("\10\1a\72\1", pb.encode("openim.sdkws.MsgData",
                                     { sendID = "a", sessionType = 1 }))
    end)

    it("resolves unique short type names", function()
      hexeq("\10\1a\72\1", pb.encode("MsgData",
                                     { sendID = "a", sessionType = 1 }))
      assert.are.equal("openim.push.PushMsgReq", pb.resolve("PushMsgReq"))
    end)

    it("omits proto3 defaults", function()
      hexeq("", pb.encode("MsgData", {
        sendID = "", sessionType = 0, isRead = false, seq = 0, sendTime = "0",
        createTime = 0LL, atUserIDList = {}, options = {}, content = "",
      }))
      hexeq("", pb.encode("OnlineStatus", { platformIDs = {} }))
      hexeq("", pb.encode("GetAllOnlineUsersReq", { cursor = 0 }))
    end)

    it("writes a present but empty sub-message as a zero-length field",
       function()
      hexeq("\10\0", pb.encode("PushMsgReq", { msgData = {} }))
      assert.are.same({ msgData = {} }, pb.decode("PushMsgReq", "\10\0"))
    end)

    it("encodes a negative int32 as a 10-byte varint", function()
      hexeq("\48" .. NEG1, pb.encode("MsgData", { senderPlatformID = -1 }))
      -- -2^31: two's complement 0xffffffff80000000
      hexeq("\48\128\128\128\128\248\255\255\255\255\1",
            pb.encode("MsgData", { senderPlatformID = -2147483648 }))
      assert.are.equal(-1, pb.decode("MsgData", "\48" .. NEG1)
                             .senderPlatformID)
      assert.are.equal(-2147483648, pb.decode("MsgData",
          "\48\128\128\128\128\248\255\255\255\255\1").senderPlatformID)
    end)

    it("truncates a wide varint to int32 like Go's int32(v)", function()
      -- 2^32 + 5 -> 5 ; 2^32 - 1 -> -1
      assert.are.equal(5, pb.decode("MsgData", "\72\133\128\128\128\16")
                            .sessionType)
      assert.are.equal(-1, pb.decode("MsgData", "\72\255\255\255\255\15")
                             .sessionType)
    end)

    it("encodes int64 beyond 2^53 exactly", function()
      -- 2^53 + 1 = bit 53 and bit 0: 81 80 80 80 80 80 80 10
      local wire = "\112\129\128\128\128\128\128\128\16"
      hexeq(wire, pb.encode("MsgData", { seq = "9007199254740993" }))
      hexeq(wire, pb.encode("MsgData", { seq = 9007199254740993LL }))
      assert.are.equal("9007199254740993", pb.decode("MsgData", wire).seq)
      -- 2^53 itself is exact as a Lua number
      local t = pb.decode("MsgData", pb.encode("MsgData", { seq = 2 ^ 53 }))
      assert.are.equal(2 ^ 53, t.seq)
      assert.are.equal("number", type(t.seq))
    end)

    it("encodes int64 extremes and negatives", function()
      hexeq("\112\255\255\255\255\255\255\255\255\127",
            pb.encode("MsgData", { seq = "9223372036854775807" }))
      hexeq("\112\128\128\128\128\128\128\128\128\128\1",
            pb.encode("MsgData", { seq = "-9223372036854775808" }))
      hexeq("\112" .. NEG1, pb.encode("MsgData", { seq = -1 }))
      local t = pb.decode("MsgData",
          "\112\128\128\128\128\128\128\128\128\128\1\120" .. NEG1)
      assert.are.equal("-9223372036854775808", t.seq)
      assert.are.equal(-1, t.sendTime)
      assert.are.equal(1732700000123, pb.decode("MsgData", pb.encode(
          "MsgData", { sendTime = 1732700000123 })).sendTime)
    end)

    it("encodes uint64 up to 2^64-1", function()
      hexeq("\8\255\255\255\255\255\255\255\255\255\1",
            pb.encode("GetAllOnlineUsersReq",
                      { cursor = "18446744073709551615" }))
      assert.are.equal("18446744073709551615",
          pb.decode("GetAllOnlineUsersReq",
                    "\8\255\255\255\255\255\255\255\255\255\1").cursor)
      hexeq("\8\172\2", pb.encode("GetAllOnlineUsersReq", { cursor = 300 }))
    end)

    it("writes map<string,bool> entries sorted, with false values and "
       .. "empty keys (as Go does)", function()
      -- field 19, wire type 2: tag 154 = 0x9a 0x01
      hexeq("\154\1\4\10\0\16\0"
            .. "\154\1\5\10\1a\16\1"
            .. "\154\1\5\10\1b\16\0",
            pb.encode("MsgData", { options = { b = false, a = true,
                                               [""] = false } }))
      local t = pb.decode("MsgData", "\154\1\5\10\1b\16\0\154\1\5\10\1a\16\1")
      assert.are.same({ a = true, b = false }, t.options)
    end)

    it("decodes map entries with missing key or value as defaults",
       function()
      -- entry with only a key -> value false; only a value -> key ""
      local t = pb.decode("MsgData", "\154\1\3\10\1k\154\1\2\16\1")
      assert.are.same({ k = false, [""] = true }, t.options)
    end)

    it("packs repeated int32 and accepts unpacked on decode", function()
      hexeq("\26\12\1\2" .. NEG1,
            pb.encode("OnlineStatus", { platformIDs = { 1, 2, -1 } }))
      assert.are.same({ 1, 2, -1 },
          pb.decode("OnlineStatus", "\26\12\1\2" .. NEG1).platformIDs)
      assert.are.same({ 1, 5, 2, 3 },
          pb.decode("OnlineStatus", "\24\1\26\1\5\24\2\26\1\3").platformIDs)
    end)

    it("writes every repeated string element, even empty ones", function()
      hexeq("\26\1a\26\0\26\1b",
            pb.encode("PushMsgReq", { userIDs = { "a", "", "b" } }))
    end)

    it("emits fields in ascending field-number order", function()
      local nums = field_numbers(pb.encode("MsgData", sample("openim.sdkws.MsgData")))
      local sorted = {}
      for i, n in ipairs(nums) do
        sorted[i] = n
      end
      sort(sorted)
      assert.are.same(sorted, nums)
      -- 22 fields, options 3 entries, atUserIDList 3 elements
      assert.are.equal(22 + 2 + 2, #nums)
    end)

    it("is deterministic", function()
      local v = sample("openim.push.PushMsgReq")
      assert.are.equal(pb.encode("PushMsgReq", v), pb.encode("PushMsgReq", v))
    end)
  end)

  describe("round trips", function()
    local names = {}
    for name in pairs(pb.schemas) do
      names[#names + 1] = name
    end
    sort(names)
    for _, name in ipairs(names) do
      it(name, function()
        local v = sample(name)
        local wire = pb.encode(name, v)
        local back = pb.decode(name, wire)
        -- int64 strings within 2^53 come back as numbers: normalize
        assert.are.same(v, back)
        assert.are.equal(wire, pb.encode(name, back))
      end)
    end

    it("a realistic PushMsgReq", function()
      local v = {
        msgData = {
          sendID = "u1", recvID = "u2", clientMsgID = "c1",
          serverMsgID = "s1", senderPlatformID = 1, sessionType = 1,
          msgFrom = 100, contentType = 101, content = '{"content":"hi"}',
          seq = 42, sendTime = 1732700000123, createTime = 1732700000100,
          status = 2, options = { offlinePush = true, senderSync = false },
          offlinePushInfo = { title = "t", desc = "d", iOSBadgeCount = true },
          atUserIDList = { "u3" },
        },
        conversationID = "si_u1_u2",
      }
      assert.are.same(v, pb.decode("PushMsgReq", pb.encode("PushMsgReq", v)))
    end)

    it("fills proto3 defaults on request", function()
      local t = pb.decode("MsgData", "\10\1a", { defaults = true })
      assert.are.equal("a", t.sendID)
      assert.are.equal("", t.recvID)
      assert.are.equal(0, t.seq)
      assert.are.equal(false, t.isRead)
      assert.are.same({}, t.options)
      assert.are.same({}, t.atUserIDList)
      assert.is_nil(t.offlinePushInfo)
    end)

    it("skips unknown fields of every wire type", function()
      local base = pb.encode("MsgData", { sendID = "a", sessionType = 1 })
      local unknown = "\200\6\7" -- field 100 varint
          .. "\210\6\3xyz" -- field 106 len
          .. "\213\6\1\2\3\4" -- field 106 i32
          .. "\217\6\1\2\3\4\5\6\7\8" -- field 107 i64
      assert.are.same({ sendID = "a", sessionType = 1 },
                      pb.decode("MsgData", unknown .. base .. unknown))
    end)

    it("merges repeated occurrences of a singular message field", function()
      local a = pb.encode("MsgData", { offlinePushInfo = { title = "t" } })
      local b = pb.encode("MsgData", { offlinePushInfo = { desc = "d" } })
      assert.are.same({ title = "t", desc = "d" },
                      pb.decode("MsgData", a .. b).offlinePushInfo)
    end)

    it("keeps the last value of a repeated scalar field", function()
      assert.are.equal(2, pb.decode("MsgData", "\72\1\72\2").sessionType)
    end)
  end)

  describe("malformed input", function()
    local cases = {
      { "truncated varint", "\72", "truncated varint at byte 1" },
      { "truncated varint continuation", "\72\128",
        "truncated varint at byte 1" },
      { "truncated tag", "\128", "truncated varint at byte 0" },
      { "length past end", "\10\5ab", "length past end at byte 1" },
      { "wrong wire type", "\74\1a",
        "sessionType %(field 9%): wire type len, expected varint at byte 0" },
      { "wrong wire type for a string", "\8\1",
        "sendID %(field 1%): wire type varint, expected len" },
      { "field number 0", "\0\1", "invalid field number 0" },
      { "group wire type (unknown field)", "\155\6",
        "unsupported wire type 3 %(group start%)" },
      { "group wire type (known field)", "\11",
        "sendID %(field 1%): wire type group start, expected len" },
      { "wire type 7", "\207\6", "unsupported wire type 7" },
      { "varint over 64 bits", "\72" .. rep("\255", 9) .. "\2",
        "varint overflows 64 bits" },
      { "varint over 10 bytes", "\72" .. rep("\128", 10) .. "\0",
        "varint overflows 64 bits" },
      { "invalid UTF-8", "\10\2\195\40", "invalid UTF%-8" },
      { "UTF-8 surrogate", "\10\3\237\160\128", "invalid UTF%-8" },
      { "truncated fixed64", "\217\6\1\2", "past end" },
      { "truncated inside a sub-message", "\162\1\2\10\5",
        "in offlinePushInfo: length past end at byte 4" },
      { "bad map entry value type", "\154\1\4\10\1a\18\0",
        "map value: wire type len, expected varint" },
    }
    for _, c in ipairs(cases) do
      it("raises on " .. c[1], function()
        local ok, err = pcall(pb.decode, "MsgData", c[2])
        assert.is_false(ok)
        assert.matches(c[3], err)
        assert.matches("^pb%.decode%(", err)
      end)
    end

    it("accepts invalid UTF-8 when asked and always in bytes fields",
       function()
      assert.are.equal("\255", pb.decode("MsgData", "\10\1\255",
                                         { utf8 = false }).sendID)
      assert.are.equal("\255", pb.decode("MsgData", "\98\1\255").content)
    end)
  end)

  describe("caller errors", function()
    local cases = {
      { "unknown type", "Nope", {}, "unknown message type 'Nope'" },
      { "unknown field", "MsgData", { sendId = "x" },
        "MsgData has no field 'sendId'" },
      { "string type", "MsgData", { sendID = 1 },
        "MsgData.sendID: string expected, got number" },
      { "nested field type", "PushMsgReq", { msgData = { isRead = 1 } },
        "MsgData.isRead: boolean expected" },
      { "int32 range", "MsgData", { sessionType = 2 ^ 31 },
        "int32 expected" },
      { "int32 fraction", "MsgData", { sessionType = 1.5 },
        "int32 expected" },
      { "int64 garbage", "MsgData", { seq = "12x" },
        "int64 not a decimal integer" },
      { "int64 overflow", "MsgData", { seq = "9223372036854775808" },
        "int64 out of range" },
      { "int64 number overflow", "MsgData", { seq = 2 ^ 63 },
        "int64 out of range" },
      { "uint64 negative", "GetAllOnlineUsersReq", { cursor = -1 },
        "uint64 out of range" },
      { "uint64 overflow", "GetAllOnlineUsersReq",
        { cursor = "18446744073709551616" }, "uint64 out of range" },
      { "map value", "MsgData", { options = { a = 1 } },
        "map value for 'a' must be a boolean" },
      { "map key", "MsgData", { options = { true } },
        "map key must be a string" },
      { "repeated holes", "PushMsgReq", { userIDs = { x = "a" } },
        "array expected" },
      { "repeated element", "OnlineStatus", { platformIDs = { "1" } },
        "int32 expected" },
    }
    for _, c in ipairs(cases) do
      it("raises on " .. c[1], function()
        local ok, err = pcall(pb.encode, c[2], c[3])
        assert.is_false(ok)
        assert.matches(c[4], err, 1, true)
        assert.matches("bad argument #", err, 1, true)
      end)
    end

    it("points errors at the caller", function()
      local ok, err = pcall(function()
        pb.encode("PushMsgReq", { msgData = { seq = "x" } })
      end)
      assert.is_false(ok)
      assert.matches("01%-pb_spec%.lua:%d+:", err)
    end)
  end)

  describe("schemas", function()
    -- Parse proto/*.proto (flat messages, one field per line) and compare
    -- with pb.schemas: every schema must match its .proto message exactly.
    local SCALAR = { string = true, bytes = true, bool = true, int32 = true,
                     int64 = true, uint64 = true }

    local function parse_protos()
      local messages = {}
      local p = io.popen("ls proto/*.proto")
      local files = p:read("*a")
      p:close()
      for path in files:gmatch("[^\n]+") do
        local fh = assert(io.open(path))
        local text = fh:read("*a")
        fh:close()
        local pkg = assert(text:match("\npackage ([%w_.]+);"), path)
        for name, body in text:gmatch("\nmessage ([%w_]+) ({[^}]*})") do
          local fields = {}
          for line in body:gmatch("[^\n]+") do
            local rep_, ftype, fname, num =
                line:match("^%s*(r?e?p?e?a?t?e?d?)%s*([%w_.<>, ]-)%s+([%w_]+)%s*=%s*(%d+);")
            if ftype then
              ftype = ftype:gsub("%s", "")
              local t, msg
              if ftype:match("^map<") then
                t = ftype
              elseif SCALAR[ftype] then
                t = ftype
              else
                t = "message"
                msg = ftype:find(".", 1, true) and ftype
                    or (pkg .. "." .. ftype)
              end
              if rep_ == "repeated" then
                t = "repeated " .. t
              end
              fields[#fields + 1] = { tonumber(num), fname, t, msg }
            end
          end
          messages[pkg .. "." .. name] = fields
        end
      end
      return messages
    end

    local function norm(fields)
      local out = {}
      for i, f in ipairs(fields) do
        out[i] = format("%d %s %s %s", f[1], f[2], f[3], f[4] or "")
      end
      sort(out)
      return out
    end

    it("match proto/*.proto", function()
      local protos = parse_protos()
      local n = 0
      for name, fields in pairs(pb.schemas) do
        assert.is_not_nil(protos[name], name .. " is not in proto/")
        assert.are.same(norm(protos[name]), norm(fields))
        n = n + 1
      end
      assert.is_true(n >= 20)
      -- and every message of the protos has a schema
      for name in pairs(protos) do
        assert.is_not_nil(pb.schemas[name], name .. " has no pb schema")
      end
    end)

    it("parse the MsgData proto into 22 fields with no field 13", function()
      local protos = parse_protos()
      local md = protos["openim.sdkws.MsgData"]
      assert.are.equal(22, #md)
      for _, f in ipairs(md) do
        assert.are_not.equal(13, f[1])
      end
    end)
  end)

  describe("varint", function()
    it("encodes boundaries", function()
      hexeq("\0", pb.varint(0))
      hexeq("\127", pb.varint(127))
      hexeq("\128\1", pb.varint(128))
      hexeq("\172\2", pb.varint(300))
      hexeq(NEG1, pb.varint(-1))
      hexeq("\255\255\255\255\255\255\255\255\255\1",
            pb.varint("18446744073709551615"))
    end)
  end)
end)
