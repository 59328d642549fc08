-- The demo: impulse between local stand-ins of an OpenIM deployment.
--
-- Starts Redis, etcd, a Kafka broker (librdkafka's mock cluster), three
-- msggateway nodes and the user/group services (examples/openim-standin),
-- then impulse with the policy in scripts/. Produces a scripted mix of
-- single-chat, group and notification messages to toPush the way OpenIM's
-- msgtransfer does, and prints each message's route: its recipients, who
-- was online, which gateway reached whom, and who gets an offline push.
--
--   ./dev demo          one round, then everything stops
--   ./dev demo watch    keeps running: every time the scripts reload
--                       (edit scripts/push.lua and save), the round runs
--                       again on the new policy; Ctrl-C stops everything
package.path = "./?.lua;./lua/?.lua;" .. package.path
local h = require "spec.helpers"
local ffi = require "ffi"
local bit = require "bit"
h.new_session = true -- Ctrl-C reaches this driver only, which stops everything in order

ffi.cdef [[
typedef struct { unsigned long val[16]; } demo_sigset;
struct demo_timespec { long tv_sec; long tv_nsec; };
struct demo_pollfd { int fd; short events; short revents; };
int sigemptyset(demo_sigset *set);
int sigaddset(demo_sigset *set, int sig);
int sigprocmask(int how, const demo_sigset *set, demo_sigset *old);
int sigtimedwait(const demo_sigset *set, void *info, const struct demo_timespec *timeout);
typedef void (*demo_handler)(int);
demo_handler signal(int sig, demo_handler h);
int poll(struct demo_pollfd *fds, unsigned long n, int timeout);
]]
local SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIG_BLOCK = 1, 2, 13, 15, 0
local POLLERR, POLLHUP = 8, 16

-- From the start SIGINT, SIGTERM and SIGHUP (a closed terminal) wait to be
-- taken by wait_signal, which every wait of the demo calls (helpers'
-- poll_hook): whenever one comes, the demo stops what it started, in order.
-- A closed stdout (`./dev demo watch | head`, or tee killed by Ctrl-C) is
-- an EPIPE, not a SIGPIPE that would kill the demo before it cleans up.
local signals = ffi.new("demo_sigset")
ffi.C.sigemptyset(signals)
for _, sig in ipairs { SIGHUP, SIGINT, SIGTERM } do ffi.C.sigaddset(signals, sig) end
ffi.C.sigprocmask(SIG_BLOCK, signals, nil)
ffi.C.signal(SIGPIPE, ffi.cast("demo_handler", 1)) -- SIG_IGN

-- Waits up to ms for one of those signals; true when one came.
local function wait_signal(ms)
  local ts = ffi.new("struct demo_timespec", { math.floor(ms / 1000), (ms % 1000) * 1000000 })
  return ffi.C.sigtimedwait(signals, nil, ts) > 0
end

-- true when nobody reads stdout any more (a pipe whose reader is gone)
local function stdout_closed()
  local p = ffi.new("struct demo_pollfd", { 1, 0, 0 })
  return ffi.C.poll(p, 1, 0) > 0 and bit.band(p.revents, POLLERR + POLLHUP) ~= 0
end

h.poll_hook = function()
  if wait_signal(0) then error("interrupted", 0) end
  if stdout_closed() then error("output closed", 0) end
end

-- print and io.write that notice a closed stdout
local raw_write = io.write
local function write(...)
  local ok = raw_write(...)
  if not ok or not io.stdout:flush() then error("output closed", 0) end
end
local function print(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  write(table.concat(parts, "\t"), "\n")
end

local format = string.format
local concat = table.concat
local watch = arg and arg[1] == "watch"

local color = os.getenv("NO_COLOR") == nil and os.getenv("TERM") ~= "dumb"
local function c(code, s) return color and ("\27[" .. code .. "m" .. s .. "\27[0m") or s end
local function bold(s) return c("1", s) end
local function green(s) return c("32", s) end
local function yellow(s) return c("33", s) end
local function red(s) return c("31", s) end
local function dim(s) return c("2", s) end

local function step(s) write(dim("  · " .. s .. "\n")) end

local SCRIPT = {
  { "single chat, bob → alice", { sendID = "bob", recvID = "alice", content = "hi alice" } },
  { "single chat, alice → carol, senderSync off",
    { sendID = "alice", recvID = "carol", options = { senderSync = false } } },
  { "group chat in 'team' from alice",
    { sendID = "alice", recvID = "", groupID = "team", sessionType = 3 } },
  { "notification to dave (offline)",
    { sendID = "imAdmin", recvID = "dave", sessionType = 4, contentType = 1400,
      options = { senderSync = false } } },
  { "erin opens the app (online_change), then 'team' again", "erin",
    { sendID = "bob", recvID = "", groupID = "team", sessionType = 3 } },
  { "a group the group service does not know",
    { sendID = "bob", recvID = "", groupID = "ghosts", sessionType = 3 } },
}

local env, imp

local function health()
  return h.http_json("GET", imp.admin .. "/healthz")
end

local function failure_of(id)
  for _, l in ipairs(h.log_lines(imp, "route failed")) do
    if l.clientMsgID == id then return l.error end
  end
  for _, l in ipairs(h.log_lines(imp, "script ")) do
    if l.clientMsgID == id then return l.error end
  end
end

-- The dead letter of message m (produced with operationID "op-<id>"), once
-- it is on toPush.dlq: { topic, reason }.
local function dead_letter_of(id)
  local ok, rec = pcall(h.wait_until, function()
    for _, r in ipairs(h.dead_letters(env)) do
      if h.header(r, "operationID") == "op-" .. id then return r end
    end
  end, 10000, "the dead letter")
  if ok then return { topic = "toPush.dlq", reason = h.header(rec, "impulse-reason") } end
end

-- Prints what happened to message m.
local function show(i, label, m, gw)
  print(bold(format("#%d %s", i, label)) .. dim("  " .. m.clientMsgID))
  local r = h.routes(imp)[m.clientMsgID]
  if not r then
    print("   " .. red("not pushed: ") .. tostring(failure_of(m.clientMsgID)))
    local dl = dead_letter_of(m.clientMsgID)
    if dl then
      print("   " .. red("dead-lettered") .. " to " .. dl.topic .. ", reason " .. bold(dl.reason)
        .. dim("  (impulse dlq ls lists it; impulse replay moves it back once fixed)"))
    end
    return
  end
  local reached, online = {}, {}
  for _, u in ipairs(r.reached) do reached[u] = true end
  for _, u in ipairs(r.online) do online[u] = true end
  local who, order = {}, {}
  for _, u in ipairs(r.online) do order[#order + 1] = u end
  for _, u in ipairs(r.offline) do order[#order + 1] = u end
  for _, u in ipairs(order) do
    if reached[u] then who[#who + 1] = green(u .. " ✓ online push")
    elseif online[u] then who[#who + 1] = yellow(u .. " ~ online, not on a phone")
    else who[#who + 1] = red(u .. " ✗ offline") end
  end
  print("   recipients " .. r.recipients .. ": " .. concat(who, ", "))
  local gws = {}
  for _, g in ipairs(r.gateways) do
    local name = gw[g.addr] or g.addr
    if g.calls == 0 then
      gws[#gws + 1] = { name, dim(name .. " not called") }
    else
      gws[#gws + 1] = { name, format("%s %s", name, g.error and red(g.error)
        or (g.reached > 0 and green("reached " .. g.reached) or "reached 0")) }
    end
  end
  table.sort(gws, function(a, b) return a[1] < b[1] end)
  for k, g in ipairs(gws) do gws[k] = g[2] end
  print("   gateways: " .. concat(gws, "; ") .. dim(format("  (%d ms)", r.ms)))
  for _, l in ipairs(h.log_lines(imp, "offline push decided")) do
    if l.clientMsgID == m.clientMsgID then
      print("   offline push → " .. concat(l.users, ", ") .. dim(format("  %q", l.title or "")))
      -- the offline leg: toOfflinePush, then the provider (here "log")
      local ok, sent = pcall(h.wait_until, function()
        for _, o in ipairs(h.log_lines(imp, "offline push")) do
          if o.msg == "offline push" and o.clientMsgID == m.clientMsgID then return o end
        end
      end, 10000, "the offline push")
      if ok then
        print("   via toOfflinePush, provider " .. sent.provider .. ": " ..
          green("notified " .. concat(sent.body.users or {}, ", ")))
      else
        print("   " .. red("offline push not sent yet: ") .. tostring(sent))
      end
    end
  end
end

-- toPush messages handled so far, whatever their outcome: a message counts
-- once it is over (offline hand-off included), after its route line.
local function handled()
  local _, body = h.http("GET", imp.admin .. "/metrics")
  local n = 0
  for v in body:gmatch('impulse_messages_total{topic="toPush",result="[%w_]+"} (%d+)') do n = n + tonumber(v) end
  return n
end

-- One round of the script, each message after the previous one is over.
local function round(gw)
  -- erin starts offline every round
  h.http_json("POST", env.gateways[3].control .. "/conns", '{"erin":[]}')
  h.publish(env.redis, "online_change", "erin")
  h.wait_until(function() return health().onlineUsers == 3 end, 5000, "erin offline")
  for i, s in ipairs(SCRIPT) do
    if s[2] == "erin" then
      h.http_json("POST", env.gateways[3].control .. "/conns", { erin = { 2 } })
      h.publish(env.redis, "online_change", "2:erin")
      h.wait_until(function() return health().onlineUsers == 4 end, 5000, "erin online")
    end
    local m = h.push_msg(s[#s])
    local before = handled()
    h.produce(env, m)
    -- one at a time, so each route reflects the state the script set up
    h.wait_until(function()
      return handled() > before and (h.routes(imp)[m.clientMsgID] or failure_of(m.clientMsgID))
    end, 20000, "message " .. i .. " to be handled")
    show(i, s[1], m, gw)
  end
  -- and one record that is not a PushMsgReq at all
  local before = #h.log_lines(imp, "bad record")
  h.produce(env, h.push_msg {}, { raw = "\255\255 not protobuf", key = "demo", operationID = "op-garbage" })
  local bad = h.wait_until(function()
    local l = h.log_lines(imp, "bad record")
    return #l > before and l[#l]
  end, 20000, "the bad record")
  print(bold(format("#%d a record that is not a PushMsgReq", #SCRIPT + 1)))
  print("   " .. red("dead-lettered to toPush.dlq and counted: ") .. bad.error)
end

local ok, err = pcall(function()
  print(bold("impulse demo") .. dim("  (stand-ins on loopback; logs in " .. h.tmpdir() .. ")"))
  step("starting Redis, etcd, Kafka (mock cluster), 3 gateways, user and group services")
  env = h.start_env { gateways = 3 }
  local gw = {}
  for i, g in ipairs(env.gateways) do gw[g.grpc] = "gateway-" .. i end

  -- Who is connected where: alice on her iPhone (gateway 1), bob on
  -- Android (gateway 2), carol in a browser (gateway 3: online, but web
  -- delivery does not count as an online push), dave and erin offline.
  h.set_online(env, { alice = { 1 } }, env.gateways[1])
  h.set_online(env, { bob = { 2 } }, env.gateways[2])
  h.set_online(env, { carol = { 5 } }, env.gateways[3])
  h.set_group(env, "team", { "alice", "bob", "carol", "dave", "erin" })

  step("starting impulse (scripts/push.lua) and waiting for /readyz")
  imp = h.start_impulse(env, { workers = 2, log_level = "info", provider = "log" })
  print()
  round(gw)
  print()
  print(dim("engine log (JSON lines): " .. imp.log))
  if not watch then
    print(dim("edit scripts/push.lua and run ./dev demo again (or ./dev demo watch) to see the routes change"))
    return
  end
  print(bold("watching scripts/: save a change to replay the messages on it (Ctrl-C stops)"))
  local seen = health().scripts
  while true do
    if wait_signal(200) then
      print(dim("\nstopping impulse and the stand-ins"))
      return
    end
    if stdout_closed() then return end
    local now = health().scripts
    if now.reloadFailures ~= seen.reloadFailures then
      print(red("reload failed, the old scripts stay: ") .. tostring(now.lastError))
    elseif seen.lastError and not now.lastError then
      print(green("the scripts are back to the active version ") .. now.active)
    end
    if now.active ~= seen.active then
      print(bold(format("\nscripts %s active (%s)", now.active, now.lastReloadTrigger or "")))
      round(gw)
    end
    seen = now
  end
end)

h.poll_hook = nil -- nothing interrupts the stopping
h.stop_env(env)
if not ok and (err == "interrupted" or err == "output closed") then
  io.stderr:write("demo stopped (" .. err .. "): impulse and the stand-ins are stopped\n")
  os.exit(130)
end
if not ok then
  io.stderr:write("demo failed: " .. tostring(err) .. "\n")
  if imp then io.stderr:write(h.read_file(imp.log) or "", "\n") end
  os.exit(1)
end
