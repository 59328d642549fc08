-- bench/dedupe.lua: what offline dedupe (impulse.offlineDedupe) costs
-- Redis, per device.
--
--   luajit bench/dedupe.lua [devices]        (default 200,000)
--
-- Starts a redis-server of its own and runs lua/impulse/dedupe.lua's own
-- CLAIM and SETTLE scripts, as the engine sends them (one EVAL per chunk
-- of users, the engine's chunks being at most 1,000 users), over `devices`
-- fresh keys shaped like the engine's
-- (IMPULSE_PUSHED:<clientMsgID>:fcm:<userID>:<16 hex>), for chunks of 1,
-- 10, 100 and 1,000 keys: claim, settle as sent, then claim again (a
-- replay: every key found sent). Commands go through `redis-cli --pipe`;
-- the figures are Redis' own (INFO commandstats: microseconds inside EVAL,
-- which is what other Redis clients wait behind; INFO memory: bytes a
-- remembered device holds for the window).
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"

-- dedupe.lua reads the engine's config at load: a stand-in for the bench
package.loaded["impulse.core"] = {
  config = function() return { offlineDedupe = true, offlineDedupeWindowS = 600 } end,
  wall_ms = function() return os.time() * 1000 end,
}
local dedupe = require "impulse.dedupe"

local DEVICES = tonumber(arg[1]) or 200000
local format = string.format

local function resp(args)
  local parts = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(parts)
end

local function info(redis, section)
  return h.redis_cli(redis, "INFO", section)
end

local function eval_usec(redis)
  local s = info(redis, "commandstats")
  return tonumber(s:match("cmdstat_eval:calls=%d+,usec=(%d+)")) or 0
end

local function used_memory(redis)
  return tonumber(info(redis, "memory"):match("used_memory:(%d+)"))
end

-- Runs the commands (a list of arg lists) through redis-cli --pipe.
local function pipe(redis, cmds)
  local file = h.tmpdir() .. "/dedupe-bench.resp"
  local f = assert(io.open(file, "wb"))
  for _, c in ipairs(cmds) do f:write(resp(c)) end
  f:close()
  local out = h.run(format("redis-cli -p %d --pipe < %s", redis.port, file))
  local errors = tonumber(out:match("errors: (%d+)"))
  assert(errors == 0, "redis-cli --pipe: " .. out)
end

local function evals(script, keys, chunk, argv_of)
  local cmds = {}
  for first = 1, #keys, chunk do
    local c = { "EVAL", script, 0 }
    local n = 0
    for i = first, math.min(#keys, first + chunk - 1) do
      n = n + 1
      c[#c + 1] = keys[i]
    end
    c[3] = n
    for _, a in ipairs(argv_of(n)) do c[#c + 1] = a end
    cmds[#cmds + 1] = c
  end
  return cmds
end

local redis = h.start_redis()
print(format("offline dedupe on Redis (%s), %d devices per chunk size, %s",
  (h.run("redis-server --version"):match("v=(%S+)") or "?"), DEVICES, os.date("!%Y-%m-%d %H:%MZ")))
print("chunk | claim µs/device | settle µs/device | replay claim µs/device | bytes/device kept | EVALs")
for _, chunk in ipairs { 1, 10, 100, 1000 } do
  h.redis_cli(redis, "FLUSHALL")
  h.redis_cli(redis, "CONFIG", "RESETSTAT")
  local keys = {}
  for i = 1, DEVICES do
    keys[i] = format("IMPULSE_PUSHED:cmsg-%d:fcm:user-%07d:%016x", chunk, i, i * 2654435761 % 2 ^ 52)
  end
  local mem0 = used_memory(redis)
  local owner = "bench:1:1"
  local u0 = eval_usec(redis)
  pipe(redis, evals(dedupe.CLAIM, keys, chunk, function() return { owner, 25000 } end))
  local u1 = eval_usec(redis)
  pipe(redis, evals(dedupe.SETTLE, keys, chunk, function(n)
    local a = { owner, 600000 }
    for _ = 1, n do a[#a + 1] = "1" end
    return a
  end))
  local u2 = eval_usec(redis)
  local mem1 = used_memory(redis)
  pipe(redis, evals(dedupe.CLAIM, keys, chunk, function() return { "bench:2:1", 25000 } end))
  local u3 = eval_usec(redis)
  -- every key is "sent" for the window
  assert(h.redis_cli(redis, "GET", keys[DEVICES]):match("sent"), "the last key is not sent")
  print(format("%5d | %15.2f | %16.2f | %22.2f | %17.0f | %d", chunk, (u1 - u0) / DEVICES, (u2 - u1) / DEVICES,
    (u3 - u2) / DEVICES, (mem1 - mem0) / DEVICES, math.ceil(DEVICES / chunk) * 3))
end
h.stop_all()
