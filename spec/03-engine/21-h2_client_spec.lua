-- The providers' HTTP/2 client (engine/net/h2.c) against a Node peer
-- (spec/helpers/h2peer.js): every answer reaches its own request when 100
-- share one connection, names are resolved, an HTTP/1.1-only server is
-- reached through libcurl, a GOAWAY costs nothing, a killed connection
-- costs only a retry, a broken or silent session is ended with its
-- reason, a vanished server fails requests at once, a wrong CA is named. The requests are sent by
-- spec/fixtures/h2/run_spec.lua inside `impulse test` (the real sender).
local h = require "spec.helpers"
local cjson = require "cjson"
local format = string.format

local function start_peer(mode)
  local k = h.test_pki()
  local info = format("%s/h2peer-%s-%d.json", h.tmpdir(), mode, h.free_port())
  local p = h.spawn("h2peer-" .. mode, format("node %s/spec/helpers/h2peer.js --cert %s --key %s --info %s --mode %s",
    h.shell_quote(h.root), h.shell_quote(k.cert), h.shell_quote(k.key), h.shell_quote(info), mode))
  local data = h.wait_until(function()
    local f = io.open(info)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s ~= "" and cjson.decode(s)
  end, 20000, "the h2 peer")
  p.port = data.port
  return p
end

-- Runs n requests; returns what run_spec.lua printed (decoded) and the output.
local function send(url, n, opts)
  opts = opts or {}
  local env = format("H2T_URL=%s H2T_CA=%s H2T_N=%d H2T_ATTEMPTS=%d H2T_CONC=%d H2T_TIMEOUT=%d", h.shell_quote(url),
    h.shell_quote(opts.ca or h.test_pki().ca), n, opts.attempts or 1, opts.concurrency or 100, opts.timeout or 5000)
  local out = h.run(format("cd %s && %s %s test spec/fixtures/h2/run_spec.lua 2>&1", h.shell_quote(h.root), env,
    h.shell_quote(h.bin)))
  local line = out:match("H2T (%b{})")
  assert(line, "no result from the sender:\n" .. out)
  return cjson.decode(line), out
end

local function keys(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end

describe("the providers' HTTP/2 client #engine", function()
  after_each(function() h.stop_all() end)

  it("multiplexes 2,000 requests on one connection, each answer reaching its own request", function()
    local p = start_peer("h2")
    local r = send(format("https://127.0.0.1:%d", p.port), 2000)
    assert.same({}, r.errors)
    assert.equal(2000, r.ok)
    assert.equal(0, r.mismatched)
    assert.same({ "2.0" }, keys(r.protos))
    assert.equal(1, r.stats.sessions)
    assert.equal(2001, r.stats.streams) -- each request once, plus /stats
  end)

  it("resolves a host name and checks the certificate against it", function()
    local p = start_peer("h2")
    local r = send(format("https://localhost:%d", p.port), 50)
    assert.equal(50, r.ok)
    assert.same({ "2.0" }, keys(r.protos))
  end)

  it("reaches a server without h2 (ALPN) over HTTP/1.1 through libcurl", function()
    local p = start_peer("h1")
    local r = send(format("https://127.0.0.1:%d", p.port), 300)
    assert.same({}, r.errors)
    assert.equal(300, r.ok)
    assert.equal(0, r.mismatched)
    assert.same({ "1.1" }, keys(r.protos))
    assert.equal(300, r.stats.streams)
  end)

  it("sends the requests a GOAWAY refused again on a new connection, each once", function()
    local p = start_peer("goaway") -- every connection closes after 50 streams
    local r = send(format("https://127.0.0.1:%d", p.port), 500)
    assert.same({}, r.errors)
    assert.equal(500, r.ok)
    assert.equal(0, r.retried) -- refused streams are not failures: no attempt spent
    assert.equal(501, r.stats.streams)
    assert.is_true(r.stats.sessions >= 10)
  end)

  it("fails the requests of a killed connection, which succeed on retry", function()
    local p = start_peer("kill") -- the first connection dies after 50 streams
    local r = send(format("https://127.0.0.1:%d", p.port), 500, { attempts = 3 })
    assert.same({}, r.errors)
    assert.equal(500, r.ok)
    assert.is_true(r.retried > 0)
    assert.equal(2, r.stats.sessions)
    local once = send(format("https://127.0.0.1:%d", p.port), 20, { attempts = 1 })
    assert.equal(20, once.ok) -- and the client goes on normally
  end)

  it("ends a session the server broke (a protocol error) with that error, without hanging", function()
    local p = start_peer("badframe") -- each connection: a WINDOW_UPDATE of 0 after the first request
    local r = send(format("https://127.0.0.1:%d", p.port), 20, { timeout = 3000 })
    assert.equal(0, r.ok)
    assert.equal(20, r.failed)
    assert.matches("session ended after a protocol error", r.errors[1], 1, true)
  end)

  it("gives up a connection that stays silent for a whole request timeout", function()
    local p = start_peer("silent")
    local r = send(format("https://127.0.0.1:%d", p.port), 5, { timeout = 500 })
    assert.equal(5, r.failed)
    assert.matches("silent for 500 ms", r.errors[1], 1, true)
    assert.equal(2, r.stats.sessions) -- /stats came on a new connection
  end)

  it("fails at once the requests a closed server cannot take, with no reconnect storm", function()
    local p = start_peer("close") -- GOAWAY after 50 streams, and the listener closes
    local r = send(format("https://127.0.0.1:%d", p.port), 200, { timeout = 5000 })
    assert.is_true(r.ok >= 50)
    assert.equal(200, r.ok + r.failed)
    local refused = 0
    for e, n in pairs(r.kinds) do
      assert.is_nil(e:find("timed out", 1, true), "a request waited for its timeout: " .. e)
      if e:find("Connection refused", 1, true) then refused = refused + n end
    end
    assert.is_true(refused > 0) -- failed at the first refusal, no reconnect storm
  end)

  it("names a certificate it cannot verify, per request", function()
    local p = start_peer("h2")
    local other = h.tmpdir() .. "/other-ca.pem"
    h.run(format("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s.key -out %s -days 1 -subj /CN=other "
      .. "2>/dev/null", h.shell_quote(other), h.shell_quote(other)))
    assert.truthy(io.open(other), "the other CA was not made")
    local r = send(format("https://127.0.0.1:%d", p.port), 3, { ca = other })
    assert.equal(0, r.ok)
    assert.equal(3, #r.errors)
    assert.matches("TLS handshake with 127.0.0.1:%d+: certificate verify failed", r.errors[1])
  end)
end)
