-- openim-push.enable names a provider whose keys are empty, as the
-- openim-push.yml openim-docker ships does (enable: geTui, every key ''):
-- openim-push starts and fails at each push; impulse starts too, says so at
-- start and in /healthz, and counts and dead-letters each offline push it
-- cannot make, so none is lost (issue 14).
local h = require "spec.helpers"

describe("a provider without its keys #engine", function()
  local env, imp

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    imp = h.start_impulse(env, {
      workers = 1,
      provider = "geTui",
      push_yaml = table.concat({ "  geTui:", "    pushUrl: https://restapi.getui.com/v2/$appId",
        "    masterSecret: ''", "    appKey: ''", "    intent: ''", "    channelID: ''", "    channelName: ''" }, "\n"),
    })
  end)

  lazy_teardown(function() h.stop_env(env) end)

  it("starts, and says so at start and in /healthz", function()
    local line = h.log_lines(imp, "openim-push.enable: getui:")[1]
    assert.is_truthy(line, "no start line about the provider")
    assert.equal("error", line.level)
    assert.matches("every offline push through it fails", line.msg, 1, true)
    local _, body = h.http("GET", imp.admin .. "/healthz")
    local status = require("cjson").decode(body)
    assert.equal("getui", status.offlineProvider.name)
    assert.is_false(status.offlineProvider.configured)
    assert.matches("getui", status.offlineProvider.error, 1, true)
  end)

  it("counts and dead-letters each offline push it cannot make", function()
    local m = h.push_msg { sendID = "zed", recvID = "amy" } -- amy offline: an offline push
    h.produce(env, m)
    local dl = h.wait_until(function()
      for _, r in ipairs(h.dead_letters(env, "toOfflinePush.dlq")) do
        local req = h.pb.decode("openim.push.PushMsgReq", r.value)
        if req.msgData.clientMsgID == m.clientMsgID then return { rec = r, req = req } end
      end
    end, 30000, "the dead letter")
    assert.same({ "amy" }, dl.req.userIDs)
    assert.equal("push_failed", h.header(dl.rec, "impulse-reason"))
    assert.is_true(h.metric(imp, "impulse_offline_push_total", 'provider="getui",result="failed"') >= 1)
    assert.is_true(h.metric(imp, "msg_offline_push_failed_total") >= 1)
  end)
end)
