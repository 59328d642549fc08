-- Runs inside the engine (impulse test): N FCM-style POSTs through the
-- providers' batch sender on this one worker, over one TLS HTTP/2
-- connection. Driven by bench/h2.lua (URL, CA, N, concurrency from the
-- environment); prints "impulse: <n> requests in <s> s".
local common = require "impulse.transport.common"
local core = require "impulse.core"

describe("h2 bench", function()
  it("sends", function()
    local url, ca = os.getenv("H2_URL"), os.getenv("H2_CA")
    local n = tonumber(os.getenv("H2_N")) or 20000
    local conc = tonumber(os.getenv("H2_CONC2") or os.getenv("H2_CONC")) or 100
    local body = string.rep("x", 300)
    local body_json = '{"message":{"token":"' .. string.rep("t", 150) .. '","notification":{"title":"T","body":"'
      .. body .. '"}}}'
    local function batch(count)
      local reqs = {}
      for i = 1, count do
        reqs[i] = { method = "POST", url = url, body = body_json,
                    headers = { "Authorization: Bearer ya29.bench", "Content-Type: application/json" } }
      end
      return common.batch("bench", reqs, { ca_file = ca, concurrency = conc, timeout_ms = 30000,
                                           attempts = 1, deadline_ms = 600000 })
    end
    batch(200) -- warm-up: the connection is up
    local t0 = core.now_ms()
    local res = batch(n)
    local s = (core.now_ms() - t0) / 1000
    local ok = 0
    for _, r in ipairs(res) do if r.status == 200 then ok = ok + 1 end end
    print(string.format("impulse: %d requests in %.3f s, %d answered 200", n, s, ok))
    assert.equal(n, ok)
  end)
end)
