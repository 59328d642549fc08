-- examples/policies/quiet_hours.lua (or the copy POLICY names, e.g. POLICY=scripts/push.lua)
local testing = require "impulse.testing"

describe("examples/policies/quiet_hours.lua", function()
  local policy
  -- 2026-11-27 23:30 UTC, in ms
  local T2330 = os.time { year = 2026, month = 11, day = 27, hour = 23, min = 30, isdst = false } * 1000
  -- os.time reads the table as local time: correct to UTC
  local utc = os.time(os.date("!*t", 0)) * 1000
  T2330 = T2330 - utc

  before_each(function()
    testing.setup {}
    policy = testing.load_policy(os.getenv("POLICY") or "examples/policies/quiet_hours.lua", "scripts")
  end)

  local function offline(user, at, extra)
    local fields = { sendID = "sender", recvID = user, sendTime = at }
    for k, v in pairs(extra or {}) do fields[k] = v end
    return (policy.offline(testing.message(fields), testing.ctx(), { reached = {}, not_reached = { user } }))
  end

  it("computes the user's local hour", function()
    local msg = testing.message { sendTime = T2330 }
    assert.equal(0, policy.local_hour(msg, "alice"))  -- UTC+1: 00:30
    assert.equal(18, policy.local_hour(msg, "bob"))   -- UTC-5: 18:30
    assert.equal(7, policy.local_hour(msg, "carol"))  -- default UTC+8: 07:30
  end)

  it("holds offline pushes in quiet hours and lets the others through", function()
    assert.same({}, offline("alice", T2330))
    assert.same({ "bob" }, offline("bob", T2330))
    assert.same({ "carol" }, offline("carol", T2330)) -- 07:30 is past the quiet hours
    assert.same({}, offline("carol", T2330 - 3600 * 1000)) -- 06:30
    assert.equal("info", testing.logs[#testing.logs].level)
  end)

  it("lets an @-mention through in quiet hours", function()
    assert.same({ "alice" }, offline("alice", T2330, { atUserIDList = { "alice" } }))
  end)
end)
