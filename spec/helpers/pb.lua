-- A small, independent protobuf (proto3) encoder and decoder for tests.
--
-- Written from the wire-format specification
-- (https://protobuf.dev/programming-guides/encoding/), not from impulse's
-- engine code, so specs can check what the engine puts on Kafka and gRPC
-- against a second implementation. Only what OpenIM's push path uses is
-- supported: varint (wire type 0) and length-delimited (wire type 2) fields
-- of type string, bytes, bool, int32, int64, uint64, message,
-- map<string,bool>, repeated string, repeated int32 and repeated message.
-- zigzag (sint*), fixed32/64, floats, enums and groups are not supported as
-- field types; unknown fields of wire types 0, 1, 2 and 5 are skipped on
-- decode like every protobuf runtime does.
--
-- Lua representation:
--   string, bytes        Lua string
--   bool                 boolean
--   int32                Lua number (integer in [-2^31, 2^31))
--   int64, uint64        encode: a Lua integer number, a decimal string
--                        ("-9223372036854775808") or an int64_t/uint64_t
--                        cdata; decode: a Lua number when it is exact
--                        (|v| <= 2^53), else a decimal string
--   message              Lua table (nil = absent; {} = present but empty,
--                        encoded as a zero-length field, as Go does)
--   map<string,bool>     Lua table {key = boolean}
--   repeated ...         Lua array
--
-- Encoding follows Go's google.golang.org/protobuf with Deterministic set:
-- fields in ascending field-number order, proto3 defaults (0, "", false,
-- empty list or map, nil message) omitted, repeated int32 packed, map
-- entries sorted by key. Decoding is sparse by default (absent fields stay
-- nil, so decode(encode(t)) equals t for any t without default values); pass
-- {defaults = true} to get proto3 defaults for absent scalars, lists and maps.
-- Decoding validates UTF-8 in string fields as Go does; encoding does not, so
-- a spec can build a record a Go producer would refuse.
--
-- Errors: a bad schema or a bad Lua value raises "bad argument ..." at the
-- caller; malformed input raises
-- "pb.decode(<type>): [in <field path>: ]<what> at byte <n>" (n 0-based).

local ffi = require "ffi"
local bit = require "bit"

local band, bor, rshift, lshift = bit.band, bit.bor, bit.rshift, bit.lshift
local byte, char, sub, format, find = string.byte, string.char, string.sub,
    string.format, string.find
local concat, sort = table.concat, table.sort
local floor = math.floor
local type, pairs, ipairs, error, tostring, tonumber =
    type, pairs, ipairs, error, tostring, tonumber
local istype, ffi_new, ffi_cast = ffi.istype, ffi.new, ffi.cast

local int64_t = ffi.typeof "int64_t"
local uint64_t = ffi.typeof "uint64_t"

local _M = {}

local TWO32 = 2 ^ 32
local TWO53 = 2 ^ 53
local TWO63 = 2 ^ 63
local TWO64 = 2 ^ 64

local WT_VARINT, WT_I64, WT_LEN, WT_I32 = 0, 1, 2, 5

---------------------------------------------------------------------------
-- Schemas
---------------------------------------------------------------------------

-- Each schema is an array of {number, name, type[, message type]}; type is
-- one of the names in FIELD_TYPES. Message types are full proto names.
-- spec/01-unit/01-pb_spec.lua checks these against proto/*.proto.
local S = {}
_M.schemas = S

S["openim.sdkws.OfflinePushInfo"] = {
  { 1, "title", "string" },
  { 2, "desc", "string" },
  { 3, "ex", "string" },
  { 4, "iOSPushSound", "string" },
  { 5, "iOSBadgeCount", "bool" },
  { 6, "signalInfo", "string" },
}

S["openim.sdkws.MsgData"] = {
  { 1, "sendID", "string" },
  { 2, "recvID", "string" },
  { 3, "groupID", "string" },
  { 4, "clientMsgID", "string" },
  { 5, "serverMsgID", "string" },
  { 6, "senderPlatformID", "int32" },
  { 7, "senderNickname", "string" },
  { 8, "senderFaceURL", "string" },
  { 9, "sessionType", "int32" },
  { 10, "msgFrom", "int32" },
  { 11, "contentType", "int32" },
  { 12, "content", "bytes" },
  -- no field 13
  { 14, "seq", "int64" },
  { 15, "sendTime", "int64" },
  { 16, "createTime", "int64" },
  { 17, "status", "int32" },
  { 18, "isRead", "bool" },
  { 19, "options", "map<string,bool>" },
  { 20, "offlinePushInfo", "message", "openim.sdkws.OfflinePushInfo" },
  { 21, "atUserIDList", "repeated string" },
  { 22, "attachedInfo", "string" },
  { 23, "ex", "string" },
}

S["openim.sdkws.NotificationElem"] = {
  { 1, "detail", "string" },
}

S["openim.push.PushMsgReq"] = {
  { 1, "msgData", "message", "openim.sdkws.MsgData" },
  { 2, "conversationID", "string" },
  { 3, "userIDs", "repeated string" },
}
S["openim.push.PushMsgResp"] = {}
S["openim.msg.PushMsgDataToMQ"] = {
  { 1, "msgData", "message", "openim.sdkws.MsgData" },
  { 2, "conversationID", "string" },
}
S["openim.push.DelUserPushTokenReq"] = {
  { 1, "userID", "string" },
  { 2, "platformID", "int32" },
}
S["openim.push.DelUserPushTokenResp"] = {}

S["openim.msggateway.OnlineBatchPushOneMsgReq"] = {
  { 1, "msgData", "message", "openim.sdkws.MsgData" },
  { 2, "pushToUserIDs", "repeated string" },
}
S["openim.msggateway.SingleMsgToUserPlatform"] = {
  { 1, "ResultCode", "int64" },
  { 2, "RecvID", "string" },
  { 3, "RecvPlatFormID", "int32" },
}
S["openim.msggateway.SingleMsgToUserResults"] = {
  { 1, "userID", "string" },
  { 2, "resp", "repeated message", "openim.msggateway.SingleMsgToUserPlatform" },
  { 3, "onlinePush", "bool" },
}
S["openim.msggateway.OnlineBatchPushOneMsgResp"] = {
  { 1, "singlePushResult", "repeated message",
    "openim.msggateway.SingleMsgToUserResults" },
}

S["openim.user.OnlineStatus"] = {
  { 1, "userID", "string" },
  { 2, "status", "int32" },
  { 3, "platformIDs", "repeated int32" },
}
S["openim.user.GetAllOnlineUsersReq"] = {
  { 1, "cursor", "uint64" },
}
S["openim.user.GetAllOnlineUsersResp"] = {
  { 1, "statusList", "repeated message", "openim.user.OnlineStatus" },
  { 2, "nextCursor", "uint64" },
}
S["openim.user.GetUserStatusReq"] = {
  { 1, "userID", "string" },
  { 2, "userIDs", "repeated string" },
}
S["openim.user.GetUserStatusResp"] = {
  { 1, "statusList", "repeated message", "openim.user.OnlineStatus" },
}

S["openim.group.GetGroupMemberUserIDsReq"] = {
  { 1, "groupID", "string" },
}
S["openim.group.GetGroupMemberUserIDsResp"] = {
  { 1, "userIDs", "repeated string" },
}
S["openim.group.DismissGroupReq"] = {
  { 1, "groupID", "string" },
  { 2, "deleteMember", "bool" },
}
S["openim.group.DismissGroupResp"] = {}

S["openim.conversation.GetConversationOfflinePushUserIDsReq"] = {
  { 1, "conversationID", "string" },
  { 2, "userIDs", "repeated string" },
}
S["openim.conversation.GetConversationOfflinePushUserIDsResp"] = {
  { 1, "userIDs", "repeated string" },
}
S["openim.conversation.SetConversationMaxSeqReq"] = {
  { 1, "conversationID", "string" },
  { 2, "ownerUserID", "repeated string" },
  { 3, "maxSeq", "int64" },
}
S["openim.conversation.SetConversationMaxSeqResp"] = {}

S["openim.msg.GetConversationMaxSeqReq"] = {
  { 1, "conversationID", "string" },
}
S["openim.msg.GetConversationMaxSeqResp"] = {
  { 1, "maxSeq", "int64" },
}

-- Field types: the wire type they are written with.
local FIELD_TYPES = {
  ["string"] = WT_LEN,
  ["bytes"] = WT_LEN,
  ["bool"] = WT_VARINT,
  ["int32"] = WT_VARINT,
  ["int64"] = WT_VARINT,
  ["uint64"] = WT_VARINT,
  ["message"] = WT_LEN,
  ["map<string,bool>"] = WT_LEN,
  ["repeated string"] = WT_LEN,
  ["repeated int32"] = WT_LEN, -- packed; unpacked (varint) accepted on decode
  ["repeated message"] = WT_LEN,
}
_M.field_types = FIELD_TYPES

-- Resolve a type name: a full name, or a short name when it is unique
-- ("MsgData" for "openim.sdkws.MsgData").
local function resolve(name)
  if S[name] then
    return name
  end
  local found
  for full in pairs(S) do
    if sub(full, -#name - 1) == "." .. name then
      if found then
        return nil, "ambiguous message type '" .. name .. "' (" .. found
            .. ", " .. full .. ")"
      end
      found = full
    end
  end
  if not found then
    return nil, "unknown message type '" .. tostring(name) .. "'"
  end
  return found
end

-- Compiled schemas, rebuilt when pb.schemas[name] is replaced.
local compiled = {}

local function compile(name)
  local c = compiled[name]
  local src = S[name]
  if c and c.src == src then
    return c
  end
  if type(src) ~= "table" then
    error("bad schema '" .. name .. "': not a table", 0)
  end
  c = { src = src, name = name, by_number = {}, by_name = {}, ordered = {} }
  for i, f in ipairs(src) do
    local num, fname, ftype, mtype = f[1], f[2], f[3], f[4]
    if type(num) ~= "number" or num < 1 or num > 536870911
        or num ~= floor(num) then
      error(format("bad schema '%s': field #%d has no valid number", name, i),
            0)
    end
    if type(fname) ~= "string" or fname == "" then
      error(format("bad schema '%s': field %d has no name", name, num), 0)
    end
    if not FIELD_TYPES[ftype] then
      error(format("bad schema '%s': field %s has unknown type '%s'", name,
                   fname, tostring(ftype)), 0)
    end
    if (ftype == "message" or ftype == "repeated message")
        and type(mtype) ~= "string" then
      error(format("bad schema '%s': field %s needs a message type", name,
                   fname), 0)
    end
    if c.by_number[num] or c.by_name[fname] then
      error(format("bad schema '%s': duplicate field %d/%s", name, num,
                   fname), 0)
    end
    local cf = { num = num, name = fname, type = ftype, msg = mtype,
                 wt = FIELD_TYPES[ftype] }
    c.by_number[num] = cf
    c.by_name[fname] = cf
    c.ordered[#c.ordered + 1] = cf
  end
  sort(c.ordered, function(a, b) return a.num < b.num end)
  compiled[name] = c
  return c
end

---------------------------------------------------------------------------
-- Varints
---------------------------------------------------------------------------

-- Append the varint of a non-negative Lua integer below 2^53.
local function put_uvarint_num(buf, n)
  while n >= 128 do
    buf[#buf + 1] = char(128 + n % 128)
    n = floor(n / 128)
  end
  buf[#buf + 1] = char(n)
end

-- Append the varint of a uint64_t cdata (the two's-complement bits of a
-- negative int32/int64 give the 10-byte form).
local function put_uvarint_u64(buf, v)
  while v >= 128ULL do
    buf[#buf + 1] = char(tonumber(bor(band(v, 0x7fULL), 0x80ULL)))
    v = rshift(v, 7)
  end
  buf[#buf + 1] = char(tonumber(v))
end

local function put_tag(buf, num, wt)
  put_uvarint_num(buf, num * 8 + wt)
end

-- Read a varint at pos (1-based). Returns the value and the next position.
-- Values below 2^49 come back as Lua numbers, larger ones as uint64_t
-- cdata. Raises through fail(what, pos).
local function get_uvarint(s, pos, last, fail)
  local n, shift, start = 0, 0, pos
  -- 7 bytes carry 49 bits: exact in a double.
  while shift < 49 do
    if pos > last then
      fail("truncated varint", start)
    end
    local b = byte(s, pos)
    pos = pos + 1
    n = n + band(b, 0x7f) * 2 ^ shift
    if b < 128 then
      return n, pos
    end
    shift = shift + 7
  end
  local v = ffi_new(uint64_t, n)
  while true do
    if pos > last then
      fail("truncated varint", start)
    end
    local b = byte(s, pos)
    pos = pos + 1
    if shift == 63 and b > 1 then
      -- The 10th byte may only carry bit 63 (Go: errCodeOverflow).
      fail("varint overflows 64 bits", start)
    end
    v = bor(v, lshift(ffi_new(uint64_t, band(b, 0x7f)), shift))
    if b < 128 then
      if v < 0x2000000000000ULL then
        -- an over-long encoding of a small value (legal): keep the
        -- "number below 2^49" contract
        return tonumber(v), pos
      end
      return v, pos
    end
    shift = shift + 7
    if shift > 63 then
      fail("varint longer than 10 bytes", start)
    end
  end
end

---------------------------------------------------------------------------
-- 64-bit integer conversions
---------------------------------------------------------------------------

-- Strip LuaJIT's "LL"/"ULL" suffix from tostring(cdata).
local function i64str(v)
  local s = tostring(v)
  return (s:gsub("U?LL$", ""))
end

-- Decimal string -> int64_t / uint64_t cdata, or nil and a reason.
local function parse_decimal(s, unsigned)
  local neg, digits = s:match("^(%-?)(%d+)$")
  if not digits then
    return nil, "not a decimal integer"
  end
  if neg == "-" and unsigned then
    return nil, "negative"
  end
  local mag = 0ULL
  local max = unsigned and 0xffffffffffffffffULL
      or (neg == "-" and 0x8000000000000000ULL or 0x7fffffffffffffffULL)
  for i = 1, #digits do
    local d = byte(digits, i) - 48
    if mag > (max - d) / 10 then
      return nil, "out of range"
    end
    mag = mag * 10 + d
  end
  if unsigned then
    return mag
  end
  if neg == "-" then
    return ffi_cast(int64_t, -mag) -- 2^63 wraps to INT64_MIN: intended
  end
  return ffi_cast(int64_t, mag)
end

-- A Lua value for an int64/uint64 field -> uint64_t bits, or nil and reason.
local function to_u64_bits(v, unsigned)
  local tv = type(v)
  if tv == "number" then
    if v ~= floor(v) or v ~= v then
      return nil, "not an integer"
    end
    if unsigned then
      if v < 0 or v >= TWO64 then
        return nil, "out of range"
      end
      return ffi_new(uint64_t, v)
    end
    if v < -TWO63 or v >= TWO63 then
      return nil, "out of range"
    end
    return ffi_cast(uint64_t, ffi_new(int64_t, v))
  elseif tv == "string" then
    local c, err = parse_decimal(v, unsigned)
    if not c then
      return nil, err
    end
    return ffi_cast(uint64_t, c)
  elseif tv == "cdata" then
    if istype(int64_t, v) then
      if unsigned and v < 0 then
        return nil, "negative"
      end
      return ffi_cast(uint64_t, v)
    elseif istype(uint64_t, v) then
      if not unsigned and v > 0x7fffffffffffffffULL then
        return nil, "out of range"
      end
      return ffi_new(uint64_t, v)
    end
  end
  return nil, "expected an integer number, a decimal string or 64-bit cdata"
end

-- uint64 bits (number < 2^49 or uint64_t) -> the decoded Lua value.
local function from_varint_int64(v)
  if type(v) == "number" then
    return v
  end
  local s = ffi_cast(int64_t, v)
  if s >= -9007199254740992LL and s <= 9007199254740992LL then
    return tonumber(s)
  end
  return i64str(s)
end

local function from_varint_uint64(v)
  if type(v) == "number" then
    return v
  end
  if v <= 9007199254740992ULL then
    return tonumber(v)
  end
  return i64str(v)
end

-- int32 is the low 32 bits of the varint, sign-extended (Go: int32(v)).
local function from_varint_int32(v)
  if type(v) ~= "number" then
    v = tonumber(band(v, 0xffffffffULL))
  else
    v = v % TWO32
  end
  if v >= 2 ^ 31 then
    v = v - TWO32
  end
  return v
end

---------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------

local encode_message

-- `level` arguments below count from the function that receives them, so
-- errors point at the caller of pb.encode however deep the recursion is.
local function bad_value(tname, f, why, level)
  error(format("bad argument #2 to 'encode' (%s.%s: %s)", tname, f.name, why),
        level + 1)
end

local function put_int32(buf, tname, f, v, level)
  if type(v) ~= "number" or v ~= floor(v) or v < -2 ^ 31 or v >= 2 ^ 31 then
    bad_value(tname, f, "int32 expected, got " .. tostring(v), level)
  end
  if v >= 0 then
    put_uvarint_num(buf, v)
  else
    put_uvarint_u64(buf, ffi_cast(uint64_t, ffi_new(int64_t, v)))
  end
end

local function put_len(buf, num, s)
  put_tag(buf, num, WT_LEN)
  put_uvarint_num(buf, #s)
  buf[#buf + 1] = s
end

local function encode_field(buf, tname, f, v, level)
  local t = f.type
  if t == "string" or t == "bytes" then
    if type(v) ~= "string" then
      bad_value(tname, f, t .. " expected, got " .. type(v), level)
    end
    if v ~= "" then
      put_len(buf, f.num, v)
    end
  elseif t == "bool" then
    if type(v) ~= "boolean" then
      bad_value(tname, f, "boolean expected, got " .. type(v), level)
    end
    if v then
      put_tag(buf, f.num, WT_VARINT)
      buf[#buf + 1] = "\1"
    end
  elseif t == "int32" then
    if v ~= 0 then
      put_tag(buf, f.num, WT_VARINT)
      put_int32(buf, tname, f, v, level + 1)
    end
  elseif t == "int64" or t == "uint64" then
    local bits, err = to_u64_bits(v, t == "uint64")
    if not bits then
      bad_value(tname, f, t .. " " .. err .. ": " .. tostring(v), level)
    end
    if bits ~= 0ULL then
      put_tag(buf, f.num, WT_VARINT)
      put_uvarint_u64(buf, bits)
    end
  elseif t == "message" then
    if type(v) ~= "table" then
      bad_value(tname, f, "table expected, got " .. type(v), level)
    end
    put_len(buf, f.num, encode_message(f.msg, v, level + 1))
  elseif t == "map<string,bool>" then
    if type(v) ~= "table" then
      bad_value(tname, f, "table expected, got " .. type(v), level)
    end
    local keys = {}
    for k, val in pairs(v) do
      if type(k) ~= "string" then
        bad_value(tname, f, "map key must be a string, got " .. type(k), level)
      end
      if type(val) ~= "boolean" then
        bad_value(tname, f, "map value for '" .. k .. "' must be a boolean",
                  level)
      end
      keys[#keys + 1] = k
    end
    sort(keys)
    for _, k in ipairs(keys) do
      -- Go (google.golang.org/protobuf internal/impl/codec_map.go,
      -- appendMapItem) writes every entry with both fields, using the
      -- value coders (appendStringValue, appendBoolValue) that have no
      -- zero check: {"a": false} is 0a 01 61 10 00 inside the entry and
      -- an empty key is written as 0a 00. We do the same.
      local entry = { "\10" }
      put_uvarint_num(entry, #k)
      entry[#entry + 1] = k
      entry[#entry + 1] = v[k] and "\16\1" or "\16\0"
      put_len(buf, f.num, concat(entry))
    end
  elseif t == "repeated string" or t == "repeated message"
      or t == "repeated int32" then
    if type(v) ~= "table" then
      bad_value(tname, f, "array expected, got " .. type(v), level)
    end
    local n = #v
    for k in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
        bad_value(tname, f, "array expected, found key " .. tostring(k),
                  level)
      end
    end
    if t == "repeated string" then
      for i = 1, n do
        if type(v[i]) ~= "string" then
          bad_value(tname, f, format("[%d]: string expected, got %s", i,
                                     type(v[i])), level)
        end
        -- Repeated elements are always written, even "".
        put_len(buf, f.num, v[i])
      end
    elseif t == "repeated message" then
      for i = 1, n do
        if type(v[i]) ~= "table" then
          bad_value(tname, f, format("[%d]: table expected, got %s", i,
                                     type(v[i])), level)
        end
        put_len(buf, f.num, encode_message(f.msg, v[i], level + 1))
      end
    elseif n > 0 then
      local packed = {}
      for i = 1, n do
        put_int32(packed, tname, f, v[i], level + 1)
      end
      put_len(buf, f.num, concat(packed))
    end
  end
end

function encode_message(tname, tbl, level)
  local full, err = resolve(tname)
  if not full then
    error("bad argument #1 to 'encode' (" .. err .. ")", level)
  end
  local c = compile(full)
  for k in pairs(tbl) do
    if not c.by_name[k] then
      error(format("bad argument #2 to 'encode' (%s has no field '%s')", full,
                   tostring(k)), level)
    end
  end
  local buf = {}
  for _, f in ipairs(c.ordered) do
    local v = tbl[f.name]
    if v ~= nil then
      encode_field(buf, full, f, v, level + 1)
    end
  end
  return concat(buf)
end

--- Encode a Lua table as the named message type.
-- @param type_name full ("openim.sdkws.MsgData") or unique short ("MsgData")
-- @param tbl field values, see the header for the representation
-- @return the wire bytes (a Lua string)
function _M.encode(type_name, tbl)
  if type(type_name) ~= "string" then
    error("bad argument #1 to 'encode' (string expected, got "
          .. type(type_name) .. ")", 2)
  end
  if type(tbl) ~= "table" then
    error("bad argument #2 to 'encode' (table expected, got " .. type(tbl)
          .. ")", 2)
  end
  local s = encode_message(type_name, tbl, 3)
  return s -- not a tail call: error levels count this frame
end

---------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------

-- Strict UTF-8 check (no overlongs, no surrogates, max U+10FFFF), as Go's
-- utf8.Valid used by protobuf-go for proto3 string fields.
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    -- skip ASCII runs quickly
    local j = find(s, "[\128-\255]", i)
    if not j then
      return true
    end
    i = j
    local c = byte(s, i)
    local need, min
    if c >= 0xc2 and c <= 0xdf then
      need, min = 1, 0x80
    elseif c >= 0xe0 and c <= 0xef then
      need, min = 2, 0x800
    elseif c >= 0xf0 and c <= 0xf4 then
      need, min = 3, 0x10000
    else
      return false
    end
    if i + need > n then
      return false
    end
    local cp = band(c, lshift(1, 6 - need) - 1)
    for k = 1, need do
      local cc = byte(s, i + k)
      if band(cc, 0xc0) ~= 0x80 then
        return false
      end
      cp = cp * 64 + band(cc, 0x3f)
    end
    if cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff) then
      return false
    end
    i = i + need + 1
  end
  return true
end

local decode_range

local WT_NAMES = { [0] = "varint", "i64", "len", "group start", "group end",
                   "i32", "invalid 6", "invalid 7" }

-- Skip an unknown field's value; returns the next position.
local function skip_value(s, pos, last, wt, fail)
  if wt == WT_VARINT then
    local _
    _, pos = get_uvarint(s, pos, last, fail)
    return pos
  elseif wt == WT_I64 or wt == WT_I32 then
    local size = wt == WT_I64 and 8 or 4
    if pos + size - 1 > last then
      fail("fixed-size value past end", pos)
    end
    return pos + size
  elseif wt == WT_LEN then
    local len, p = get_uvarint(s, pos, last, fail)
    if type(len) ~= "number" or p + len - 1 > last then
      fail("length past end", pos)
    end
    return p + len
  end
  fail("unsupported wire type " .. wt .. " (" .. WT_NAMES[wt] .. ")", pos)
end

-- Read a length prefix at pos; returns the first and last byte of the value
-- and the position after it.
local function get_len(s, pos, last, fail)
  local len, p = get_uvarint(s, pos, last, fail)
  if type(len) ~= "number" or p + len - 1 > last then
    fail("length past end", pos)
  end
  return p, p + len - 1, p + len
end

local function decode_map_entry(s, first, last, fail)
  local key, val = "", false
  local pos = first
  while pos <= last do
    local at = pos
    local tag
    tag, pos = get_uvarint(s, pos, last, fail)
    if type(tag) ~= "number" then
      fail("invalid tag in map entry", at)
    end
    local num, wt = floor(tag / 8), tag % 8
    if num == 1 then
      if wt ~= WT_LEN then
        fail("map key: wire type " .. WT_NAMES[wt] .. ", expected len", at)
      end
      local a, b
      a, b, pos = get_len(s, pos, last, fail)
      key = sub(s, a, b)
      if not valid_utf8(key) then
        fail("map key: invalid UTF-8", at)
      end
    elseif num == 2 then
      if wt ~= WT_VARINT then
        fail("map value: wire type " .. WT_NAMES[wt] .. ", expected varint",
             at)
      end
      local v
      v, pos = get_uvarint(s, pos, last, fail)
      -- a number is below 2^49; a cdata is at least 2^49, so non-zero
      val = type(v) ~= "number" or v ~= 0
    elseif num == 0 then
      fail("invalid field number 0 in map entry", at)
    else
      pos = skip_value(s, pos, last, wt, fail)
    end
  end
  return key, val
end

-- ctx.path names the sub-message being decoded, for error messages.
function decode_range(full, s, first, last, opts, fail, ctx)
  local c = compile(full)
  local out = {}
  local chunks -- singular message fields seen several times merge (spec)
  local pos = first
  while pos <= last do
    local at = pos
    local tag
    tag, pos = get_uvarint(s, pos, last, fail)
    if type(tag) ~= "number" or tag >= 2 ^ 32 then
      fail("invalid tag", at)
    end
    local num, wt = floor(tag / 8), tag % 8
    if num == 0 then
      fail("invalid field number 0", at)
    end
    local f = c.by_number[num]
    if not f then
      pos = skip_value(s, pos, last, wt, fail)
    else
      local t = f.type
      local packed_ok = t == "repeated int32" and wt == WT_VARINT
      if wt ~= f.wt and not packed_ok then
        fail(format("%s.%s (field %d): wire type %s, expected %s", full,
                    f.name, num, WT_NAMES[wt], WT_NAMES[f.wt]), at)
      end
      if t == "string" or t == "bytes" or t == "repeated string" then
        local a, b
        a, b, pos = get_len(s, pos, last, fail)
        local v = sub(s, a, b)
        if t ~= "bytes" and opts.utf8 ~= false and not valid_utf8(v) then
          fail(format("%s.%s: invalid UTF-8 in string", full, f.name), at)
        end
        if t == "repeated string" then
          local list = out[f.name] or {}
          list[#list + 1] = v
          out[f.name] = list
        else
          out[f.name] = v
        end
      elseif t == "bool" then
        local v
        v, pos = get_uvarint(s, pos, last, fail)
        out[f.name] = type(v) ~= "number" or v ~= 0
      elseif t == "int32" then
        local v
        v, pos = get_uvarint(s, pos, last, fail)
        out[f.name] = from_varint_int32(v)
      elseif t == "int64" then
        local v
        v, pos = get_uvarint(s, pos, last, fail)
        out[f.name] = from_varint_int64(v)
      elseif t == "uint64" then
        local v
        v, pos = get_uvarint(s, pos, last, fail)
        out[f.name] = from_varint_uint64(v)
      elseif t == "repeated int32" then
        local list = out[f.name] or {}
        out[f.name] = list
        if wt == WT_VARINT then
          local v
          v, pos = get_uvarint(s, pos, last, fail)
          list[#list + 1] = from_varint_int32(v)
        else
          local a, b
          a, b, pos = get_len(s, pos, last, fail)
          local p = a
          while p <= b do
            local v
            v, p = get_uvarint(s, p, b, fail)
            list[#list + 1] = from_varint_int32(v)
          end
        end
      elseif t == "message" then
        local a, b
        a, b, pos = get_len(s, pos, last, fail)
        chunks = chunks or {}
        local list = chunks[f] or {}
        chunks[f] = list
        list[#list + 1] = { a, b }
      elseif t == "repeated message" then
        local a, b
        a, b, pos = get_len(s, pos, last, fail)
        local list = out[f.name] or {}
        out[f.name] = list
        local saved = ctx.path
        ctx.path = format("%s%s[%d].", saved, f.name, #list + 1)
        list[#list + 1] = decode_range(f.msg, s, a, b, opts, fail, ctx)
        ctx.path = saved
      elseif t == "map<string,bool>" then
        local a, b
        a, b, pos = get_len(s, pos, last, fail)
        local map = out[f.name] or {}
        out[f.name] = map
        local k, v = decode_map_entry(s, a, b, fail)
        map[k] = v
      end
    end
  end
  if chunks then
    for f, list in pairs(chunks) do
      local saved = ctx.path
      ctx.path = saved .. f.name .. "."
      if #list == 1 then
        out[f.name] = decode_range(f.msg, s, list[1][1], list[1][2], opts,
                                   fail, ctx)
      else
        -- Several occurrences of a singular message field merge; parsing
        -- their concatenation is that merge by definition. (Byte offsets
        -- in errors are then relative to the concatenation.)
        local parts = {}
        for i, r in ipairs(list) do
          parts[i] = sub(s, r[1], r[2])
        end
        local joined = concat(parts)
        ctx.path = ctx.path .. "(merged) "
        out[f.name] = decode_range(f.msg, joined, 1, #joined, opts, fail, ctx)
      end
      ctx.path = saved
    end
  end
  if opts.defaults then
    for _, f in ipairs(c.ordered) do
      if out[f.name] == nil then
        local t = f.type
        if t == "string" or t == "bytes" then
          out[f.name] = ""
        elseif t == "bool" then
          out[f.name] = false
        elseif t == "int32" or t == "int64" or t == "uint64" then
          out[f.name] = 0
        elseif t ~= "message" then
          out[f.name] = {}
        end
      end
    end
  end
  return out
end

--- Decode wire bytes as the named message type.
-- @param type_name full or unique short message name
-- @param bytes a Lua string
-- @param opts optional {defaults = true} to fill proto3 defaults,
--   {utf8 = false} to skip UTF-8 validation of string fields
-- @return a Lua table; raises "pb.decode(<type>): ..." on malformed input
function _M.decode(type_name, bytes, opts)
  if type(type_name) ~= "string" then
    error("bad argument #1 to 'decode' (string expected, got "
          .. type(type_name) .. ")", 2)
  end
  if type(bytes) ~= "string" then
    error("bad argument #2 to 'decode' (string expected, got " .. type(bytes)
          .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'decode' (table expected, got " .. type(opts)
          .. ")", 2)
  end
  local full, err = resolve(type_name)
  if not full then
    error("bad argument #1 to 'decode' (" .. err .. ")", 2)
  end
  local ctx = { path = "" }
  local function fail(what, pos)
    local where = ctx.path ~= "" and "in " .. sub(ctx.path, 1, -2) .. ": "
        or ""
    error(format("pb.decode(%s): %s%s at byte %d", full, where, what,
                 pos - 1), 0)
  end
  local out = decode_range(full, bytes, 1, #bytes, opts or {}, fail, ctx)
  return out
end

--- The full name a short or full type name resolves to, or nil and error.
_M.resolve = resolve

--- Hex dump helper for assertion messages: "0a 01 61".
function _M.hex(s)
  local out = {}
  for i = 1, #s do
    out[i] = format("%02x", byte(s, i))
  end
  return concat(out, " ")
end

-- Exposed for the spec: the raw varint codec.
function _M.varint(v)
  local buf = {}
  if type(v) == "number" and v >= 0 and v < TWO53 and v == floor(v) then
    put_uvarint_num(buf, v)
  else
    local bits, err = to_u64_bits(v, false)
    if not bits then
      bits, err = to_u64_bits(v, true)
    end
    if not bits then
      error("bad argument #1 to 'varint' (" .. err .. ")", 2)
    end
    put_uvarint_u64(buf, bits)
  end
  return concat(buf)
end

return _M
