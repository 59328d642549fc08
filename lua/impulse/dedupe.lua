-- impulse.dedupe: an offline push to a (user, clientMsgID, device) is sent
-- at most once across retries, replays, rebalances and instances, within
-- impulse.offlineDedupeWindowS (engine-internal; called by impulse.offline).
--
-- One Redis key per device and message,
--   IMPULSE_PUSHED:<clientMsgID>:<provider>:<userID>:<device>
-- (device: the first 16 hex digits of the device token's SHA-256 for the
-- providers that send per device, FCM and APNs; "alias" for those that
-- push to the user's alias, Getui and JPush), goes through three states:
--   absent                 nobody has sent it: claim it (SET NX with a lease)
--   <owner>                being sent by that claim, until the lease ends
--                          (two of the provider's timeoutMs + 5 s: 25 s)
--   "sent"                 sent; skipped for the window
-- A claim that fails to send releases its keys, so a retry or a replay
-- sends them. A claim held by another sender (a rebalance, a second
-- instance, the process that was killed mid-send) is waited for: sent →
-- skipped; released or lease over → claimed here. So a device is pushed
-- twice only when a send outlives its lease or a process dies between the
-- provider's answer and the "sent" write (one Redis round trip).
--
-- If Redis fails, the push goes on without dedupe (at least once wins over
-- at most once) and the failure is logged and counted.
local core = require "impulse.core"

local type = type
local tostring = tostring
local ipairs = ipairs
local pairs = pairs
local unpack = unpack

local _M = {}

local cfg = core.config()
-- on unless impulse.offlineDedupe is false, never in shadow mode
_M.enabled = cfg.offlineDedupe == true and cfg.shadow ~= true
_M.window_ms = (tonumber(cfg.offlineDedupeWindowS) or 600) * 1000
_M.poll_ms = 500

-- KEYS: the keys; ARGV[1] this claim's owner, ARGV[2] the lease (ms).
-- Per key: 1 claimed here, 0 sent already, 2 held by another claim.
local CLAIM = [[
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 1
  elseif redis.call('GET', k) == 'sent' then
    out[i] = 0
  else
    out[i] = 2
  end
end
return out
]]

-- KEYS: the keys; ARGV[1] the owner, ARGV[2] the window (ms), ARGV[2 + i]
-- '1' sent / '0' release, for the keys this owner still holds.
local SETTLE = [[
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    if ARGV[i + 2] == '1' then
      redis.call('SET', k, 'sent', 'PX', ARGV[2])
    else
      redis.call('DEL', k)
    end
  end
end
return #KEYS
]]

_M.CLAIM, _M.SETTLE = CLAIM, SETTLE -- for bench/dedupe.lua

local function redis(...)
  return require("impulse.redis").call(...)
end

local function count(provider, result, n)
  if n > 0 then
    core.metric("counter", "impulse_offline_dedupe_total", { provider = provider, result = result }, n)
  end
end

-- a claim's owner: unique across VMs and processes (this VM's table
-- address, its start time) and claims (a counter)
local nonce = tostring({}):match("0x(%x+)") or "0"
local started = core.wall_ms()
local seq = 0
local function new_owner()
  seq = seq + 1
  return string.format("%s:%d:%d", nonce, started, seq)
end

-- Runs CLAIM over keys (in batches: EVAL's arguments stay bounded).
local function claim_keys(keys, owner, lease_ms)
  local out = {}
  for first = 1, #keys, 1000 do
    local args = { "EVAL", CLAIM, 0 }
    local n = 0
    for i = first, math.min(#keys, first + 999) do
      n = n + 1
      args[3 + n] = keys[i]
    end
    args[3] = n
    args[#args + 1] = owner
    args[#args + 1] = tostring(lease_ms)
    local vals, err = redis(unpack(args))
    if type(vals) ~= "table" then return nil, "redis dedupe claim: " .. tostring(err) end
    for i = 1, n do out[first + i - 1] = tonumber(vals[i]) end
  end
  return out
end

-- impulse explain (read_only): the keys' states read, nothing claimed:
-- 0 sent already, 3 would be claimed.
_M.read_only = false
local function read_keys(keys)
  local out = {}
  for first = 1, #keys, 1000 do
    local vals, err = redis("MGET", unpack(keys, first, math.min(#keys, first + 999)))
    if type(vals) ~= "table" then return nil, "redis dedupe read: " .. tostring(err) end
    for i = first, math.min(#keys, first + 999) do
      out[i] = vals[i - first + 1] == "sent" and 0 or 3
    end
  end
  return out
end

local function device_of(tok)
  return core.sha256_hex(tok):sub(1, 16)
end

-- claim(provider, msg, users, ctx, per_device, lease_ms) -> users, claim
-- Keeps the users (and, per_device, the devices in ctx.tokens) this push
-- may send to: those claimed here. claim is what settle() needs, or nil
-- when dedupe does not apply (off, no clientMsgID, Redis failed).
function _M.claim(provider, msg, users, ctx, per_device, lease_ms)
  local cid = msg.clientMsgID
  if not _M.enabled or type(cid) ~= "string" or cid == "" or #users == 0 then return users end
  local prefix = "IMPULSE_PUSHED:" .. cid .. ":" .. provider .. ":"
  local keys, owner_of = {}, {} -- owner_of[i] = { user, token entry or nil }
  local has_key = {}
  for _, u in ipairs(users) do
    if per_device then
      for _, t in ipairs(ctx.tokens and ctx.tokens[u] or {}) do
        keys[#keys + 1] = prefix .. u .. ":" .. device_of(t.token)
        owner_of[#keys] = { u, t }
      end
    else
      keys[#keys + 1] = prefix .. u .. ":alias"
      owner_of[#keys] = { u }
    end
  end
  if #keys == 0 then return users end
  local owner = new_owner()
  local state, err
  if _M.read_only then
    state, err = read_keys(keys)
  else
    state, err = claim_keys(keys, owner, lease_ms)
  end
  if not state then
    count(provider, "error", #keys)
    ctx.log.warn("offline dedupe off for this push: %s", err)
    return users
  end
  -- held by another claim: wait until it is sent, released or its lease ends
  local deadline = core.wall_ms() + lease_ms + 2000
  local waited = 0
  while true do
    local held = {}
    for i = 1, #keys do if state[i] == 2 then held[#held + 1] = i end end
    if #held == 0 then break end
    if core.wall_ms() > deadline then
      -- a lease that never ends (clock skew, a key set by hand): send
      for _, i in ipairs(held) do state[i] = 3 end
      break
    end
    waited = waited + #held
    local ev = core.event()
    local pending = core.wait(ev, _M.poll_ms)
    if pending then require("impulse.coroutine").engine_yield() end
    local sub = {}
    for k, i in ipairs(held) do sub[k] = keys[i] end
    local again
    again, err = claim_keys(sub, owner, lease_ms)
    if not again then
      count(provider, "error", #held)
      ctx.log.warn("offline dedupe: %s; sending", err)
      for _, i in ipairs(held) do state[i] = 3 end
      break
    end
    for k, i in ipairs(held) do state[i] = again[k] end
  end
  if waited > 0 then count(provider, "waited", 1) end
  -- keep what is ours (1), or forced (3); drop what was sent (0)
  local keep_user, kept_tokens, mine, dup = {}, {}, {}, 0
  for i = 1, #keys do
    local u, t = owner_of[i][1], owner_of[i][2]
    if state[i] == 0 then
      dup = dup + 1
    else
      keep_user[u] = true
      if t then
        local l = kept_tokens[u]
        if not l then l = {}; kept_tokens[u] = l end
        l[#l + 1] = t
      end
      if state[i] == 1 then mine[#mine + 1] = i end
    end
  end
  count(provider, "duplicate", dup)
  count(provider, "claimed", #mine)
  if dup > 0 then
    ctx.log.info("offline dedupe: %d %s push(es) of %s already sent, skipped", dup, provider, cid)
  end
  for i = 1, #keys do has_key[owner_of[i][1]] = true end
  -- users with a device left, and those with none (a per-device provider
  -- sends them nothing either way)
  local out = {}
  for _, u in ipairs(users) do
    if keep_user[u] or not has_key[u] then out[#out + 1] = u end
  end
  if per_device and ctx.tokens then
    for u in pairs(ctx.tokens) do ctx.tokens[u] = kept_tokens[u] end
  end
  local claim = { owner = owner, keys = {}, users = {} }
  for k, i in ipairs(mine) do
    claim.keys[k] = keys[i]
    claim.users[k] = owner_of[i][1]
  end
  return out, claim
end

-- settle(claim, failed, ctx): the claimed keys of users not in failed
-- become "sent" for the window; those of failed users are released.
function _M.settle(claim, failed, ctx)
  if not claim or #claim.keys == 0 then return end
  local bad = {}
  for _, u in ipairs(failed or {}) do bad[u] = true end
  for first = 1, #claim.keys, 1000 do
    local args = { "EVAL", SETTLE, 0 }
    local flags = {}
    local n = 0
    for i = first, math.min(#claim.keys, first + 999) do
      n = n + 1
      args[3 + n] = claim.keys[i]
      flags[n] = bad[claim.users[i]] and "0" or "1"
    end
    args[3] = n
    args[#args + 1] = claim.owner
    args[#args + 1] = tostring(_M.window_ms)
    for _, f in ipairs(flags) do args[#args + 1] = f end
    local ok, err = redis(unpack(args))
    if ok == nil then
      -- the keys stay claimed until their lease ends: a replay then sends
      ctx.log.warn("offline dedupe: could not record the sends: %s", tostring(err))
      return
    end
  end
end

return _M
