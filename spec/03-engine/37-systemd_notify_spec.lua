-- systemd's notification protocol (Type=notify, WatchdogSec): impulse is
-- given a NOTIFY_SOCKET and WATCHDOG_USEC as systemd gives them, and the
-- datagrams it sends are read here: nothing before it is ready, READY=1
-- once it would answer /readyz 200, WATCHDOG=1 every half period while it
-- runs, STOPPING=1 when SIGTERM starts the drain, nothing after.
local h = require "spec.helpers"
local ffi = require "ffi"

pcall(ffi.cdef, [[
  struct impulse_sockaddr_un { unsigned short sun_family; char sun_path[108]; };
  int socket(int domain, int type, int protocol);
  int bind(int fd, const void *addr, unsigned int len);
  long recv(int fd, void *buf, unsigned long len, int flags);
  int close(int fd);
]])

local AF_UNIX, SOCK_DGRAM, MSG_DONTWAIT = 1, 2, 0x40

-- A datagram socket at path, as systemd's; :drain() returns what arrived.
local function listener(path)
  os.remove(path)
  local fd = ffi.C.socket(AF_UNIX, SOCK_DGRAM, 0)
  assert(fd >= 0, "socket")
  local sa = ffi.new("struct impulse_sockaddr_un")
  sa.sun_family = AF_UNIX
  ffi.copy(sa.sun_path, path)
  assert(ffi.C.bind(fd, sa, ffi.sizeof(sa)) == 0, "bind " .. path)
  local buf = ffi.new("char[4096]")
  return {
    drain = function()
      local out = {}
      while true do
        local n = tonumber(ffi.C.recv(fd, buf, 4096, MSG_DONTWAIT))
        if n <= 0 then break end
        out[#out + 1] = ffi.string(buf, n)
      end
      return out
    end,
    close = function() ffi.C.close(fd); os.remove(path) end,
  }
end

describe("systemd notification #engine", function()
  local env

  lazy_setup(function() env = h.start_env { gateways = 1 } end)
  lazy_teardown(function() h.stop_env(env) end)

  it("says READY=1 when ready, WATCHDOG=1 while running, STOPPING=1 on SIGTERM, in that order", function()
    local sock = h.tmpdir() .. "/notify-" .. h.free_port()
    local l = listener(sock)
    finally(function() l.close() end)
    local cfg, admin = h.impulse_config(env, {})
    local imp = h.spawn("impulse", string.format("env NOTIFY_SOCKET=%s WATCHDOG_USEC=1000000 %s run -c %s",
      sock, h.shell_quote(h.bin), h.shell_quote(cfg)))
    imp.admin = "http://127.0.0.1:" .. admin
    local got = {}
    local function pull()
      for _, m in ipairs(l.drain()) do got[#got + 1] = m end
    end
    local function has(prefix, from)
      for i = from or 1, #got do if got[i]:find(prefix, 1, true) then return i end end
    end

    -- READY=1, and /readyz answers 200 by then
    local ready_at = h.wait_until(function()
      if not h.alive(imp) then error("impulse exited: " .. (h.read_file(imp.log) or ""), 0) end
      pull()
      return has("READY=1")
    end, 60000, "READY=1 on the notify socket")
    assert.equal(200, (h.http("GET", imp.admin .. "/readyz")))
    for i = 1, ready_at - 1 do
      assert.equal("WATCHDOG=1", got[i], "before READY=1 only watchdog pings: " .. table.concat(got, " | "))
    end
    assert.matches("STATUS=ready: 2 workers", got[ready_at], 1, true)

    -- pings every half WATCHDOG_USEC (500 ms): three more in a generous while
    h.wait_until(function()
      pull()
      local n = 0
      for i = ready_at + 1, #got do if got[i] == "WATCHDOG=1" then n = n + 1 end end
      return n >= 3
    end, 30000, "three WATCHDOG=1 after READY=1")

    h.signal(imp, h.SIGTERM)
    h.wait_exit(imp, 30000)
    pull()
    local stop_at = has("STOPPING=1", ready_at)
    assert.is_truthy(stop_at, "no STOPPING=1: " .. table.concat(got, " | "))
    assert.matches("STATUS=draining (SIGTERM)", got[stop_at], 1, true)
    assert.equal(#got, stop_at, "messages after STOPPING=1: " .. table.concat(got, " | ", stop_at))
    assert.is_nil(has("READY=1", ready_at + 1), "READY=1 twice: " .. table.concat(got, " | "))
  end)

  it("does not ping without WATCHDOG_USEC", function()
    local sock = h.tmpdir() .. "/notify-" .. h.free_port()
    local l = listener(sock)
    finally(function() l.close() end)
    local cfg, admin = h.impulse_config(env, {})
    local imp = h.spawn("impulse", string.format("env NOTIFY_SOCKET=%s %s run -c %s",
      sock, h.shell_quote(h.bin), h.shell_quote(cfg)))
    imp.admin = "http://127.0.0.1:" .. admin
    h.wait_ready(imp, 60000)
    local got = {}
    h.wait_until(function()
      for _, m in ipairs(l.drain()) do got[#got + 1] = m end
      return #got > 0
    end, 20000, "READY=1")
    h.sleep_ms(1500) -- three watchdog periods of the first test: none may come
    for _, m in ipairs(l.drain()) do got[#got + 1] = m end
    for _, m in ipairs(got) do assert.is_nil(m:find("WATCHDOG", 1, true), "a ping without WATCHDOG_USEC") end
    h.stop(imp)
  end)
end)
